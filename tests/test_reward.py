"""Reward models: scoring (pairs, R_c from two RMs), the accuracy tables, and the `llamaforge reward`
stage end to end on the debug model (learning, artifacts, exact resume, margins, bad input, CLI)."""

import dataclasses
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from llamaforge import SIZES, ModelArgs, Transformer
from llamaforge.config import load_config
from llamaforge.data.preference import encode_pair, write_preferences
from llamaforge.model.checkpoint_io import load_model, save_model
from llamaforge.model.heads import has_scalar_head, scalar_head, sequence_scores
from llamaforge.parallel import Dist
from llamaforge.reward import train as reward_train
from llamaforge.reward.eval import accuracy_report, plot_score_histogram, report_markdown
from llamaforge.reward.loss import MARGINS
from llamaforge.reward.score import (RewardModels, encode_scored, is_safety_prompt, right_pad, score_ids,
                                     score_responses)
from llamaforge.train.loop import build_model
from llamaforge.train.metrics import read_metrics
from llamaforge.world.annotators import STRENGTHS
from llamaforge.world.splits import WorldSizes, world_splits


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world():
    """A few world records: helpful / unsafe prompts and helpfulness preference pairs."""
    sizes = WorldSizes(**{f.name: 0 for f in dataclasses.fields(WorldSizes)})
    sizes = dataclasses.replace(sizes, helpful_eval=3, unsafe_eval=3, borderline_eval=2,
                                preferences_helpful=4, preferences_helpful_eval=8)
    return world_splits(0, sizes=sizes)


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory, tiny_tokenizer):
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**{**SIZES["debug"], "vocab_size": 512}))
    model.init_weights()
    out = tmp_path_factory.mktemp("reward_chat") / "model"
    save_model(model, out, tokenizer=tiny_tokenizer)
    return out


def reward_model(seed: int, head_scale: float = 1.0) -> Transformer:
    torch.manual_seed(seed)
    model = scalar_head(Transformer(ModelArgs(**{**SIZES["debug"], "vocab_size": 512})))
    model.init_weights()
    with torch.no_grad():
        model.output.weight.mul_(head_scale)
    return model.eval()


@torch.no_grad()
def _last_hidden(model, ids: list[int]) -> torch.Tensor:
    """[dim] the final norm's output at the last position (what the head reads)."""
    seen = []
    hook = model.norm.register_forward_hook(lambda mod, inp, out: seen.append(out))
    model(torch.tensor([ids]))
    hook.remove()
    return seen[0][0, -1]


