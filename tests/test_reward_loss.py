"""Reward-model ranking loss (paper sec. 3.2.2): margins, hand-computed losses, accuracy, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from llamaforge.reward.loss import MARGINS, margin_values, pair_accuracy, ranking_loss
from llamaforge.world.annotators import STRENGTHS

# Three pairs: d = chosen - rejected = [1.5, 0.5, -0.5].
CHOSEN = torch.tensor([2.0, 1.0, 0.5])
REJECTED = torch.tensor([0.5, 0.5, 1.0])
RATINGS = ["significantly better", "slightly better", "negligibly better / unsure"]


def nls(z: float) -> float:
    """-log sigmoid(z) = log(1 + exp(-z)), by hand."""
    return math.log(1.0 + math.exp(-z))


def test_margin_tables_follow_strength_order():
    assert STRENGTHS[0] == "significantly better" and STRENGTHS[-1] == "negligibly better / unsure"
    assert MARGINS["small"] == (1.0, 2 / 3, 1 / 3, 0.0)
    assert MARGINS["large"] == (3.0, 2.0, 1.0, 0.0)
    assert margin_values(list(STRENGTHS), "large").tolist() == [3.0, 2.0, 1.0, 0.0]
    small = margin_values(RATINGS, "small")
    assert small.dtype == torch.float32
    torch.testing.assert_close(small, torch.tensor([1.0, 1 / 3, 0.0]))


@pytest.mark.parametrize("table, expected", [
    # none:  z = d - 0          = [1.5, 0.5, -0.5]
    ("none", [nls(1.5), nls(0.5), nls(-0.5)]),
    # small: z = d - [1, 1/3, 0] = [2 - 0.5 - 1, 1 - 0.5 - 1/3, -0.5] = [0.5, 1/6, -0.5]
    #        -log sigmoid(0.5) = log(1 + e^-0.5) = log(1.60653) = 0.47408
    ("small", [nls(0.5), nls(1 / 6), nls(-0.5)]),
    # large: z = d - [3, 1, 0]   = [-1.5, -0.5, -0.5]
    #        -log sigmoid(-1.5) = log(1 + e^1.5) = log(5.48169) = 1.70141
    ("large", [nls(-1.5), nls(-0.5), nls(-0.5)]),
])
def test_ranking_loss_by_hand(table, expected):
    margin = margin_values(RATINGS, table)
    per_pair = ranking_loss(CHOSEN, REJECTED, margin, reduction="none")
    torch.testing.assert_close(per_pair, torch.tensor(expected))
    torch.testing.assert_close(ranking_loss(CHOSEN, REJECTED, margin), torch.tensor(sum(expected) / 3))
    torch.testing.assert_close(ranking_loss(CHOSEN, REJECTED, margin, reduction="sum"), torch.tensor(sum(expected)))


def test_spot_values():
    # log(1 + e^-0.5) = log(1.6065307) = 0.4740770; log(1 + e^1.5) = log(5.4816891) = 1.7014132
    small = ranking_loss(CHOSEN, REJECTED, margin_values(RATINGS, "small"), reduction="none")
    large = ranking_loss(CHOSEN, REJECTED, margin_values(RATINGS, "large"), reduction="none")
    assert abs(small[0].item() - 0.4740770) < 1e-6
    assert abs(large[0].item() - 1.7014132) < 1e-6


def test_no_margin_equals_zero_margin():
    zero = margin_values(RATINGS, "none")
    torch.testing.assert_close(ranking_loss(CHOSEN, REJECTED), ranking_loss(CHOSEN, REJECTED, zero))


def test_stable_for_large_gaps_and_fp32_for_bf16():
    chosen = torch.tensor([200.0, -200.0], dtype=torch.bfloat16)
    rejected = torch.tensor([-200.0, 200.0], dtype=torch.bfloat16)
    loss = ranking_loss(chosen, rejected, reduction="none")
    assert loss.dtype == torch.float32
    # z = 400 -> log(1 + e^-400) ~ 0;  z = -400 -> log(1 + e^400) ~ 400
    torch.testing.assert_close(loss, torch.tensor([0.0, 400.0]))


def test_gradient_pushes_chosen_up():
    chosen = CHOSEN.clone().requires_grad_()
    ranking_loss(chosen, REJECTED, margin_values(RATINGS)).backward()
    # d/dz -log sigmoid(z) = -(1 - sigmoid(z)) = -1 / (1 + e^z) < 0, divided by 3 for the mean
    z = [0.5, 1 / 6, -0.5]
    torch.testing.assert_close(chosen.grad, torch.tensor([-1 / (1 + math.exp(v)) / 3 for v in z]))


def test_pair_accuracy_is_strict():
    acc = pair_accuracy(torch.tensor([1.0, 0.5, 0.2]), torch.tensor([0.0, 0.5, 0.3]))
    assert acc.dtype == torch.bool and acc.tolist() == [True, False, False]


def test_bad_inputs():
    with pytest.raises(ValueError, match="'huge'.*known tables"):
        margin_values(RATINGS, "huge")
    with pytest.raises(ValueError, match="'much better'.*known ratings"):
        margin_values(["better", "much better"])
    with pytest.raises(ValueError, match="single string"):
        margin_values("better")
    with pytest.raises(ValueError, match="same shape"):
        ranking_loss(CHOSEN, REJECTED[:2])
    with pytest.raises(ValueError, match="margin"):
        ranking_loss(CHOSEN, REJECTED, torch.zeros(2))
    with pytest.raises(ValueError, match="reduction"):
        ranking_loss(CHOSEN, REJECTED, reduction="max")
    with pytest.raises(ValueError, match="same shape"):
        pair_accuracy(CHOSEN, REJECTED[:1])
