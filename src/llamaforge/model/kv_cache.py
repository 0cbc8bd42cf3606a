"""A static KV cache, attached to a model's attention layers from outside the model constructor.

The generator sizes it for one batch (``setup_kv_caches``), fills slots with ``update`` during
prefill and decode, and removes it afterwards (``remove_kv_caches``), so the same Transformer
instance keeps training without a cache.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class KVCache(nn.Module):
    """Keys and values of one attention layer: two buffers [B, n_kv_heads, S, head_dim]."""

    def __init__(self, batch_size: int, max_seq_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str | None = None):
        super().__init__()
        shape = (batch_size, n_kv_heads, max_seq_len, head_dim)
        self.max_seq_len = max_seq_len
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Write k, v [B, Hkv, T, hd] into slots ``input_pos`` [T]; return the whole cache
        (k, v each [B, Hkv, S, hd]); unfilled slots must be masked by the caller."""
        if k.shape[0] != self.k_cache.shape[0]:
            raise ValueError(f"KVCache: batch of {k.shape[0]} rows, cache set up for {self.k_cache.shape[0]}")
        self.k_cache.index_copy_(2, input_pos, k.to(self.k_cache.dtype))
        self.v_cache.index_copy_(2, input_pos, v.to(self.v_cache.dtype))
        return self.k_cache, self.v_cache


def setup_kv_caches(model: nn.Module, batch_size: int, max_seq_len: Optional[int] = None,
                    dtype: Optional[torch.dtype] = None) -> None:
    """Attach a fresh KVCache of ``batch_size`` x ``max_seq_len`` slots to every attention layer.

    Defaults: the model's context length and its parameter dtype, on the model's device.
    """
    args = model.args
    max_seq_len = max_seq_len or args.max_seq_len
    if max_seq_len > args.max_seq_len:
        raise ValueError(f"KV cache of {max_seq_len} slots exceeds the model's context {args.max_seq_len}")
    weight = model.tok_embeddings.weight
    dtype = dtype or weight.dtype
    for layer in model.layers:
        layer.attention.kv_cache = KVCache(batch_size, max_seq_len, args.kv_heads, args.head_dim,
                                           dtype, weight.device)


def remove_kv_caches(model: nn.Module) -> None:
    """Detach the caches (training and cache-free forwards work again)."""
    for layer in model.layers:
        layer.attention.kv_cache = None
