"""Rejection sampling: Figure 7's curve by hand, the selection helpers, and `llamaforge rejection-sampling`
end to end on the debug model with two debug reward models (sampling, scoring, pool, resume, errors)."""

import dataclasses
import json

import pytest
import torch

from llamaforge import cli
from llamaforge.config import load_config
from llamaforge.data.prompts import read_prompts
from llamaforge.model import ModelArgs, Transformer
from llamaforge.model.checkpoint_io import load_model, save_model
from llamaforge.model.heads import scalar_head
from llamaforge.model.sizes import preset
from llamaforge.reward.score import RewardModels
from llamaforge.rlhf import rejection_sampling as rs
from llamaforge.tokenizer import Tokenizer
from llamaforge.world.splits import WorldSizes, world_splits

K = 3


def test_best_of_n_curve_by_hand():
    rewards = torch.tensor([[0.2, 0.8, 0.5],
                            [0.6, 0.1, 0.9]])
    curve = rs.best_of_n_curve(rewards)
    # max of the first N:     N=1: (0.2 + 0.6) / 2 = 0.4;  N=2: (0.8 + 0.6) / 2 = 0.7;  N=3: (0.8 + 0.9) / 2 = 0.85
    # median of the first N:  N=1: 0.4;  N=2: ((0.2 + 0.8) / 2 + (0.6 + 0.1) / 2) / 2 = (0.5 + 0.35) / 2 = 0.425;
    #                         N=3: (0.5 + 0.6) / 2 = 0.55
    assert curve["max"] == pytest.approx([0.4, 0.7, 0.85])
    assert curve["median"] == pytest.approx([0.4, 0.425, 0.55])
    with pytest.raises(ValueError, match=r"\[P, K\]"):
        rs.best_of_n_curve(torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="finite"):
        rs.best_of_n_curve(torch.tensor([[0.1, float("nan")]]))


def test_select_best_skips_empty_answers_and_keeps_the_first_of_equals():
    cands = [{"id": "a", "answer": "", "reward": 0.9}, {"id": "a", "answer": "x", "reward": 0.5},
             {"id": "a", "answer": "y", "reward": 0.5}, {"id": "b", "answer": "", "reward": 0.7}]
    best = rs.select_best(cands)
    assert best == {"a": cands[1]}  # "b" has no non-empty answer: nothing to keep
    assert rs.clean_answer(" Sure, 4. [INST] And 5? [/INST]") == "Sure, 4."
    assert rs.clean_answer("  plain  ") == "plain"


@pytest.fixture(scope="module")
def assets(tiny_tokenizer, tmp_path_factory):
    """A debug policy, two debug reward models (scalar heads scaled up so that scores spread over
    [0, 1]) and six world RLHF prompts (4 helpful, 1 unsafe, 1 borderline)."""
    root = tmp_path_factory.mktemp("rs")
    args = ModelArgs(**{**preset("debug"), "vocab_size": tiny_tokenizer.vocab_size})
    torch.manual_seed(0)
    policy = Transformer(args)
    policy.init_weights()
    save_model(policy, root / "policy", tokenizer=tiny_tokenizer)
    for name in ("helpful", "safety"):
        rm = Transformer(args)
        rm.init_weights()
        scalar_head(rm)
        with torch.no_grad():
            rm.output.weight.mul_(100.0)
        save_model(rm, root / name, tokenizer=tiny_tokenizer)
    sizes = dataclasses.replace(WorldSizes(**{f.name: 1 for f in dataclasses.fields(WorldSizes)}),
                                rlhf_helpful=4, rlhf_unsafe=1, rlhf_borderline=1)
    prompts = world_splits(0, sizes=sizes)["rlhf_prompts"]
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompts))
    return root, prompts


