"""SFT data (answer-only masks, packing with attention inside each sample, truncation, bad input) and
the SFT loop end to end on the debug model (learning, exact resume, the loss normalisation)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import run_torchrun
from llamaforge.chat_format import encode_dialog
from llamaforge.config import load_config
from llamaforge.data.sft import SFTData, block_causal_mask, encode_example, load_examples, pack
from llamaforge.model import ModelArgs, Transformer
from llamaforge.model.checkpoint_io import load_model, save_model
from llamaforge.model.sizes import preset
from llamaforge.train import sft
from llamaforge.train.metrics import read_metrics

DIALOG = [{"role": "system", "content": "Be brief."},
          {"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5."},
          {"role": "user", "content": "And 4 + 4?"}, {"role": "assistant", "content": "4 + 4 = 8."}]


def _write_jsonl(path, dialogs, **extra):
    path.write_text("".join(json.dumps({"messages": d, **extra}) + "\n" for d in dialogs))
    return path


def _sum_dialogs(n, seed=0):
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        out.append([{"role": "user", "content": f"What is {a} + {b}?"},
                    {"role": "assistant", "content": f"{a} + {b} = {a + b}."}])
    return out


@pytest.fixture(scope="module")
def debug_model_dir(tmp_path_factory, tiny_tokenizer):
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**{**preset("debug"), "vocab_size": 512}))
    model.init_weights()
    out = tmp_path_factory.mktemp("sft_init") / "model"
    save_model(model, out, tokenizer=tiny_tokenizer)
    return out


# ---------------------------------------------------------------- masks

def test_loss_mask_covers_exactly_the_answers_and_their_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    ex, status = encode_example(tok, DIALOG, where="t:1", seq_len=256)
    assert status == "ok"
    # Built by hand from Meta's rule: BOS [INST] <<SYS>>..<</SYS>> user [/INST] | answer EOS, per pair
    p1 = tok.encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2 + 3? [/INST]", bos=True)
    pair1 = tok.encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2 + 3? [/INST] 2 + 3 = 5. ", bos=True, eos=True)
    p2 = tok.encode("[INST] And 4 + 4? [/INST]", bos=True)
    pair2 = tok.encode("[INST] And 4 + 4? [/INST] 4 + 4 = 8. ", bos=True, eos=True)
    assert ex.tokens == pair1 + pair2
    want = [False] * len(p1) + [True] * (len(pair1) - len(p1)) + [False] * len(p2) + [True] * (len(pair2) - len(p2))
    assert ex.mask == want
    masked = [t for t, m in zip(ex.tokens, ex.mask) if m]
    assert tok.decode(masked[: len(pair1) - len(p1)]).strip() == "2 + 3 = 5."
    assert masked.count(tok.eos_id) == 2 and tok.bos_id not in masked  # EOS of each answer trained, no BOS


def test_last_turn_loss_zeroes_every_earlier_token(tiny_tokenizer):
    full, _ = encode_example(tiny_tokenizer, DIALOG, where="t:1", seq_len=256)
    last, _ = encode_example(tiny_tokenizer, DIALOG, where="t:1", seq_len=256, loss="last_turn")
    first_answer_end = full.mask.index(False, full.mask.index(True))
    assert not any(last.mask[:first_answer_end])  # the first answer is context only
    assert last.mask[first_answer_end:] == full.mask[first_answer_end:]  # the final answer keeps its loss
    assert sum(last.mask) > 0


# ---------------------------------------------------------------- packing

def test_pack_keeps_every_example_whole_and_within_the_length():
    lengths = [5, 9, 3, 7, 10, 1, 4]
    packs = pack(lengths, 10, seed=0)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in p) <= 10 for p in packs)
    assert pack(lengths, 10, seed=0) == packs and pack(lengths, 10, seed=None) == [[0], [1], [2, 3], [4], [5, 6]]


def test_packed_batch_targets_positions_and_no_attention_across_samples(tiny_tokenizer):
    exs = [encode_example(tiny_tokenizer, d, where=f"t:{i}", seq_len=128)[0] for i, d in enumerate(_sum_dialogs(6))]
    data = SFTData(exs, seq_len=128, shuffle=False)
    assert len(data.packs[0]) >= 2
    batch = data.get(0, 1)
    docs = batch.doc_ids[0].tolist()
    n0 = len(exs[0].tokens)
    assert docs[:n0] == [0] * n0 and docs[n0] == 1
    assert batch.pos_ids[0, :n0].tolist() == list(range(n0)) and batch.pos_ids[0, n0] == 0  # RoPE restarts
    assert batch.tokens[0, :n0].tolist() == exs[0].tokens
    # targets: the next token where it is an answer token; never across the boundary
    want = [exs[0].tokens[t + 1] if exs[0].mask[t + 1] else -100 for t in range(n0 - 1)] + [-100]
    assert batch.targets[0, :n0].tolist() == want
    mask = block_causal_mask(batch.doc_ids)[0, 0]
    assert not mask[n0:, :n0].any() and mask[n0, n0] and not mask[0, 1]
    assert (batch.targets[0][batch.doc_ids[0] < 0] == -100).all()  # padding has no loss


def test_a_packed_sample_computes_what_it_computes_alone(tiny_tokenizer):
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**{**preset("debug"), "vocab_size": 512}))
    model.init_weights()
    exs = [encode_example(tiny_tokenizer, d, where=f"t:{i}", seq_len=96)[0] for i, d in enumerate(_sum_dialogs(5))]
    data = SFTData(exs, seq_len=96, shuffle=False)
    b = data.get(0, 1)
    with torch.no_grad():
        packed = model(b.tokens, pos_ids=b.pos_ids, mask=block_causal_mask(b.doc_ids))[0]
        at = len(exs[0].tokens)
        second = exs[data.packs[0][1]].tokens
        alone = model(torch.tensor([second]))[0]
    torch.testing.assert_close(packed[at:at + len(second)], alone, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- truncation and bad input

def test_too_long_dialogs_follow_the_truncation_policy(tiny_tokenizer, tmp_path):
    long_turn = " ".join(["word"] * 60)
    dialog = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
              {"role": "user", "content": long_turn}, {"role": "assistant", "content": long_turn}]
    path = _write_jsonl(tmp_path / "d.jsonl", [_sum_dialogs(1)[0], dialog])
    with pytest.raises(ValueError, match=r"d\.jsonl:2: the dialog has \d+ tokens, more than data.seq_len=48"):
        load_examples([path], tiny_tokenizer, seq_len=48, truncation="error")
    exs, stats = load_examples([path], tiny_tokenizer, seq_len=48, truncation="drop_turns")
    assert (stats.truncated, stats.dropped, len(exs)) == (1, 0, 2)
    assert exs[1].tokens == encode_dialog(tiny_tokenizer, dialog[:2]).tokens  # the first exchange kept
    assert "d.jsonl:2" in stats.report() and "1 truncated" in stats.report()
    exs, stats = load_examples([path], tiny_tokenizer, seq_len=48, truncation="drop")
    assert (stats.truncated, stats.dropped, len(exs)) == (0, 1, 1)


@pytest.mark.parametrize("line, match", [
    ('{"messages": [{"role": "assistant", "content": "hi"}]}', r"b\.jsonl:2: message 0: expected role 'user'"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}',
     r"b\.jsonl:2: message 1: expected role 'assistant'"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]}',
     r"b\.jsonl:2: message 1 \(assistant\) is empty"),
    ('{"messages": [{"role": "user", "content": "a"}]}', r"b\.jsonl:2: the dialog ends with a user message"),
    ('{"messages": [', r"b\.jsonl:2: not valid JSON"),
    ('{"text": "hello"}', r"b\.jsonl:2: expected an object with a 'messages' list"),
])
def test_bad_dialogs_name_the_file_line_and_message(tiny_tokenizer, tmp_path, line, match):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"messages": _sum_dialogs(1)[0]}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=match):
        load_examples([path], tiny_tokenizer, seq_len=64)


def test_mixing_weights_repeat_and_subsample(tiny_tokenizer, tmp_path):
    a = _write_jsonl(tmp_path / "a.jsonl", _sum_dialogs(10, seed=1))
    b = _write_jsonl(tmp_path / "b.jsonl", _sum_dialogs(40, seed=2))
    exs, stats = load_examples([a, b], tiny_tokenizer, seq_len=64, weights=[2.0, 0.5])
    from_a = sum(ex.where.startswith(str(a)) for ex in exs)
    assert from_a == 20 and 10 <= len(exs) - from_a <= 30 and stats.dialogs == 50
    with pytest.raises(ValueError, match="2 values for 1 data.paths"):
        load_examples([a], tiny_tokenizer, seq_len=64, weights=[1.0, 1.0])


# ---------------------------------------------------------------- the loop

def _cfg(model_dir, data, out, *overrides):
    return load_config(sft.SFTConfig, None, [
        f"--model.init_from={model_dir}", f"--data.paths=[\"{data}\"]", f"--out_dir={out}", "--data.seq_len=128",
        "--train.batch_size=4", "--train.micro_batch_size=2", "--train.precision=fp32", "--optim.lr=3e-3",
        "--log.every=1", "--log.progress=false", "--log.tensorboard=false", *overrides])


def test_the_step_loss_is_the_mean_over_answer_tokens(debug_model_dir, tiny_tokenizer, tmp_path):
    data = _write_jsonl(tmp_path / "d.jsonl", _sum_dialogs(24))
    summary = sft.main(_cfg(debug_model_dir, data, tmp_path / "run", "--train.steps=1"))
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]["loss"]
    # by hand: the first 4 packed sequences, every answer token's CE under the initial weights, averaged
    exs, _ = load_examples([data], tiny_tokenizer, seq_len=128)
    packs = SFTData(exs, 128, seed=0)
    model = load_model(debug_model_dir)
    losses = []
    with torch.no_grad():
        for i in range(4):
            for idx in packs._pack_at(i):
                ex = exs[idx]
                logits = model(torch.tensor([ex.tokens]))[0, :-1]
                keep = torch.tensor(ex.mask[1:])
                losses.append(F.cross_entropy(logits[keep], torch.tensor(ex.tokens[1:])[keep], reduction="none"))
    assert first == pytest.approx(float(torch.cat(losses).mean()), rel=1e-5)
    assert summary["data"]["examples"] == 24


def test_sft_learns_and_resumes_exactly(debug_model_dir, tmp_path):
    data = _write_jsonl(tmp_path / "d.jsonl", _sum_dialogs(64))
    steps = ["--train.steps=8", "--checkpoint.every=4", "--checkpoint.keep=3"]
    summary = sft.main(_cfg(debug_model_dir, data, tmp_path / "run", *steps))
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0
    assert Path(summary["model_dir"], "model.safetensors").is_file()
    reference = [r["loss"] for r in rows]
    # lose the last 4 steps (as a crash after step 4's checkpoint would), then resume
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step_00000008")
    shutil.rmtree(tmp_path / "run" / "model")
    sft.main(_cfg(debug_model_dir, data, tmp_path / "run", *steps, "--resume=true"))
    assert [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == reference  # bitwise
    with pytest.raises(ValueError, match="already holds checkpoints"):
        sft.main(_cfg(debug_model_dir, data, tmp_path / "run", *steps))


def test_sft_requires_a_model_and_checks_the_batch(debug_model_dir, tmp_path):
    data = _write_jsonl(tmp_path / "d.jsonl", _sum_dialogs(4))
    with pytest.raises(ValueError, match="model.init_from is required"):
        sft.main(_cfg("", data, tmp_path / "r1"))
    with pytest.raises(ValueError, match="train.batch_size=3 must be a positive multiple"):
        sft.main(_cfg(debug_model_dir, data, tmp_path / "r2", "--train.batch_size=3"))


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_rank(debug_model_dir, tmp_path):
    import os

    # dialogs of different lengths: ranks see different answer-token counts, which the loss must weigh
    import random

    rng = random.Random(3)
    dialogs = [[{"role": "user", "content": "Count: " + " ".join(["x"] * rng.randint(1, 12))},
                {"role": "assistant", "content": " ".join(["y"] * rng.randint(1, 20))}] for _ in range(40)]
    data = _write_jsonl(tmp_path / "d.jsonl", dialogs)
    flags = [f"--model.init_from={debug_model_dir}", f"--data.paths=[\"{data}\"]", "--data.seq_len=64",
             "--train.batch_size=4", "--train.micro_batch_size=2", "--train.precision=fp32", "--optim.lr=3e-3",
             "--train.steps=4", "--log.every=1", "--log.progress=false", "--log.tensorboard=false"]
    sft.main(load_config(sft.SFTConfig, None, [*flags, f"--out_dir={tmp_path / 'one'}"]))
    root = Path(__file__).resolve().parents[1]
    out = run_torchrun(["--nproc_per_node", "2", "-m", "llamaforge.cli", "sft", *flags, f"--out_dir={tmp_path / 'two'}"],
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root / "src")}, timeout=600,
                       fresh=(tmp_path / "two",))
    assert out.returncode == 0, out.stderr[-3000:]
    one = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    two = [r["loss"] for r in read_metrics(tmp_path / "two" / "metrics.jsonl")]
    # the same 4 sequences a step: 2 micro-batches of 2 on one rank, 1 micro-batch on each of 2 ranks
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-5, atol=1e-5)


def test_sft_cli_names_a_bad_line_and_exits_2(debug_model_dir, tmp_path, capsys):
    from llamaforge.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}\n')
    code = main(["sft", f"--model.init_from={debug_model_dir}", f"--data.paths=[\"{bad}\"]", f"--out_dir={tmp_path / 'r'}",
                 "--data.seq_len=128", "--log.progress=false"])
    assert code == 2
    assert "bad.jsonl:1: message 1: expected role 'assistant'" in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoints").exists()  # nothing was started
