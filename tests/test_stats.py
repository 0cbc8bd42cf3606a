"""The evaluation intervals: Wilson's by hand, the percentile bootstrap (vectorised mean and any statistic)."""

import math

import pytest

from llamaforge.eval.stats import bootstrap, wilson


def test_wilson_by_hand():
    # p = 0.3, n = 100, z = 1.96: centre (0.3 + 0.019208) / 1.038415, half 1.96 * sqrt(0.0021 + 0.00009604) / 1.038415
    assert wilson(30, 100) == pytest.approx((0.2189, 0.3958), abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert all(math.isnan(x) for x in wilson(0, 0))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(5, 3)


def test_bootstrap_mean_and_statistic():
    values = [1] * 30 + [0] * 70
    fast = bootstrap(values, n_boot=4000, seed=1)
    slow = bootstrap(values, lambda v: sum(v) / len(v), n_boot=4000, seed=1)
    # both near the normal interval 0.3 -+ 1.96 * sqrt(0.21 / 100) = (0.210, 0.390)
    for lo, hi in (fast, slow):
        assert lo == pytest.approx(0.21, abs=0.02) and hi == pytest.approx(0.39, abs=0.02)
    floats = [math.sin(i) for i in range(50)]  # shares of 100 items land on the same quantiles for any seed
    assert bootstrap(floats, seed=1) == bootstrap(floats, seed=1) != bootstrap(floats, seed=2)
    assert bootstrap([0.5] * 10) == (0.5, 0.5)  # nothing varies
    assert all(math.isnan(x) for x in bootstrap([]))
    median = bootstrap(list(range(101)), lambda v: sorted(v)[len(v) // 2], n_boot=500)
    assert median[0] < 50 < median[1]
    with pytest.raises(ValueError, match="confidence"):
        bootstrap(values, confidence=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap(values, n_boot=0)
