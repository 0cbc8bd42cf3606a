"""Choosing the next token from logits: greedy, temperature, top-k, top-p (pure functions).

Llama 2-Chat's defaults are temperature 0.6 and top-p 0.9, greedy at temperature 0 (RECIPE.md, chat
format). The order of the filters (temperature, then top-k, then top-p) is the usual one; Meta's
reference has no top-k and applies top-p to the tempered distribution, which this matches at top_k=0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class SamplingParams:
    """How to pick tokens and how many.

    Attributes:
        temperature: logits are divided by it; 0 means greedy (argmax, filters ignored).
        top_p: nucleus mass in (0, 1]; 1 keeps the whole distribution.
        top_k: keep the k most likely tokens; 0 turns the filter off.
        max_new_tokens: upper bound on generated tokens per row (>= 1).
        seed: seeds a dedicated ``torch.Generator`` so sampling is reproducible and leaves the
            global RNG alone; None draws from the global RNG.
    """

    temperature: float = 0.6
    top_p: float = 0.9
    top_k: int = 0
    max_new_tokens: int = 256
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        # written as "not (valid)" so that NaN is rejected too
        if not self.temperature >= 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingParams.top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to -inf.

    Args:
        logits: FloatTensor [B, V].
        k: tokens to keep; k <= 0 or k >= V returns ``logits`` unchanged.
    Returns:
        FloatTensor [B, V]. Exactly k entries per row stay finite (ties broken by ``topk``).
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    values, idx = logits.topk(k, dim=-1)  # [B, k]
    return torch.full_like(logits, -math.inf).scatter(-1, idx, values)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability sums to
    >= ``top_p`` (always at least the top token); set the rest to -inf.

    A token is kept iff the probability mass of the tokens ranked above it is < top_p. Meta's
    ``sample_top_p`` tests ``> top_p`` instead, which differs only when that mass equals top_p
    exactly (it then keeps one more token); we follow the "smallest set" definition.

    Args:
        logits: FloatTensor [B, V] (may already hold -inf from another filter).
        top_p: in (0, 1]; 1 returns ``logits`` unchanged (no sort).
    Returns:
        FloatTensor [B, V].
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, V] each
    probs = sorted_logits.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs  # 0 exactly for the top token, so it is always kept
    drop_sorted = mass_above >= top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back from rank order to vocabulary order
    return logits.masked_fill(drop, -math.inf)


def sample(
    logits: torch.Tensor, params: SamplingParams, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Pick one token per row.

    Args:
        logits: FloatTensor [B, V], the next-token logits.
        params: temperature / top_k / top_p (``max_new_tokens`` and ``seed`` are not used here).
        generator: RNG for the uniform draws (same device as ``logits``); None: global RNG.
    Returns:
        LongTensor [B].
    """
    if params.greedy:
        # max(dim).indices: the same first-maximum index as argmax, ~3x faster on CPU (torch 2.x)
        return logits.max(dim=-1).indices
    logits = logits.float() / params.temperature
    logits = top_k_filter(logits, params.top_k)
    logits = top_p_filter(logits, params.top_p)
    probs = logits.softmax(dim=-1)  # filtered entries are exactly 0
    # Inverse-CDF sampling: one uniform per row, the first token whose cumulative probability passes
    # it (a zero-probability token never does). The same distribution as torch.multinomial, whose
    # CPU kernel draws an exponential per vocabulary entry and checks its input: 41 vs 1.5 ms for
    # [64, 32000] on this project's CPU, the bulk of a rollout step at batch 64.
    cdf = probs.cumsum(dim=-1)  # [B, V]
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)  # [B, 1] -> [B]
