"""PPO reward shaping for Llama 2-Chat (paper sec. 3.2.3, "PPO" and eq. 3-4).

The final reward of a sampled response g to a prompt p is

    R(g | p) = WHITEN(LOGIT(R_c(g | p))) - beta * KL(pi_theta(g | p) || pi_0(g | p))

where R_c picks the Safety RM's score for safety-tagged prompts and for responses the Safety RM
finds unsafe (score < 0.15), and the Helpfulness RM's score otherwise. The composition in a loop:

    r_c = combine_rewards(helpful, safety, is_safety_prompt)        # [B]
    score = whiten(logit(r_c))                                      # [B], across the batch
    kl = kl_penalty(logprobs, ref_logprobs, mask)                   # [B, T]
    rewards = token_rewards(score, kl, mask, beta)                  # [B, T]

Masks are BoolTensors, True on the response tokens that count.
"""

from __future__ import annotations

import torch

__all__ = ["SAFETY_THRESHOLD", "combine_rewards", "logit", "masked_mean", "masked_var", "whiten",
           "kl_penalty", "token_rewards"]

SAFETY_THRESHOLD = 0.15  # sec. 3.2.3: below it the Safety RM's score wins, whatever the prompt
_KL_KINDS = ("k1", "abs", "mse", "k3")


def _check_mask(x: torch.Tensor, mask: torch.Tensor, name: str = "mask") -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got dtype {mask.dtype}")
    if mask.shape != x.shape:
        raise ValueError(f"{name} must have the values' shape {tuple(x.shape)}, got {tuple(mask.shape)}")


def combine_rewards(helpful: torch.Tensor, safety: torch.Tensor, is_safety_prompt: torch.Tensor,
                    threshold: float = SAFETY_THRESHOLD) -> torch.Tensor:
    """R_c of eq. 3: the safety score if the prompt is tagged safety or safety < threshold.

    The comparison is strict: a safety score of exactly `threshold` (0.15) is not unsafe, so an
    untagged prompt then takes the helpfulness score.

    Args:
        helpful: FloatTensor[B], Helpfulness RM scores (sigmoid outputs in [0, 1]).
        safety: FloatTensor[B], Safety RM scores (sigmoid outputs in [0, 1]).
        is_safety_prompt: BoolTensor[B], True for prompts tagged as adversarial / safety.
        threshold: the Safety RM score below which a response counts as unsafe.

    Returns:
        FloatTensor[B], the chosen score per response (dtype of the inputs, promoted).

    Raises:
        ValueError: shapes that differ, a non-bool tag tensor, or a threshold outside [0, 1].
    """
    if helpful.shape != safety.shape:
        raise ValueError(f"helpful and safety scores must have the same shape, got "
                         f"{tuple(helpful.shape)} and {tuple(safety.shape)}")
    _check_mask(safety, is_safety_prompt, "is_safety_prompt")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1] (scores are sigmoid outputs), got {threshold}")
    use_safety = is_safety_prompt | (safety < threshold)  # [B]
    return torch.where(use_safety, safety, helpful)


