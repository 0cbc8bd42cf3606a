"""Tokenizer: Llama 2 trainer options, parity with SentencePiece and HF transformers, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from llamaforge.chat_format import CHAT_TEMPLATE
from llamaforge.tokenizer import Tokenizer, train_tokenizer

from conftest import TINY_VOCAB_SIZE

TEXTS = [
    "Alice sold 12345 apples on day 7.",
    "Question: what is 40 + 2?   Answer:   42.",  # whitespace runs
    "def f(x):\n    return x + 1\n\n\tdone  ",  # newlines, tabs, indentation, trailing spaces
    "Καλημέρα κόσμε, 你好世界。",  # Greek and Chinese (seen in training)
    "a llama 🦙 and a 😀 in München",  # emoji and ü: not in the corpus -> byte fallback
    "[INST] <<SYS>>\nbe brief\n<</SYS>>\n\nhi [/INST] ok ",
    "x",
]


def test_special_ids_and_layout(tiny_tokenizer: Tokenizer):
    tok = tiny_tokenizer
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, -1)
    assert tok.vocab_size == TINY_VOCAB_SIZE
    assert [tok.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    # Llama 2's layout: the 256 byte pieces follow the specials, ids 3..258.
    assert [tok.id_to_piece(i) for i in range(3, 259)] == [f"<0x{b:02X}>" for b in range(256)]
    assert tok.is_control(tok.bos_id) and tok.is_control(tok.eos_id)


def test_trainer_spec_matches_llama2(tiny_tokenizer: Tokenizer):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tiny_tokenizer.path.read_bytes())
    ts, ns = proto.trainer_spec, proto.normalizer_spec
    assert ts.model_type == sentencepiece_model_pb2.TrainerSpec.BPE
    assert ts.split_digits and ts.byte_fallback and ts.allow_whitespace_only_pieces
    assert ts.split_by_whitespace and ts.split_by_unicode_script and ts.split_by_number
    assert not ts.treat_whitespace_as_suffix
    assert (ts.max_sentencepiece_length, ts.max_sentence_length) == (16, 4192)
    assert (ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id) == (0, 1, 2, -1)
    assert ns.name == "identity" and ns.add_dummy_prefix and not ns.remove_extra_whitespaces


def test_split_digits(tiny_tokenizer: Tokenizer):
    # "12345" is frequent in the corpus, but digits are never merged: one piece per digit.
    pieces = [tiny_tokenizer.id_to_piece(i) for i in tiny_tokenizer.encode("12345")]
    assert pieces == ["▁", "1", "2", "3", "4", "5"]


def test_byte_fallback(tiny_tokenizer: Tokenizer):
    ids = tiny_tokenizer.encode("🦙")  # U+1F999, UTF-8 F0 9F A6 99; not in the corpus
    pieces = [tiny_tokenizer.id_to_piece(i) for i in ids]
    assert pieces == ["▁", "<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"]
    assert tiny_tokenizer.unk_id not in ids
    assert tiny_tokenizer.decode(ids) == "🦙"


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_sentencepiece_and_round_trips(tiny_tokenizer: Tokenizer, text: str):
    sp = spm.SentencePieceProcessor(model_file=str(tiny_tokenizer.path))
    ids = tiny_tokenizer.encode(text)
    assert ids == sp.encode(text)
    assert tiny_tokenizer.decode(ids) == text


def test_bos_eos_flags(tiny_tokenizer: Tokenizer):
    body = tiny_tokenizer.encode("hi")
    assert tiny_tokenizer.encode("hi", bos=True) == [1, *body]
    assert tiny_tokenizer.encode("hi", eos=True) == [*body, 2]
    assert tiny_tokenizer.encode("hi", bos=True, eos=True) == [1, *body, 2]
    assert tiny_tokenizer.encode("") == []


@pytest.mark.parametrize("text", ["a </s> b", "<s>", "</s></s>", "<unk> <pad>"])
def test_control_strings_stay_text(tiny_tokenizer: Tokenizer, text: str):
    ids = tiny_tokenizer.encode(text)
    assert tiny_tokenizer.eos_id not in ids and tiny_tokenizer.bos_id not in ids
    assert not any(tiny_tokenizer.is_control(i) for i in ids)
    assert tiny_tokenizer.decode(ids) == text


def test_decode_skips_control_ids(tiny_tokenizer: Tokenizer):
    ids = tiny_tokenizer.encode("hello world", bos=True, eos=True)
    assert tiny_tokenizer.decode(ids) == "hello world"
    assert tiny_tokenizer.decode([*ids, -1, -1]) == "hello world"  # -1: Llama's "no pad" id
    with pytest.raises(ValueError, match="500"):
        tiny_tokenizer.decode([TINY_VOCAB_SIZE])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tiny_tokenizer.id_to_piece(-1)


def test_loads_file_or_dir_and_any_sentencepiece_model(tiny_tokenizer_dir: Path, tmp_path: Path):
    assert Tokenizer(tiny_tokenizer_dir / "tokenizer.model").encode("hi") == Tokenizer(
        tiny_tokenizer_dir
    ).encode("hi")
    # A model our trainer did not make (unigram, a pad piece, no BOS): ids come from the model.
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\n" * 50 + "a dog ran in the fog\n" * 50)
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "other"), model_type="unigram",
        vocab_size=20, hard_vocab_limit=False, pad_id=0, unk_id=1, bos_id=-1, eos_id=2,
        minloglevel=2,
    )
    other = Tokenizer(tmp_path / "other.model")
    assert (other.pad_id, other.unk_id, other.bos_id, other.eos_id) == (0, 1, -1, 2)
    assert other.vocab_size == 20
    assert other.decode(other.encode("the cat", eos=True)) == "the cat"
    with pytest.raises(ValueError, match="no bos token"):
        other.encode("the cat", bos=True)


def test_load_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing"):
        Tokenizer(tmp_path / "missing.model")
    with pytest.raises(FileNotFoundError, match="tokenizer.model"):
        Tokenizer(tmp_path)  # a directory without tokenizer.model
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"\x00not a sentencepiece model\xff" * 10)
    with pytest.raises(ValueError, match="garbage.model"):
        Tokenizer(garbage)
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.model"):
        Tokenizer(empty)


def test_train_errors(tmp_path: Path):
    text = tmp_path / "text.txt"
    text.write_text("Καλημέρα κόσμε 你好世界 the quick brown fox 0123456789\n" * 200)
    with pytest.raises(ValueError, match="nope.txt"):
        train_tokenizer([tmp_path / "nope.txt"], 300, tmp_path / "out")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.txt.*empty"):
        train_tokenizer([text, empty], 300, tmp_path / "out")
    with pytest.raises(ValueError, match="no input files"):
        train_tokenizer([], 300, tmp_path / "out")
    # Below 3 specials + 256 byte pieces + 1: rejected before SentencePiece runs.
    with pytest.raises(ValueError, match="vocab_size=259 is too small"):
        train_tokenizer([text], 259, tmp_path / "out")
    # Big enough for the bytes, not for the corpus' ~40 distinct characters.
    with pytest.raises(ValueError, match="vocab_size=270"):
        train_tokenizer([text], 270, tmp_path / "out")
    # More pieces than this one-line corpus can yield (hard_vocab_limit, as Llama 2).
    with pytest.raises(ValueError, match="vocab_size=5000"):
        train_tokenizer([text], 5000, tmp_path / "out")
    assert not (tmp_path / "out" / "tokenizer.model").exists()


def test_training_is_deterministic(tiny_tokenizer: Tokenizer, tmp_path: Path):
    from conftest import make_tiny_corpus

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_tiny_corpus(), encoding="utf-8")
    again = train_tokenizer([corpus], TINY_VOCAB_SIZE, tmp_path / "tok", num_threads=2)
    pieces = [again.id_to_piece(i) for i in range(again.vocab_size)]
    assert pieces == [tiny_tokenizer.id_to_piece(i) for i in range(tiny_tokenizer.vocab_size)]


# ---- HF transformers interop: the directory `save` writes ----


def test_saved_files(tiny_tokenizer: Tokenizer, tiny_tokenizer_dir: Path):
    assert (tiny_tokenizer_dir / "tokenizer.model").read_bytes() == tiny_tokenizer.path.read_bytes()
    config = json.loads((tiny_tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHAT_TEMPLATE
    assert config["pad_token"] is None
    special = json.loads((tiny_tokenizer_dir / "special_tokens_map.json").read_text())
    assert special == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def test_hf_special_ids(hf_tokenizer, tiny_tokenizer: Tokenizer):
    assert type(hf_tokenizer).__name__ == "LlamaTokenizer"
    assert (hf_tokenizer.bos_token_id, hf_tokenizer.eos_token_id) == (1, 2)
    assert (hf_tokenizer.unk_token_id, hf_tokenizer.pad_token_id) == (0, None)
    assert len(hf_tokenizer) == tiny_tokenizer.vocab_size


@pytest.mark.parametrize("text", TEXTS)
def test_hf_ids_match(hf_tokenizer, tiny_tokenizer: Tokenizer, text: str):
    ids = tiny_tokenizer.encode(text)
    assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    # Like Meta's prompts: BOS, never EOS, by default.
    assert hf_tokenizer(text)["input_ids"] == [tiny_tokenizer.bos_id, *ids]
    assert hf_tokenizer.decode(ids) == text


def test_hf_departure_control_strings_in_text(hf_tokenizer, tiny_tokenizer: Tokenizer):
    # Known departure, pinned: HF matches added special tokens in raw text, so a typed "</s>"
    # becomes the EOS id there. SentencePiece (our reference) keeps it as text. Never feed user
    # text through HF's tokenizer where that matters (chat serving, RLHF prompts).
    a, b = tiny_tokenizer.encode("a"), tiny_tokenizer.encode("b")
    assert hf_tokenizer("a </s> b", add_special_tokens=False)["input_ids"] == [
        *a, tiny_tokenizer.piece_to_id("▁"), tiny_tokenizer.eos_id, *b
    ]
    assert tiny_tokenizer.eos_id not in tiny_tokenizer.encode("a </s> b")


def test_hf_departure_leading_whitespace(hf_tokenizer, tiny_tokenizer: Tokenizer):
    # Known departure, pinned: HF's Metaspace pre-tokenizer skips SentencePiece's dummy-prefix
    # space when the text already starts with a space, so " hello" loses one space in HF.
    # The chat format never hits this: every encoded string starts with "[INST]".
    assert hf_tokenizer(" hello", add_special_tokens=False)["input_ids"] == tiny_tokenizer.encode(
        "hello"
    )
    assert tiny_tokenizer.encode(" hello") != tiny_tokenizer.encode("hello")


def test_encode_batch_equals_encode(tiny_tokenizer):
    texts = ["Alice has 12 apples.", "", "  two  spaces", "你好"]
    assert tiny_tokenizer.encode_batch(texts, bos=True, eos=True) == [
        tiny_tokenizer.encode(t, bos=True, eos=True) for t in texts]
    assert tiny_tokenizer.encode_batch(texts) == [tiny_tokenizer.encode(t) for t in texts]
