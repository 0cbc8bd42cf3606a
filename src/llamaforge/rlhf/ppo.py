"""PPO maths for RLHF (paper sec. 3.2.3, "PPO"; Schulman et al. 2017, GAE: Schulman et al. 2016).

Pure functions over [B, T] tensors of the response tokens; a BoolTensor mask is True on the tokens
that count (padding after a response, or anywhere else, is False). The paper's settings: clip 0.2,
one gradient step per minibatch. The loop composes them:

    logprobs = logprobs_from_logits(logits, tokens)                       # [B, T]
    advantages, returns = gae(rewards, values, mask)                      # [B, T] each
    loss_pi, stats_pi = policy_loss(logprobs, old_logprobs, advantages, mask)
    loss_v, stats_v = value_loss(values, old_values, returns, mask)

``rollout_tensors`` lays prompts and sampled answers out as the [N, L] ids and the [N, L-1] mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llamaforge.rlhf.rewards import masked_mean

__all__ = ["gae", "policy_loss", "value_loss", "entropy_from_logits", "logprobs_from_logits", "rollout_tensors"]


def _check_bt(mask: torch.Tensor, **tensors: torch.Tensor) -> None:
    """Every tensor is [B, T] with mask's shape, and mask is bool."""
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got dtype {mask.dtype}")
    if mask.dim() != 2:
        raise ValueError(f"mask must be [B, T], got shape {tuple(mask.shape)}")
    for name, t in tensors.items():
        if t.shape != mask.shape:
            raise ValueError(f"{name} must have mask's shape {tuple(mask.shape)}, got {tuple(t.shape)}")


def _check_clip(clip: float) -> None:
    if not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip}")


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over the valid tokens of each row.

        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t = delta_t + gamma * lam * A_{t+1}

    where t+1 is the next valid token of the row; after the last valid token V and A are 0 (the
    response has ended). Invalid positions are skipped, so right padding, whatever its rewards or
    values, does not change the result.

    Args:
        rewards: FloatTensor[B, T], per-token rewards (`rlhf.rewards.token_rewards`).
        values: FloatTensor[B, T], value-head estimates at the same tokens (treated as constants).
        mask: BoolTensor[B, T], True on response tokens.
        gamma: discount in [0, 1].
        lam: GAE lambda in [0, 1].

    Returns:
        (advantages, returns): float32 FloatTensor[B, T] each, returns = advantages + values; both
        0 where mask is False. Neither carries a gradient.
    """
    _check_bt(mask, rewards=rewards, values=values)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={gamma}, lam={lam}")
    rewards, values = rewards.detach().float(), values.detach().float()
    batch, steps = mask.shape
    advantages = torch.zeros_like(rewards)  # [B, T]
    next_value = rewards.new_zeros(batch)  # [B], V of the next valid token (0 past the end)
    next_adv = rewards.new_zeros(batch)  # [B], A of the next valid token
    for t in reversed(range(steps)):
        valid = mask[:, t]  # [B]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        advantages[:, t] = torch.where(valid, adv, 0.0)
        next_value = torch.where(valid, values[:, t], next_value)
        next_adv = torch.where(valid, adv, next_adv)
    returns = torch.where(mask, advantages + values, 0.0)
    return advantages, returns


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate, as a loss to minimise, averaged over the valid tokens.

        ratio = exp(logprobs - old_logprobs)
        loss_t = max(-A_t * ratio, -A_t * clamp(ratio, 1 - clip, 1 + clip))

    Args:
        logprobs: FloatTensor[B, T], current policy log-probs of the sampled tokens (with grad).
        old_logprobs: FloatTensor[B, T], log-probs of the policy that sampled them.
        advantages: FloatTensor[B, T], from `gae` (usually whitened over the valid tokens).
        mask: BoolTensor[B, T], True on response tokens.
        clip: PPO clip range epsilon (paper: 0.2), > 0.

    Returns:
        (loss, stats): the float32 0-dim loss, and detached 0-dim tensors
        ``clip_fraction`` (share of valid tokens where the clipped term is the larger one, so the
        token gives no gradient) and ``approx_kl`` (mean over valid tokens of (ratio - 1) - log ratio,
        the k3 estimate of KL(old || new)).
    """
    _check_bt(mask, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)
    _check_clip(clip)
    log_ratio = logprobs.float() - old_logprobs.detach().float()  # [B, T]
    ratio = torch.exp(log_ratio)
    adv = advantages.detach().float()
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
        }
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss, 0.5 * max((V - R)^2, (V_clip - R)^2), averaged over the valid tokens.

    V_clip = old_values + clamp(values - old_values, -clip, clip): the value head may not move more
    than `clip` from its rollout estimate to lower the loss.

    Args:
        values: FloatTensor[B, T], current value-head outputs (with grad).
        old_values: FloatTensor[B, T], value estimates at rollout time.
        returns: FloatTensor[B, T], targets from `gae`.
        mask: BoolTensor[B, T], True on response tokens.
        clip: clip range in value units, > 0.

    Returns:
        (loss, stats): the float32 0-dim loss, and ``clip_fraction`` (detached 0-dim): the share of
        valid tokens where the clipped error is the larger one.
    """
    _check_bt(mask, values=values, old_values=old_values, returns=returns)
    _check_clip(clip)
    values = values.float()
    old, target = old_values.detach().float(), returns.detach().float()
    v_clipped = old + (values - old).clamp(-clip, clip)  # [B, T]
    err = (values - target) ** 2
    err_clipped = (v_clipped - target) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        stats = {"clip_fraction": masked_mean((err_clipped > err).float(), mask)}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the next-token distribution at each position, in nats, computed in float32.

    Args:
        logits: FloatTensor[B, T, V].

    Returns:
        FloatTensor[B, T], -sum_v p_v log p_v.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    logp = F.log_softmax(logits.float(), dim=-1)  # [B, T, V]
    return -(logp.exp() * logp).sum(dim=-1)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each given token under the logits at its position, in float32.

    The caller aligns them: logits[:, t] must be the prediction for tokens[:, t] (for a causal LM
    that is the model's output at position t - 1).

    Args:
        logits: FloatTensor[B, T, V].
        tokens: LongTensor[B, T] of ids in [0, V).

    Returns:
        FloatTensor[B, T].
    """
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(f"expected logits [B, T, V] and tokens [B, T], got {tuple(logits.shape)} "
                         f"and {tuple(tokens.shape)}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"tokens must be an integer tensor, got dtype {tokens.dtype}")
    logp = F.log_softmax(logits.float(), dim=-1)  # [B, T, V]
    return logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)  # [B, T, 1] -> [B, T]


def rollout_tensors(prompts: list[list[int]], answers: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [N, L] right-padded with 0, mask [N, L-1] True where tokens[:, 1:] is an answer token)."""
    rows = [p + a for p, a in zip(prompts, answers)]
    width = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width - 1, dtype=torch.bool)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        tokens[i, :len(p) + len(a)] = torch.tensor(p + a)
        mask[i, len(p) - 1:len(p) + len(a) - 1] = True  # position j predicts token j + 1
    return tokens, mask