def learnable_pairs(n: int, seed: int = 0) -> list[dict]:
    """Short sums (a few dozen tokens with the tiny tokenizer): the right answer is chosen over "no",
    with the four ratings in turn."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        out.append({"prompt": f"What is {a} + {b}?", "chosen": f"{a} + {b} = {a + b}.", "rejected": "no",
                    "rating": STRENGTHS[i % len(STRENGTHS)]})
    return out


@pytest.fixture(scope="module")
def data(world, tmp_path_factory):
    """train.jsonl: 24 learnable pairs; eight.jsonl: its first 8; eval.jsonl: held-out world pairs."""
    root = tmp_path_factory.mktemp("reward_data")
    learnable = learnable_pairs(24)
    return {"train": write_preferences(learnable, root / "train.jsonl"),
            "eight": write_preferences(learnable[:8], root / "eight.jsonl"),
            "eval": write_preferences(world["preferences_helpful_eval"], root / "eval.jsonl"),
            "records": learnable}


# ---------------------------------------------------------------- scoring

def test_encode_scored_is_encode_pair_and_ends_with_eos(tiny_tokenizer, world):
    record = world["preferences_helpful"][0]
    ids = encode_scored(tiny_tokenizer, record["prompt"], record["chosen"])
    assert ids[-1] == tiny_tokenizer.eos_id and ids[0] == tiny_tokenizer.bos_id
    chosen, rejected = encode_pair(tiny_tokenizer, record, 10**6)
    assert ids == chosen
    assert encode_scored(tiny_tokenizer, record["prompt"], record["rejected"]) == rejected


def test_right_pad_and_score_ids_keep_the_order():
    tokens, lengths = right_pad([[5, 6, 7], [8], [9, 10]])
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]] and lengths.tolist() == [3, 1, 2]
    with pytest.raises(ValueError, match="at least one token"):
        right_pad([[1], []])
    model = reward_model(0, head_scale=50.0)
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(1, 512, (n,), generator=g).tolist() for n in (9, 3, 17, 5, 12)]
    got = score_ids(model, rows, batch_size=2)  # sorted by length, batched 2 by 2, then put back
    with torch.no_grad():
        alone = torch.stack([sequence_scores(model, torch.tensor([r]), torch.tensor([len(r)]))[0] for r in rows])
    torch.testing.assert_close(got, alone, atol=1e-5, rtol=0)
    assert len(set(got.tolist())) == len(rows)  # distinct scores: a shuffled order would show


def test_is_safety_prompt_by_family_or_tag(world):
    assert is_safety_prompt(world["unsafe_eval"][0])
    assert not is_safety_prompt(world["borderline_eval"][0]) and not is_safety_prompt(world["helpful_eval"][0])
    assert is_safety_prompt({"family": "words", "safety": True})
    assert not is_safety_prompt({**world["unsafe_eval"][0], "safety": False})  # an explicit tag wins


def test_two_reward_models_combine_as_r_c(tiny_tokenizer, world):
    records = world["helpful_eval"] + world["unsafe_eval"] + world["borderline_eval"]
    answers = ["I can help with that.", "No.", "Sure: 26, 11, 3.", "I can't help with that.", "ok",
               "Mix it all.", "Here you go.", "Let me explain."][:len(records)]
    prompts = [r["messages"][:-1] for r in records]  # the reference answer dropped
    rows = [encode_scored(tiny_tokenizer, p, a) for p, a in zip(prompts, answers)]
    tags = [is_safety_prompt(r) for r in records]
    untagged = [i for i in range(len(rows)) if not tags[i]]
    helpful, safety = reward_model(1, head_scale=30.0), reward_model(2)
    # point the Safety RM's head from untagged row b's last hidden state to row a's: a scores ~ +10
    # (safe), b ~ -10 (unsafe, < 0.15); the final RMSNorm gives every state the same length sqrt(dim)
    a, b = untagged[0], untagged[1]
    x_a, x_b = _last_hidden(safety, rows[a]), _last_hidden(safety, rows[b])
    with torch.no_grad():
        safety.output.weight.copy_((20 * (x_a - x_b) / (x_a - x_b).square().sum()).unsqueeze(0))  # [1, dim]
    out = RewardModels(helpful, safety, batch_size=3).score_ids(rows, tags)
    h = torch.sigmoid(score_ids(helpful, rows, batch_size=3))  # the same batches: the same bits
    s = torch.sigmoid(score_ids(safety, rows, batch_size=3))
    torch.testing.assert_close(out["helpful"], h, atol=0, rtol=0)
    torch.testing.assert_close(out["safety"], s, atol=0, rtol=0)
    # R_c by hand (eq. 3): the safety score for a tagged prompt or an unsafe answer (< 0.15)
    want = torch.tensor([s[i] if tags[i] or s[i] < 0.15 else h[i] for i in range(len(rows))])
    torch.testing.assert_close(out["combined"], want, atol=0, rtol=0)
    assert any(tags) and any(s[i] < 0.15 for i in untagged) and any(s[i] >= 0.15 for i in untagged)
    for i in range(len(rows)):
        if tags[i]:
            assert out["combined"][i] == out["safety"][i]
    # the record form drops the reference answer itself and tags by family
    by_record = RewardModels(helpful, safety, batch_size=3).score(tiny_tokenizer, records, answers)
    torch.testing.assert_close(by_record["combined"], want, atol=0, rtol=0)
    alone = RewardModels(helpful, batch_size=3).score_ids(rows, tags)
    assert alone["safety"] is None and torch.equal(alone["combined"], h)
    torch.testing.assert_close(score_responses(helpful, tiny_tokenizer, prompts, answers, batch_size=3), h,
                               atol=0, rtol=0)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        score_responses(helpful, tiny_tokenizer, prompts[:2], answers[:1])


# ---------------------------------------------------------------- accuracy tables

def test_accuracy_report_by_hand(tmp_path):
    sig, bet, sli, neg = STRENGTHS
    chosen = torch.tensor([2.0, 0.0, 1.0, 5.0, -1.0, 0.5, 0.3])
    rejected = torch.tensor([1.0, 1.0, 1.0, 0.0, -2.0, 0.4, 0.9])
    ratings = [sig, sig, bet, bet, neg, sli, sli]
    labels = ["both safe", "both safe", "both unsafe", None, None, "both safe", "both unsafe"]
    report = accuracy_report(chosen, rejected, ratings, labels)
    # correct (strictly above): [T, F, F (a tie), T, T, T, F] -> 4 / 7
    assert report["n"] == 7 and report["accuracy"] == pytest.approx(4 / 7)
    assert list(report["by_rating"]) == [sig, bet, sli, neg]  # the paper's order
    assert report["by_rating"] == {sig: {"accuracy": 0.5, "n": 2}, bet: {"accuracy": 0.5, "n": 2},
                                   sli: {"accuracy": 0.5, "n": 2}, neg: {"accuracy": 1.0, "n": 1}}
    # labels: both safe rows 0, 1, 5 -> T F T; both unsafe rows 2, 6 -> F F; None rows left out
    assert report["by_label"] == {"both safe": {"accuracy": pytest.approx(2 / 3), "n": 3},
                                  "both unsafe": {"accuracy": 0.0, "n": 2}}
    assert report["mean_chosen"] == pytest.approx(float(torch.sigmoid(chosen).mean()))
    assert "by_label" not in accuracy_report(chosen, rejected, ratings)
    text = report_markdown(report, title="helpful RM")
    for name in [sig, bet, sli, neg, "both safe", "both unsafe", "helpful RM", "average"]:
        assert name in text
    assert "57.1%" in text and "(n=2)" in text
    with pytest.raises(ValueError, match="same length"):
        accuracy_report(chosen, rejected[:3], ratings)
    pytest.importorskip("matplotlib")
    png = plot_score_histogram(chosen, rejected, tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- the stage

def _cfg(init_from, train, out, *overrides):
    return load_config(reward_train.RewardConfig, None, [
        f"--model.init_from={init_from}", f"--data.paths=[\"{train}\"]", f"--out_dir={out}", "--data.seq_len=160",
        "--train.batch_size=8", "--train.micro_batch_size=4", "--train.precision=fp32", "--train.device=cpu",
        "--optim.lr=1e-3", "--optim.warmup_steps=1", "--log.every=1", "--log.progress=false",
        "--log.tensorboard=false", *overrides])


def test_reward_stage_learns_and_writes_its_artifacts(chat_dir, data, tiny_tokenizer, tmp_path):
    run = tmp_path / "run"
    summary = reward_train.main(_cfg(chat_dir, data["train"], run, "--train.steps=6",
                                     f"--eval.paths=[\"{data['eval']}\", \"{data['train']}\"]"))
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl")]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.3, losses
    assert summary["data"] == {"read": len(data["records"]), "dropped_too_long": 0, "pairs": len(data["records"])}
    rm = load_model(summary["model_dir"])
    assert has_scalar_head(rm) and (run / "model" / "tokenizer.model").is_file()
    assert json.loads((run / "model" / "config.json").read_text())["architectures"] == [
        "LlamaForSequenceClassification"]
    tables = json.loads((run / "eval.json").read_text())
    assert set(tables) == {str(data["eval"]), str(data["train"])}
    learned = tables[str(data["train"])]
    assert learned["n"] == len(data["records"]) and learned["accuracy"] == 1.0  # the right sum above "no" everywhere
    assert set(learned["by_rating"]) <= set(STRENGTHS) and sum(v["n"] for v in learned["by_rating"].values()) == \
        learned["n"]
    # eval.json's accuracy is that of the exported model
    pairs, _ = reward_train.load_pairs([str(data["train"])], tiny_tokenizer, seq_len=160)
    c, r = score_ids(rm, [p.chosen for p in pairs]), score_ids(rm, [p.rejected for p in pairs])
    assert learned["accuracy"] == float((c > r).float().mean())
    assert learned["mean_chosen"] == pytest.approx(float(torch.sigmoid(c).mean()), abs=1e-5)
    assert "val_accuracy" in read_metrics(run / "metrics.jsonl")[-1]
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the histogram is optional
        assert summary["scores_png"] is None
    else:
        assert summary["scores_png"] == str(run / "scores.png")
        assert (run / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reward_stage_resumes_exactly(chat_dir, data, tmp_path):
    run = tmp_path / "run"
    steps = ["--train.steps=4", "--checkpoint.every=2", "--checkpoint.keep=3"]
    reward_train.main(_cfg(chat_dir, data["train"], run, *steps))
    reference = [r["loss"] for r in read_metrics(run / "metrics.jsonl")]
    straight = load_model(run / "model").state_dict()
    # lose the last 2 steps (as a crash after step 2's checkpoint would), then resume
    shutil.rmtree(run / "checkpoints" / "step_00000004")
    shutil.rmtree(run / "model")
    summary = reward_train.main(_cfg(chat_dir, data["train"], run, *steps, "--resume=true"))
    assert summary["step"] == 4
    assert [r["loss"] for r in read_metrics(run / "metrics.jsonl")] == reference  # bitwise
    resumed = load_model(run / "model").state_dict()
    for k, v in straight.items():
        torch.testing.assert_close(resumed[k], v, atol=0, rtol=0, msg=k)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        reward_train.main(_cfg(chat_dir, data["train"], run, *steps))


@pytest.mark.parametrize("margin", ["none", "large"])
def test_the_first_step_loss_is_the_ranking_loss_by_hand(chat_dir, data, tiny_tokenizer, tmp_path, margin):
    # one step over exactly the 8 pairs of eight.jsonl: the loss is their mean, whatever the shuffle.
    # a bare --loss.margin=none is the margin table's name (a str field), not None
    reward_train.main(_cfg(chat_dir, data["eight"], tmp_path / "run", "--train.steps=1", f"--loss.margin={margin}"))
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]["loss"]
    args = ModelArgs(**{**SIZES["debug"], "vocab_size": 512})
    model = build_model(args, Dist(), precision="fp32", init_from=str(chat_dir), head="scalar", seed=0).eval()
    records = data["records"][:8]
    assert any(r["rating"] != STRENGTHS[-1] for r in records)  # some pairs have a margin
    ids = [encode_pair(tiny_tokenizer, r, 160) for r in records]
    c = score_ids(model, [x[0] for x in ids])
    rj = score_ids(model, [x[1] for x in ids])
    m = torch.tensor([MARGINS[margin][STRENGTHS.index(r["rating"])] for r in records])
    want = float((-F.logsigmoid(c - rj - m)).mean())  # eq. 2, averaged over the batch of 8 pairs
    assert first == pytest.approx(want, rel=1e-5)
    # the large margins raise the loss: -log sigmoid(x - m) grows with m
    if margin == "large":
        assert first > float((-F.logsigmoid(c - rj)).mean()) + 0.1


def test_bad_configs_are_value_errors(chat_dir, data, tmp_path):
    with pytest.raises(ValueError, match="model.init_from is required"):
        reward_train.main(_cfg("", data["train"], tmp_path / "r1"))
    with pytest.raises(ValueError, match="loss.margin must be one of"):
        reward_train.main(_cfg(chat_dir, data["train"], tmp_path / "r2", "--loss.margin=huge"))
    with pytest.raises(ValueError, match="train.batch_size=6 must be a positive multiple"):
        reward_train.main(_cfg(chat_dir, data["train"], tmp_path / "r3", "--train.batch_size=6"))
    with pytest.raises(ValueError, match="beyond the model's context"):
        reward_train.main(_cfg(chat_dir, data["train"], tmp_path / "r4", "--data.seq_len=1000"))
    with pytest.raises(ValueError, match="no preference pairs to train on"):
        reward_train.main(_cfg(chat_dir, data["train"], tmp_path / "r5", "--data.seq_len=8"))
    with pytest.raises(ValueError, match="data.weights has 2 entries for 1 data.paths"):
        reward_train.main(_cfg(chat_dir, data["train"], tmp_path / "r6", "--data.weights=[1.0, 2.0]"))
    assert not any((tmp_path / n / "checkpoints").exists() for n in ("r1", "r2", "r3", "r4", "r5", "r6"))


def test_load_pairs_mixes_by_weight(data, tiny_tokenizer):
    n = len(data["records"])
    pairs, stats = reward_train.load_pairs([str(data["train"]), str(data["eight"])], tiny_tokenizer, seq_len=160,
                                           weights=[2.0, 0.5])
    assert stats == {"read": n + 8, "dropped_too_long": 0, "pairs": 2 * n + 4} and len(pairs) == 2 * n + 4
    assert pairs[0].chosen[-1] == tiny_tokenizer.eos_id and pairs[0].label is None


def test_reward_cli_runs_and_a_bad_file_exits_2(chat_dir, data, tmp_path, capsys):
    from llamaforge.cli import main

    config = tmp_path / "rm.toml"
    config.write_text(f'out_dir = "{tmp_path / "run"}"\n[model]\ninit_from = "{chat_dir}"\n'
                      f'[data]\npaths = ["{data["train"]}"]\nseq_len = 160\n'
                      f'[eval]\npaths = ["{data["eval"]}"]\n'
                      '[train]\nsteps = 2\nbatch_size = 8\nmicro_batch_size = 8\nprecision = "fp32"\ndevice = "cpu"\n'
                      '[log]\nprogress = false\ntensorboard = false\n')
    assert main(["reward", "--config", str(config), "--optim.lr=1e-3"]) == 0
    out = capsys.readouterr().out
    assert "reward model dir:" in out and STRENGTHS[0] in out and "final loss" in out
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()

    bad = tmp_path / "bad.jsonl"
    good = json.dumps(data["records"][0])
    bad.write_text(good + "\n" + json.dumps({**data["records"][1], "rating": "much better"}) + "\n")
    code = main(["reward", "--config", str(config), f"--data.paths=[\"{bad}\"]", f"--out_dir={tmp_path / 'r2'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: field 'rating'" in err and "Traceback" not in err
    assert not (tmp_path / "r2" / "checkpoints").exists()
    assert math.isfinite(json.loads((tmp_path / "run" / "eval.json").read_text())[str(data["eval"])]["accuracy"])
