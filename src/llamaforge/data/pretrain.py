"""Pretraining token data: text -> memory-mapped token shards (`prepare`) -> windows (`PretrainData`).

`prepare` streams documents from text, JSONL, parquet and `datasets.load_from_disk` inputs,
encodes them in worker processes as BOS + ids + EOS (Llama 2 packs documents this way: paper
sec. 2.1, RECIPE.md "Pretraining data"), and writes the token stream of each split ("train",
"val") to raw little-endian shard files with a `manifest.json`:

    out_dir/
      manifest.json       format, tokenizer (path, sha256, vocab_size), dtype, bos/eos ids, inputs,
                          per split: shards [{file, tokens, sha256}], tokens, documents
      train_00000.bin     uint16 tokens (uint32 when vocab_size > 65536), at most shard_tokens each
      train_00001.bin ...
      val_00000.bin

The output is a pure function of the inputs, the tokenizer and the seed: the same bytes for any
number of workers. Memory stays bounded (documents travel to workers in chunks of about
`chunk_chars` characters, at most two chunks per worker in flight), so corpora larger than memory
work. Each file is written under a temporary name and renamed; the manifest is written last, so a
failed run never leaves a manifest that claims complete data.

`PretrainData` reads a split as one token stream cut into `(tokens - 1) // seq_len` windows of
seq_len + 1 tokens (inputs and next-token targets) and serves them by a global sequence counter:
`get(start, count)` is a pure function of (seed, start, count), so the whole loader state is one
integer and any number of ranks can read the same global batch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import re
import sys
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llamaforge.tokenizer import Tokenizer

__all__ = ["prepare", "PretrainData", "load_manifest", "unigram_entropy", "token_dtype"]

FORMAT = "llamaforge.pretrain"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
_SUFFIX_FORMATS = {".txt": "text", ".jsonl": "jsonl", ".parquet": "parquet"}
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_SHARD_NAME = re.compile(r"^(train|val)_\d{5}\.bin(\.tmp)?$")
_MASK64 = (1 << 64) - 1


def token_dtype(vocab_size: int) -> np.dtype:
    """The shard dtype for a vocabulary: little-endian uint16 if every id fits, else uint32."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


# ----------------------------------------------------------------------------- reading inputs

@dataclass(frozen=True)
class _Source:
    path: Path
    format: str  # "text" | "jsonl" | "parquet" | "hf"


def _is_hf_dir(path: Path) -> bool:
    return any((path / m).is_file() for m in _HF_MARKERS)


