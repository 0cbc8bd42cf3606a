"""Shared training maths and set-up as functions: LR schedule, AdamW, clipping, init, FLOPs.

Every stage's loop (pretrain, SFT, reward, PPO) composes these; none of them holds loop state.
RECIPE.md, "Pretraining" (paper sec. 2.2): AdamW (0.9, 0.95, eps 1e-5), weight decay 0.1, linear
warm-up then cosine decay to 10% of the peak, gradient clipping at 1.0.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import time
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TrainingError", "OptimConfig", "lr_at", "build_optimizer", "set_lr", "clip_grad_norm", "init_params",
           "flops_per_token", "measure_matmul_peak", "keep_freed_memory"]


class TrainingError(RuntimeError):
    """A run that cannot go on (e.g. too many non-finite steps); the message says what to do."""


@dataclass
class OptimConfig:
    """AdamW and its schedule (defaults: Llama 2 pretraining of 7B/13B)."""

    lr: float = 3e-4  # peak LR after warm-up (1.5e-4 for 34B/70B)
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak
    warmup_steps: int = 2000
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-5
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global L2 norm; 0 disables clipping
    fused: bool = True  # torch's fused AdamW kernel (CPU and CUDA); false = the foreach one


def lr_at(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """The LR of optimizer update ``step`` (0-based) of ``total_steps``.

    Warm-up: ``lr * (step + 1) / warmup_steps`` for the first warmup_steps updates (the first
    update already moves). Then cosine from ``lr`` at step ``warmup_steps`` down to
    ``lr * min_lr_ratio`` at the last step, ``total_steps - 1``.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = max(1, total_steps - 1 - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices (projections, embeddings, head) and none on the
    norm gains (our choice; the paper is silent). Parameter order is the model's, so optimizer
    state dicts line up across runs."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kind = {"fused": True} if cfg.fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **kind)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_grad_norm(model: nn.Module, max_norm: float) -> float:
    """Clip the global gradient L2 norm to ``max_norm`` (0: only measure); return the norm before
    clipping as a float (inf or nan when a gradient is not finite, so the caller can skip the
    step). Works for plain and FSDP-sharded (DTensor) parameters alike."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
    if hasattr(norm, "full_tensor"):  # a DTensor: the norm over every rank's shards
        norm = norm.full_tensor()
    return float(norm)


def _param_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


@torch.no_grad()
def init_params(model: nn.Module, seed: int) -> None:
    """Initialise ``model`` (a Transformer, plain or FSDP-sharded, after ``to_empty``) by its
    ``init_std`` rule, each parameter from its own generator seeded by (seed, name): the weights
    are the same whatever the number of ranks, so a 2-rank run starts where a 1-rank run does.
    Sharded parameters are generated in full one at a time (one parameter's memory) and sliced."""
    from llamaforge.parallel import clean_key

    for name, p in model.named_parameters():
        name = clean_key(name)  # the same name with or without activation-checkpoint wrappers
        std = model.init_std(name)
        full_shape, device = p.shape, p.device
        full = torch.empty(full_shape, dtype=p.dtype, device=device)
        if std is None:
            full.fill_(1.0)
        else:
            g = torch.Generator(device=device).manual_seed(_param_seed(seed, name))
            full.normal_(0.0, std, generator=g)
        if hasattr(p, "device_mesh"):  # DTensor: keep this rank's shard of the full tensor
            from torch.distributed.tensor import distribute_tensor

            p.to_local().copy_(distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None).to_local())
        else:
            p.copy_(full)


def flops_per_token(model_args, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward): 6 * (non-embedding parameters) plus the
    attention score and value matmuls, 12 * layers * dim * seq_len (the PaLM appendix convention,
    counting the full T x T attention although causal kernels skip half)."""
    a = model_args
    attn = a.dim * (2 * a.n_heads * a.head_dim + 2 * a.kv_heads * a.head_dim)  # wq, wo, wk, wv
    ffn = 3 * a.dim * a.ffn_hidden_dim
    n = a.n_layers * (attn + ffn + 2 * a.dim) + a.dim + a.dim * a.vocab_size  # blocks, norm, head
    return 6 * n + 12 * a.n_layers * a.dim * seq_len


def measure_matmul_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                        n: int | None = None) -> float:
    """The machine's sustained matmul FLOP/s for ``dtype`` (best of a few n x n products), the
    denominator of MFU. ~0.5 s on a CPU, less on a GPU."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        c = a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    assert torch.isfinite(c).all()
    return 2 * n**3 / best


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks for reuse instead of handing them back to the kernel.

    A training step frees and re-allocates the same large activations every step. With glibc's
    defaults, blocks above a threshold (dynamic, at most 32 MiB) come from fresh mmaps and the
    top of the heap is trimmed when freed, so every step page-faults its activations in again:
    ~160k minor faults and ~1 s of kernel time per 110M step on 2 cores, and ~75k a bench-15m step
    for its [tokens, 32000] logits buffer alone (262 MB, over the mmap cap). Serving every block
    from the heap (no mmaps) and never trimming makes the steady state fault-free; resident
    memory then stays at the step's peak, which the next step needs anyway (plus what the heap's
    fragmentation holds: +15% peak RSS on bench-15m). Process-wide, so the CLI calls it, not the
    library; a no-op off glibc or when the user already set ``MALLOC_*`` tunables (theirs win).
    Returns whether the settings were applied. ``LLAMAFORGE_MALLOC=default`` opts out.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if os.environ.get("LLAMAFORGE_MALLOC") == "default" or any(
            k.startswith("MALLOC_") or k == "GLIBC_TUNABLES" for k in os.environ):
        return False
    libc = ctypes.CDLL("libc.so.6")
    ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(ok)
