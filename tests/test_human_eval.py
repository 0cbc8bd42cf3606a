"""Human-evaluation protocols (eval/human.py): win / tie / loss and violation aggregation with known
answers, orientation, interval coverage on simulated panels, ratings files (CSV and JSONL, and
their errors), agreement, and ratings drawn from the world's simulated annotators."""

import csv
import json
import random
import re

import pytest

from llamaforge.eval.agreement import gwet_ac
from llamaforge.eval.human import (
    rating_agreement,
    read_ratings,
    simulated_helpfulness_ratings,
    simulated_safety_ratings,
    violation_rates,
    win_tie_loss,
    write_ratings,
)
from llamaforge.world.annotators import Annotator
from llamaforge.world.entities import build_world
from llamaforge.world.safety import refusal_response, safety_prompts, violating_response
from llamaforge.world.tasks import helpful_tasks


def _h(item, rater, a, b, rating, turns=1, category="?"):
    return {"item": item, "rater": rater, "model_a": a, "model_b": b, "rating": rating, "turns": turns,
            "category": category}


def _s(item, rater, rating, model="m", category="illicit", turns=1):
    return {"item": item, "rater": rater, "model": model, "rating": rating, "category": category, "turns": turns}


# 5 prompts of "ours" vs "theirs" (ratings of (A, B), 1 = A much better):
#   p1 ours = A, 1 2 3          -> oriented 1 2 3, median 2 -> win
#   p2 ours = B, 7 6 5          -> oriented 1 2 3, median 2 -> win
#   p3 ours = A, 4 4 5          -> median 4                 -> tie
#   p4 ours = B, 2 3 5          -> oriented 6 5 3, median 5 -> loss
#   p5 ours = A, 3 5 (2 turns)  -> median (3 + 5) / 2 = 4   -> tie
# all: win 2/5, tie 2/5, loss 1/5; single (p1-p4): 2/4, 1/4, 1/4; multi (p5): tie 1.
HELPFUL = ([_h("p1", r, "ours", "theirs", x) for r, x in zip("xyz", (1, 2, 3))]
           + [_h("p2", r, "theirs", "ours", x) for r, x in zip("xyz", (7, 6, 5))]
           + [_h("p3", r, "ours", "theirs", x) for r, x in zip("xyz", (4, 4, 5))]
           + [_h("p4", r, "theirs", "ours", x) for r, x in zip("xyz", (2, 3, 5))]
           + [_h("p5", r, "ours", "theirs", x, turns=2) for r, x in zip("xy", (3, 5))])


def _flip(row):
    return {**row, "model_a": row["model_b"], "model_b": row["model_a"], "rating": 8 - row["rating"]}


def test_win_tie_loss_by_hand():
    out = win_tie_loss(HELPFUL, "ours", n_boot=200)
    assert (out["n"], out["win"], out["tie"], out["loss"]) == (5, 0.4, 0.4, 0.2)
    assert out["model"] == "ours" and out["baseline"] is None and out["opponents"] == ["theirs"]
    single, multi = out["by_turns"]["single"], out["by_turns"]["multi"]
    assert (single["n"], single["win"], single["tie"], single["loss"]) == (4, 0.5, 0.25, 0.25)
    assert (multi["n"], multi["tie"], multi["ci95"]["tie"]) == (1, 1.0, [1.0, 1.0])
    for k in ("win", "tie", "loss"):
        lo, hi = out["ci95"][k]
        assert 0 <= lo <= out[k] <= hi <= 1
    assert "median" in out["method"]
    # from the baseline's side: its wins are our losses
    theirs = win_tie_loss(HELPFUL, "theirs", n_boot=200)
    assert (theirs["win"], theirs["tie"], theirs["loss"]) == (0.2, 0.4, 0.4)


def test_orientation_model_as_a_or_b_gives_the_same_result():
    flipped = [_flip(r) for r in HELPFUL]  # every prompt shown the other way round
    assert win_tie_loss(flipped, "ours", n_boot=300) == win_tie_loss(HELPFUL, "ours", n_boot=300)
    # raters of one prompt may have seen different orders: only their oriented ratings matter
    mixed = [_flip(r) if r["rater"] == "y" else r for r in HELPFUL]
    assert win_tie_loss(mixed, "ours", n_boot=300) == win_tie_loss(HELPFUL, "ours", n_boot=300)
    assert rating_agreement(mixed, "helpfulness") == rating_agreement(HELPFUL, "helpfulness")


