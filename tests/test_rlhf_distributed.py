"""Reward-model training and PPO on 2 torchrun ranks (gloo, CPU, FSDP2) against 1 rank in-process, on
the debug model. Slow: each case starts two Python processes."""

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import run_torchrun
from llamaforge.config import load_config
from llamaforge.data.preference import write_preferences
from llamaforge.model import ModelArgs, Transformer
from llamaforge.model.checkpoint_io import load_model, save_model
from llamaforge.model.heads import scalar_head
from llamaforge.model.sizes import preset
from llamaforge.reward import train as reward_train
from llamaforge.rlhf import ppo_train
from llamaforge.train.metrics import read_metrics
from llamaforge.world.splits import WorldSizes, world_splits


ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_tokenizer):
    """A random debug policy, two debug reward models (heads scaled up so that R_c spreads over
    (0, 1)), world preference pairs and world RLHF prompts (helpful, unsafe, borderline)."""
    root = tmp_path_factory.mktemp("rlhf_dist")
    args = ModelArgs(**{**preset("debug"), "vocab_size": tiny_tokenizer.vocab_size})
    torch.manual_seed(0)
    policy = Transformer(args)
    policy.init_weights()
    save_model(policy, root / "policy", tokenizer=tiny_tokenizer)
    for seed, name in ((1, "helpful"), (2, "safety")):
        torch.manual_seed(seed)
        rm = scalar_head(Transformer(args))
        rm.init_weights()
        with torch.no_grad():
            rm.output.weight.mul_(100.0)
        save_model(rm, root / name, tokenizer=tiny_tokenizer)
    sizes = dataclasses.replace(WorldSizes(**{f.name: 0 for f in dataclasses.fields(WorldSizes)}),
                                preferences_helpful=8, preferences_safety=8,
                                rlhf_helpful=4, rlhf_unsafe=2, rlhf_borderline=2)
    world = world_splits(0, sizes=sizes)
    write_preferences(world["preferences_helpful"] + world["preferences_safety"], root / "prefs.jsonl")
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in world["rlhf_prompts"]))
    return root


def _torchrun(command: str, config: Path, out: Path) -> None:
    """``llamaforge COMMAND --config CONFIG`` on 2 gloo CPU ranks."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = run_torchrun(["--nproc_per_node", "2", "-m", "llamaforge.cli", command, "--config", str(config),
                         f"--out_dir={out}"], env=env, timeout=300, fresh=(out,))
    assert done.returncode == 0, done.stderr[-4000:]


def _assert_same_weights(a: Path, b: Path, atol: float) -> None:
    sa, sb = load_model(a).state_dict(), load_model(b).state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=atol, msg=k)


COMMON = """
[train]
precision = "fp32"
device = "cpu"
{train}
[log]
every = 1
progress = false
tensorboard = false
"""


def test_reward_training_on_two_ranks_matches_one_rank(assets, tmp_path):
    config = tmp_path / "reward.toml"
    config.write_text(f"""[model]
init_from = "{assets / 'policy'}"
[data]
paths = ["{assets / 'prefs.jsonl'}"]
seq_len = 256
[optim]
lr = 1e-3
warmup_steps = 1
""" + COMMON.format(train="steps = 3\nbatch_size = 4\nmicro_batch_size = 2"))
    one = reward_train.main(load_config(reward_train.RewardConfig, config, [f"--out_dir={tmp_path / 'one'}"]))
    _torchrun("reward", config, tmp_path / "two")
    a, b = (read_metrics(tmp_path / run / "metrics.jsonl") for run in ("one", "two"))
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    # the same 4 pairs a step: 2 micro-batches of 2 on one rank, one micro-batch of 2 on each of two
    for key in ("loss", "train_accuracy", "grad_norm", "lr"):
        torch.testing.assert_close(torch.tensor([r[key] for r in b]), torch.tensor([r[key] for r in a]),
                                   rtol=1e-5, atol=1e-5, msg=key)
    assert a[-1]["loss"] != a[0]["loss"]  # it trained: equal curves are not two untouched models
    _assert_same_weights(Path(one["model_dir"]), tmp_path / "two" / "model", atol=1e-5)


def test_ppo_on_two_ranks_matches_one_rank(assets, tmp_path):
    # top_p 1e-6 keeps only each step's most likely token: the answers do not depend on the sampling
    # seeds (which differ by rank) or on the split of the prompts over ranks, so both runs see the same
    # rollouts; a prompt matched with another prompt's answer after the gather would change the rewards
    config = tmp_path / "ppo.toml"
    config.write_text(f"""[model]
init_from = "{assets / 'policy'}"
[reward]
helpful = "{assets / 'helpful'}"
safety = "{assets / 'safety'}"
[data]
prompts = ["{assets / 'prompts.jsonl'}"]
[ppo]
iterations = 2
prompts_per_iteration = 4
minibatch_size = 2
max_new_tokens = 4
top_p = 1e-6
value_lr = 1e-3
[optim]
lr = 1e-3
""" + COMMON.format(train="micro_batch_size = 1"))
    one = ppo_train.main(load_config(ppo_train.PPOConfig, config, [f"--out_dir={tmp_path / 'one'}"]))
    _torchrun("ppo", config, tmp_path / "two")
    assert (tmp_path / "two" / "model" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["step"] == 2
    a, b = (read_metrics(tmp_path / run / "metrics.jsonl") for run in ("one", "two"))
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
    # the first iteration's rollouts come from the initial policy: the same answers, so the same
    # rewards; the policy is its own reference there, so the KL is 0 on both
    for key in ("reward", "reward_helpful", "reward_safety", "answer_tokens", "stopped_fraction",
                "distinct_answers"):
        assert b[0][key] == pytest.approx(a[0][key], abs=1e-6), key
    assert abs(a[0]["kl"]) < 1e-5 and abs(b[0]["kl"]) < 1e-5
    # each rank samples, scores and trains on its half of the rollouts (a minibatch of 2: one row per
    # rank), the experience gathered for the batch statistics: the same updates as one rank
    for key in ("reward", "kl", "policy_loss", "value_loss", "entropy", "clip_fraction"):
        torch.testing.assert_close(torch.tensor([r[key] for r in b]), torch.tensor([r[key] for r in a]),
                                   rtol=1e-4, atol=1e-5, msg=key)
    _assert_same_weights(Path(one["model_dir"]), tmp_path / "two" / "model", atol=1e-5)
    start, end = load_model(assets / "policy"), load_model(one["model_dir"])
    assert not torch.equal(start.output.weight, end.output.weight)  # two updates moved the policy
