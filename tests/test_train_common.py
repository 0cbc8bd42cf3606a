"""Training maths: LR schedule, AdamW settings and one update by hand, clipping, init, accumulation."""

import math

import pytest
import torch
import torch.nn.functional as F

from llamaforge import ModelArgs, Transformer
from llamaforge.model.sizes import preset
from llamaforge.train.common import (OptimConfig, build_optimizer, clip_grad_norm, flops_per_token,
                                     init_params, lr_at, set_lr)


def test_lr_schedule_hand_computed():
    cfg = OptimConfig(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    total = 14  # updates 0..13: warm-up 0..3, cosine over 4..13 (9 intervals)
    # warm-up: (step + 1) / 4
    assert [lr_at(s, cfg, total) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, cfg, total) == pytest.approx(1.0)  # cosine starts at the peak
    # halfway (4.5 of 9 intervals is not a step; step 8.5 would be): check step 7, progress 3/9
    assert lr_at(7, cfg, total) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 3)))  # 0.775
    assert lr_at(13, cfg, total) == pytest.approx(0.1)  # the last update ends at 10% of the peak
    assert lr_at(100, cfg, total) == pytest.approx(0.1)  # and stays there
    paper = OptimConfig()  # Llama 2 7B: peak 3e-4 after 2000 steps, floor 3e-5
    assert lr_at(999, paper, 500_000) == pytest.approx(1.5e-4)
    assert lr_at(499_999, paper, 500_000) == pytest.approx(3e-5)


def test_adamw_settings_and_one_update_by_hand():
    cfg = OptimConfig()
    assert (cfg.betas, cfg.eps, cfg.weight_decay, cfg.grad_clip) == ((0.9, 0.95), 1e-5, 0.1, 1.0)
    model = Transformer(ModelArgs(**preset("debug")))
    opt = build_optimizer(model, OptimConfig(lr=0.01, fused=False))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 2 * 2 + 1  # norms
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-5

    # one AdamW update of a 1-parameter model, by hand: w = 2, grad g = 3, lr 0.01
    w = torch.nn.Parameter(torch.tensor([[2.0]]))
    opt = torch.optim.AdamW([w], lr=0.01, betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1)
    w.grad = torch.tensor([[3.0]])
    opt.step()
    # decoupled decay first: 2 * (1 - 0.01 * 0.1) = 1.998
    # m = 0.1 * 3 = 0.3, v = 0.05 * 9 = 0.45; bias-corrected m_hat = 3, v_hat = 9
    # update = 0.01 * 3 / (sqrt(9) + 1e-5) = 0.0099999667
    assert w.item() == pytest.approx(1.998 - 0.01 * 3 / (3 + 1e-5), abs=1e-7)


@pytest.mark.parametrize("fused", [True, False])
def test_fused_and_foreach_adamw_agree(fused):
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**preset("debug")))
    ref = Transformer(ModelArgs(**preset("debug")))
    ref.load_state_dict(model.state_dict())
    x = torch.randint(0, 512, (2, 16))
    y = F.pad(x[:, 1:], (0, 1), value=-100)
    for m, f in ((model, fused), (ref, False)):
        opt = build_optimizer(m, OptimConfig(lr=1e-3, fused=f))
        set_lr(opt, 1e-3)
        m(x, targets=y).backward()
        opt.step()
    for (n, a), b in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


def test_clip_grad_norm_reports_the_norm_before_clipping():
    w = torch.nn.Linear(2, 1, bias=False)
    w.weight.grad = torch.tensor([[3.0, 4.0]])  # norm 5
    assert clip_grad_norm(w, 1.0) == pytest.approx(5.0)
    torch.testing.assert_close(w.weight.grad, torch.tensor([[0.6, 0.8]]), rtol=1e-5, atol=1e-6)
    w.weight.grad = torch.tensor([[float("nan"), 1.0]])
    assert math.isnan(clip_grad_norm(w, 1.0))


def test_init_params_is_seeded_per_parameter_and_follows_the_rule():
    args = ModelArgs(**preset("debug"))
    with torch.device("meta"):
        a, b = Transformer(args), Transformer(args)
    for m in (a, b):
        m.to_empty(device="cpu")
        init_params(m, seed=3)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert torch.equal(a.norm.weight, torch.ones(args.dim))
    wo = a.layers[0].attention.wo.weight
    assert wo.std().item() == pytest.approx(0.02 / math.sqrt(2 * args.n_layers), rel=0.1)
    init_params(b, seed=4)
    assert not torch.equal(a.output.weight, b.output.weight)


def test_gradient_accumulation_equals_the_large_batch():
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**preset("debug-gqa")))
    x = torch.randint(0, model.args.vocab_size, (4, 24))
    y = torch.roll(x, -1, dims=1)  # every position has a target, as in packed pretraining
    model(x, targets=y).backward()
    big = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):  # two micro-batches, each loss / 2 (the loop's rule)
        (model(x[half], targets=y[half]) / 2).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, big[n], rtol=1e-5, atol=1e-7, msg=n)


def test_flops_per_token_hand_computed():
    # debug: dim 64, 2 layers, 4 heads, vocab 512, FFN 192 (int(2*4*64/3) = 170, rounded up to 32s)
    args = ModelArgs(**preset("debug"))
    per_layer = 4 * 64 * 64 + 3 * 64 * 192 + 2 * 64  # attention, FFN, two norms
    n = 2 * per_layer + 64 + 64 * 512  # + final norm + head (the embedding is a lookup, not counted)
    assert flops_per_token(args, seq_len=32) == 6 * n + 12 * 2 * 64 * 32


_FAULTS_SCRIPT = """
import resource, torch
from llamaforge.train.common import keep_freed_memory
applied = keep_freed_memory()
def step():  # a training step's pattern: large activations allocated, touched and freed together
    xs = [torch.ones(4 << 20) for _ in range(4)]  # 4 x 16 MiB
    big = torch.ones(24 << 20)  # 96 MiB: above glibc's 32 MiB cap on the mmap threshold (a logits buffer)
    del xs, big
step(); step()  # warm-up: the heap reaches its steady size
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sorted(faults)[2])  # the median step (a rare one-time heap growth does not count)
"""


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc",
                    reason="keep_freed_memory sets glibc's mallopt options; on other C libraries (musl, "
                           "macOS) it is a documented no-op and there is no glibc trimming to measure")
def test_keep_freed_memory_stops_steady_state_page_faults_and_opts_out():
    import os
    import subprocess
    import sys

    def run(**env):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env={**clean, **env}, capture_output=True,
                             text=True, check=True)
        applied, faults = out.stdout.split()
        return applied == "True", int(faults)

    applied, kept = run()
    opted_out, default = run(LLAMAFORGE_MALLOC="default")
    assert applied and not opted_out
    # glibc's defaults mmap the 96 MiB afresh every step (24.6k faults) and may trim the freed heap
    assert default > 20_000 and kept < default / 10, (kept, default)
    assert not run(MALLOC_ARENA_MAX="2")[0]  # the user's own tunables win