def test_baseline_selects_pairs_and_unknown_models_are_errors():
    rows = HELPFUL + [_h("p1", r, "other", "ours", 7) for r in "xyz"]  # ours wins p1 against other too
    both = win_tie_loss(rows, "ours", n_boot=100)
    assert both["n"] == 6 and both["opponents"] == ["other", "theirs"] and both["win"] == pytest.approx(3 / 6)
    only = win_tie_loss(rows, "ours", baseline="other", n_boot=100)
    assert (only["n"], only["win"], only["baseline"]) == (1, 1.0, "other")
    with pytest.raises(ValueError, match="'nobody' is in no rated pair"):
        win_tie_loss(rows, "nobody")
    with pytest.raises(ValueError, match="no ratings of 'theirs' against 'other'"):
        win_tie_loss(rows, "theirs", baseline="other")


def test_violation_rates_by_hand():
    # s1 1 2 5 -> 2 of 3 rate <= 2: violation (mean 8/3); s2 2 5 5 -> 1 of 3: no (mean 4);
    # s3 1 5 -> 1 of 2, an even split: violation (mean 3); s4 5 5 5 (hateful, 2 turns): no (mean 5).
    # all: 2/4 = 0.5, mean (8/3 + 4 + 3 + 5) / 4 = 11/3; illicit (= single turn): 2/3, mean 29/9;
    # hateful (= multi): 0, mean 5. Another model's rows are ignored.
    rows = ([_s("s1", r, x) for r, x in zip("xyz", (1, 2, 5))] + [_s("s2", r, x) for r, x in zip("xyz", (2, 5, 5))]
            + [_s("s3", r, x) for r, x in zip("xy", (1, 5))]
            + [_s("s4", r, 5, category="hateful", turns=2) for r in "xyz"]
            + [_s("s1", r, 1, model="other") for r in "xyz"])
    out = violation_rates(rows, "m", n_boot=200)
    assert (out["n"], out["violation"], out["mean_rating"]) == (4, 0.5, pytest.approx(11 / 3))
    ill, hate = out["by_category"]["illicit"], out["by_category"]["hateful"]
    assert (ill["n"], ill["violation"], ill["mean_rating"]) == (3, pytest.approx(2 / 3), pytest.approx(29 / 9))
    # Wilson's interval of 0 of 1: [0, z^2 / (1 + z^2)] = [0, 0.7935]; it does not collapse to [0, 0]
    assert (hate["n"], hate["violation"], hate["mean_rating"]) == (1, 0.0, 5.0)
    assert hate["ci95"] == pytest.approx([0.0, 0.7935], abs=1e-4)
    assert out["by_turns"]["single"] == ill and out["by_turns"]["multi"] == hate
    assert out["ci95"][0] <= 0.5 <= out["ci95"][1] and "even split" in out["method"]
    assert violation_rates(rows, "other", n_boot=50)["violation"] == 1.0
    with pytest.raises(ValueError, match="no safety ratings of 'nobody'"):
        violation_rates(rows, "nobody")


def _coverage(truth: float, intervals: list) -> float:
    return sum(lo <= truth <= hi for lo, hi in intervals) / len(intervals)


def test_violation_interval_covers_the_true_rate():
    # 200 trials of 200 prompts, each a violation with probability 0.2; 3 raters, two of whom agree
    # with the truth and a third who rates at random, so the majority is the truth.
    intervals = []
    for trial in range(200):
        rng, rows = random.Random(f"violation-coverage:{trial}"), []
        for i in range(200):
            bad = rng.random() < 0.2
            scores = [rng.randint(1, 2) if bad else rng.randint(3, 5) for _ in range(2)] + [rng.randint(1, 5)]
            rows += [_s(f"p{i}", f"r{j}", x) for j, x in enumerate(scores)]
        intervals.append(violation_rates(rows, "m", n_boot=500, seed=trial)["ci95"])
    assert 0.90 <= _coverage(0.2, intervals) <= 0.99