def _expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[_Source]:
    """Files as given; directories expanded recursively in sorted order (hidden entries skipped)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    sources: list[_Source] = []

    def walk(d: Path) -> None:
        if _is_hf_dir(d):
            sources.append(_Source(d, "hf"))
            return
        for child in sorted(d.iterdir(), key=lambda p: p.name):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                walk(child)
            elif child.suffix in _SUFFIX_FORMATS:
                sources.append(_Source(child, _SUFFIX_FORMATS[child.suffix]))

    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"prepare: input {path} does not exist")
        if path.is_dir():
            walk(path)
        elif path.suffix in _SUFFIX_FORMATS:
            sources.append(_Source(path, _SUFFIX_FORMATS[path.suffix]))
        else:
            raise ValueError(f"prepare: input {path} has an unsupported type; expected .txt, "
                             f".jsonl, .parquet or a datasets.load_from_disk directory")
    return sources


@dataclass
class _Skipped:
    """Bad lines / rows: raise at the first, or (skip=True) count them and keep a few examples."""

    skip: bool
    bad: int = 0
    empty: int = 0
    examples: list[str] = field(default_factory=list)

    def __call__(self, where: str, what: str) -> None:
        if not self.skip:
            raise ValueError(f"{where}: {what} (pass skip_bad_lines=True to skip such lines)")
        self.bad += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {what}")


def _read_text(path: Path) -> Iterator[str]:
    """Documents of a text file: runs of non-blank lines, separated by blank lines."""
    lines: list[str] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: line {lineno} is not valid UTF-8 ({e.reason} at byte "
                                 f"{e.start} of the line)") from None
            if line.endswith("\r\n"):
                line = line[:-2] + "\n"
            if line.strip():
                lines.append(line)
            elif lines:
                yield "".join(lines).removesuffix("\n")
                lines = []
    if lines:
        yield "".join(lines).removesuffix("\n")


def _read_jsonl(path: Path, text_field: str, skipped: _Skipped) -> Iterator[str]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}: line {lineno}"
            try:
                obj = json.loads(raw)
            except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
                skipped(where, f"not valid JSON ({e})")
                continue
            if not isinstance(obj, dict):
                skipped(where, f"expected a JSON object, got {type(obj).__name__}")
            elif text_field not in obj:
                skipped(where, f"the object has no field {text_field!r} (fields: {sorted(obj)[:10]})")
            elif not isinstance(obj[text_field], str):
                skipped(where, f"field {text_field!r} is {type(obj[text_field]).__name__}, "
                               f"expected a string")
            else:
                yield obj[text_field]


def _column_texts(where: str, batches: Iterator[list], text_field: str,
                  skipped: _Skipped) -> Iterator[str]:
    row = 0
    for batch in batches:
        for text in batch:
            row += 1
            if isinstance(text, str):
                yield text
            else:
                skipped(f"{where}: row {row}", f"field {text_field!r} is "
                                               f"{type(text).__name__}, expected a string")


def _read_parquet(path: Path, text_field: str, skipped: _Skipped) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError subclasses
        raise ValueError(f"{path}: not a readable parquet file: {e}") from e
    names = pf.schema_arrow.names
    if text_field not in names:
        raise ValueError(f"{path}: no column {text_field!r}; columns: {names}")
    batches = (b.column(0).to_pylist() for b in pf.iter_batches(batch_size=8192, columns=[text_field]))
    yield from _column_texts(str(path), batches, text_field, skipped)


def _read_hf(path: Path, text_field: str, skipped: _Skipped) -> Iterator[str]:
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        raise ValueError(f"{path} is a DatasetDict with splits {splits}; pass one split's "
                         f"directory, e.g. {path / (splits[0] if splits else 'train')}")
    try:
        import datasets
    except ImportError:
        raise ImportError(f"reading {path} (a datasets.load_from_disk directory) needs the "
                          f"datasets package: pip install datasets") from None
    ds = datasets.load_from_disk(str(path))
    if text_field not in ds.column_names:
        raise ValueError(f"{path}: no column {text_field!r}; columns: {ds.column_names}")
    ds = ds.select_columns([text_field])
    batches = (b[text_field] for b in ds.iter(batch_size=8192))
    yield from _column_texts(str(path), batches, text_field, skipped)


def _documents(sources: list[_Source], text_field: str, skipped: _Skipped) -> Iterator[str]:
    """Every non-empty document of every source, in order."""
    for src in sources:
        if src.format == "text":
            docs = _read_text(src.path)
        elif src.format == "jsonl":
            docs = _read_jsonl(src.path, text_field, skipped)
        elif src.format == "parquet":
            docs = _read_parquet(src.path, text_field, skipped)
        else:
            docs = _read_hf(src.path, text_field, skipped)
        for doc in docs:
            if doc:
                yield doc
            else:
                skipped.empty += 1


def _chunks(docs: Iterator[str], chunk_chars: int) -> Iterator[tuple[int, list[str]]]:
    """(index of the first document, documents) with about `chunk_chars` characters each."""
    start, chunk, size = 0, [], 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc)
        if size >= chunk_chars:
            yield start, chunk
            start, chunk, size = start + len(chunk), [], 0
    if chunk:
        yield start, chunk


# ----------------------------------------------------------------------------- encoding

def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic): a fast, portable hash."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _is_val(seed: int, start: int, n: int, val_fraction: float) -> np.ndarray:
    """bool[n]: whether documents start..start+n-1 go to the val split (hash of seed, index)."""
    if val_fraction <= 0:
        return np.zeros(n, dtype=bool)
    key = _splitmix64(np.array([seed & _MASK64], dtype=np.uint64))
    h = _splitmix64(np.arange(start, start + n, dtype=np.uint64) ^ key)
    return h < np.uint64(min(int(val_fraction * 2.0**64), _MASK64))


@dataclass
class _Encoded:
    """One chunk's tokens per split; `last_train` = framed length of its last train document."""

    train: np.ndarray
    val: np.ndarray
    train_docs: int
    val_docs: int
    last_train: int


