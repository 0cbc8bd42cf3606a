"""RLHF maths (paper sec. 3.2.3): R_c, LOGIT, WHITEN, KL, token rewards, GAE, PPO losses, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from llamaforge.rlhf.ppo import entropy_from_logits, gae, logprobs_from_logits, policy_loss, value_loss
from llamaforge.rlhf.rewards import (SAFETY_THRESHOLD, combine_rewards, kl_penalty, logit, masked_mean,
                                     masked_var, token_rewards, whiten)

T, F_ = True, False


# ---- R_c (eq. 3) -------------------------------------------------------------------------------

def test_combine_rewards_branches_around_threshold():
    assert SAFETY_THRESHOLD == 0.15
    helpful = torch.full((5,), 0.9)
    safety = torch.tensor([0.1499, 0.15, 0.1501, 0.8, 0.8])
    tagged = torch.tensor([F_, F_, F_, F_, T])
    # 0.1499 < 0.15 -> safety; 0.15 is not < 0.15 -> helpful; 0.1501 -> helpful;
    # 0.8 untagged -> helpful; 0.8 tagged safety prompt -> safety
    out = combine_rewards(helpful, safety, tagged)
    torch.testing.assert_close(out, torch.tensor([0.1499, 0.9, 0.9, 0.9, 0.8]))
    # a tagged prompt takes the safety score even when it is below the helpfulness one, and at 0.15
    out = combine_rewards(torch.tensor([0.9, 0.2]), torch.tensor([0.15, 0.95]), torch.tensor([T, T]))
    torch.testing.assert_close(out, torch.tensor([0.15, 0.95]))


# ---- LOGIT, masked stats, WHITEN (eq. 4) --------------------------------------------------------

def test_logit_inverts_sigmoid_and_clamps():
    x = torch.linspace(-6.0, 6.0, 13)
    torch.testing.assert_close(logit(torch.sigmoid(x)), x, atol=1e-4, rtol=1e-4)
    # logit(0.5) = 0; logit(0.8) = log(0.8 / 0.2) = log 4 = 1.3862944
    torch.testing.assert_close(logit(torch.tensor([0.5, 0.8])), torch.tensor([0.0, math.log(4.0)]))
    # p = 0 and p = 1 clamp to eps = 1e-6: -/+ log((1 - 1e-6) / 1e-6) = -/+ 13.815510
    edge = logit(torch.tensor([0.0, 1.0], dtype=torch.bfloat16))
    assert edge.dtype == torch.float32
    bound = math.log((1 - 1e-6) / 1e-6)
    torch.testing.assert_close(edge, torch.tensor([-bound, bound]), atol=1e-3, rtol=1e-4)


X = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, -50.0]])
MASK = torch.tensor([[T, T, T, F_], [T, T, T, F_]])


def test_masked_mean_and_var():
    # valid 1..6: mean 3.5; population var = (2.5^2 + 1.5^2 + 0.5^2) * 2 / 6 = 17.5 / 6
    torch.testing.assert_close(masked_mean(X, MASK), torch.tensor(3.5))
    torch.testing.assert_close(masked_var(X, MASK), torch.tensor(17.5 / 6))
    # per row: means 2 and 5; vars (1 + 0 + 1) / 3 = 2/3 each
    torch.testing.assert_close(masked_mean(X, MASK, dim=1), torch.tensor([2.0, 5.0]))
    torch.testing.assert_close(masked_var(X, MASK, dim=1), torch.tensor([2 / 3, 2 / 3]))
    # an empty row gives 0, not NaN
    empty = torch.tensor([[T, T, T, F_], [F_, F_, F_, F_]])
    torch.testing.assert_close(masked_mean(X, empty, dim=1), torch.tensor([2.0, 0.0]))


def test_whiten_by_hand_and_on_masked_elements():
    # [1, 2, 3]: mean 2, population var 2/3 -> [-1, 0, 1] / sqrt(2/3) = [-1.2247449, 0, 1.2247449]
    s = 1 / math.sqrt(2 / 3)
    torch.testing.assert_close(whiten(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([-s, 0.0, s]))
    out = whiten(X, MASK)
    valid = out[MASK]
    torch.testing.assert_close(valid.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(valid.std(unbiased=False), torch.tensor(1.0))
    assert out[~MASK].tolist() == [0.0, 0.0]  # padding neither counts nor keeps its value
    # changing the padded values changes nothing
    torch.testing.assert_close(whiten(torch.where(MASK, X, 1e6), MASK), out)
    # shift_mean=False keeps the original mean (3.5) with std 1
    kept = whiten(X, MASK, shift_mean=False)[MASK]
    torch.testing.assert_close(kept.mean(), torch.tensor(3.5))
    torch.testing.assert_close(kept.std(unbiased=False), torch.tensor(1.0))
    # a constant input stays finite
    assert whiten(torch.full((3,), 0.7)).abs().max().item() < 1e-3


# ---- KL and token rewards -----------------------------------------------------------------------

def test_kl_penalty_kinds():
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[T, T, F_]])
    # d = logp - ref = [0.5, -1.0, (masked)]
    torch.testing.assert_close(kl_penalty(logp, ref, mask), torch.tensor([[0.5, -1.0, 0.0]]))
    torch.testing.assert_close(kl_penalty(logp, ref, mask, "abs"), torch.tensor([[0.5, 1.0, 0.0]]))
    # mse: d^2 / 2 = [0.125, 0.5]
    torch.testing.assert_close(kl_penalty(logp, ref, mask, "mse"), torch.tensor([[0.125, 0.5, 0.0]]))
    # k3: e^-d - 1 + d = [e^-0.5 - 0.5, e^1 - 2] = [0.1065307, 0.7182818]
    k3 = [math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0, 0.0]
    torch.testing.assert_close(kl_penalty(logp, ref, mask, "k3"), torch.tensor([k3]))


def test_token_rewards_score_at_last_valid_token():
    score = torch.tensor([2.0, -1.0])
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 9.0, 9.0]])
    mask = torch.tensor([[T, T, T, T], [T, T, F_, F_]])
    # row 0: -0.1 * [0.1, 0.2, 0.3, 0.4] + [0, 0, 0, 2] = [-0.01, -0.02, -0.03, 1.96]
    # row 1: -0.1 * [0.5, 0.6] + [0, -1] = [-0.05, -1.06], padding 0
    expected = torch.tensor([[-0.01, -0.02, -0.03, 1.96], [-0.05, -1.06, 0.0, 0.0]])
    torch.testing.assert_close(token_rewards(score, kl, mask, beta=0.1), expected)


# ---- GAE ---------------------------------------------------------------------------------------

R3 = [0.0, 0.0, 1.0]
V3 = [0.5, 0.4, 0.6]


@pytest.mark.parametrize("gamma, lam, adv, ret", [
    # gamma 1, lam 0.95:
    #   t2: delta = 1 + 0 - 0.6 = 0.4                A2 = 0.4
    #   t1: delta = 0 + 0.6 - 0.4 = 0.2              A1 = 0.2 + 0.95 * 0.4 = 0.58
    #   t0: delta = 0 + 0.4 - 0.5 = -0.1             A0 = -0.1 + 0.95 * 0.58 = 0.451
    #   returns = A + V = [0.951, 0.98, 1.0]
    (1.0, 0.95, [0.451, 0.58, 0.4], [0.951, 0.98, 1.0]),
    # gamma 0.9, lam 0.5 (gamma * lam = 0.45):
    #   t2: delta = 1 - 0.6 = 0.4                    A2 = 0.4
    #   t1: delta = 0.9 * 0.6 - 0.4 = 0.14           A1 = 0.14 + 0.45 * 0.4 = 0.32
    #   t0: delta = 0.9 * 0.4 - 0.5 = -0.14          A0 = -0.14 + 0.45 * 0.32 = 0.004
    #   returns = [0.504, 0.72, 1.0]
    (0.9, 0.5, [0.004, 0.32, 0.4], [0.504, 0.72, 1.0]),
    # gamma 1, lam 1: returns = reward-to-go = [1, 1, 1]; A = 1 - V = [0.5, 0.6, 0.4]
    (1.0, 1.0, [0.5, 0.6, 0.4], [1.0, 1.0, 1.0]),
])
def test_gae_by_hand_and_right_padding(gamma, lam, adv, ret):
    a, r = gae(torch.tensor([R3]), torch.tensor([V3]), torch.tensor([[T, T, T]]), gamma, lam)
    torch.testing.assert_close(a, torch.tensor([adv]))
    torch.testing.assert_close(r, torch.tensor([ret]))
    # row 0 padded with junk rewards / values; row 1 a shorter response whose padding is junk too
    rewards = torch.tensor([R3 + [5.0, 5.0], [0.0, 1.0, 7.0, 7.0, 7.0]])
    values = torch.tensor([V3 + [7.0, -3.0], [0.5, 0.5, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[T, T, T, F_, F_], [T, T, F_, F_, F_]])
    a, r = gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(a[0], torch.tensor(adv + [0.0, 0.0]))
    torch.testing.assert_close(r[0], torch.tensor(ret + [0.0, 0.0]))
    # row 1 alone: A1 = 1 - 0.5 = 0.5; A0 = (gamma * 0.5 - 0.5) + gamma * lam * 0.5
    a1 = gamma * 0.5 - 0.5 + gamma * lam * 0.5
    torch.testing.assert_close(a[1], torch.tensor([a1, 0.5, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(r[1], torch.tensor([a1 + 0.5, 1.0, 0.0, 0.0, 0.0]))


# ---- PPO losses ---------------------------------------------------------------------------------

def test_policy_loss_clipping_both_signs():
    # ratios [1.1 (inside), 1.5 (above 1.2), 0.5 (below 0.8)], row 0 A = +1, row 1 A = -1, clip 0.2
    ratios = [1.1, 1.5, 0.5]
    old = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-1.0, -2.0, -0.5, 0.0]])
    logp = (old + torch.log(torch.tensor([ratios + [3.0]] * 2))).requires_grad_()  # col 3 is padding
    advantages = torch.tensor([[1.0, 1.0, 1.0, 9.0], [-1.0, -1.0, -1.0, 9.0]])
    mask = torch.tensor([[T, T, T, F_], [T, T, T, F_]])
    loss, stats = policy_loss(logp, old, advantages, mask, clip=0.2)
    # loss_t = max(-A r, -A clip(r)):
    #   A=+1: max(-1.1, -1.1) = -1.1;  max(-1.5, -1.2) = -1.2 (clipped);  max(-0.5, -0.8) = -0.5
    #   A=-1: max(1.1, 1.1) = 1.1;     max(1.5, 1.2) = 1.5;               max(0.5, 0.8) = 0.8 (clipped)
    #   mean = (-1.1 - 1.2 - 0.5 + 1.1 + 1.5 + 0.8) / 6 = 0.6 / 6 = 0.1
    torch.testing.assert_close(loss, torch.tensor(0.1))
    torch.testing.assert_close(stats["clip_fraction"], torch.tensor(2 / 6))
    # approx_kl: mean of (r - 1) - log r over the 6 tokens = (sum over the three ratios) / 3
    kl = sum((r - 1) - math.log(r) for r in ratios) / 3
    torch.testing.assert_close(stats["approx_kl"], torch.tensor(kl))
    loss.backward()
    # d loss_t / d logp_t = -A r / 6 where unclipped; 0 where clipped and on padding
    expected = torch.tensor([[-1.1, 0.0, -0.5, 0.0], [1.1, 1.5, 0.0, 0.0]]) / 6
    torch.testing.assert_close(logp.grad, expected)


def test_value_loss_clipping():
    old = torch.zeros(1, 4)
    returns = torch.tensor([[1.0, 1.0, -1.0, 0.0]])
    values = torch.tensor([[0.1, 0.5, 0.5, 5.0]])
    mask = torch.tensor([[T, T, T, F_]])
    loss, stats = value_loss(values, old, returns, mask, clip=0.2)
    # v=0.1: clip 0.1, errors 0.81 / 0.81 -> 0.81
    # v=0.5, R=1: clip 0.2, errors 0.25 / 0.64 -> 0.64 (clipped is larger)
    # v=0.5, R=-1: clip 0.2, errors 2.25 / 1.44 -> 2.25
    # loss = 0.5 * (0.81 + 0.64 + 2.25) / 3 = 0.5 * 3.7 / 3 = 0.6166667
    torch.testing.assert_close(loss, torch.tensor(0.5 * 3.7 / 3))
    torch.testing.assert_close(stats["clip_fraction"], torch.tensor(1 / 3))


# ---- logits helpers ----------------------------------------------------------------------------

def test_entropy_and_logprobs_from_logits():
    # uniform over 4 -> log 4; a near one-hot -> ~0
    logits = torch.stack([torch.zeros(4), torch.tensor([50.0, 0.0, 0.0, 0.0])]).view(1, 2, 4)
    ent = entropy_from_logits(logits.bfloat16())
    assert ent.dtype == torch.float32 and ent.shape == (1, 2)
    torch.testing.assert_close(ent, torch.tensor([[math.log(4.0), 0.0]]), atol=1e-5, rtol=1e-5)
    # logits log[1, 2, 3] -> p = [1/6, 2/6, 3/6]; tokens 2 and 0 -> log 0.5, log(1/6)
    lg = torch.log(torch.tensor([1.0, 2.0, 3.0])).expand(1, 2, 3)
    lp = logprobs_from_logits(lg, torch.tensor([[2, 0]]))
    torch.testing.assert_close(lp, torch.tensor([[math.log(0.5), math.log(1 / 6)]]))


# ---- bad inputs ---------------------------------------------------------------------------------

def test_bad_inputs_raise():
    b = torch.tensor([T, F_])
    with pytest.raises(ValueError, match="same shape"):
        combine_rewards(torch.zeros(2), torch.zeros(3), b)
    with pytest.raises(ValueError, match="bool"):
        combine_rewards(torch.zeros(2), torch.zeros(2), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="threshold"):
        combine_rewards(torch.zeros(2), torch.zeros(2), b, threshold=1.5)
    with pytest.raises(ValueError, match="eps"):
        logit(torch.zeros(2), eps=0.0)
    with pytest.raises(ValueError, match="at least one"):
        whiten(torch.zeros(2), torch.tensor([F_, F_]))
    with pytest.raises(ValueError, match="shape"):
        masked_mean(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="KL estimator"):
        kl_penalty(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), kind="k2")
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        token_rewards(torch.zeros(2), torch.zeros(2, 3), torch.tensor([[T, F_, F_], [F_, F_, F_]]), 0.1)
    with pytest.raises(ValueError, match="beta"):
        token_rewards(torch.zeros(1), torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), -1.0)
    mask = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="gamma"):
        gae(torch.zeros(1, 3), torch.zeros(1, 3), mask, gamma=1.5)
    with pytest.raises(ValueError, match="values"):
        gae(torch.zeros(1, 3), torch.zeros(1, 2), mask)
    with pytest.raises(ValueError, match="clip"):
        policy_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 3), mask, clip=0.0)
    with pytest.raises(ValueError, match="bool"):
        value_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="tokens"):
        logprobs_from_logits(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long))
