"""The PPO stage end to end on the debug model: the rollout mask, learning a rule reward with the KL
held by beta, exact resume, bad configs, and ``llamaforge ppo`` from the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llamaforge.chat_format import encode_dialog
from llamaforge.config import load_config
from llamaforge.model import ModelArgs, Transformer
from llamaforge.model.checkpoint_io import load_model, save_model
from llamaforge.model.heads import scalar_head
from llamaforge.model.sizes import SIZES
from llamaforge.rlhf import ppo_train
from llamaforge.rlhf.ppo import rollout_tensors
from llamaforge.train.metrics import read_metrics

PROMPTS = [f"Tell me about the {x}." for x in
           ("apples", "boats", "maps", "coins", "lamps", "stones", "books", "letters")]
LOW = 250  # the rule reward's "good" tokens: ids below this, about half of the 500-piece vocab


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer):
    """A random debug policy dir, a debug value / reward model dir (scalar head), a prompt file."""
    root = tmp_path_factory.mktemp("ppo")
    args = ModelArgs(**{**SIZES["debug"], "vocab_size": tiny_tokenizer.vocab_size})
    torch.manual_seed(0)
    policy = Transformer(args)
    policy.init_weights()
    save_model(policy, root / "policy", tokenizer=tiny_tokenizer)
    torch.manual_seed(1)
    value = scalar_head(Transformer(args))
    value.init_weights()
    save_model(value, root / "value", tokenizer=tiny_tokenizer)
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return root


class LowTokenReward:
    """A rule reward with RewardModels' interface: 0.05 + 0.9 * (share of answer ids below LOW, EOS
    not counted), in (0, 1). A random policy answers with about half such ids; moving its output
    bias learns it. EOS is left out so that stopping at once (an empty answer: 0.05) is no shortcut."""

    def __init__(self, tokenizer):
        self.prompts = [encode_dialog(tokenizer, [{"role": "user", "content": p}]).tokens for p in PROMPTS]
        self.eos = tokenizer.eos_id

    def score_ids(self, rows, safety_tags):
        scores = []
        for row in rows:  # prompt ids + answer ids (+ EOS)
            prompt = max((p for p in self.prompts if row[:len(p)] == p), key=len)
            answer = row[len(prompt):]
            assert answer, "the loop scores at least one answer token"
            words = [t for t in answer if t != self.eos]
            scores.append(0.05 + 0.9 * sum(t < LOW for t in words) / len(words) if words else 0.05)
        t = torch.tensor(scores)
        return {"helpful": t, "safety": None, "combined": t}


def _cfg(root, out, *overrides):
    return load_config(ppo_train.PPOConfig, None, [
        f"--model.init_from={root / 'policy'}", f"--model.value_from={root / 'value'}",
        f"--reward.helpful={root / 'value'}", f"--data.prompts=[\"{root / 'prompts.jsonl'}\"]", f"--out_dir={out}",
        "--ppo.prompts_per_iteration=16", "--ppo.minibatch_size=8", "--ppo.max_new_tokens=8",
        "--ppo.generation_batch_size=16", "--ppo.value_lr=1e-3", "--optim.lr=1e-2", "--train.micro_batch_size=4",
        "--train.precision=fp32", "--log.progress=false", "--log.tensorboard=false", *overrides])


def _mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


# ---------------------------------------------------------------- rollouts

def test_rollout_mask_marks_the_positions_that_predict_answer_tokens():
    prompts, answers = [[1, 5, 6], [1, 7]], [[8, 9, 2], [10]]
    tokens, mask = rollout_tensors(prompts, answers)
    assert tokens.tolist() == [[1, 5, 6, 8, 9, 2], [1, 7, 10, 0, 0, 0]]  # right-padded with 0
    # position j predicts token j + 1: row 0's answer is tokens 3..5, predicted at 2..4; row 1's
    # single answer token is token 2, predicted at 1
    assert mask.tolist() == [[False, False, True, True, True], [False, True, False, False, False]]
    assert tokens[:, 1:][mask].tolist() == [8, 9, 2, 10]


# ---------------------------------------------------------------- learning, KL

def test_ppo_raises_a_learnable_reward_with_the_kl_bounded(setup, tiny_tokenizer, tmp_path):
    reward = LowTokenReward(tiny_tokenizer)
    summary = ppo_train.main(_cfg(setup, tmp_path / "low_beta", "--ppo.iterations=30", "--ppo.beta=0.05",
                                  "--checkpoint.every=0"), reward_models=reward)
    rows = read_metrics(tmp_path / "low_beta" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert {"reward", "kl", "entropy", "clip_fraction", "time_generation_s", "time_scoring_s",
            "time_training_s"} <= set(rows[0])
    first, last = _mean(rows[:5], "reward"), _mean(rows[-5:], "reward")
    # measured (seeds 0-3): ~0.51 -> ~0.94; a random policy stays at ~0.5
    assert last > first + 0.25, (first, last)
    # KL(pi || pi_0) summed over the answer: <= ~28 nats measured with beta 0.05 (~39 with beta 0)
    assert max(r["kl"] for r in rows) < 35
    assert rows[-1]["distinct_answers"] > 0.5  # no collapse onto one answer
    assert Path(summary["model_dir"], "model.safetensors").is_file()

    # a larger beta holds the policy closer to pi_0: measured last-5 KL ~3-5 nats (beta 0.3) vs ~19-23
    ppo_train.main(_cfg(setup, tmp_path / "high_beta", "--ppo.iterations=30", "--ppo.beta=0.3",
                        "--checkpoint.every=0"), reward_models=reward)
    high = read_metrics(tmp_path / "high_beta" / "metrics.jsonl")
    assert _mean(high[-5:], "kl") < 0.5 * _mean(rows[-5:], "kl")


# ---------------------------------------------------------------- resume

def test_ppo_resumes_exactly(setup, tiny_tokenizer, tmp_path):
    reward = LowTokenReward(tiny_tokenizer)
    steps = ["--checkpoint.every=2", "--checkpoint.keep=3"]
    straight = ppo_train.main(_cfg(setup, tmp_path / "straight", "--ppo.iterations=4", *steps), reward_models=reward)
    ppo_train.main(_cfg(setup, tmp_path / "split", "--ppo.iterations=2", *steps), reward_models=reward)
    resumed = ppo_train.main(_cfg(setup, tmp_path / "split", "--ppo.iterations=4", *steps, "--resume=true"),
                             reward_models=reward)
    assert resumed["step"] == 4
    a, b = load_model(straight["model_dir"]).state_dict(), load_model(resumed["model_dir"]).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise (fp32, CPU)

    def untimed(run):
        return [{k: v for k, v in r.items() if not k.startswith("time_")}
                for r in read_metrics(tmp_path / run / "metrics.jsonl")]

    assert untimed("split") == untimed("straight")  # the same samples, losses and rewards
    with pytest.raises(ValueError, match="already holds checkpoints"):
        ppo_train.main(_cfg(setup, tmp_path / "split", "--ppo.iterations=4", *steps), reward_models=reward)


# ---------------------------------------------------------------- bad configs

@pytest.mark.parametrize("override, match", [
    ("--model.init_from=", "model.init_from is required"),
    ("--reward.helpful=", "reward.helpful is required"),
    ("--ppo.minibatch_size=6", r"ppo.prompts_per_iteration=16 must be a positive multiple of ppo.minibatch_size=6"),
])
def test_bad_configs_are_value_errors(setup, tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        ppo_train.main(_cfg(setup, tmp_path / "r", override))
    assert not (tmp_path / "r").exists()  # nothing was started


# ---------------------------------------------------------------- the CLI

def test_ppo_cli_runs_against_a_reward_model_dir(setup, tmp_path):
    config = tmp_path / "ppo.toml"
    config.write_text(f"""out_dir = "{tmp_path / 'run'}"
[model]
init_from = "{setup / 'policy'}"
[reward]
helpful = "{setup / 'value'}"
[data]
prompts = ["{setup / 'prompts.jsonl'}"]
[ppo]
iterations = 2
prompts_per_iteration = 8
minibatch_size = 4
max_new_tokens = 6
[train]
micro_batch_size = 4
precision = "fp32"
[checkpoint]
every = 1
[log]
progress = false
tensorboard = false
""")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root / "src")}
    out = subprocess.run([sys.executable, "-m", "llamaforge.cli", "ppo", "--config", str(config)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "iterations: 2; last reward (R_c)" in out.stdout and "policy model dir:" in out.stdout
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2]