class _Encoder:
    """Encodes chunks of documents as BOS + ids + EOS; one per worker process."""

    def __init__(self, model_path: str, seed: int, val_fraction: float) -> None:
        tok = Tokenizer(model_path)
        self.dtype = token_dtype(tok.vocab_size)
        self._tok = tok  # encode_batch: one SentencePiece C++ call per chunk
        self.seed, self.val_fraction = seed, val_fraction

    def __call__(self, start: int, docs: list[str]) -> _Encoded:
        ids = self._tok.encode_batch(docs, bos=True, eos=True)
        is_val = _is_val(self.seed, start, len(docs), self.val_fraction)
        val_idx = np.flatnonzero(is_val).tolist()
        if val_idx:
            val = [ids[i] for i in val_idx]
            train = [ids[i] for i in np.flatnonzero(~is_val).tolist()]
        else:
            val, train = [], ids
        return _Encoded(self._flat(train), self._flat(val), len(train), len(val),
                        len(train[-1]) if train else 0)

    def _flat(self, ids: list[list[int]]) -> np.ndarray:
        n = sum(map(len, ids))
        return np.fromiter(itertools.chain.from_iterable(ids), dtype=self.dtype, count=n)


# Set once in each worker process by the pool initializer (multiprocessing's per-process state).
_worker_encoder: _Encoder | None = None


def _init_worker(model_path: str, seed: int, val_fraction: float) -> None:
    global _worker_encoder
    _worker_encoder = _Encoder(model_path, seed, val_fraction)


def _encode_in_worker(start: int, docs: list[str]) -> _Encoded:
    assert _worker_encoder is not None, "worker not initialised"
    return _worker_encoder(start, docs)


# ----------------------------------------------------------------------------- writing shards

def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


class _ShardWriter:
    """Appends tokens to `{split}_{i:05d}.bin` shards of at most `shard_tokens` tokens each."""

    def __init__(self, out_dir: Path, split: str, shard_tokens: int) -> None:
        self.out_dir, self.split, self.shard_tokens = out_dir, split, shard_tokens
        self.shards: list[dict] = []
        self.tokens = 0
        self._f = None
        self._hash = None
        self._n = 0

    def write(self, tokens: np.ndarray) -> None:
        pos = 0
        while pos < tokens.size:
            if self._f is None:
                self._name = f"{self.split}_{len(self.shards):05d}.bin"
                self._f = open(self.out_dir / (self._name + ".tmp"), "wb")
                self._hash, self._n = hashlib.sha256(), 0
            piece = tokens[pos:pos + self.shard_tokens - self._n]
            self._f.write(piece)
            self._hash.update(piece)
            self._n += piece.size
            pos += piece.size
            if self._n == self.shard_tokens:
                self._finish_shard()
        self.tokens += tokens.size

    def _finish_shard(self) -> None:
        self._f.close()
        os.replace(self.out_dir / (self._name + ".tmp"), self.out_dir / self._name)
        self.shards.append({"file": self._name, "tokens": self._n, "sha256": self._hash.hexdigest()})
        self._f = None

    def close(self) -> None:
        if self._f is not None:
            self._finish_shard()

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            (self.out_dir / (self._name + ".tmp")).unlink(missing_ok=True)
            self._f = None