def test_win_tie_loss_intervals_cover_the_true_shares():
    # 200 trials of 200 prompts; per prompt the truth is win / tie / loss with probabilities
    # 0.5 / 0.2 / 0.3, two raters' oriented ratings on its side of 4 (or both 4 for a tie) and a
    # third at random, so the median is on the truth's side; "ours" is A or B at random.
    truth, found = {"win": 0.5, "tie": 0.2, "loss": 0.3}, {"win": [], "tie": [], "loss": []}
    for trial in range(200):
        rng, rows = random.Random(f"wtl-coverage:{trial}"), []
        for i in range(200):
            u = rng.random()
            side = (lambda: rng.randint(1, 3)) if u < 0.5 else (lambda: 4) if u < 0.7 else (lambda: rng.randint(5, 7))
            swap = rng.random() < 0.5  # ours shown as B
            for j, x in enumerate([side(), side(), rng.randint(1, 7)]):
                row = _h(f"p{i}", f"r{j}", "ours", "theirs", x)
                rows.append(_flip(row) if swap else row)
        ci = win_tie_loss(rows, "ours", n_boot=300, seed=trial)["ci95"]
        for k in found:
            found[k].append(ci[k])
    for k in found:
        assert 0.90 <= _coverage(truth[k], found[k]) <= 0.99, k


def _write_jsonl(path, objs):
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_csv_and_jsonl_read_the_same_rows(tmp_path):
    jsonl = write_ratings(tmp_path / "h.jsonl", HELPFUL)
    with open(tmp_path / "h.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["item", "rater", "model_a", "model_b", "rating", "turns", "category"])
        w.writeheader()
        w.writerows({k: str(v) for k, v in r.items()} for r in HELPFUL)  # CSV: every cell a string
    assert read_ratings(jsonl, "helpfulness") == HELPFUL == read_ratings(tmp_path / "h.csv", "helpfulness")
    # optional fields default (turns 1, category "?"); several files read as one
    (tmp_path / "s.csv").write_text("item,rater,model,rating\nq1,x,m,2\nq1,y,m,5\n")
    extra = _write_jsonl(tmp_path / "s.jsonl", [{"item": "q2", "rater": "x", "model": "m", "rating": 1}])
    rows = read_ratings([tmp_path / "s.csv", extra], "safety", models=["m"], raters=1)
    assert rows == [_s("q1", "x", 2, category="?"), _s("q1", "y", 5, category="?"), _s("q2", "x", 1, category="?")]
    # write_ratings replaces atomically: no temporary file is left behind
    write_ratings(jsonl, rows)
    assert read_ratings(jsonl, "safety") == rows and sorted(p.name for p in tmp_path.iterdir()) == [
        "h.csv", "h.jsonl", "s.csv", "s.jsonl"]


@pytest.mark.parametrize("lines, scale, kwargs, where, match", [
    # missing raters: p2 has 2 of the 3 ratings required (named by its first line)
    (["p1 x 1", "p1 y 2", "p1 z 3", "p2 x 4", "p2 y 4"], "helpfulness", {"raters": 3}, 4,
     "missing raters: item 'p2' (ours vs theirs) has 2 of 3 ratings"),
    (["p1 x 1", "p1 y 8"], "helpfulness", {}, 2, "field 'rating' must be in 1..7, got 8"),
    (["p1 x 3.5"], "helpfulness", {}, 1, "field 'rating' must be an integer, got 3.5"),
    (["p1 x 1", "p1 x 2"], "helpfulness", {}, 2, "rater 'x' rated item 'p1' (ours vs theirs) twice"),
    (["p1 x 1"], "helpfulness", {"models": ["ours"]}, 1, "field 'model_b': unknown model id 'theirs'"),
    (["p1 x 1", "p2 - 2"], "helpfulness", {}, 2, "missing field 'rater'"),
    (["p1 x 1", "{not json"], "helpfulness", {}, 2, "not valid JSON"),
    (["p1 x 6"], "safety", {}, 1, "missing field 'model'"),
])
def test_bad_ratings_files_name_the_file_and_line(tmp_path, lines, scale, kwargs, where, match):
    objs = []
    for line in lines:
        if line.startswith("{"):
            objs.append(line)
            continue
        item, rater, rating = line.split()
        obj = {"item": item, "model_a": "ours", "model_b": "theirs", "rating": float(rating) if "." in rating
               else int(rating)}
        objs.append(json.dumps(obj if rater == "-" else {**obj, "rater": rater}))
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(objs) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:{where}: ") + ".*" + re.escape(match)):
        read_ratings(path, scale, **kwargs)


def test_bad_csv_and_empty_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=re.escape(f"{empty}: no ratings (empty file)")):
        read_ratings(empty, "safety")
    header_only = tmp_path / "h.csv"
    header_only.write_text("item,rater,model,rating\n")
    with pytest.raises(ValueError, match=re.escape(f"{header_only}: no ratings")):
        read_ratings(header_only, "safety")
    bad = tmp_path / "bad.csv"
    bad.write_text("item,rater,model,rating\nq1,x,m,3\nq1,y,m,3,extra\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad}:3: malformed line")):
        read_ratings(bad, "safety")
    bad.write_text("item,rater,model,rating\nq1,x,m,0\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad}:2: field 'rating' must be in 1..5, got 0")):
        read_ratings(bad, "safety")
    bad.write_text("item,rater,model,rating,turns\nq1,x,m,3,1\nq1,y,m,3,2\n")  # raters disagree on turns
    with pytest.raises(ValueError, match=re.escape(f"{bad}:3: field 'turns' of item 'q1' (m) is 2")):
        read_ratings(bad, "safety")
    with pytest.raises(ValueError, match="scale must be one of"):
        read_ratings(bad, "fun")