def _overrides(root, out, *extra):
    return [f"--model.init_from={root / 'policy'}", f"--reward.helpful={root / 'helpful'}",
            f"--reward.safety={root / 'safety'}", f"--rs.prompts=[\"{root / 'prompts.jsonl'}\"]",
            f"--out_dir={out}", f"--rs.k={K}", "--rs.max_new_tokens=8", "--rs.temperature=1.2",
            "--data.seq_len=256", "--train.steps=2", "--train.batch_size=2", "--train.micro_batch_size=2",
            "--train.precision=fp32", "--train.compile=false", "--log.progress=false",
            "--log.tensorboard=false", *extra]


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_rejection_sampling_samples_scores_keeps_the_best_and_fine_tunes(assets, tmp_path, monkeypatch, capsys):
    root, prompts = assets
    run1 = tmp_path / "run1"
    summary = rs.main(load_config(rs.RSConfig, None, _overrides(root, run1)))
    samples = _lines(run1 / "samples.jsonl")
    assert len(samples) == len(prompts) * K and {s["source"] for s in samples} == {"new"}
    by_id = {}
    for s in samples:
        by_id.setdefault(s["id"], []).append(s)
    assert all(sorted(s["sample"] for s in c) == list(range(K)) for c in by_id.values())
    for s in samples:  # R_c: the safety score on the unsafe prompt and on unsafe answers, else helpfulness
        unsafe = s["family"] == "unsafe" or s["safety"] < 0.15
        assert s["reward"] == (s["safety"] if unsafe else s["helpful"])
    data = {r["id"]: r for r in _lines(run1 / "rs_data.jsonl")}
    for pid, cands in by_id.items():
        best = max((c for c in cands if c["answer"]), key=lambda c: c["reward"], default=None)
        if best is None:
            assert pid not in data
            continue
        assert data[pid]["messages"][-1] == {"role": "assistant", "content": best["answer"]}
        assert data[pid]["reward"] == best["reward"] and data[pid]["loss"] == "last_turn"
        assert [c["kept"] for c in cands].count(True) == 1 and best["kept"]
    stats = json.loads((run1 / "rs_stats.json").read_text())
    curve = stats["reward_vs_k"]
    assert stats["samples"] == len(prompts) * K and stats["kept"] == len(data) == summary["rs"]["kept"]
    assert len(curve["max"]) == K and all(a <= b for a, b in zip(curve["max"], curve["max"][1:]))
    assert curve["max"][0] == pytest.approx(curve["median"][0]) and stats["mean_best"] >= stats["mean_reward"]
    assert set(stats["by_family"]) == {p["family"] for p in prompts}
    assert (run1 / "model" / "model.safetensors").is_file() and summary["step"] == 2

    # A pool answer that the current RMs score above every new sample of its prompt wins there.
    tokenizer = Tokenizer(root / "policy")
    rms = RewardModels(load_model(root / "helpful").eval(), load_model(root / "safety").eval())
    texts = [f"{name} has {n} coins." for name in ("Alice", "Bob", "Carol", "Dave") for n in range(10)]
    margins = []
    for p in prompts:
        got = rms.score(tokenizer, [p] * len(texts), texts)["combined"]
        top = int(got.argmax())
        margins.append((float(got[top]) - max(c["reward"] for c in by_id[p["id"]]), p["id"], texts[top]))
    margin, winner, text = max(margins)
    assert margin > 0
    crafted = tmp_path / "crafted.jsonl"
    crafted.write_text(json.dumps({"id": winner, "answer": text}) + "\n"
                       + json.dumps({"id": "not-a-prompt", "answer": "x"}) + "\n")
    run2 = tmp_path / "run2"
    pool = f"--rs.pool=[\"{run1 / 'samples.jsonl'}\", \"{crafted}\"]"
    rs.main(load_config(rs.RSConfig, None, _overrides(root, run2, pool)))
    samples2 = _lines(run2 / "samples.jsonl")
    new2 = [s for s in samples2 if s["source"] == "new"]
    assert [s["answer"] for s in new2] == [s["answer"] for s in samples]  # seeded: the same samples again
    assert [s for s in samples2 if s["source"] == "pool"] and len(samples2) == len(samples) + 1  # duplicates skipped
    data2 = {r["id"]: r for r in _lines(run2 / "rs_data.jsonl")}
    assert data2[winner]["messages"][-1]["content"] == text and data2[winner]["source"] == "pool"
    stats2 = json.loads((run2 / "rs_stats.json").read_text())
    assert stats2["kept_from_pool"] == 1 and stats2["pool_unused"] == 1 and stats2["pool_candidates"] == 1

    # --resume reuses the complete rs_data.jsonl (no sampling); without it, a checkpointed run is refused
    monkeypatch.setattr(rs, "sample_answers", lambda *a, **k: pytest.fail("sampled again on --resume"))
    assert cli.main(["rejection-sampling", "--resume", *_overrides(root, run1)]) == 0
    out = capsys.readouterr().out
    assert f"rejection sampling: {len(prompts)} prompts, {len(prompts) * K} samples" in out and "model dir" in out
    before = (run1 / "samples.jsonl").read_text()
    assert cli.main(["rejection-sampling", *_overrides(root, run1)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err and (run1 / "samples.jsonl").read_text() == before


def test_bad_configs_are_clear_errors(assets, tmp_path):
    root, _ = assets
    base = _overrides(root, tmp_path / "bad")
    without_rm = [o for o in base if not o.startswith("--reward.helpful")]
    with pytest.raises(ValueError, match="reward.helpful is required"):
        rs.main(load_config(rs.RSConfig, None, without_rm))
    with pytest.raises(ValueError, match=r"rs\.k=0 is invalid"):
        rs.main(load_config(rs.RSConfig, None, base + ["--rs.k=0"]))
    with pytest.raises(ValueError, match="model.init_from is required"):
        rs.main(load_config(rs.RSConfig, None, [f"--reward.helpful={root / 'helpful'}"]))
    with pytest.raises(ValueError, match="expected a reward model"):
        rs.main(load_config(rs.RSConfig, None, base + [f"--reward.helpful={root / 'policy'}", "--rs.k=1"]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "messages": [{"role": "assistant", "content": "hi"}]}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: field 'messages'"):
        read_prompts([bad])
