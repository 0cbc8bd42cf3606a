"""Confidence intervals shared by the evaluations (pure functions, no torch).

    wilson(k, n)                         Wilson score interval of a proportion k / n
    bootstrap(values, stat, ...)         percentile bootstrap interval of ``stat`` over resampled items

The paper reports win / tie / loss and violation rates with 95% confidence intervals (sec. 3.4.2,
4.4) without naming a method; ours: a proportion of independent decisions (a judge's wins among
decided pairs) gets Wilson's interval, and a statistic of per-prompt outcomes (win / tie / loss
shares, violation %, mean ratings) the percentile bootstrap over prompts, which resamples whole
prompts and so keeps each prompt's raters together.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["wilson", "bootstrap", "Z95"]

T = TypeVar("T")
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of the proportion ``k / n`` ((nan, nan) for n = 0).

    Args:
        k: successes, 0 <= k <= n.
        n: trials.
        z: the normal quantile (1.96 for 95%).
    Returns:
        (low, high) in [0, 1].
    """
    if not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def bootstrap(values: Sequence[T], stat: Callable[[Sequence[T]], float] | None = None, *, n_boot: int = 2000,
              confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(values)``: ``values`` (one entry per prompt) resampled
    with replacement ``n_boot`` times, the interval the (1 - c)/2 and (1 + c)/2 quantiles of the
    resampled statistics (linear interpolation). (nan, nan) for no values.

    Args:
        values: per-item outcomes (any type ``stat`` understands; numbers when ``stat`` is None).
        stat: the statistic; None: the mean, computed for all resamples at once (numpy).
        n_boot: resamples (2000 gives the interval's ends to about +-0.3 points at n = 500).
        confidence: the interval's coverage.
        seed: the resampling's seed (the interval is deterministic given it).
    Returns:
        (low, high).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"bootstrap: confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"bootstrap: n_boot must be >= 1, got {n_boot}")
    if not len(values):
        return float("nan"), float("nan")
    n = len(values)
    qs = ((1 - confidence) / 2, (1 + confidence) / 2)
    if stat is None:
        import numpy as np

        rng = np.random.default_rng(random.Random(f"llamaforge.eval.stats.bootstrap:{seed}").getrandbits(64))
        x = np.asarray(values, dtype=np.float64)
        means = x[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)  # [n_boot]
        lo, hi = np.quantile(means, qs)  # linear interpolation, as below
        return float(lo), float(hi)
    rng_py = random.Random(f"llamaforge.eval.stats.bootstrap:{seed}")
    draws = sorted(stat([values[rng_py.randrange(n)] for _ in range(n)]) for _ in range(n_boot))

    def quantile(q: float) -> float:
        pos = q * (len(draws) - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(draws) - 1)
        return draws[lo] + (draws[hi] - draws[lo]) * (pos - lo)

    return quantile(qs[0]), quantile(qs[1])
