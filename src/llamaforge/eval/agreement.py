"""Inter-rater agreement: Gwet's AC1 and AC2 (pure functions, no torch), as the paper reports for its
human evaluations (sec. 3.4.2, 4.4; Gwet 2008, and chapter 3 of Gwet's Handbook of Inter-Rater
Reliability, 4th ed., 2014).

    gwet_ac(table, categories, weights)  {"coefficient", "pa", "pe", "n_items", "n_raters", ...}
    gwet_ac1(table, categories)          AC1: nominal (identity weights)
    gwet_ac2(table, categories, weights) AC2: weighted ("linear", "quadratic", "ordinal", ...)
    weight_matrix(categories, weights)   the q x q agreement weights

A table is items x raters, one rating per cell and None where a rater did not rate the item. With
r_ik the number of raters who put item i in category k, r_i = sum_k r_ik, r*_ik = sum_l w_kl r_il:

    pa   = mean over the n2 items with r_i >= 2 of  sum_k r_ik (r*_ik - 1) / (r_i (r_i - 1))
    pi_k = mean over the n items with r_i >= 1 of  r_ik / r_i
    pe   = T_w / (q (q - 1)) * sum_k pi_k (1 - pi_k)         (T_w = sum of all weights)
    AC   = (pa - pe) / (1 - pe)

So, as in Gwet's handbook (and his R package irrCAC), an item rated by one rater only adds to the
category shares pi_k but not to pa, and an item no one rated is ignored. With one category pe = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["WEIGHTS", "weight_matrix", "gwet_ac", "gwet_ac1", "gwet_ac2"]

WEIGHTS = ("identity", "linear", "quadratic", "ordinal", "radical")


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def weight_matrix(categories: Sequence, weights: str = "identity") -> list[list[float]]:
    """Gwet's agreement weights w_kl in [0, 1] between categories k and l (w_kk = 1).

    Numeric categories use their values x_k; others their positions 1..q (so does "ordinal" always):
        identity   1 if k == l else 0 (the unweighted coefficient; "unweighted" is an alias)
        linear     1 - |x_k - x_l| / (x_max - x_min)
        quadratic  1 - (x_k - x_l)^2 / (x_max - x_min)^2
        radical    1 - sqrt(|x_k - x_l|) / sqrt(x_max - x_min)
        ordinal    1 - M_kl / max M, M_kl = C(n_kl, 2) with n_kl = |rank_k - rank_l| + 1 (the number
                   of categories from k to l): it only uses the order of the categories.

    Args:
        categories: the q categories in scale order.
        weights: one of `WEIGHTS`.

    Returns:
        The q x q matrix as nested lists.
    """
    name = "identity" if weights == "unweighted" else weights
    if name not in WEIGHTS:
        raise ValueError(f"weight_matrix: weights must be one of {WEIGHTS}, got {weights!r}")
    q = len(categories)
    if q == 0:
        raise ValueError("weight_matrix: no categories")
    ranks = list(range(1, q + 1))
    x = [float(c) for c in categories] if all(_is_number(c) for c in categories) else ranks
    span = max(x) - min(x)

    def w(k: int, l: int) -> float:
        if k == l:
            return 1.0
        if name == "identity" or q == 1:
            return 0.0
        d = abs(x[k] - x[l])
        if name == "linear":
            return 1 - d / span
        if name == "quadratic":
            return 1 - d * d / (span * span)
        if name == "radical":
            return 1 - math.sqrt(d) / math.sqrt(span)
        n_kl = abs(ranks[k] - ranks[l]) + 1  # ordinal
        return 1 - (n_kl * (n_kl - 1) / 2) / (q * (q - 1) / 2)

    return [[w(k, l) for l in range(q)] for k in range(q)]


def _categories(table: Sequence[Sequence[object]], categories: Sequence | None) -> list:
    """The given categories (checked for repeats), else the distinct ratings, sorted when sortable."""
    if categories is not None:
        cats = list(categories)
        if not cats:
            raise ValueError("gwet_ac: categories is empty")
        if len(set(cats)) != len(cats):
            raise ValueError(f"gwet_ac: categories has repeats: {cats!r}")
        return cats
    seen = list(dict.fromkeys(v for row in table for v in row if v is not None))
    try:
        return sorted(seen)
    except TypeError:  # mixed types: keep the order of first appearance
        return seen


def gwet_ac(table: Sequence[Sequence[object | None]], categories: Sequence | None = None,
            weights: str = "identity") -> dict:
    """Gwet's agreement coefficient of an items x raters table (formulas in the module docstring).

    Args:
        table: one row per item, one column per rater, a rating or None (missing) per cell; rows
            may be shorter than the longest (their last raters missing).
        categories: every category the raters could choose, in scale order (recommended: unused
            categories change pe). Default: the distinct ratings seen, sorted.
        weights: "identity" (AC1) or a weighting of `weight_matrix` (AC2).

    Returns:
        {"coefficient", "pa", "pe", "n_items": items rated by >= 1 rater (the pi_k base),
        "n_items_pa": items rated by >= 2 (the pa base), "n_raters": raters with >= 1 rating,
        "weights", "categories"}.

    Raises:
        ValueError: an empty table, no ratings, no item rated by two raters, or a rating that is
            not in `categories` (naming its item and rater).
    """
    if len(table) == 0:
        raise ValueError("gwet_ac: the table is empty (no items)")
    cats = _categories(table, categories)
    if not cats:
        raise ValueError("gwet_ac: the table holds no ratings (every cell is None)")
    index = {c: k for k, c in enumerate(cats)}
    w = weight_matrix(cats, weights)
    q = len(cats)
    counts, raters = [], set()  # counts: one [r_i1 .. r_iq] per item rated at least once
    for i, row in enumerate(table):
        r_i = [0] * q
        for j, v in enumerate(row):
            if v is None:
                continue
            if v not in index:
                raise ValueError(f"gwet_ac: item {i}, rater {j}: rating {v!r} is not one of the "
                                 f"categories {cats!r}")
            r_i[index[v]] += 1
            raters.add(j)
        if sum(r_i):
            counts.append(r_i)
    if not counts:
        raise ValueError("gwet_ac: the table holds no ratings (every cell is None)")
    pa_terms = []
    for r_i in counts:
        n_i = sum(r_i)
        if n_i < 2:
            continue
        weighted = [sum(w[k][l] * r_i[l] for l in range(q)) for k in range(q)]  # r*_ik
        pa_terms.append(sum(r_i[k] * (weighted[k] - 1) for k in range(q)) / (n_i * (n_i - 1)))
    if not pa_terms:
        raise ValueError("gwet_ac: no item was rated by two or more raters, so there is no agreement "
                         "to measure")
    pa = sum(pa_terms) / len(pa_terms)
    pi = [sum(r_i[k] / sum(r_i) for r_i in counts) / len(counts) for k in range(q)]
    t_w = sum(map(sum, w))
    pe = t_w * sum(p * (1 - p) for p in pi) / (q * (q - 1)) if q >= 2 else 0.0
    assert pe < 1, pe  # pe <= T_w (1 - 1/q) / (q (q - 1)) < 1 for weights in [0, 1]
    return {"coefficient": (pa - pe) / (1 - pe), "pa": pa, "pe": pe, "n_items": len(counts),
            "n_items_pa": len(pa_terms), "n_raters": len(raters),
            "weights": "identity" if weights == "unweighted" else weights, "categories": cats}


def gwet_ac1(table: Sequence[Sequence[object | None]], categories: Sequence | None = None) -> dict:
    """Gwet's AC1 (nominal categories): `gwet_ac` with identity weights."""
    return gwet_ac(table, categories, "identity")


def gwet_ac2(table: Sequence[Sequence[object | None]], categories: Sequence | None = None,
             weights: str = "quadratic") -> dict:
    """Gwet's AC2 (ordered categories): `gwet_ac` with partial-agreement weights (default quadratic,
    Gwet's usual choice for an ordinal scale; "ordinal" uses the order alone)."""
    if weights in ("identity", "unweighted"):
        raise ValueError("gwet_ac2: identity weights give AC1; use gwet_ac1")
    return gwet_ac(table, categories, weights)
