"""linear_cross_entropy (the LM loss with one logits buffer) against F.cross_entropy on the logits."""

import math

import pytest
import torch
import torch.nn.functional as F

from llamaforge import ModelArgs, Transformer
from llamaforge.model.cross_entropy import linear_cross_entropy
from llamaforge.model.sizes import preset


def _inputs(n=37, d=16, v=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = (torch.randn(v, d, generator=g) * 0.5).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    t[::5] = -100  # some positions without a loss (prompt tokens in SFT)
    return h, w, t


def _grads(loss_fn, h, w, t):
    h.grad = w.grad = None
    loss = loss_fn(h, w, t)
    loss.backward()
    return loss.detach(), h.grad.clone(), w.grad.clone()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_plain_cross_entropy_fp32(reduction):
    h, w, t = _inputs()
    ref = _grads(lambda h, w, t: F.cross_entropy(h @ w.t(), t, reduction=reduction), h, w, t)
    got = _grads(lambda h, w, t: linear_cross_entropy(h, w, t, reduction=reduction), h, w, t)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_hand_computed_two_token_loss():
    # h = identity rows, w = [[0, 0], [ln 3, 0]] -> logits row 0: [0, ln 3], row 1: [0, 0]
    # row 0, target 1: -log(3 / (1 + 3)) = log(4/3); row 1, target 0: -log(1/2) = log 2
    h = torch.eye(2, requires_grad=True)
    w = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], requires_grad=True)
    loss = linear_cross_entropy(h, w, torch.tensor([1, 0]))
    assert loss.item() == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, rel=1e-6)
    loss.backward()
    # d/dlogits row 0 = (softmax - onehot) / 2 = ([1/4, 3/4] - [0, 1]) / 2 = [1/8, -1/8]
    # grad_w[:, 0] = column of d/dlogits for h row 0 (h = I): [1/8, -1/8]
    torch.testing.assert_close(w.grad[:, 0], torch.tensor([0.125, -0.125]))


def test_bf16_autocast_matches_plain_path():
    # the plain path under autocast: bf16 matmul, fp32 softmax (what a model's `.float()` logits give)
    h, w, t = _inputs(n=64, d=32, v=3000)

    def plain(h, w, t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.cross_entropy((h @ w.t()).float(), t)

    def fused(h, w, t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return linear_cross_entropy(h, w, t)

    ref, got = _grads(plain, h, w, t), _grads(fused, h, w, t)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(got[1:], ref[1:]):  # gradients rounded to bf16 once in each path
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)


def test_all_ignored_mean_is_nan_like_torch_and_sum_is_zero():
    h, w, _ = _inputs(n=4)
    t = torch.full((4,), -100)
    assert torch.isnan(linear_cross_entropy(h, w, t)) and torch.isnan(F.cross_entropy(h @ w.t(), t))
    assert linear_cross_entropy(h, w, t, reduction="sum").item() == 0.0


def test_the_head_runs_only_on_rows_with_a_loss(monkeypatch):
    # SFT / GAtt targets: most rows ignored; the head's matmul gets the others only, and the ignored
    # rows' hidden states get an exact zero gradient
    h, w, t = _inputs(n=10)
    t[:] = -100
    t[[2, 7]] = torch.tensor([1, 3])
    shapes = []
    real = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: shapes.append(tuple(a.shape)) or real(a, b))
    hh = h.detach().clone().requires_grad_()
    loss = linear_cross_entropy(hh, w, t)
    assert shapes[0] == (2, h.shape[1])
    monkeypatch.undo()
    loss.backward()
    torch.testing.assert_close(loss, F.cross_entropy(h @ w.t(), t))
    assert hh.grad[[0, 1, 3, 4, 5, 6, 8, 9]].abs().sum() == 0 and hh.grad[[2, 7]].abs().sum() > 0


def test_backward_twice_is_an_error_and_bad_shapes_raise():
    h, w, t = _inputs(n=4)
    loss = linear_cross_entropy(h, w, t)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(h, w, t[:2])
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(h, w, t, reduction="none")


def test_model_forward_with_targets_equals_loss_on_logits():
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**preset("debug-gqa")))
    x = torch.randint(0, model.args.vocab_size, (2, 12))
    y = F.pad(x[:, 1:], (0, 1), value=-100)  # next-token targets, last position without one
    ref = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss = model(x, targets=y)
    loss.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-5, atol=1e-7, msg=n)


def test_a_compiled_forward_runs_the_loss_eagerly():
    # torch.compile of the whole forward + loss: the loss is excluded from the graph (dynamo would
    # unroll its chunk loops: minutes of compiling), and the loss and gradients equal eager's
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**{**preset("debug"), "vocab_size": 3000}))
    x = torch.randint(0, 3000, (2, 64))
    y = torch.randint(0, 3000, (2, 64))
    eager = model(x, targets=y)
    eager.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    explained = torch._dynamo.explain(lambda a, b: model(a, targets=b))(x, y)
    assert any("linear_cross_entropy" in str(b.reason) or "disable" in str(b.reason).lower()
               for b in explained.break_reasons), explained.break_reasons
    compiled = torch.compile(lambda a, b: model(a, targets=b))(x, y)
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    for p, g in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)
