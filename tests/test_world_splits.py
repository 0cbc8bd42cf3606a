"""The world's splits: deterministic under their seeds, held out from training, exported as JSONL;
and the evaluation hooks' bookkeeping on them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llamaforge.eval import tasks as ev
from llamaforge.world.constraints import apply_constraints, constraint
from llamaforge.world.splits import WorldSizes, _prompt_key, export, world_splits

ROOT = Path(__file__).resolve().parents[1]
SMALL = WorldSizes().scaled(0.05)


@pytest.fixture(scope="module")
def splits():
    return world_splits(0, sizes=SMALL)


def test_every_split_is_deterministic_under_its_seed(splits):
    assert world_splits(0, sizes=SMALL) == splits
    other = world_splits(1, sizes=SMALL)
    for name in splits:
        assert other[name] != splits[name], name
    assert world_splits(0, world_seed=1, sizes=SMALL)["sft"] != splits["sft"]


def test_held_out_prompts_never_occur_in_training(splits):
    seen = {_prompt_key(r) for r in splits["sft"] + splits["safety_sft"]}
    for name in ("helpful_eval", "unsafe_eval", "borderline_eval"):
        keys = [_prompt_key(r) for r in splits[name]]
        assert keys and not seen & set(keys) and len(set(keys)) == len(keys), name


def test_split_contents(splits):
    assert {r["family"] for r in splits["safety_sft"]} == {"unsafe", "borderline"}
    assert all(len([m for m in r["messages"] if m["role"] == "user"]) >= 6 for r in splits["gatt_dialogs"])
    assert all(r["constraints"] and isinstance(r["short"], bool) for r in splits["gatt_eval"])
    instructed = [r for r in splits["sft"] if "constraints" in r]
    assert instructed and any(r["messages"][0]["role"] == "system" for r in instructed)
    for p in splits["preferences_helpful"] + splits["preferences_safety"]:
        assert p["chosen"] != p["rejected"] and len(p["ratings"]) == 3
        assert p["rating"] in ("significantly better", "better", "slightly better", "negligibly better / unsure")
    # a near miss (`tasks.near_miss`) differs from the reference in one or two words: a share of the pairs
    near = [p for p in splits["preferences_helpful"] if len(p["chosen"].split()) == len(p["rejected"].split())
            and 1 <= sum(a != b for a, b in zip(p["chosen"].split(), p["rejected"].split())) <= 2]
    assert len(near) >= 0.3 * len(splits["preferences_helpful"])
    labels = {p["safety_label"] for p in splits["preferences_safety"]}
    assert "chosen safe, rejected unsafe" in labels


def test_world_export_cli_writes_jsonl(tmp_path):
    out = subprocess.run([sys.executable, "-m", "llamaforge.cli", "world", "export", "--out", str(tmp_path / "w"),
                          "--scale", "0.02"], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in (tmp_path / "w").glob("*.jsonl"))
    assert "sft.jsonl" in files and "gatt_eval.jsonl" in files and "preferences_safety.jsonl" in files
    first = json.loads((tmp_path / "w" / "helpful_eval.jsonl").read_text().splitlines()[0])
    assert first["messages"][-1]["role"] == "assistant" and first["checks"]


def test_export_writes_the_benchmark_sets(tmp_path):
    from llamaforge.eval.benchmarks import read_choice_tasks
    from llamaforge.world.multiple_choice import CATEGORIES

    sizes = WorldSizes().scaled(0.01)
    written = export(tmp_path, sizes=sizes)
    dev, ev = read_choice_tasks(tmp_path / "mc_dev.jsonl"), read_choice_tasks(tmp_path / "mc_eval.jsonl")
    assert sorted(d["category"] for d in dev) == sorted(CATEGORIES * 5)
    assert len(ev) == sizes.mc_eval == written["mc_eval"][1]
    assert not {d["question"] for d in dev} & {e["question"] for e in ev}
    docs = (tmp_path / "ppl_eval.txt").read_text(encoding="utf-8").splitlines()
    assert len(docs) == sizes.ppl_eval == written["ppl_eval"][1] and all(d.strip() for d in docs)
    assert json.loads((tmp_path / "world.json").read_text())["records"]["mc_dev"] == 20


# ---------------------------------------------------------------- evaluation hooks

def test_task_accuracy_and_safety_rates_count_what_the_verifiers_say(splits, monkeypatch):
    helpful = splits["helpful_eval"][:20]
    refs = {id(r["messages"][:-1][-1]): r["messages"][-1]["content"] for r in helpful}
    monkeypatch.setattr(ev, "answer", lambda m, t, prompts, **k: [refs[id(p[-1])] for p in prompts])
    assert ev.task_accuracy(None, None, helpful)["accuracy"] == 1.0
    monkeypatch.setattr(ev, "answer", lambda m, t, prompts, **k: ["I can't help with that."] * len(prompts))
    assert ev.task_accuracy(None, None, helpful)["accuracy"] == 0.0
    rates = ev.safety_rates(None, None, splits["unsafe_eval"][:10], splits["borderline_eval"][:10])
    assert rates["refusal_rate"] == 1.0 and rates["false_refusal_rate"] == 1.0 and rates["violation_rate"] == 0.0


def test_constraint_adherence_is_measured_per_turn(monkeypatch):
    record = {"messages": [{"role": "user", "content": f"What is {i} + 1?"} for i in range(6)],
              "constraints": ["hobby:fishing"], "short": True}
    calls = {"turn": 0}

    def answers(model, tok, prompts, **k):  # obeys at turns 1-2, forgets afterwards
        calls["turn"] += 1
        text = "The answer is 2."
        return [apply_constraints([constraint("hobby:fishing")], text) if calls["turn"] <= 2 else text] * len(prompts)

    monkeypatch.setattr(ev, "answer", answers)
    monkeypatch.setattr("llamaforge.chat_format.encode_dialog",
                        lambda tok, d: type("E", (), {"tokens": [0] * 10 * len(d)})())
    model = type("M", (), {"args": type("A", (), {"max_seq_len": 1000})()})()
    out = ev.constraint_adherence(model, None, [record, record])
    assert out["by_turn"] == {1: 1.0, 2: 1.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0}
    assert out["n_by_turn"] == {t: 2 for t in range(1, 7)}
    assert out["transcript"][0] == {"role": "system", "content": "Hobby: fishing."}
