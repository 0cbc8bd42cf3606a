"""`llamaforge demo` end to end at a reduced size: the chain runs, learns beyond unigram statistics, reuses stages."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_chain_learns_and_reports(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "llamaforge.cli", "demo", "--out", str(tmp_path / "demo"), "--docs", "4000",
           "--vocab-size", "512", "--steps", "60", "--train.global_batch_tokens=2048", "--train.micro_batch_size=8",
           "--eval.every=30", "--log.progress=false"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = {l.split()[0] + " " + l.split()[1]: l.split() for l in out.stdout.splitlines() if l.startswith(("validation", "unigram"))}
    val_loss, entropy = float(lines["validation loss"][2]), float(lines["unigram entropy"][2])
    # a model that knew only token frequencies would score the unigram entropy; 60 small steps get far below
    assert val_loss < 0.7 * entropy, out.stdout
    assert "samples (greedy)" in out.stdout
    run = tmp_path / "demo" / "pretrain"
    assert (run / "model" / "model.safetensors").exists() and (run / "loss.png").exists()
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # every stage reused
    assert again.returncode == 0 and "pretraining" not in again.stderr and "validation loss" in again.stdout
