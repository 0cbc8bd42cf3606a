"""Cross-entropy of the output head with one logits buffer (the training loss of every LM stage).

With a 32000-way vocabulary the loss, not the transformer, owns most of a small model's memory
traffic: ``F.cross_entropy(model(x))`` keeps the logits, an fp32 copy of them under autocast, the
log-softmax output and, in backward, a one-hot gradient and the log-softmax gradient, each
[N, vocab]. ``linear_cross_entropy`` keeps ONE [N, vocab] buffer in the compute dtype: the forward
writes the logits into it and saves only the row log-sum-exp; the backward overwrites it, in cache
sized row chunks, with the logit gradient softmax - onehot, then runs the same two matmuls as the
plain path. The arithmetic is the same as ``F.cross_entropy`` on the logits (fp32 softmax), so the
losses agree to rounding.
"""

from __future__ import annotations

import torch

__all__ = ["linear_cross_entropy"]

# rows per elementwise chunk: ~1 MiB of fp32 logits, so the passes of one chunk stay in L2
_CHUNK_BYTES = 2**20


def _chunk_rows(vocab: int) -> int:
    return max(1, _CHUNK_BYTES // (4 * vocab))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, ignore_index: int, reduction: str):
        # h [N, D], weight [V, D], targets [N] (ignore_index where no loss)
        logits = h @ weight.t()  # [N, V] in the compute dtype; reused as the gradient buffer
        valid = targets != ignore_index  # [N]
        safe_targets = torch.where(valid, targets, 0)
        lse = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)  # [N]
        target_logit = logits.gather(1, safe_targets.unsqueeze(1)).squeeze(1).float()  # [N]
        step = _chunk_rows(logits.shape[1])
        for s in range(0, logits.shape[0], step):
            torch.logsumexp(logits[s:s + step].float(), dim=1, out=lse[s:s + step])
        losses = (lse - target_logit) * valid  # [N]
        count = valid.sum()
        loss = losses.sum() if reduction == "sum" else losses.sum() / count
        ctx.save_for_backward(h, weight, safe_targets, valid, logits, lse, count)
        ctx.reduction = reduction
        ctx.used = False
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        if ctx.used:
            raise RuntimeError("linear_cross_entropy: backward reuses its logits buffer in place; "
                               "it cannot run twice (retain_graph is not supported)")
        ctx.used = True
        h, weight, targets, valid, grad_logits, lse, count = ctx.saved_tensors
        scale = grad_loss.float() if ctx.reduction == "sum" else grad_loss.float() / count
        row_scale = valid * scale  # [N], zero on ignored rows
        rows = torch.arange(h.shape[0], device=h.device)
        step = _chunk_rows(grad_logits.shape[1])
        for s in range(0, grad_logits.shape[0], step):
            e = s + step
            # d loss / d logits = (softmax - onehot(target)) * scale, written over the logits
            p = grad_logits[s:e].float().sub_(lse[s:e, None]).exp_()  # [n, V] fp32
            p[rows[: p.shape[0]], targets[s:e]] -= 1.0
            p.mul_(row_scale[s:e, None])
            if grad_logits.dtype != torch.float32:
                grad_logits[s:e].copy_(p)  # bf16/fp16 buffer: round the fp32 chunk back into it
        grad_h = grad_logits @ weight if ctx.needs_input_grad[0] else None  # [N, D]
        grad_w = grad_logits.t() @ h if ctx.needs_input_grad[1] else None  # [V, D]
        return grad_h, grad_w, None, None, None


# Under a torch.compile of the whole forward, dynamo would unroll the chunk loops (hundreds of chunks
# at 32000 classes) into one huge graph: minutes of compiling and a slower step (measured: 176 s and
# 0.2x the eager step, bench-15m). Eager, the loss is already one matmul and in-place row passes.
@torch.compiler.disable
def linear_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of ``h @ weight.T`` against ``targets``, without the [N, vocab] temporaries.

    Equal (to rounding) to ``F.cross_entropy((h @ weight.T).float(), targets, ...)``, under
    autocast too: there the matmuls run in the autocast dtype and the softmax in fp32, as for the
    plain path. The backward can run once (no ``retain_graph``).

    Args:
        h: [N, D] final hidden states (after the final norm).
        weight: [V, D] output head weight.
        targets: LongTensor [N]; ``ignore_index`` marks positions without a loss.
        reduction: "mean" over the non-ignored targets (NaN if there are none, as
            ``F.cross_entropy``) or "sum".
    Returns:
        fp32 scalar.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"linear_cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}")
    if h.dim() != 2 or targets.shape != h.shape[:1]:
        raise ValueError(f"linear_cross_entropy: expected h [N, D] and targets [N], got {tuple(h.shape)} "
                         f"and {tuple(targets.shape)}")
    device = h.device.type
    valid = targets != ignore_index
    if not bool(valid.all()):  # the head only on rows with a loss (SFT: ~40% of them, GAtt ~20%)
        rows = valid.nonzero().squeeze(1)
        h, targets = h.index_select(0, rows), targets.index_select(0, rows)
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        h, weight = h.to(dtype), weight.to(dtype)
    else:
        weight = weight.to(h.dtype)
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(h, weight, targets, ignore_index, reduction)
