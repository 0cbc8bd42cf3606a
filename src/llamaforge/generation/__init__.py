"""Generation: sampling functions and the batched, KV-cached generator (prefill / decode, streaming)."""

from llamaforge.generation.generator import (
    GenerationResult,
    PaddedBatch,
    cache_bucket,
    chat,
    decode_head,
    decode_one_token,
    generate,
    left_pad,
    prefill,
    stream,
)
from llamaforge.generation.sampling import SamplingParams, sample, top_k_filter, top_p_filter

__all__ = [
    "GenerationResult", "PaddedBatch", "SamplingParams", "cache_bucket", "chat", "decode_head",
    "decode_one_token", "generate", "left_pad", "prefill", "sample", "stream", "top_k_filter", "top_p_filter",
]
