"""The Llama 2 tokenizer: a SentencePiece BPE model (RECIPE.md, "Tokenizer"; paper sec. 2.2).

`Tokenizer` loads any SentencePiece `tokenizer.model` (Meta's 32k one included) and encodes like
Meta's reference `llama/tokenizer.py`: plain SentencePiece ids, BOS/EOS added only on request.
SentencePiece never produces control ids (`<s>`, `</s>`) from text, so text typed by a user cannot
become a control token. `train_tokenizer` trains a new model with Llama 2's trainer options.

`Tokenizer.save` writes a directory that `transformers.AutoTokenizer.from_pretrained` loads as a
Llama tokenizer with the same ids and the Llama 2 chat template (`chat_format.CHAT_TEMPLATE`).
Known HF departures (pinned in tests/test_tokenizer.py): HF turns a typed "</s>" into the EOS id,
and drops the dummy-prefix space of a text that already starts with a space.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

__all__ = ["Tokenizer", "train_tokenizer"]

MODEL_FILE = "tokenizer.model"
# SentencePiece's byte_fallback adds one piece per byte value, <0x00>..<0xFF>.
NUM_BYTE_PIECES = 256


class Tokenizer:
    """A SentencePiece tokenizer with Meta's encode/decode conventions.

    Args:
        path: a `tokenizer.model` file, or a directory that contains one.

    Raises:
        FileNotFoundError: if there is no model file at `path`.
        ValueError: if the file is not a valid SentencePiece model.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        model_path = path / MODEL_FILE if path.is_dir() else path
        if not model_path.is_file():
            raise FileNotFoundError(f"no SentencePiece model at {model_path}")
        self.path = model_path
        # Keep the serialized proto: `save` copies it byte for byte.
        self._proto = model_path.read_bytes()
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except RuntimeError as e:
            raise ValueError(f"{model_path} is not a valid SentencePiece model: {e}") from e
        self.vocab_size: int = self._sp.vocab_size()
        self.bos_id: int = self._sp.bos_id()
        self.eos_id: int = self._sp.eos_id()
        self.unk_id: int = self._sp.unk_id()
        self.pad_id: int = self._sp.pad_id()  # -1 for Llama 2: it has no pad token

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Encode text as Meta's reference does: SentencePiece ids, optionally framed by BOS/EOS.

        SentencePiece encodes control symbols such as "</s>" in `text` as ordinary text pieces,
        so only the `bos`/`eos` flags can produce those ids.

        Args:
            text: the string to encode.
            bos: prepend the BOS id.
            eos: append the EOS id.

        Returns:
            The token ids.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        ids: list[int] = self._sp.EncodeAsIds(text)
        if bos:
            ids = [self._special_id("bos", self.bos_id), *ids]
        if eos:
            ids = [*ids, self._special_id("eos", self.eos_id)]
        return ids

    def encode_batch(self, texts: Sequence[str], bos: bool = False, eos: bool = False,
                     num_threads: int = 1) -> list[list[int]]:
        """``[encode(t, bos, eos) for t in texts]`` in one SentencePiece C++ call (data pipelines)."""
        if bos:
            self._special_id("bos", self.bos_id)
        if eos:
            self._special_id("eos", self.eos_id)
        return self._sp.EncodeAsIds(list(texts), add_bos=bos, add_eos=eos, num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ids to text; control ids (BOS, EOS, pad) are skipped.

        Args:
            ids: token ids, each in [0, vocab_size) or equal to `pad_id`.

        Returns:
            The decoded string.

        Raises:
            ValueError: on an id outside the vocabulary.
        """
        ids = [int(i) for i in ids]
        keep = []
        for i in ids:
            if i == self.pad_id:  # -1 pad is common in batches; never part of the text
                continue
            self._check_id(i)
            keep.append(i)
        # SentencePiece decodes control pieces (BOS/EOS) to the empty string.
        return self._sp.DecodeIds(keep)

    def id_to_piece(self, i: int) -> str:
        """The SentencePiece piece for id `i` (e.g. "▁the", "<0x0A>", "</s>")."""
        self._check_id(i)
        return self._sp.IdToPiece(i)

    def piece_to_id(self, piece: str) -> int:
        """The id of `piece`, or `unk_id` if the vocabulary has no such piece."""
        return self._sp.PieceToId(piece)

    def is_control(self, i: int) -> bool:
        """Whether id `i` is a control symbol (BOS, EOS, ...) that text never encodes to."""
        self._check_id(i)
        return self._sp.IsControl(i)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write a tokenizer directory that both llamaforge and HF transformers load.

        Writes `tokenizer.model` (the serialized SentencePiece proto, unchanged),
        `tokenizer_config.json` (with the Llama 2 chat template) and `special_tokens_map.json`.

        Args:
            out_dir: the directory to write (created if missing).

        Returns:
            The path of the written `tokenizer.model`.
        """
        from llamaforge.chat_format import CHAT_TEMPLATE  # chat_format imports this module

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model_path = out_dir / MODEL_FILE
        model_path.write_bytes(self._proto)
        ids = {"bos_token": self.bos_id, "eos_token": self.eos_id, "unk_token": self.unk_id,
               "pad_token": self.pad_id}
        special = {name: self._sp.IdToPiece(i) for name, i in ids.items() if i >= 0}
        config = {
            "tokenizer_class": "LlamaTokenizer",
            **special,
            "pad_token": special.get("pad_token"),  # null for Llama 2: no pad token
            # `tokenizer(text)` adds BOS only, as Meta's generate does for a prompt.
            "add_bos_token": True,
            "add_eos_token": False,
            # legacy=True makes HF add SentencePiece's dummy-prefix space to every text segment,
            # including the one right after <s>; Meta encodes each "[INST] ..." string on its own,
            # so every segment starts with "▁[". legacy=False would drop that space after <s>.
            "legacy": True,
            "add_prefix_space": True,
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
        }
        (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
        return model_path

    def _special_id(self, name: str, i: int) -> int:
        if i < 0:
            raise ValueError(f"{self.path} defines no {name} token, cannot add one")
        return i

    def _check_id(self, i: int) -> None:
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")


def train_tokenizer(
    inputs: Sequence[str | os.PathLike],
    vocab_size: int,
    out_dir: str | os.PathLike,
    *,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    input_sentence_size: int = 200_000_000,
    num_threads: int | None = None,
) -> Tokenizer:
    """Train a SentencePiece model with Llama 2's trainer options and save it to `out_dir`.

    The options are those of the `trainer_spec` / `normalizer_spec` stored in Meta's Llama 2
    `tokenizer.model`, except the defaults of `character_coverage` and `num_threads` (below).
    Its unigram-only options (seed_sentencepiece_size, shrinking_factor, num_sub_iterations) do
    not apply to BPE and are left at SentencePiece's defaults.

    Args:
        inputs: plain-text files, one sentence (or paragraph) per line.
        vocab_size: total pieces, including 3 specials and 256 byte pieces (Llama 2: 32000).
        out_dir: where `tokenizer.model` and the HF config files are written.
        model_type: "bpe" (Llama 2) or "unigram".
        character_coverage: fraction of characters covered by char pieces; the rest fall back to
            bytes. Llama 2 used 0.99995 on 2T tokens; 1.0 keeps every character of a small corpus.
        input_sentence_size: at most this many lines are used (Llama 2: 200M); a larger corpus
            is sampled at random by SentencePiece, so the result is then not reproducible.
        num_threads: trainer threads (default: all CPUs; Llama 2 used 80).

    Returns:
        The trained `Tokenizer`, loaded from `out_dir`.

    Raises:
        ValueError: on a missing or empty input file, a too-small vocab, or a trainer failure
            (e.g. fewer pieces in the corpus than `vocab_size`: Llama 2's hard_vocab_limit).
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("train_tokenizer: no input files given")
    for p in paths:
        if not p.is_file():
            raise ValueError(f"train_tokenizer: input file {p} does not exist")
        if p.stat().st_size == 0:
            raise ValueError(f"train_tokenizer: input file {p} is empty")
        if "," in str(p):  # SentencePiece joins its input list with commas
            raise ValueError(f"train_tokenizer: input path {p} contains a comma; rename it")
    min_vocab = 3 + NUM_BYTE_PIECES + 1  # unk/bos/eos + <0x00>..<0xFF> + at least one piece
    if vocab_size < min_vocab:
        raise ValueError(
            f"train_tokenizer: vocab_size={vocab_size} is too small: byte_fallback needs "
            f"{NUM_BYTE_PIECES} byte pieces plus 3 specials, so vocab_size must be >= {min_vocab} "
            f"(and cover every character of the corpus)"
        )
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.Train(
            input=[str(p) for p in paths],
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            num_threads=num_threads or os.cpu_count() or 1,
            max_sentence_length=4192,
            max_sentencepiece_length=16,
            split_by_unicode_script=True,
            split_by_whitespace=True,
            split_by_number=True,
            treat_whitespace_as_suffix=False,
            split_digits=True,  # "2023" -> 2, 0, 2, 3: numbers are read digit by digit
            allow_whitespace_only_pieces=True,  # runs of spaces (code indentation) get pieces
            byte_fallback=True,  # no <unk> for unseen characters: they become <0x..> bytes
            vocabulary_output_piece_score=True,
            hard_vocab_limit=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,  # Llama 2 has no pad token
            normalization_rule_name="identity",  # no NFKC: the text is kept as typed
            add_dummy_prefix=True,
            remove_extra_whitespaces=False,
            minloglevel=1,  # warnings and errors only; INFO floods the console
        )
    except RuntimeError as e:
        raise ValueError(
            f"train_tokenizer: SentencePiece failed on {[str(p) for p in paths]} with "
            f"vocab_size={vocab_size}: {e}"
        ) from e
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(model.getvalue())
    tokenizer = Tokenizer(out_dir)
    tokenizer.save(out_dir)
    return tokenizer
