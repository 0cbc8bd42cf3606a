"""Scalar heads: a reward or value model is the Transformer with ``output`` replaced (STYLE.md, 9).

Llama 2's two reward models (paper sec. 3.2.2) are the chat model with the next-token head replaced
by a regression head that gives one score per (prompt, response); PPO's value model is the same
network read at every position. Both are built here and nowhere else:

    scalar_head(model)                     replace ``output`` [vocab, dim] by [1, dim] (in place)
    has_scalar_head(model)                 True for a reward / value model
    sequence_scores(model, tokens, lens)   [B] the score at the last token of each right-padded row
    token_values(model, tokens)            [B, T] the value at every position

A reward model dir is an HF ``LlamaForSequenceClassification`` dir (``score.weight`` [1, dim]);
``checkpoint_io`` reads and writes it, so transformers scores what llamaforge trained.
"""

from __future__ import annotations

import torch
from torch import nn

from llamaforge.model.llama import Transformer

__all__ = ["scalar_head", "has_scalar_head", "sequence_scores", "token_values"]


def scalar_head(model: Transformer) -> Transformer:
    """Replace the model's output head by a bias-free [1, dim] scalar head, in place.

    The new head is on the old one's device and dtype (the meta device on a meta build) and takes
    the model's init rule (N(0, 0.02); the paper is silent), so it scores ~0 at the start.
    Returns the model.
    """
    old = model.output.weight
    head = nn.Linear(model.args.dim, 1, bias=False, device=old.device, dtype=old.dtype)
    if not head.weight.is_meta:
        with torch.no_grad():
            head.weight.normal_(0.0, model.init_std("output.weight"))
    model.output = head
    return model


def has_scalar_head(model: nn.Module) -> bool:
    """Whether ``model``'s output head is scalar (a reward or value model)."""
    return getattr(model, "output", None) is not None and model.output.weight.shape[0] == 1


def _check(model: nn.Module, tokens: torch.Tensor) -> None:
    if not has_scalar_head(model):
        raise ValueError("expected a reward / value model (scalar head); this model has a "
                         f"{model.output.weight.shape[0]}-way output head: build it with model.heads.scalar_head")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tuple(tokens.shape)}")


def token_values(model: Transformer, tokens: torch.Tensor, **forward_kwargs) -> torch.Tensor:
    """The scalar head at every position.

    Args:
        model: a Transformer with a scalar head.
        tokens: LongTensor [B, T]; forward_kwargs go to ``Transformer.forward`` (pos_ids, mask).
    Returns:
        FloatTensor [B, T] (fp32).
    """
    _check(model, tokens)
    return model(tokens, **forward_kwargs).squeeze(-1)  # [B, T, 1] -> [B, T]


def sequence_scores(model: Transformer, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The score of each right-padded sequence, read at its last real token.

    Causal attention means the padding after a row's end cannot change that position, so the score
    does not depend on how much padding the batch needs.

    Args:
        model: a Transformer with a scalar head.
        tokens: LongTensor [B, T], row b real in [0, lengths[b]), anything after.
        lengths: LongTensor [B], each in [1, T].
    Returns:
        FloatTensor [B] (fp32): raw scores (logits; ``torch.sigmoid`` gives the paper's [0, 1] scale).
    """
    _check(model, tokens)
    lengths = torch.as_tensor(lengths, device=tokens.device)
    if lengths.shape != tokens.shape[:1] or int(lengths.min()) < 1 or int(lengths.max()) > tokens.shape[1]:
        raise ValueError(f"lengths must be [B] in [1, T={tokens.shape[1]}], got {lengths.tolist()}")
    values = token_values(model, tokens[:, :int(lengths.max())])  # [B, T']
    return values.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # [B]