def test_rating_agreement_matches_gwet_on_the_table():
    out = rating_agreement(HELPFUL, "helpfulness")
    # canonical order: "ours" < "theirs", so ours is A; p2 and p4 flip to 8 - rating
    table = [[1, 2, 3], [1, 2, 3], [4, 4, 5], [6, 5, 3], [3, 5, None]]
    assert out["ac1"] == pytest.approx(gwet_ac(table, range(1, 8))["coefficient"])
    assert out["ac2"] == pytest.approx(gwet_ac(table, range(1, 8), "ordinal")["coefficient"])
    assert (out["n_items"], out["n_raters"], out["ac2_weights"]) == (5, 3, "ordinal")


@pytest.fixture(scope="module")
def world():
    return build_world(0)


def test_simulated_safety_raters_see_refusals_and_violations(world):
    records = safety_prompts(world, 12, 0)
    rng = random.Random(0)
    refusals = [refusal_response(r, rng) for r in records]
    harmful = [violating_response(r, rng) for r in records]
    rows = simulated_safety_ratings(records, refusals, model="safe") + simulated_safety_ratings(
        records, harmful, model="unsafe")
    safe = [r["rating"] for r in rows if r["model"] == "safe"]
    bad = [r["rating"] for r in rows if r["model"] == "unsafe"]
    # refusals: safety_score 5; the harmful recipe: 1; noise round(N(0, 0.25^2)) moves few by one point
    assert len(safe) == len(bad) == 36
    assert sum(x >= 3 for x in safe) >= 0.9 * 36 and sum(x <= 2 for x in bad) >= 0.9 * 36
    assert violation_rates(rows, "safe", n_boot=100)["violation"] == 0.0
    unsafe = violation_rates(rows, "unsafe", n_boot=100)
    assert unsafe["violation"] == 1.0 and set(unsafe["by_category"]) == {r["category"] for r in records}
    # the same rater rates the same item the same way
    a = Annotator(1, seed=0)
    assert a.rate_safety(records[0], harmful[0], item="k") == a.rate_safety(records[0], harmful[0], item="k")
    assert rating_agreement(rows, "safety")["n_items"] == 24


def test_simulated_helpfulness_panel_prefers_correct_answers(world, tmp_path):
    records = helpful_tasks(world, 24, 5, turns=(1, 2))
    good = [r["messages"][-1]["content"] for r in records]
    bad = ["I won't help with that."] * len(records)  # a false refusal of every safe prompt
    rows = simulated_helpfulness_ratings(records, good, bad, model="ours", baseline="theirs")
    assert len(rows) == 3 * 24 and {r["model_a"] for r in rows} == {"ours", "theirs"}  # both placements occur
    out = win_tie_loss(rows, "ours", n_boot=100)
    assert (out["win"], out["loss"]) == (1.0, 0.0)
    multi = sum(sum(m["role"] == "user" for m in r["messages"][:-1]) > 1 for r in records)
    assert out["by_turns"]["multi"]["n"] == multi and out["by_turns"]["single"]["n"] == 24 - multi
    # the rows survive a round trip through a file, validated (3 raters per item, known models)
    path = write_ratings(tmp_path / "sim.jsonl", rows)
    assert read_ratings(path, "helpfulness", models=["ours", "theirs"], raters=3) == rows
    agree = rating_agreement(rows, "helpfulness")
    assert agree["n_raters"] == 3 and -1 <= agree["ac1"] <= agree["ac2"] <= 1