def _mp_context(start_method: str | None) -> multiprocessing.context.BaseContext:
    # fork on Linux: workers start in milliseconds instead of re-importing torch (llamaforge's
    # package import) in each; workers keep no state from the parent, so spawn works too.
    if start_method is None:
        start_method = "fork" if sys.platform == "linux" else "spawn"
    return multiprocessing.get_context(start_method)


def prepare(
    inputs: Sequence[str | os.PathLike],
    tokenizer: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    text_field: str = "text",
    val_fraction: float = 0.01,
    shard_tokens: int = 2**27,
    num_workers: int | None = None,
    skip_bad_lines: bool = False,
    seed: int = 0,
    progress: bool = True,
    chunk_chars: int = 1 << 20,
    start_method: str | None = None,
) -> dict:
    """Tokenize documents into memory-mapped shards of a train and a val split.

    Args:
        inputs: files or directories (expanded recursively, sorted by name): `.txt` (documents
            separated by blank lines), `.jsonl` (one object a line, text in `text_field`),
            `.parquet` (a `text_field` column; needs pyarrow), `datasets.load_from_disk`
            directories (needs datasets). Other files inside directories are ignored.
        tokenizer: a `tokenizer.model` or a directory holding one.
        out_dir: output directory (created). A previous manifest and shards
            (`train_NNNNN.bin`, `val_NNNNN.bin`) there are removed first.
        text_field: the JSONL field / column holding the text.
        val_fraction: each document goes to val with this probability, from a hash of
            (seed, document index); at least one does when there are >= 2 documents.
        shard_tokens: at most this many tokens per shard file (2**27: 256 MiB of uint16).
        num_workers: encoding processes (default: all CPUs); 0 or 1 encode in this process.
        skip_bad_lines: skip (count, warn about) malformed JSONL lines and non-string values
            instead of raising.
        seed: the split seed.
        progress: show a tqdm bar with tokens/s.
        chunk_chars: documents are sent to workers in chunks of about this many characters.
        start_method: multiprocessing start method (default: fork on Linux, else spawn).

    Returns:
        The manifest (also written to `out_dir/manifest.json`).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: a malformed line or row (naming file and line), an unsupported input, an
            empty corpus, or bad arguments.
        ImportError: a parquet / datasets input without pyarrow / datasets installed.
    """
    from tqdm import tqdm

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"prepare: val_fraction must be in [0, 1), got {val_fraction}")
    if shard_tokens < 1 or chunk_chars < 1:
        raise ValueError(f"prepare: shard_tokens and chunk_chars must be >= 1, got "
                         f"{shard_tokens}, {chunk_chars}")
    sources = _expand_inputs(inputs)
    tok = Tokenizer(tokenizer)
    model_path = str(tok.path.resolve())
    dtype = token_dtype(tok.vocab_size)
    workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # 1. Nothing from an earlier run may pass for this run's output.
    (out / MANIFEST).unlink(missing_ok=True)
    for p in out.iterdir():
        if _SHARD_NAME.match(p.name):
            p.unlink()

    skipped = _Skipped(skip_bad_lines)
    chunks = _chunks(_documents(sources, text_field, skipped), chunk_chars)
    writers = {s: _ShardWriter(out, s, shard_tokens) for s in SPLITS}
    docs = {s: 0 for s in SPLITS}
    held: list[_Encoded] = []  # the latest chunk, written when the next one arrives (see 3.)
    bar = None

    def take(enc: _Encoded) -> None:
        if held:
            prev = held.pop()
            writers["train"].write(prev.train)
            writers["val"].write(prev.val)
        held.append(enc)
        docs["train"] += enc.train_docs
        docs["val"] += enc.val_docs
        bar.update(enc.train.size + enc.val.size)

    try:
        # 2. Encode chunks in order, at most two per worker in flight.
        if workers <= 1:
            bar = tqdm(unit="tok", unit_scale=True, desc="prepare", disable=not progress)
            encoder = _Encoder(model_path, seed, val_fraction)
            for start, chunk in chunks:
                take(encoder(start, chunk))
        else:
            ctx = _mp_context(start_method)
            with ctx.Pool(workers, _init_worker, (model_path, seed, val_fraction)) as pool:
                # the bar after the fork: its monitor thread must not exist when workers fork
                bar = tqdm(unit="tok", unit_scale=True, desc="prepare", disable=not progress)
                pending: deque = deque()
                for start, chunk in chunks:
                    pending.append(pool.apply_async(_encode_in_worker, (start, chunk)))
                    if len(pending) >= 2 * workers:
                        take(pending.popleft().get())
                while pending:
                    take(pending.popleft().get())
        bar.close()
        bar = None
        n_docs = docs["train"] + docs["val"]
        if n_docs == 0:
            raise ValueError(f"prepare: no documents in {[str(s.path) for s in sources] or inputs}"
                             + (f" ({skipped.bad} bad lines skipped)" if skipped.bad else ""))
        # 3. At least one val document: the last document, held back for this.
        last = held.pop()
        if val_fraction > 0 and docs["val"] == 0 and n_docs >= 2:
            cut = last.train.size - last.last_train
            last.val, last.train = last.train[cut:], last.train[:cut]
            docs["train"], docs["val"] = docs["train"] - 1, 1
        writers["train"].write(last.train)
        writers["val"].write(last.val)
        for w in writers.values():
            w.close()
    except BaseException:
        if bar is not None:
            bar.close()
        for w in writers.values():
            w.abort()
        raise
    if docs["train"] == 0:
        raise ValueError(f"prepare: all {n_docs} documents went to the val split; lower "
                         f"val_fraction ({val_fraction}) or add documents")
    text_tokens = writers["train"].tokens + writers["val"].tokens - 2 * n_docs
    if text_tokens == 0:
        raise ValueError(f"prepare: the documents of {[str(s.path) for s in sources]} encode to no "
                         f"tokens")
    if skipped.bad:
        warnings.warn(f"prepare: skipped {skipped.bad} bad lines/rows, e.g. {skipped.examples}",
                      stacklevel=2)

    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "tokenizer": {"path": model_path, "sha256": _sha256_file(tok.path),
                      "vocab_size": tok.vocab_size},
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
        "dtype": dtype.name,  # little-endian
        "seed": seed,
        "val_fraction": val_fraction,
        "text_field": text_field,
        "inputs": [{"path": str(s.path), "format": s.format} for s in sources],
        "skipped_bad_lines": skipped.bad,
        "skipped_empty_documents": skipped.empty,
        "splits": {s: {"shards": writers[s].shards, "tokens": writers[s].tokens,
                       "documents": docs[s]} for s in SPLITS},
    }
    # 4. The manifest last, atomically: its presence means the shards are complete.
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


