"""The pretraining loop end to end on the debug model: learning, export, exact resume, bad steps, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_torchrun
from llamaforge.config import load_config
from llamaforge.model.checkpoint_io import load_model
from llamaforge.train import loop, pretrain
from llamaforge.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
DEBUG = ROOT / "configs" / "pretrain" / "debug.toml"
CLI = [sys.executable, "-m", "llamaforge.cli"]


def _cfg(data_dir, out_dir, *overrides):
    return load_config(pretrain.PretrainConfig, DEBUG, [f"--data.path={data_dir}", f"--out_dir={out_dir}",
                                                        "--log.progress=false", *overrides])


def _losses(run_dir):
    return [r["loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl")]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}


def test_debug_run_learns_logs_and_exports_a_model_dir(world_data_dir, tmp_path):
    summary = pretrain.main(_cfg(world_data_dir, tmp_path / "run", "--train.steps=20"))
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 21))  # log.every = 1 in the debug config
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0  # ln(512) = 6.24 at the start
    assert {"lr", "grad_norm", "tokens_per_s", "mfu"} <= rows[0].keys()
    assert [r["step"] for r in rows if "val_loss" in r] == [10, 20]
    assert summary["val_loss"] == rows[-1]["val_loss"]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert load_config(pretrain.PretrainConfig, tmp_path / "run" / "config.toml").train.steps == 20

    model = load_model(summary["model_dir"])  # our loader, then transformers on the same dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(summary["model_dir"], dtype=torch.float32)
    x = torch.randint(0, model.args.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x), rtol=1e-4, atol=1e-5)


def test_gradient_accumulation_run_equals_the_large_batch_run(world_data_dir, tmp_path):
    # 16 sequences a step either as 1 micro-batch of 16 or 4 of 4 (fp32)
    pretrain.main(_cfg(world_data_dir, tmp_path / "a", "--train.steps=4", "--train.micro_batch_size=16"))
    pretrain.main(_cfg(world_data_dir, tmp_path / "b", "--train.steps=4", "--train.micro_batch_size=4"))
    torch.testing.assert_close(torch.tensor(_losses(tmp_path / "b")), torch.tensor(_losses(tmp_path / "a")),
                               rtol=1e-5, atol=1e-6)


def test_sequence_length_warm_up_cuts_the_same_windows_then_returns_to_full_length(world_data_dir, tmp_path,
                                                                                     monkeypatch):
    from llamaforge.data.pretrain import PretrainData
    from llamaforge.model.llama import Transformer

    # the initial weights: a 1-step run's model dir (its init is seeded); the warm-up run starts from it
    first = pretrain.main(_cfg(world_data_dir, tmp_path / "init", "--train.steps=1"))["model_dir"]
    shapes, forward = [], Transformer.forward

    def recording(self, tokens, *args, **kwargs):
        shapes.append((tuple(tokens.shape), torch.is_grad_enabled()))
        return forward(self, tokens, *args, **kwargs)

    monkeypatch.setattr(Transformer, "forward", recording)
    pretrain.main(_cfg(world_data_dir, tmp_path / "w", f"--model.init_from={first}", "--train.steps=3",
                       "--data.short_seq_len=16", "--data.short_seq_steps=2", "--eval.every=0"))
    monkeypatch.setattr(Transformer, "forward", forward)
    train = [s for s, grad in shapes if grad]
    # 16 windows of 64 a step in 2 micro-batches of 8: 8 x 64 -> 32 x 16 for steps 1-2, then 8 x 64
    assert train == [(32, 16)] * 4 + [(8, 64)] * 2
    assert {s for s, grad in shapes if not grad} == {(8, 64)}  # validation at the full length

    # step 1's loss is the model's loss on the same 16 windows, each cut into 4 sequences of 16
    model = load_model(first)
    x, y = PretrainData(world_data_dir, "train", seq_len=64).get(0, 16)
    with torch.no_grad():
        expected = model(x.view(-1, 16), targets=y.view(-1, 16))
    assert _losses(tmp_path / "w")[0] == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="data.short_seq_len=24 must divide data.seq_len=64"):
        pretrain.main(_cfg(world_data_dir, tmp_path / "bad", "--data.short_seq_len=24", "--data.short_seq_steps=1"))
    with pytest.raises(ValueError, match="data.short_seq_steps=5 needs data.short_seq_len > 0"):
        pretrain.main(_cfg(world_data_dir, tmp_path / "bad2", "--data.short_seq_steps=5"))


@pytest.mark.slow
def test_exact_resume_after_sigkill(world_data_dir, tmp_path):
    steps = ["--train.steps=200", "--checkpoint.every=20", "--eval.every=0", "--log.every=1"]
    pretrain.main(_cfg(world_data_dir, tmp_path / "ref", *steps))
    reference = _losses(tmp_path / "ref")

    run = tmp_path / "killed"
    args = [*CLI, "pretrain", "--config", str(DEBUG), f"--data.path={world_data_dir}", f"--out_dir={run}",
            "--log.progress=false", *steps]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = run / "checkpoints" / "step_00000020"
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert not (run / "model").exists(), "the run finished before it was killed: the test proves nothing"

    out = subprocess.run([*args, "--resume"], env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "resumed from" in out.stderr
    assert _losses(run) == reference  # bitwise, step for step (CPU, fp32)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000180", "step_00000200"]  # keep 2


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_resume_matches(world_data_dir, tmp_path):
    steps = ["--train.steps=150", "--checkpoint.every=1000", "--eval.every=0"]
    run = tmp_path / "run"
    args = [*CLI, "pretrain", "--config", str(DEBUG), f"--data.path={world_data_dir}", f"--out_dir={run}",
            "--log.progress=false", *steps]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(read_metrics(run / "metrics.jsonl")) < 5 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal" in err
    (ckpt,) = (run / "checkpoints").iterdir()  # written at the step the signal arrived, not at 1000
    stopped_at = int(ckpt.name.split("_")[1])
    assert 5 <= stopped_at < 150 and len(_losses(run)) == stopped_at

    out = subprocess.run([*args, "--resume"], env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    pretrain.main(_cfg(world_data_dir, tmp_path / "ref", *steps))
    assert _losses(run) == _losses(tmp_path / "ref")


def test_damaged_checkpoint_is_skipped_for_the_previous_one(world_data_dir, tmp_path):
    steps = ["--train.steps=12", "--checkpoint.every=6", "--checkpoint.keep=3"]
    pretrain.main(_cfg(world_data_dir, tmp_path / "run", *steps))
    reference = _losses(tmp_path / "run")
    newest = tmp_path / "run" / "checkpoints" / "step_00000012"
    shard = next(p for p in newest.iterdir() if p.suffix == ".distcp")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # truncated
    with pytest.warns(UserWarning, match=r"skipping checkpoint .*step_00000012: .*truncated"):
        summary = pretrain.main(_cfg(world_data_dir, tmp_path / "run", *steps, "--resume=true"))
    assert summary["step"] == 12
    assert _losses(tmp_path / "run") == reference  # steps 7..12 recomputed from step 6's checkpoint


def test_non_finite_steps_are_skipped_then_stop_the_run(world_data_dir, tmp_path, monkeypatch):
    real = loop.clip_grad_norm
    calls = {"n": 0}

    def flaky(model, max_norm):  # gradient norm is NaN at updates 3 and 4 (1-based)
        calls["n"] += 1
        norm = real(model, max_norm)
        return float("nan") if calls["n"] in (3, 4) else norm

    monkeypatch.setattr(loop, "clip_grad_norm", flaky)
    with pytest.warns(UserWarning, match="non-finite"):
        pretrain.main(_cfg(world_data_dir, tmp_path / "run", "--train.steps=6"))
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["skipped_steps"] for r in rows] == [0, 0, 1, 2, 2, 2]
    assert rows[2]["grad_norm"] is None  # NaN is written as null

    monkeypatch.setattr(loop, "clip_grad_norm", lambda model, max_norm: float("inf"))
    with pytest.raises(loop.TrainingError, match="3 non-finite steps in a row"), pytest.warns(UserWarning):
        pretrain.main(_cfg(world_data_dir, tmp_path / "run2", "--train.steps=6", "--train.max_bad_steps=3"))
    assert not (tmp_path / "run2" / "model").exists()  # nothing non-finite was exported


def test_bad_input_errors(world_data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"data.seq_len=512 is beyond the model's context \(max_seq_len=256\)"):
        pretrain.main(_cfg(world_data_dir, tmp_path / "a", "--data.seq_len=512"))
    with pytest.raises(ValueError, match="global_batch_tokens=1000 must be a positive multiple"):
        pretrain.main(_cfg(world_data_dir, tmp_path / "b", "--train.global_batch_tokens=1000"))
    pretrain.main(_cfg(world_data_dir, tmp_path / "c", "--train.steps=1"))
    with pytest.raises(ValueError, match="already holds checkpoints: pass --resume"):
        pretrain.main(_cfg(world_data_dir, tmp_path / "c", "--train.steps=1"))
    out = subprocess.run([*CLI, "pretrain", "--config", str(DEBUG), "--optim.lrr=1"], env=_env(),
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--optim.lrr: unknown key" in out.stderr
    assert "Traceback" not in out.stderr


def _torchrun(nproc, *args):
    out = run_torchrun(["--nproc_per_node", str(nproc), "-m", "llamaforge.cli", *args], env=_env(), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_activation_checkpointing_and_compile_keep_the_losses(world_data_dir, tmp_path):
    pretrain.main(_cfg(world_data_dir, tmp_path / "plain", "--train.steps=3"))
    pretrain.main(_cfg(world_data_dir, tmp_path / "ac", "--train.steps=3", "--train.activation_checkpointing=true"))
    pretrain.main(_cfg(world_data_dir, tmp_path / "both", "--train.steps=3", "--train.activation_checkpointing=true",
                       "--train.compile=true"))
    plain = torch.tensor(_losses(tmp_path / "plain"))
    assert torch.equal(torch.tensor(_losses(tmp_path / "ac")), plain)  # recomputation is the same arithmetic
    torch.testing.assert_close(torch.tensor(_losses(tmp_path / "both")), plain, rtol=1e-4, atol=1e-4)  # fused kernels round differently
    assert load_model(tmp_path / "both" / "model").layers[0].attention.wq.weight.shape == (64, 64)  # clean names


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_rank_and_resume_sharded(world_data_dir, tmp_path):
    common = ["pretrain", "--config", str(DEBUG), f"--data.path={world_data_dir}", "--log.progress=false",
              "--train.steps=6", "--checkpoint.every=3", "--checkpoint.keep=3"]
    pretrain.main(_cfg(world_data_dir, tmp_path / "one", "--train.steps=6", "--checkpoint.every=3"))
    _torchrun(2, *common, f"--out_dir={tmp_path / 'two'}")
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    # same global batch (16 sequences: 2 micro-batches of 8 on one rank, 1 on each of two ranks);
    # only the order of the fp32 gradient reduction differs
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-5, atol=1e-5)

    # the sharded checkpoint: each rank wrote its own shard file
    ckpt = tmp_path / "two" / "checkpoints" / "step_00000003"
    assert len(list(ckpt.glob("*.distcp"))) == 2 and (ckpt / "rng_rank1.pt").exists()
    # resume on 2 ranks from step 3 (the step-6 checkpoint removed): steps 4..6 again
    shutil.rmtree(tmp_path / "two" / "checkpoints" / "step_00000006")
    shutil.rmtree(tmp_path / "two" / "model")
    out = _torchrun(2, *common, f"--out_dir={tmp_path / 'two'}", "--resume")
    assert "resumed from" in out.stderr
    torch.testing.assert_close(torch.tensor(_losses(tmp_path / "two")), torch.tensor(two), rtol=1e-6, atol=1e-6)

    # the consolidated export loads in llamaforge and transformers, equal to the 1-rank model
    from transformers import LlamaForCausalLM

    a = load_model(tmp_path / "one" / "model")
    b = load_model(tmp_path / "two" / "model")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "two" / "model", dtype=torch.float32)
    x = torch.randint(0, a.args.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(hf(x).logits, b(x), rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "two" / "model" / "config.json").read_text())["num_hidden_layers"] == 2
