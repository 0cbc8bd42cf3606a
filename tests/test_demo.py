"""`llamaforge demo` end to end at a reduced size: the whole chain runs (corpus -> pretrain -> SFT -> RLHF
(preferences, reward models, rejection sampling, PPO) -> context distillation -> GAtt -> the paper's
evaluations -> report), pretraining learns beyond unigram statistics, the report holds every measure,
stages are reused."""

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
           "--rlhf.collect.per_iteration=40", "--rlhf.collect.max_new_tokens=16",
           *(f"--reward_{k}.train.{x}" for k in ("helpful", "safety")
             for x in ("steps=3", "batch_size=8", "micro_batch_size=4")),
           "--rejection_sampling.rs.max_prompts=16", "--rejection_sampling.rs.k=2",
           "--rejection_sampling.rs.max_new_tokens=16", "--rejection_sampling.train.steps=2",
           "--ppo.ppo.iterations=2", "--ppo.ppo.prompts_per_iteration=16", "--ppo.ppo.minibatch_size=8",
           "--ppo.train.micro_batch_size=8", "--ppo.ppo.max_new_tokens=16", "--ppo.eval.max_prompts=8",
           "--context_distill.cd.max_prompts=24", "--context_distill.cd.max_new_tokens=16",
           "--context_distill.cd.margin=0", "--context_distill.train.steps=2",
           *(f"--{s}.log.progress=false" for s in ("pretrain", "sft", "gatt", "reward_helpful", "reward_safety",
                                                   "rejection_sampling", "ppo", "context_distill"))]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    demo = tmp_path / "demo"
    report = json.loads((demo / "report.json").read_text())
    # a model that knew only token frequencies would score the unigram entropy; 60 small steps get far below
    assert report["val_loss"] < 0.7 * report["unigram_entropy"], report
    for stage in ("pretrained", "sft", "rs", "ppo", "cd", "gatt"):
        for key in ("accuracy", "refusal_rate", "violation_rate", "false_refusal_rate"):
            assert 0.0 <= report[stage][key] <= 1.0
    for stage in ("CD", "GAtt"):  # GAtt against the model it started from
        assert set(report["adherence"][stage]) >= {"1", "2", "3"}  # JSON keys: turns
    assert set(report["reward"]) == {"SFT", "RS", "PPO"} and 0 < report["reward"]["PPO"]["combined"] < 1
    assert report["win_rate"]["n"] > 0 and report["win_rate"]["model"] == "PPO"
    for kind in ("helpful", "safety"):
        assert report["reward_models"][kind], kind  # accuracy tables of the held-out pairs
    # the paper's evaluations over the chain, the final model under test
    paper = report["paper"]
    chain = ["Pretrained", "SFT", "RLHF", "RLHF+CD", "Final"]
    assert paper["target"] == "Final" and list(paper["safety"]) == chain
    for name in chain:
        v = paper["safety"][name]["violation"]
        assert 0.0 <= v["violation"] <= 1.0 and v["ci95"][0] <= v["violation"] <= v["ci95"][1]
        assert set(paper["safety"][name]["false_refusal"]) == {"helpful", "borderline"}
        assert paper["benchmarks"][name]["perplexity"]["ppl"] > 1
        assert 0.0 <= paper["benchmarks"][name]["multiple_choice"]["accuracy"] <= 1.0
    assert set(paper["helpfulness"]) == set(paper["judge"]) == set(chain[:-1])
    assert sum(paper["helpfulness"]["SFT"][k] for k in ("win", "tie", "loss")) == pytest.approx(1.0)
    html = (demo / "eval" / "report.html").read_text()
    assert "Figure 1" in html and "Figure 2" in html and "Figure 3" in html
    for png in ("fig1_win_tie_loss.png", "fig2_winrate_scatter.png", "fig3_violations.png"):
        assert (demo / "eval" / png).stat().st_size > 1000
    assert (demo / "context_distill" / "cd_samples.jsonl").exists()
    text = (demo / "report.md").read_text()
    for words in ("Table 30", "Tables 8 and 29", "task accuracy", "mean R_c", "Win rate", "**assistant**",
                  "Figure 3", "Figure 1", "violation % [95% CI]"):
        assert words in text, words
    for png in ("losses.png", "adherence.png", "evals.png", "ppo.png"):
        assert (demo / png).stat().st_size > 1000
    for stage in ("pretrain", "sft", "gatt", "rlhf/v1/rs", "rlhf/v1/ppo", "rlhf/v1/reward-helpful",
                  "rlhf/v1/reward-safety"):
        assert (demo / stage / "model" / "model.safetensors").exists(), stage
    assert (demo / "gatt" / "gatt_data.jsonl").stat().st_size > 0
    assert (demo / "world" / "sft.jsonl").exists() and (demo / "eval_sft.json").exists()

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # every stage reused
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[demo] pretrain" not in again.stderr and "[demo] sft" not in again.stderr and "evaluating" not in again.stderr
    assert "[rlhf] V1" not in again.stderr and "the paper's evaluations" not in again.stderr
    assert "Table 30" in again.stdout

    bad = subprocess.run(cmd[:6] + ["--train.steps=3"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected --STAGE.section.key=value" in bad.stderr