# ----------------------------------------------------------------------------- reading shards

def load_manifest(data_dir: str | os.PathLike, verify: bool = False) -> dict:
    """Read and check `data_dir/manifest.json`: format, dtype, and every shard's size.

    Args:
        data_dir: a directory written by `prepare`.
        verify: also check every shard's sha256 (reads all the data).

    Returns:
        The manifest.

    Raises:
        FileNotFoundError: no manifest (not prepared, or a prepare that did not finish).
        ValueError: an unknown format, or a missing, truncated or (verify) modified shard.
    """
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run prepare first (a prepare that "
                                f"failed or was interrupted writes no manifest)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format {manifest.get('format')!r} version "
                         f"{manifest.get('version')!r}, expected {FORMAT!r} version {FORMAT_VERSION}")
    if not isinstance(manifest.get("splits"), dict) or not all(
            isinstance(v, dict) and isinstance(v.get("shards"), list) for v in manifest["splits"].values()):
        raise ValueError(f"{path}: field 'splits' must map split names to {{'shards': [...], ...}}")
    if manifest.get("dtype") not in ("uint16", "uint32"):
        raise ValueError(f"{path}: field 'dtype' is {manifest.get('dtype')!r}, expected uint16/uint32")
    itemsize = np.dtype(manifest["dtype"]).itemsize
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            f = data_dir / shard["file"]
            if not f.is_file():
                raise ValueError(f"{split} shard {f} is missing")
            if f.stat().st_size != shard["tokens"] * itemsize:
                raise ValueError(f"{split} shard {f} has {f.stat().st_size} bytes, the manifest "
                                 f"says {shard['tokens']} tokens = {shard['tokens'] * itemsize} bytes")
            if verify and _sha256_file(f) != shard["sha256"]:
                raise ValueError(f"{split} shard {f} fails its sha256 check: it was modified or "
                                 f"corrupted after prepare")
    return manifest


