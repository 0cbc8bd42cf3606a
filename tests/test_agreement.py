"""Gwet's AC1 / AC2 (eval/agreement.py) against published worked examples, plus a hand-computed one.

Published figures: the R package irrCAC by K. L. Gwet, which follows his Handbook of Inter-Rater
Reliability (4th ed., 2014): its README / overview vignette (github.com/kgwet/irrCAC README.md,
cran.r-project.org/web/packages/irrCAC/vignettes/overview.html) and its weighting vignette
(vignettes/weighting.html, "Weighting for a dataset of raw ratings"). Datasets:
    cac.raw4raters    12 subjects x 4 raters, categories 1..5, missing ratings (Handbook p. 120)
    distrib.6raters   15 subjects, 6 raters each, 5 categories (a distribution of raters)
    cont3x3abstractors  2 raters, 100 subjects, a 3 x 3 contingency table
"""

import pytest

from llamaforge.eval.agreement import gwet_ac, gwet_ac1, gwet_ac2, weight_matrix

N = None
# cac.raw4raters as printed in irrCAC's README (rows = subjects, columns = Rater1..Rater4, NA = None)
RAW4RATERS = [[1, 1, N, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
              [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [N, 5, 5, 5], [N, N, 1, 1], [N, N, 3, N]]


def test_raw4raters_ac1_published():
    # irrCAC README, gwet.ac1.raw(cac.raw4raters): pa 0.8181818, pe 0.1903212, AC1 0.77544
    out = gwet_ac1(RAW4RATERS)
    assert out["pa"] == pytest.approx(0.8181818, abs=5e-8)
    assert out["pe"] == pytest.approx(0.1903212, abs=5e-8)
    assert out["coefficient"] == pytest.approx(0.77544, abs=5e-6)
    # subject 12 has one rating: it counts towards pi_k (n = 12) but not towards pa (11 subjects)
    assert (out["n_items"], out["n_items_pa"], out["n_raters"]) == (12, 11, 4)
    assert out["categories"] == [1, 2, 3, 4, 5]


def test_raw4raters_ac2_quadratic_published():
    # irrCAC weighting vignette, gwet.ac1.raw(cac.raw4raters, weights = "quadratic")$est:
    # pa 0.9753788, pe 0.7137044, AC2 0.914 (printed rounded to 5 decimals: 0.91400)
    out = gwet_ac2(RAW4RATERS, weights="quadratic")
    assert out["pa"] == pytest.approx(0.9753788, abs=5e-8)
    assert out["pe"] == pytest.approx(0.7137044, abs=5e-8)
    assert out["coefficient"] == pytest.approx(0.914, abs=5e-6)


def test_distrib_6raters_ac1_and_ac2_published():
    # irrCAC README, gwet.ac1.dist(distrib.6raters): AC1 0.4448007, pa 0.5511111, pe 0.1914815;
    # weighting vignette, with quadratic.weights(1:5): AC2 0.4837438, pa 0.8544444, pe 0.7180556.
    # Each row: how many of the 6 raters chose categories 1..5; expanded to raw ratings here.
    dist = [[0, 0, 0, 6, 0], [0, 3, 0, 0, 3], [0, 1, 4, 0, 1], [0, 0, 0, 0, 6], [0, 3, 0, 3, 0],
            [2, 0, 4, 0, 0], [0, 0, 4, 0, 2], [2, 0, 3, 1, 0], [2, 0, 0, 4, 0], [0, 0, 0, 0, 6],
            [1, 0, 0, 5, 0], [1, 1, 0, 4, 0], [0, 3, 3, 0, 0], [1, 0, 0, 5, 0], [0, 2, 0, 3, 1]]
    table = [[k + 1 for k in range(5) for _ in range(row[k])] for row in dist]
    ac1, ac2 = gwet_ac1(table), gwet_ac2(table)
    assert (ac1["coefficient"], ac1["pa"], ac1["pe"]) == pytest.approx((0.4448007, 0.5511111, 0.1914815), abs=5e-8)
    assert (ac2["coefficient"], ac2["pa"], ac2["pe"]) == pytest.approx((0.4837438, 0.8544444, 0.7180556), abs=5e-8)


def test_two_raters_contingency_table_published():
    # irrCAC README, gwet.ac1.table(cont3x3abstractors): AC1 0.8493305 (percent agreement 0.89);
    # weighting vignette, quadratic.weights(1:3): AC2 0.9402369 (percent agreement 0.9725).
    # The table (rows rater 1, columns rater 2): 13 0 0 / 0 20 7 / 0 4 56.
    counts = [[13, 0, 0], [0, 20, 7], [0, 4, 56]]
    table = [[i + 1, j + 1] for i in range(3) for j in range(3) for _ in range(counts[i][j])]
    ac1, ac2 = gwet_ac1(table), gwet_ac2(table)
    assert ac1["coefficient"] == pytest.approx(0.8493305, abs=5e-8) and ac1["pa"] == pytest.approx(0.89)
    assert ac2["coefficient"] == pytest.approx(0.9402369, abs=5e-8) and ac2["pa"] == pytest.approx(0.9725)


def test_weight_matrices_match_irrcac_for_three_categories():
    # irrCAC weighting vignette, identity/linear/ordinal/quadratic.weights(1:3): the off-diagonal
    # neighbours weigh 0, 0.5, 0.6666667, 0.75; the two ends always 0.
    for name, near in [("identity", 0.0), ("linear", 0.5), ("ordinal", 2 / 3), ("quadratic", 0.75)]:
        w = weight_matrix([1, 2, 3], name)
        want = [1, near, 0, near, 1, near, 0, near, 1]
        assert [x for row in w for x in row] == pytest.approx(want), name
    # numeric categories use their values: 1, 2, 4 -> linear 1 - |x_k - x_l| / 3
    assert weight_matrix([1, 2, 4], "linear")[0] == pytest.approx([1, 2 / 3, 0])
    assert weight_matrix(["lo", "mid", "hi"], "quadratic")[0] == pytest.approx([1, 0.75, 0])  # by position


def test_hand_computed_linear_and_ordinal_ac2():
    # 3 items x 2 raters on 1..3: (1, 1), (1, 2), (3, 3).
    # r_ik: [2,0,0], [1,1,0], [0,0,2]; pi = ([1,0,0] + [.5,.5,0] + [0,0,1]) / 3 = [1/2, 1/6, 1/3];
    # sum pi (1 - pi) = 1/4 + 5/36 + 2/9 = 22/36 = 11/18.
    # identity: pa = (1 + 0 + 1) / 3 = 2/3; T_w = 3; pe = 3/6 * 11/18 = 11/36; AC1 = (24 - 11)/(36 - 11) = 13/25
    # linear (w_12 = w_23 = 1/2): item 2: r* = [1.5, 1.5, .5], sum r (r* - 1) / 2 = (.5 + .5) / 2 = 1/2;
    #   pa = 2.5/3 = 5/6; T_w = 3 + 4 * 1/2 = 5; pe = 5/6 * 11/18 = 55/108; AC2 = (90 - 55)/(108 - 55) = 35/53
    # ordinal (w_12 = w_23 = 2/3): item 2 gives (2/3 + 2/3)/2 = 2/3; pa = 8/9; T_w = 3 + 8/3 = 17/3;
    #   pe = 17/18 * 11/18 = 187/324; AC2 = (288 - 187)/(324 - 187) = 101/137
    table = [[1, 1], [1, 2], [3, 3]]
    assert gwet_ac1(table, [1, 2, 3])["coefficient"] == pytest.approx(13 / 25)
    lin = gwet_ac2(table, [1, 2, 3], "linear")
    assert (lin["pa"], lin["pe"], lin["coefficient"]) == pytest.approx((5 / 6, 55 / 108, 35 / 53))
    ordn = gwet_ac2(table, [1, 2, 3], "ordinal")
    assert (ordn["pa"], ordn["pe"], ordn["coefficient"]) == pytest.approx((8 / 9, 187 / 324, 101 / 137))


def test_unused_categories_change_pe():
    # pe's factor 1 / (q - 1) and T_w depend on q: the same table with 5 declared categories
    # (identity): pe = 5/(5*4) * 11/18 = 11/72 instead of 11/36
    out = gwet_ac1([[1, 1], [1, 2], [3, 3]], [1, 2, 3, 4, 5])
    assert out["pe"] == pytest.approx(11 / 72) and out["pa"] == pytest.approx(2 / 3)


def test_perfect_agreement_is_one():
    table = [[1, 1, 1], [2, 2, None], [5, 5, 5], [3, None, 3]]
    for weights in ("identity", "linear", "quadratic", "ordinal"):
        assert gwet_ac(table, [1, 2, 3, 4, 5], weights)["coefficient"] == pytest.approx(1.0)
    # a single category used by everyone: pa = 1, pe = 0
    assert gwet_ac1([["x", "x"], ["x", "x"]])["coefficient"] == 1.0


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        gwet_ac1([])
    with pytest.raises(ValueError, match="no ratings"):
        gwet_ac1([[None, None], [None]])
    with pytest.raises(ValueError, match=r"item 1, rater 0: rating 9 is not one of the categories"):
        gwet_ac1([[1, 2], [9, 1]], [1, 2, 3])
    with pytest.raises(ValueError, match="two or more raters"):
        gwet_ac1([[1, None], [None, 2]])
    with pytest.raises(ValueError, match="weights must be one of"):
        gwet_ac([[1, 1]], weights="cubic")
    with pytest.raises(ValueError, match="gwet_ac1"):
        gwet_ac2([[1, 1]], weights="identity")