def logit(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LOGIT of eq. 4, the inverse of the sigmoid: log(p / (1 - p)), on p clamped to [eps, 1 - eps].

    The clamp keeps a saturated RM score (exactly 0 or 1) finite: |logit| <= log((1 - eps) / eps),
    about 13.8 for eps = 1e-6. Computed in float32 (bf16 cannot hold 1 - 1e-6).

    Args:
        p: FloatTensor of any shape, probabilities in [0, 1].
        eps: clamp bound, in (0, 0.5).

    Returns:
        float32 tensor of p's shape.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
    p = p.float()
    # 1 - p is exact in fp32 for p in [0.5, 1], so clamping p and 1 - p separately keeps
    # logit(1 - eps) = -logit(eps) to float precision (clamping p first then 1 - p would not).
    q = (1.0 - p).clamp(eps, 1.0 - eps)
    return torch.log(p.clamp(eps, 1.0 - eps)) - torch.log(q)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over the elements where mask is True.

    An empty selection (no True element, over all or along `dim`) gives 0, not NaN.

    Args:
        x: FloatTensor of any shape, e.g. [B, T].
        mask: BoolTensor of x's shape.
        dim: reduce along this dim (e.g. 1 -> [B]); None reduces everything to a 0-dim tensor.

    Returns:
        The mean: 0-dim for dim=None, else x's shape without `dim`.
    """
    _check_mask(x, mask)
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1.0)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Population variance (divide by n, not n - 1) of x over the elements where mask is True.

    Args:
        x: FloatTensor of any shape, e.g. [B, T].
        mask: BoolTensor of x's shape.
        dim: as in `masked_mean`.

    Returns:
        The variance, shaped as `masked_mean`'s result; 0 for an empty selection.
    """
    mean = masked_mean(x, mask, dim)
    if dim is not None:
        mean = mean.unsqueeze(dim)  # broadcast back over `dim`
    return masked_mean((x - mean) ** 2, mask, dim)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """WHITEN of eq. 4: (x - mean) / sqrt(var + eps), the statistics over the (masked) elements.

    The variance is the population one (`masked_var`), so the valid elements of the result have
    mean 0 and population std 1 (up to eps). With ``shift_mean=False`` the mean is added back,
    (x - mean) / std + mean: only the spread is rescaled and the result keeps x's mean. Elements
    where the mask is False neither enter the statistics nor keep their value: they come out 0.

    Args:
        x: FloatTensor of any shape, e.g. [B] scores or [B, T] per-token values.
        mask: BoolTensor of x's shape, or None to use every element.
        shift_mean: False keeps the original mean.
        eps: added to the variance; a constant input gives 0 (or its mean), not NaN.

    Returns:
        FloatTensor of x's shape.

    Raises:
        ValueError: a mask of the wrong shape / dtype, or one with no True element.
    """
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    _check_mask(x, mask)
    if not bool(mask.any()):
        raise ValueError("whiten needs at least one element where mask is True, got none")
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask, out, torch.zeros_like(out))


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
               kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi_theta || pi_0) on tokens sampled from pi_theta (eq. 4's KL term).

    With d = logprobs - ref_logprobs (log of pi_theta / pi_0 at the sampled token):
        "k1"  d                      unbiased, can be negative per token (the paper's / InstructGPT's)
        "abs" |d|
        "mse" d^2 / 2
        "k3"  exp(-d) - 1 + d        unbiased and >= 0 (Schulman's k3 estimator)

    Args:
        logprobs: FloatTensor[B, T], policy log-probs of the sampled tokens.
        ref_logprobs: FloatTensor[B, T], reference (initial) policy log-probs of the same tokens.
        mask: BoolTensor[B, T], True on response tokens.
        kind: one of "k1", "abs", "mse", "k3".

    Returns:
        float32 FloatTensor[B, T], 0 where mask is False.
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(f"logprobs and ref_logprobs must have the same shape, got "
                         f"{tuple(logprobs.shape)} and {tuple(ref_logprobs.shape)}")
    _check_mask(logprobs, mask)
    if kind not in _KL_KINDS:
        raise ValueError(f"unknown KL estimator {kind!r}; expected one of {list(_KL_KINDS)}")
    d = logprobs.float() - ref_logprobs.float()  # [B, T]
    if kind == "k1":
        kl = d
    elif kind == "abs":
        kl = d.abs()
    elif kind == "mse":
        kl = 0.5 * d**2
    else:
        kl = torch.expm1(-d) + d
    return torch.where(mask, kl, torch.zeros_like(kl))


def token_rewards(score: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token PPO reward of eq. 4: -beta * KL at each response token, plus the sequence score
    at the last valid token of each row.

    The caller passes ``score = whiten(logit(combine_rewards(...)))``. "Last valid token" is the
    last position where mask is True, so right padding after the response is ignored.

    Args:
        score: FloatTensor[B], one shaped scalar reward per response.
        kl: FloatTensor[B, T], per-token KL estimates (`kl_penalty`).
        mask: BoolTensor[B, T], True on response tokens.
        beta: KL coefficient (paper: 0.01 for 7B / 13B, 0.005 for 34B / 70B), >= 0.

    Returns:
        float32 FloatTensor[B, T], 0 where mask is False.

    Raises:
        ValueError: mismatched shapes, a negative beta, or a row with no True element in mask.
    """
    _check_mask(kl, mask)
    if kl.dim() != 2 or score.shape != kl.shape[:1]:
        raise ValueError(f"expected score [B] and kl [B, T], got {tuple(score.shape)} and {tuple(kl.shape)}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    has_token = mask.any(dim=1)  # [B]
    if not bool(has_token.all()):
        rows = torch.nonzero(~has_token).flatten().tolist()
        raise ValueError(f"rows {rows} of mask have no response token to put the score on")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # [B, T]
    last = torch.where(mask, positions, -1).amax(dim=1)  # [B], index of the last True
    rewards = -beta * kl.float()  # [B, T]
    rewards = rewards.scatter_add(1, last.unsqueeze(1), score.float().unsqueeze(1))  # [B, 1] into [B, T]
    return torch.where(mask, rewards, torch.zeros_like(rewards))
