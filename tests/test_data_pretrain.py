"""Pretraining data: prepare (formats, framing, determinism, split, manifest, errors), PretrainData."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from llamaforge.data.pretrain import (
    PretrainData,
    load_manifest,
    prepare,
    token_dtype,
    unigram_entropy,
)
from llamaforge.tokenizer import Tokenizer
from llamaforge.world import build_world, generate_documents

BOS, EOS = 1, 2
# Text-file documents with what the format must keep: inner newlines, indentation, trailing
# spaces, non-ASCII; separated by blank lines, whitespace-only lines and runs of them.
TXT_DOCS = ["Alice sold 12345 apples on day 7.", "def f(x):\n    return x + 1\n\tdone  ",
            "Καλημέρα κόσμε, 你好世界。", "one line\nand a second line"]


def write_inputs(root: Path, n_world: int = 60) -> tuple[list[Path], list[str]]:
    """A .txt and a .jsonl input; returns (paths, the documents in input order)."""
    world_docs = list(dict.fromkeys(generate_documents(build_world(0), n_world, seed=5)))  # unique
    txt = root / "a.txt"
    txt.write_text(TXT_DOCS[0] + "\n\n" + TXT_DOCS[1] + "\n \n\n\n" + TXT_DOCS[2] + "\r\n\r\n"
                   + TXT_DOCS[3] + "\n", encoding="utf-8")
    jsonl = root / "b.jsonl"
    lines = [json.dumps({"text": d, "id": i}, ensure_ascii=i % 2 == 0) for i, d in enumerate(world_docs)]
    lines.insert(3, "")  # blank lines are allowed between objects
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [txt, jsonl], TXT_DOCS + world_docs


def stream(out: Path, split: str) -> np.ndarray:
    m = json.loads((out / "manifest.json").read_text())
    parts = [np.fromfile(out / s["file"], dtype=m["dtype"]) for s in m["splits"][split]["shards"]]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def framed_docs(tokens: np.ndarray) -> list[list[int]]:
    """Cut a BOS ... EOS stream into documents, checking the framing."""
    docs, cur = [], None
    for t in tokens.tolist():
        if t == BOS:
            assert cur is None, "BOS inside a document"
            cur = []
        elif t == EOS:
            assert cur is not None, "EOS outside a document"
            docs.append(cur)
            cur = None
        else:
            assert cur is not None, "token outside a document"
            cur.append(t)
    assert cur is None, "the stream ends inside a document"
    return docs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[list[Path], list[str]]:
    return write_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def prepared(inputs, tiny_tokenizer_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare(inputs[0], tiny_tokenizer_dir, out, val_fraction=0.2, shard_tokens=997, num_workers=1,
            progress=False)
    return out


def test_roundtrip_framing_and_split(prepared, inputs, tiny_tokenizer: Tokenizer):
    docs = inputs[1]
    m = load_manifest(prepared)
    train, val = (framed_docs(stream(prepared, s)) for s in ("train", "val"))
    assert m["splits"]["train"]["documents"] == len(train) and m["splits"]["val"]["documents"] == len(val)
    assert len(train) + len(val) == len(docs) and 0 < len(val) < len(docs) / 2
    # every document exactly once, in input order within each split, ids as Tokenizer.encode
    decoded = {tiny_tokenizer.decode(d) for d in val}
    assert not decoded & {tiny_tokenizer.decode(d) for d in train}
    assert [tiny_tokenizer.decode(d) for d in train] == [d for d in docs if d not in decoded]
    assert [tiny_tokenizer.decode(d) for d in val] == [d for d in docs if d in decoded]
    enc = {d: tiny_tokenizer.encode(d) for d in docs}
    assert train + val == [enc[d] for d in docs if d not in decoded] + [enc[d] for d in docs if d in decoded]
    assert m["splits"]["train"]["tokens"] == sum(s["tokens"] for s in m["splits"]["train"]["shards"])
    assert all(s["tokens"] <= 997 for s in m["splits"]["train"]["shards"])
    assert len(m["splits"]["train"]["shards"]) > 2
    assert m["dtype"] == "uint16" and m["bos_id"] == BOS and m["eos_id"] == EOS
    assert m["tokenizer"]["vocab_size"] == tiny_tokenizer.vocab_size
    assert [i["format"] for i in m["inputs"]] == ["text", "jsonl"]


def test_identical_bytes_for_any_workers(inputs, tiny_tokenizer_dir, tmp_path: Path):
    outs = []
    for workers, method in ((1, None), (2, None), (2, "spawn")):
        out = tmp_path / f"w{workers}{method}"
        prepare(inputs[0], tiny_tokenizer_dir, out, val_fraction=0.2, shard_tokens=500,
                num_workers=workers, chunk_chars=300, start_method=method, progress=False)
        outs.append(out)
    files = sorted(p.name for p in outs[0].iterdir())
    assert len(files) > 5
    for out in outs[1:]:
        assert sorted(p.name for p in out.iterdir()) == files
        for name in files:
            assert (out / name).read_bytes() == (outs[0] / name).read_bytes(), name


def test_val_split_rules(inputs, tiny_tokenizer_dir, tmp_path: Path):
    m = prepare(inputs[0], tiny_tokenizer_dir, tmp_path / "none", val_fraction=0.0, progress=False,
                num_workers=1)
    assert m["splits"]["val"] == {"shards": [], "tokens": 0, "documents": 0}
    with pytest.raises(ValueError, match="fewer than seq_len"):
        PretrainData(tmp_path / "none", "val", seq_len=8)
    # a tiny fraction still gives one val document: the last one
    m = prepare(inputs[0], tiny_tokenizer_dir, tmp_path / "tiny", val_fraction=1e-12, progress=False,
                num_workers=1, chunk_chars=200)
    assert m["splits"]["val"]["documents"] == 1
    last = Tokenizer(tiny_tokenizer_dir).encode(inputs[1][-1])
    assert framed_docs(stream(tmp_path / "tiny", "val")) == [last]
    # a different seed moves different documents
    a = prepare(inputs[0], tiny_tokenizer_dir, tmp_path / "s1", val_fraction=0.3, seed=1,
                progress=False, num_workers=1)
    b = prepare(inputs[0], tiny_tokenizer_dir, tmp_path / "s2", val_fraction=0.3, seed=2,
                progress=False, num_workers=1)
    assert not np.array_equal(stream(tmp_path / "s1", "val"), stream(tmp_path / "s2", "val"))
    assert a["splits"]["train"]["tokens"] + a["splits"]["val"]["tokens"] == \
        b["splits"]["train"]["tokens"] + b["splits"]["val"]["tokens"]


def test_checksums(prepared, tmp_path: Path):
    import shutil

    load_manifest(prepared, verify=True)
    PretrainData(prepared, seq_len=16, verify=True)
    bad = tmp_path / "bad"
    shutil.copytree(prepared, bad)
    shard = bad / "train_00001.bin"
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF
    shard.write_bytes(bytes(data))
    load_manifest(bad)  # same size: only the checksum can tell
    with pytest.raises(ValueError, match="train_00001.bin fails its sha256"):
        load_manifest(bad, verify=True)
    with pytest.raises(ValueError, match="train_00001.bin fails its sha256"):
        PretrainData(bad, seq_len=16, verify=True)
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(ValueError, match="train_00001.bin has"):
        PretrainData(bad, seq_len=16)


def test_windows_are_stream_slices_across_shards(prepared):
    tokens = stream(prepared, "train")
    for L in (7, 64, 997, 1500):
        d = PretrainData(prepared, seq_len=L, shuffle=False)
        assert d.num_sequences == (len(tokens) - 1) // L
        x, y = d.get(0, d.num_sequences)
        assert x.dtype == torch.long and x.shape == (d.num_sequences, L) == y.shape
        for i in range(d.num_sequences):
            assert torch.equal(x[i], torch.from_numpy(tokens[i * L:i * L + L]))
            assert torch.equal(y[i], torch.from_numpy(tokens[i * L + 1:i * L + L + 1]))
    # some window crosses a shard boundary (shards of 997 tokens, windows of 64 + 1)
    offsets = np.cumsum([s["tokens"] for s in load_manifest(prepared)["splits"]["train"]["shards"]])
    assert any(i * 64 < o < i * 64 + 65 for o in offsets[:-1] for i in range(len(tokens) // 64))


def test_get_is_a_pure_function_of_the_counter(prepared):
    d = PretrainData(prepared, seq_len=32, seed=3)
    n = d.num_sequences
    x, y = d.get(0, 3 * n)
    assert torch.equal(x, PretrainData(prepared, seq_len=32, seed=3).get(0, 3 * n)[0])
    assert not torch.equal(x[:n], PretrainData(prepared, seq_len=32, seed=4).get(0, n)[0])
    # each epoch reads every window exactly once, in a different order
    orders = [d.windows(e * n, n) for e in range(3)]
    for o in orders:
        assert sorted(o.tolist()) == list(range(n))
    assert orders[0].tolist() != orders[1].tolist()
    # a batch equals the concatenation of smaller reads, across the epoch boundary too
    parts = [d.get(s, c) for s, c in ((n - 5, 2), (n - 3, 7), (n + 4, 1))]
    whole = d.get(n - 5, 10)
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
    assert torch.equal(whole[0], x[n - 5:n + 5])
    assert torch.equal(y[:, :-1], x[:, 1:])
    # a pickled copy (a DataLoader worker's) reads the same, without copying the shards
    import pickle

    blob = pickle.dumps(d)
    assert len(blob) < 10_000 and torch.equal(pickle.loads(blob).get(n - 5, 10)[0], whole[0])
    # unshuffled: counters are windows
    assert PretrainData(prepared, seq_len=32, shuffle=False).windows(n - 1, 2).tolist() == [n - 1, 0]


def test_unigram_entropy(prepared):
    tokens = stream(prepared, "train")
    p = np.bincount(tokens) / len(tokens)
    p = p[p > 0]
    expected = -(p * np.log(p)).sum()
    h = unigram_entropy(prepared)
    assert h == pytest.approx(expected, rel=1e-12)
    assert 0 < h < math.log(load_manifest(prepared)["tokenizer"]["vocab_size"])
    assert unigram_entropy(prepared, "val") > 0


def test_bad_jsonl_lines(tiny_tokenizer_dir, tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"text": "broken\n'
                    '{"body": "no text field"}\n[1, 2]\n{"text": 5}\n{"text": "last"}\n')
    with pytest.raises(ValueError, match=rf"{path}: line 3: not valid JSON"):
        prepare([path], tiny_tokenizer_dir, tmp_path / "out", progress=False, num_workers=1)
    no_field = tmp_path / "no_field.jsonl"
    no_field.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=rf"{no_field}: line 2: the object has no field 'text'"):
        prepare([no_field], tiny_tokenizer_dir, tmp_path / "out", progress=False, num_workers=1)
    with pytest.warns(UserWarning, match="skipped 4 bad lines"):
        m = prepare([path], tiny_tokenizer_dir, tmp_path / "out", progress=False, num_workers=1,
                    skip_bad_lines=True)
    assert m["skipped_bad_lines"] == 4
    assert m["splits"]["train"]["documents"] + m["splits"]["val"]["documents"] == 3
    # the body field of another file
    with pytest.warns(UserWarning, match="line 1: the object has no field 'body'"):
        m = prepare([no_field], tiny_tokenizer_dir, tmp_path / "body", text_field="body",
                    progress=False, num_workers=1, skip_bad_lines=True)
    assert m["skipped_bad_lines"] == 1


def test_failed_prepare_leaves_no_manifest(inputs, tiny_tokenizer_dir, tmp_path: Path):
    out = tmp_path / "out"
    prepare(inputs[0], tiny_tokenizer_dir, out, progress=False, num_workers=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        prepare([inputs[0][0], bad], tiny_tokenizer_dir, out, progress=False, num_workers=2)
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="run prepare first"):
        PretrainData(out, seq_len=8)


def test_empty_and_missing_inputs(tiny_tokenizer_dir, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        prepare([tmp_path / "nope.txt"], tiny_tokenizer_dir, tmp_path / "o", progress=False)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    with pytest.raises(ValueError, match=r"no documents in .*blank\.txt"):
        prepare([blank], tiny_tokenizer_dir, tmp_path / "o", progress=False, num_workers=1)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    (empty_dir / "README.md").write_text("not an input")
    with pytest.raises(ValueError, match="no documents in .*empty"):
        prepare([empty_dir], tiny_tokenizer_dir, tmp_path / "o", progress=False, num_workers=1)
    with pytest.raises(ValueError, match="unsupported"):
        prepare([empty_dir / "README.md"], tiny_tokenizer_dir, tmp_path / "o", progress=False)
    bad_utf8 = tmp_path / "latin1.txt"
    bad_utf8.write_bytes(b"ok\n\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1\.txt: line 3 is not valid UTF-8"):
        prepare([bad_utf8], tiny_tokenizer_dir, tmp_path / "o", progress=False, num_workers=1)


def test_directories_expand_sorted(tiny_tokenizer_dir, tmp_path: Path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_text("bee\n")
    (d / "a.jsonl").write_text('{"text": "ay"}\n')
    (d / "sub" / "c.txt").write_text("sea\n\nsee\n")
    (d / "notes.md").write_text("ignored\n")
    (d / ".hidden.txt").write_text("ignored\n")
    out = tmp_path / "out"
    m = prepare([d], tiny_tokenizer_dir, out, val_fraction=0.0, progress=False, num_workers=1)
    assert [Path(i["path"]).name for i in m["inputs"]] == ["a.jsonl", "b.txt", "c.txt"]
    tok = Tokenizer(tiny_tokenizer_dir)
    assert [tok.decode(x) for x in framed_docs(stream(out, "train"))] == ["ay", "bee", "sea", "see"]


def test_too_short_and_bad_arguments(prepared, tiny_tokenizer_dir, tmp_path: Path):
    total = load_manifest(prepared)["splits"]["train"]["tokens"]
    with pytest.raises(ValueError, match=rf"has {total} tokens, fewer than seq_len \+ 1 = {total + 1}"):
        PretrainData(prepared, seq_len=total)
    assert len(PretrainData(prepared, seq_len=total - 1)) == 1
    with pytest.raises(ValueError, match="split"):
        PretrainData(prepared, "test", seq_len=8)
    with pytest.raises(ValueError, match="val_fraction"):
        prepare([tmp_path], tiny_tokenizer_dir, tmp_path / "o", val_fraction=1.0)


def test_token_dtype():
    assert token_dtype(500) == np.uint16 and token_dtype(32000) == np.uint16
    assert token_dtype(65536) == np.uint16  # ids 0..65535
    assert token_dtype(65537) == np.uint32 and token_dtype(128256) == np.uint32
    assert token_dtype(500).byteorder in "<="  # little-endian on disk


def test_parquet_input(tiny_tokenizer_dir, tmp_path: Path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"content": ["first doc", None, "third doc"], "n": [1, 2, 3]}), path)
    with pytest.raises(ValueError, match=rf"{path}: row 2: field 'content' is NoneType"):
        prepare([path], tiny_tokenizer_dir, tmp_path / "o", text_field="content", progress=False,
                num_workers=1)
    with pytest.raises(ValueError, match="no column 'text'"):
        prepare([path], tiny_tokenizer_dir, tmp_path / "o", progress=False, num_workers=1)
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        m = prepare([path], tiny_tokenizer_dir, tmp_path / "o", text_field="content",
                    progress=False, num_workers=1, skip_bad_lines=True, val_fraction=0.0)
    tok = Tokenizer(tiny_tokenizer_dir)
    assert [tok.decode(x) for x in framed_docs(stream(tmp_path / "o", "train"))] == ["first doc", "third doc"]
    assert m["skipped_bad_lines"] == 1


def test_datasets_input(tiny_tokenizer_dir, tmp_path: Path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["one", "two", "three"]})
    ds.save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    m = prepare([tmp_path / "ds"], tiny_tokenizer_dir, tmp_path / "o", progress=False,
                num_workers=1, val_fraction=0.0)
    assert m["inputs"] == [{"path": str(tmp_path / "ds"), "format": "hf"}]
    tok = Tokenizer(tiny_tokenizer_dir)
    assert [tok.decode(x) for x in framed_docs(stream(tmp_path / "o", "train"))] == ["one", "two", "three"]
    with pytest.raises(ValueError, match="DatasetDict"):
        prepare([tmp_path / "dd"], tiny_tokenizer_dir, tmp_path / "o", progress=False)
