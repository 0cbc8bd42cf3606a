"""The Llama 2 model: ModelArgs .. Transformer, in one file (RECIPE.md, sec. 2.2).

Parameter names are Meta's (``tok_embeddings``, ``layers.N.attention.wq``, ...): they are a file
format, and ``model/checkpoint_io.py`` maps them to and from Hugging Face's. The same ``forward``
serves training (no cache; causal, or packed documents through a mask or ``packed_documents``)
and cached inference (a KVCache that ``model/kv_cache.py`` attaches to each attention layer from
outside).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from llamaforge.model.cross_entropy import linear_cross_entropy


@dataclass
class ModelArgs:
    """Architecture only, with the field names of Meta's ``params.json``.

    ``ModelArgs(**json.load(open("params.json")))`` builds a Meta checkpoint's config (Meta writes
    ``vocab_size: -1``; the checkpoint loader fills it from the embedding shape).
    """

    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: Optional[int] = None  # None: multi-head attention (n_kv_heads == n_heads)
    vocab_size: int = 32000
    multiple_of: int = 256  # FFN width is rounded up to a multiple of this
    ffn_dim_multiplier: Optional[float] = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 4096  # Llama 2's context; also the default KV cache length

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"ModelArgs: dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"ModelArgs: head_dim={self.head_dim} must be even for RoPE")
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"ModelArgs: n_heads={self.n_heads} is not a multiple of n_kv_heads={self.kv_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ffn_hidden_dim(self) -> int:
        """Meta's FFN width rule: int(2 * 4 * dim / 3), times the multiplier, rounded up."""
        hidden = int(2 * 4 * self.dim / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


class _RMSNormFn(torch.autograd.Function):
    """x * rsqrt(mean(x^2) + eps) over the last dim, with a closed-form backward.

    Autograd through ``F.rms_norm`` runs its decomposition (pow, mean, add, rsqrt, mul) and the
    backward of each: ~15 passes over the activations. Here the forward is ATen's fused kernel
    (which also returns 1/rms) and the backward three elementwise passes and a row mean:
    dx = r * (g - xhat * mean(g * xhat)), xhat = x * r.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], None, eps)  # rstd [..., 1]
        ctx.save_for_backward(x, rstd)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, rstd = ctx.saved_tensors
        xhat = x * rstd
        return rstd * (g - xhat * (g * xhat).mean(-1, keepdim=True)), None


class RMSNorm(nn.Module):
    """x / rms(x) * weight, the statistic computed in fp32 whatever the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or not torch.is_grad_enabled():
            normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)  # inductor fuses it; no graph
        else:
            normed = _RMSNormFn.apply(x.float(), self.eps)
        normed = normed.type_as(x)
        out = normed * self.weight
        if torch.is_autocast_enabled(x.device.type):
            # every consumer is a linear layer that autocast would feed a low-precision copy of
            # `out`, one copy per layer (wq, wk and wv; w1 and w3): make that copy once here
            out = out.to(torch.get_autocast_dtype(x.device.type))
        return out


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation angles of RoPE for the given positions.

    Args:
        positions: LongTensor [T] or [B, T], the absolute position of each token.
    Returns:
        (cos, sin), each fp32 [T, 1, head_dim // 2] or [B, T, 1, head_dim // 2] (the 1 broadcasts
        over heads). Computed per call rather than stored, so a dtype cast of the model never
        rounds them and a meta-device build needs no buffer re-initialisation.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float().unsqueeze(-1) * inv_freq  # [..., T, head_dim // 2]
    return angles.cos().unsqueeze(-2), angles.sin().unsqueeze(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ADJACENT pairs (x[2i], x[2i+1]) by the angles, as Meta's complex-number form does.

    Args:
        x: [B, T, H, head_dim]; cos, sin: from ``rope_cos_sin``.
    Returns:
        [B, T, H, head_dim] in x's dtype (the rotation itself runs in fp32).
    """
    pairs = x.float().unflatten(-1, (-1, 2))  # [B, T, H, head_dim // 2, 2]
    if not torch.compiler.is_compiling():
        # eager: one complex multiply (Meta's own form) instead of six strided real passes and a
        # stack, ~3x less time forward + backward on a CPU; same products, same fp32 arithmetic
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * torch.complex(cos, sin))
        return rotated.flatten(-2).type_as(x)
    # compiled: the real form, which inductor fuses into one kernel (it does not fuse complex ops)
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)  # [B, T, H, head_dim]


def single_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Attention of one query position, as two small matmuls and a softmax.

    What SDPA computes for T = 1, without its CPU flash kernel, whose set-up costs ~0.1 ms a call
    whatever the size: most of a small model's decode step. Under ``torch.compile`` these ops fuse.

    Args:
        q: [B, H, 1, hd]; k, v: [B, Hkv, S, hd], H a multiple of Hkv (query heads j*rep..(j+1)*rep-1
            share kv head j, as in ``enable_gqa``).
        mask: BoolTensor broadcastable to [B, 1, 1, S], True where a key is seen; None: all keys.
    Returns:
        [B, H, 1, hd], the dtype of v.
    """
    bsz, n_heads, _, head_dim = q.shape
    n_kv = k.shape[1]
    # the rep query heads of one kv head become the rows of one [rep, hd] x [hd, S] matmul
    q = q.view(bsz, n_kv, n_heads // n_kv, head_dim)
    scores = (q @ k.transpose(-1, -2)).float() * head_dim**-0.5  # [B, Hkv, rep, S]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # mask [B, 1, 1, S] broadcasts over heads
    probs = scores.softmax(dim=-1).to(v.dtype)
    return (probs @ v).view(bsz, n_heads, 1, head_dim)


@dataclass(frozen=True)
class PackedDocuments:
    """Where the documents of a packed [B, T] batch lie, for attention inside each document
    computed document by document (``packed_documents``) instead of through a [B, 1, T, T] mask.

    Documents are grouped by their length rounded up to a bucket: group i holds ``shapes[i] =
    (n_i, L_i)``, n_i documents padded to L_i positions by repeating each one's last position.
    ``index``: LongTensor [sum n_i * L_i], the flat positions (b * T + t) of every group's documents
    in order; ``inverse``: LongTensor [B * T], the entry of ``index`` that reads each position
    first. What a varlen kernel (flash-attention's ``cu_seqlens``) does on a GPU: no work on pairs
    of tokens from different documents, and every call is plain causal.
    """

    index: torch.Tensor
    shapes: tuple[tuple[int, int], ...]
    inverse: torch.Tensor


def packed_documents(doc_ids: torch.Tensor, bucket: int = 32,
                     device: Optional[torch.device | str] = None) -> PackedDocuments:
    """[B, T] document ids (a new document starts wherever the id changes along a row, and at each
    row's start; the padding's id is its own document) -> ``PackedDocuments`` on ``device`` (default
    doc_ids' device), lengths rounded up to a multiple of ``bucket``."""
    bsz, seqlen = doc_ids.shape
    device = doc_ids.device if device is None else device
    ids = doc_ids.cpu()  # built on the host: a few small index ops a batch
    new = torch.ones_like(ids, dtype=torch.bool)
    new[:, 1:] = ids[:, 1:] != ids[:, :-1]
    starts = new.flatten().nonzero().squeeze(1)  # [D] flat start of every document
    lengths = torch.diff(starts, append=torch.tensor([bsz * seqlen]))  # rows start documents: no overlap
    padded = (lengths + bucket - 1) // bucket * bucket
    inverse = torch.empty(bsz * seqlen, dtype=torch.long)
    index, shapes, offset = [], [], 0
    for length in padded.unique().tolist():
        sel = (padded == length).nonzero().squeeze(1)
        s, n = starts[sel, None], lengths[sel, None]  # [n, 1]
        steps = torch.arange(length)[None]  # [1, L]
        index.append(torch.minimum(s + steps, s + n - 1).flatten())
        real = steps < n  # [n, L]
        inverse[(s + steps)[real]] = offset + torch.arange(sel.numel() * length).view(-1, length)[real]
        shapes.append((sel.numel(), length))
        offset += sel.numel() * length
    return PackedDocuments(torch.cat(index).to(device), tuple(shapes), inverse.to(device))


@torch.compiler.disable  # data-dependent shapes: eager inside compiled blocks
def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, docs: PackedDocuments) -> torch.Tensor:
    """Causal attention inside each packed document.

    Args:
        q: [B, T, H, hd]; k, v: [B, T, Hkv, hd] (RoPE applied, positions restarting per document).
        docs: from ``packed_documents`` on the batch's document ids.
    Returns:
        [B, T, H * hd], in v's dtype; equal to SDPA under the block-causal mask.
    """
    bsz, seqlen, n_heads, head_dim = q.shape
    n_kv = k.shape[2]
    # one gather of q, k and v for every document (its backward: one index_add)
    qkv = torch.cat((q, k, v), dim=2).flatten(0, 1).index_select(0, docs.index)  # [sum n*L, H + 2 Hkv, hd]
    outs = []
    # (one split, not slices: a slice's backward writes a zero tensor of the whole input)
    for (n, length), group in zip(docs.shapes, qkv.split([n * length for n, length in docs.shapes])):
        group = group.view(n, length, -1, head_dim).transpose(1, 2)  # [n, heads, L, hd]
        fp32 = _fp32_attention_backward(group)
        qd, kd, vd = (group.float() if fp32 else group).split((n_heads, n_kv, n_kv), dim=1)  # one cast
        y = _sdpa(qd, kd, vd, None, fp32=fp32).to(v.dtype)  # [n, H, L, hd]
        outs.append(y.transpose(1, 2).reshape(n * length, n_heads * head_dim))
    return torch.cat(outs).index_select(0, docs.inverse).view(bsz, seqlen, -1)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
          fp32: Optional[bool] = None) -> torch.Tensor:
    """SDPA of [B, H, T, hd] queries on [B, Hkv, S, hd] keys and values (causal where mask is None),
    in fp32 with autocast off where ``fp32`` (default: ``_fp32_attention_backward(q)``); returns v's
    dtype."""
    dtype = v.dtype
    fp32 = _fp32_attention_backward(q) if fp32 is None else fp32
    if fp32:  # (autocast would cast fp32 inputs of SDPA back to bf16: off for this call)
        q, k, v = q.float(), k.float(), v.float()
    with torch.autocast(q.device.type, enabled=False) if fp32 else contextlib.nullcontext():
        return F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=mask,
            is_causal=mask is None,
            enable_gqa=k.shape[1] != q.shape[1],  # kv head j serves query heads j*rep..(j+1)*rep-1
        ).to(dtype)


