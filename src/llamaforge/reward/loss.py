"""Reward-model ranking loss with a preference-rating margin (paper sec. 3.2.2, eq. 1-2, Table 27).

A reward model scores the chosen and the rejected response of a pair; the loss pushes the chosen
score above the rejected one by at least a margin that grows with the annotators' strength label:

    L = -log sigmoid(r_chosen - r_rejected - m(rating))

`MARGINS` holds the paper's two margin tables plus "none" (the plain binary ranking loss of
InstructGPT); each tuple is indexed in the order of `llamaforge.world.annotators.STRENGTHS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from llamaforge.world.annotators import STRENGTHS

__all__ = ["MARGINS", "margin_values", "ranking_loss", "pair_accuracy"]

# Table 27: (significantly better, better, slightly better, negligibly better / unsure).
MARGINS: dict[str, tuple[float, float, float, float]] = {
    "none": (0.0, 0.0, 0.0, 0.0),
    "small": (1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0),
    "large": (3.0, 2.0, 1.0, 0.0),
}
_REDUCTIONS = ("mean", "sum", "none")


def margin_values(ratings: Sequence[str], margins: str = "small",
                  device: torch.device | str | None = None) -> torch.Tensor:
    """The margin m(rating) of each pair, from one of the `MARGINS` tables (Table 27).

    Args:
        ratings: B strength labels, each one of `STRENGTHS` (e.g. "slightly better").
        margins: name of the table: "none", "small" or "large".
        device: where the result lives (default: torch's default device).

    Returns:
        FloatTensor[B] (float32) of margins.

    Raises:
        ValueError: an unknown table name or rating, or a single string passed as `ratings`.
    """
    if margins not in MARGINS:
        raise ValueError(f"unknown margin table {margins!r}; known tables: {sorted(MARGINS)}")
    if isinstance(ratings, str):
        raise ValueError(f"ratings must be a sequence of labels, got the single string {ratings!r}")
    table = MARGINS[margins]
    index = {label: i for i, label in enumerate(STRENGTHS)}
    values = []
    for i, rating in enumerate(ratings):
        if rating not in index:
            raise ValueError(f"unknown rating {rating!r} at position {i}; known ratings: {list(STRENGTHS)}")
        values.append(table[index[rating]])
    return torch.tensor(values, dtype=torch.float32, device=device)


def _check_pair(chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    if chosen.shape != rejected.shape:
        raise ValueError(f"chosen and rejected scores must have the same shape, got "
                         f"{tuple(chosen.shape)} and {tuple(rejected.shape)}")


def ranking_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                 reduction: str = "mean") -> torch.Tensor:
    """Binary ranking loss with margin, -log sigmoid(r_c - r_r - m) (paper sec. 3.2.2, eq. 2).

    Computed in float32 with `F.logsigmoid`, which is stable for large |r_c - r_r - m| (no
    exp overflow, no log(0)), whatever the dtype of the scores.

    Args:
        chosen: FloatTensor[B], scalar-head scores of the chosen responses.
        rejected: FloatTensor[B], scores of the rejected responses.
        margin: FloatTensor[B] from `margin_values`, or None for no margin (eq. 1).
        reduction: "mean" or "sum" over the B pairs (a 0-dim tensor), or "none" (FloatTensor[B]).

    Returns:
        The float32 loss: a scalar for "mean" / "sum", FloatTensor[B] for "none".

    Raises:
        ValueError: shapes that differ, or an unknown reduction.
    """
    _check_pair(chosen, rejected)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {list(_REDUCTIONS)}")
    diff = chosen.float() - rejected.float()  # [B]
    if margin is not None:
        if margin.shape != chosen.shape:
            raise ValueError(f"margin must have the scores' shape {tuple(chosen.shape)}, got {tuple(margin.shape)}")
        diff = diff - margin.to(device=diff.device, dtype=torch.float32)
    losses = -F.logsigmoid(diff)  # [B]
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def pair_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Whether the reward model ranks each pair correctly, strictly: a tie counts as wrong (Table 8).

    Args:
        chosen: FloatTensor[B], scores of the chosen responses.
        rejected: FloatTensor[B], scores of the rejected responses.

    Returns:
        BoolTensor[B], True where chosen > rejected.

    Raises:
        ValueError: shapes that differ.
    """
    _check_pair(chosen, rejected)
    return chosen > rejected
