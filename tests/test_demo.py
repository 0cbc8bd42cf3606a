"""`llamaforge demo` end to end at a reduced size: the whole chain runs (corpus -> pretrain -> SFT -> GAtt ->
report), pretraining learns beyond unigram statistics, the report holds every measure, stages are reused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_chain_runs_learns_and_reports(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "llamaforge.cli", "demo", "--out", str(tmp_path / "demo"), "--docs", "3000",
           "--vocab-size", "700", "--steps", "60", "--scale", "0.04",
           "--pretrain.train.global_batch_tokens=4096", "--pretrain.eval.every=30",
           "--sft.train.steps=8", "--gatt.train.steps=4", "--gatt.gatt.max_turns=3",
           "--gatt.gatt.keep_only_adherent=false",  # a 60-step model obeys no instruction: keep its samples
           *(f"--{s}.log.progress=false" for s in ("pretrain", "sft", "gatt"))]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    demo = tmp_path / "demo"
    report = json.loads((demo / "report.json").read_text())
    # a model that knew only token frequencies would score the unigram entropy; 60 small steps get far below
    assert report["val_loss"] < 0.7 * report["unigram_entropy"], report
    for stage in ("sft", "gatt"):
        for key in ("accuracy", "refusal_rate", "violation_rate", "false_refusal_rate"):
            assert 0.0 <= report[stage][key] <= 1.0
        assert set(report["adherence"][stage]) >= {"1", "2", "3"}  # JSON keys: turns
    text = (demo / "report.md").read_text()
    assert "Table 30" in text and "task accuracy" in text and "**assistant**" in text
    for png in ("losses.png", "adherence.png", "evals.png"):
        assert (demo / png).stat().st_size > 1000
    for stage in ("pretrain", "sft", "gatt"):
        assert (demo / stage / "model" / "model.safetensors").exists()
    assert (demo / "gatt" / "gatt_data.jsonl").stat().st_size > 0
    assert (demo / "world" / "sft.jsonl").exists() and (demo / "eval_sft.json").exists()

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # every stage reused
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[demo] pretrain" not in again.stderr and "[demo] sft" not in again.stderr and "evaluating" not in again.stderr
    assert "Table 30" in again.stdout

    bad = subprocess.run(cmd[:6] + ["--train.steps=3"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected --STAGE.section.key=value" in bad.stderr