def _fp32_attention_backward(q: torch.Tensor) -> bool:
    """Whether a bf16 training attention runs in fp32: on a CPU, for sequences of up to 256, where
    the CPU flash kernel's bf16 backward is the slower one.

    Measured (torch 2.13, 2 cores, the CLI's malloc settings; forward + backward of the `tiny` model,
    compiled blocks, bf16 / fp32 attention step time): 32 x 128 tokens with a packed-document mask
    1.47x, 32 x 256 masked 1.10x; bench-15m (head_dim 48) 8 x 256 1.05x; bench-110m (head_dim 64)
    4 x 256 1.00x; 16 x 512 masked and 8 x 512 0.99x (so longer sequences stay bf16). Isolated
    attention, [32, 8, 128, 32] causal: 52 vs 24 ms. Forward-only calls (prefill) stay in bf16,
    faster there. fp32 is also the more exact of the two.
    """
    return (q.device.type == "cpu" and q.dtype == torch.bfloat16 and torch.is_grad_enabled()
            and q.shape[-2] <= 256)


class Attention(nn.Module):
    """Causal (grouped-query) self-attention through ``scaled_dot_product_attention`` (a decode step,
    one query, through ``single_query_attention``)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, args.dim, bias=False)
        self.kv_cache = None  # a model/kv_cache.KVCache, attached from outside for inference

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: Optional[torch.Tensor],
        input_pos: Optional[torch.Tensor],
    ) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        q = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        k = self.wk(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if isinstance(mask, PackedDocuments):  # packed training documents (no cache)
            return self.wo(packed_attention(q, k, v, mask))
        # [B, T, H, hd] -> [B, H, T, hd], the layout SDPA and the cache use
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.kv_cache is not None:
            k, v = self.kv_cache.update(input_pos, k, v)  # [B, Hkv, S, hd], S = cache length
        if seqlen == 1:  # a decode step
            y = single_query_attention(q, k, v, mask)
        else:
            y = _sdpa(q, k, v, mask)  # [B, H, T, hd]
        return self.wo(y.transpose(1, 2).reshape(bsz, seqlen, -1))  # [B, T, H * hd] -> [B, T, dim]


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: h = x + attn(norm(x)); out = h + ffn(norm(h))."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.layer_id = layer_id
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args.dim, args.ffn_hidden_dim)
        self.attention_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, x, cos, sin, mask, input_pos):
        h = x + self.attention(self.attention_norm(x), cos, sin, mask, input_pos)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """Llama 2 decoder: embeddings, n_layers blocks, final RMSNorm, untied output head.

    A reward or value model is this same class with ``output`` replaced by a scalar head
    (``model/heads.py``).
    """

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(i, args) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        if not any(p.is_meta for p in self.parameters()):
            self.init_weights()

    def init_std(self, name: str, std: float = 0.02) -> Optional[float]:
        """The init of parameter ``name`` (our choice; the paper is silent): N(0, std) for
        embeddings and projections, std / sqrt(2 * n_layers) for the projections that write into
        the residual stream (wo, w2, as in GPT-2); None for the norm gains, which start at one."""
        if name.endswith("norm.weight"):
            return None
        if name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
            return std / math.sqrt(2 * self.args.n_layers)
        return std

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Initialise every parameter by ``init_std`` from the global RNG. Call after ``to_empty``
        on a meta build (the training loops use ``train.common.init_params``, seeded per parameter
        so that any sharding gives the same weights)."""
        for name, p in self.named_parameters():
            p_std = self.init_std(name, std)
            if p_std is None:
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, mean=0.0, std=p_std)

    def forward(
        self,
        tokens: torch.Tensor,
        input_pos: Optional[torch.Tensor] = None,
        *,
        pos_ids: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        last_n: Optional[int] = None,
        targets: Optional[torch.Tensor] = None,
        loss_reduction: str = "mean",
        head_t: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Logits for every (or the last ``last_n``) position, or with ``targets`` the LM loss.

        Args:
            tokens: LongTensor [B, T].
            input_pos: LongTensor [T], the KV-cache slots these tokens fill (cached inference only;
                also their RoPE positions unless ``pos_ids`` is given).
            pos_ids: LongTensor [B, T] RoPE positions per row (left-padded batches, packed
                documents whose positions restart). Default: ``input_pos``, else 0..T-1.
            mask: BoolTensor broadcastable to [B, 1, T, S], True where a query may attend to a key
                (S = T without a cache, the cache length with one), or a ``PackedDocuments`` of
                packed training documents (no cache; attention computed inside each document).
                Default: causal.
            last_n: compute the output head only on the last n positions (prefill, scoring).
            targets: LongTensor [B, T], the next token of each position, -100 where no loss. The
                loss is computed here (so FSDP's unsharded head is used inside forward) by
                ``linear_cross_entropy``, which never materialises the fp32 [B, T, vocab] temporaries.
            loss_reduction: "mean" over the non-ignored targets, or "sum".
            head_t: the output head's weight as a contiguous [dim, vocab] copy, used in place of
                ``output.weight`` (the CPU decode loop passes one: a product of a few rows with the
                head reads that layout 1.3-2.5x faster than the transposed [vocab, dim] one).
        Returns:
            FloatTensor [B, T or last_n, vocab_size] (fp32 whatever the compute dtype); with
            ``targets``, the fp32 scalar loss.
        """
        bsz, seqlen = tokens.shape
        cache = self.layers[0].attention.kv_cache if len(self.layers) else None
        if (cache is None) != (input_pos is None):
            raise ValueError("Transformer.forward: input_pos is required with a KV cache and only then")
        if pos_ids is None:
            pos_ids = input_pos if input_pos is not None else torch.arange(seqlen, device=tokens.device)
        if mask is None and cache is not None:
            # causal over cache slots: query t sees every slot up to its own
            slots = torch.arange(cache.max_seq_len, device=tokens.device)
            mask = slots.unsqueeze(0) <= input_pos.unsqueeze(1)  # [T, S]
        cos, sin = rope_cos_sin(pos_ids, self.args.head_dim, self.args.rope_theta)
        h = self.tok_embeddings(tokens)  # [B, T, dim]
        for layer in self.layers:
            h = layer(h, cos, sin, mask, input_pos)
        if last_n is not None:
            h = h[:, -last_n:]
        h = self.norm(h)
        if targets is not None:
            return linear_cross_entropy(h.flatten(0, 1), self.output.weight, targets.flatten(),
                                        reduction=loss_reduction)  # [B*T, dim] x [vocab, dim]
        if head_t is not None:
            return (h @ head_t).float()
        return self.output(h).float()
