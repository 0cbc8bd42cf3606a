"""Win rate judged by the simulated annotators (eval/winrate.py): who wins, ties, order swapping,
the interval; and the task / safety scorers of given answers agree with the generating ones."""

import math

import pytest

from llamaforge.eval.stats import wilson as _interval
from llamaforge.eval.winrate import judge_pairs
from llamaforge.world.entities import build_world
from llamaforge.world.tasks import helpful_tasks


@pytest.fixture(scope="module")
def records():
    return helpful_tasks(build_world(0), 60, 5, turns=1)


def test_correct_answers_beat_refusals_in_either_display_order(records):
    good = [r["messages"][-1]["content"] for r in records]
    bad = ["I won't help with that."] * len(records)  # a false refusal of every safe prompt
    ours = judge_pairs(records, good, bad, seed=0)
    theirs = judge_pairs(records, bad, good, seed=0)
    # a correct answer against a (false) refusal is >= 0.45 apart in quality: every rater sees it
    assert ours["win"] == 1.0 and ours["win_rate"] == 1.0 and ours["loss"] == 0.0
    assert theirs["loss"] == 1.0 and theirs["win_rate"] == 0.0
    # the order is random per prompt (not always A): both orders occur among 60 prompts
    assert ours["n"] == 60 and ours["identical"] == 0


def test_identical_answers_are_ties_and_leave_the_win_rate_undefined(records):
    same = [r["messages"][-1]["content"] for r in records]
    out = judge_pairs(records, same, same)
    assert out["tie"] == 1.0 and out["identical"] == len(records) and math.isnan(out["win_rate"])
    with pytest.raises(ValueError, match="judge_pairs"):
        judge_pairs(records, same, same[:-1])


def test_wilson_interval_by_hand():
    # p = 0.8, n = 100, z = 1.96: centre (0.8 + 1.96^2/200) / (1 + 1.96^2/100) = 0.819208 / 1.038416
    # = 0.788902; half 1.96 * sqrt(0.0016 + 1.96^2/40000) / 1.038416 = 1.96 * 0.0412 / 1.038416 = 0.077766
    lo, hi = _interval(80, 100)
    assert lo == pytest.approx(0.711, abs=1e-3) and hi == pytest.approx(0.867, abs=1e-3)
    assert all(math.isnan(x) for x in _interval(0, 0))