class PretrainData:
    """Training windows of one split, addressed by a global sequence counter.

    The split's shards form one token stream of `total_tokens` tokens, cut into
    `num_sequences = (total_tokens - 1) // seq_len` windows; window i is tokens
    [i * seq_len, i * seq_len + seq_len + 1) (windows may cross shard boundaries). Counter c
    reads window `perm_e[c % num_sequences]` of epoch `e = c // num_sequences`, where `perm_e` is
    a permutation of range(num_sequences) seeded by (seed, e) (the identity if not `shuffle`).
    A rank reads counters it computes from the step, so the state to resume is one integer.

    The permutation of an epoch is computed once and cached (the last two epochs): 4 bytes per
    window, e.g. 400 MB for 100M windows (about 100B tokens at seq_len 1024); that is the
    intended limit.

    Args:
        data_dir: a directory written by `prepare`.
        split: "train" or "val".
        seq_len: tokens per input sequence.
        seed: the shuffle seed (>= 0).
        shuffle: permute windows within each epoch.
        verify: check the shards' sha256 checksums on opening.

    Raises:
        ValueError: a damaged shard (naming it), an unknown split, or fewer than seq_len + 1 tokens.
    """

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", *, seq_len: int,
                 seed: int = 0, shuffle: bool = True, verify: bool = False) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.data_dir = Path(data_dir)
        self.manifest = load_manifest(self.data_dir, verify=verify)
        self.split, self.seq_len, self.seed, self.shuffle = split, seq_len, seed, shuffle
        self.vocab_size: int = self.manifest["tokenizer"]["vocab_size"]
        shards = self.manifest["splits"][split]["shards"]
        self._shards = self._open_shards()
        # offsets[k] = stream position of shard k's first token; offsets[-1] = total
        self._offsets = np.cumsum([0] + [s["tokens"] for s in shards], dtype=np.int64)
        self.total_tokens = int(self._offsets[-1])
        if self.total_tokens < seq_len + 1:
            raise ValueError(f"{self.data_dir}: the {split} split has {self.total_tokens} tokens, "
                             f"fewer than seq_len + 1 = {seq_len + 1} for one window")
        self.num_sequences = (self.total_tokens - 1) // seq_len
        self._perms: dict[int, np.ndarray] = {}

    def _open_shards(self) -> list[np.memmap]:
        dtype = np.dtype(self.manifest["dtype"]).newbyteorder("<")
        return [np.memmap(self.data_dir / s["file"], dtype=dtype, mode="r", shape=(s["tokens"],))
                for s in self.manifest["splits"][self.split]["shards"]]

    def __getstate__(self) -> dict:
        # Pickled (e.g. into DataLoader workers) without the memmaps, which would copy the data.
        state = dict(self.__dict__)
        state["_shards"] = None
        state["_perms"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._shards = self._open_shards()

    def __len__(self) -> int:
        return self.num_sequences

    def __repr__(self) -> str:
        return (f"PretrainData({str(self.data_dir)!r}, split={self.split!r}, seq_len={self.seq_len}, "
                f"tokens={self.total_tokens}, sequences={self.num_sequences})")

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Tokens [start, stop) of the split's stream (across shards) as int64."""
        if not 0 <= start <= stop <= self.total_tokens:
            raise ValueError(f"token range [{start}, {stop}) is outside [0, {self.total_tokens})")
        if out is None:
            out = np.empty(stop - start, dtype=np.int64)
        k = int(np.searchsorted(self._offsets, start, side="right")) - 1
        pos = start
        while pos < stop:
            shard_end = int(self._offsets[k + 1])
            end = min(stop, shard_end)
            base = int(self._offsets[k])
            out[pos - start:end - start] = self._shards[k][pos - base:end - base]
            pos, k = end, k + 1
        return out

    def permutation(self, epoch: int) -> np.ndarray:
        """The window order of `epoch`: a permutation of range(num_sequences) (cached)."""
        if not self.shuffle:
            return np.arange(self.num_sequences)
        perm = self._perms.get(epoch)
        if perm is None:
            dt = np.int32 if self.num_sequences < 2**31 else np.int64
            perm = np.arange(self.num_sequences, dtype=dt)
            np.random.default_rng([self.seed, epoch]).shuffle(perm)
            if len(self._perms) >= 2:
                del self._perms[min(self._perms)]
            self._perms[epoch] = perm
        return perm

    def windows(self, start: int, count: int) -> np.ndarray:
        """int64[count]: the window index read by counters start .. start + count - 1."""
        if start < 0 or count < 0:
            raise ValueError(f"start and count must be >= 0, got {start}, {count}")
        c = np.arange(start, start + count, dtype=np.int64)
        epochs, pos = np.divmod(c, self.num_sequences)
        out = np.empty(count, dtype=np.int64)
        for e in np.unique(epochs).tolist():
            m = epochs == e
            out[m] = self.permutation(e)[pos[m]]
        return out

    def get(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences number start .. start + count - 1 as (inputs, targets).

        Args:
            start: the global sequence counter of the first sequence.
            count: how many sequences.

        Returns:
            x, y: LongTensor[count, seq_len] each; y[:, t] = x[:, t + 1] within the window.
        """
        L = self.seq_len
        buf = np.empty((count, L + 1), dtype=np.int64)  # [count, seq_len + 1]
        for row, w in enumerate(self.windows(start, count).tolist()):
            self.read(w * L, w * L + L + 1, out=buf[row])
        t = torch.from_numpy(buf)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def unigram_entropy(data_dir: str | os.PathLike, split: str = "train") -> float:
    """Entropy of the split's token frequencies, in nats per token.

    A model that learned only token frequencies reaches this cross-entropy; a lower validation
    loss shows it learned more. Counts are accumulated shard by shard, in blocks.

    Args:
        data_dir: a directory written by `prepare`.
        split: "train" or "val".

    Returns:
        -sum_v p(v) log p(v) over the split's tokens.
    """
    manifest = load_manifest(data_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(manifest['splits'])}")
    vocab = manifest["tokenizer"]["vocab_size"]
    counts = np.zeros(vocab, dtype=np.int64)
    for s in manifest["splits"][split]["shards"]:
        mm = np.memmap(Path(data_dir) / s["file"], dtype=np.dtype(manifest["dtype"]).newbyteorder("<"),
                       mode="r", shape=(s["tokens"],))
        for i in range(0, s["tokens"], 1 << 24):
            counts += np.bincount(mm[i:i + (1 << 24)], minlength=vocab)[:vocab]
    total = int(counts.sum())
    if total == 0:
        raise ValueError(f"{data_dir}: the {split} split has no tokens")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())
