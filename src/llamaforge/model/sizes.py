"""Named model presets (RECIPE.md, Table 1) and tiny debug sizes.

Every entry holds exactly the fields of Meta's ``params.json`` (plus ``vocab_size``, which Meta
leaves at -1 and fills from the tokenizer), so ``ModelArgs(**SIZES[name])`` builds the model.
"""

from __future__ import annotations

SIZES: dict[str, dict] = {
    # The published Llama 2 sizes. 34B was not released; its dims are Code Llama 34B's.
    "llama2-7b": dict(dim=4096, n_layers=32, n_heads=32, vocab_size=32000, multiple_of=256),
    "llama2-13b": dict(dim=5120, n_layers=40, n_heads=40, vocab_size=32000, multiple_of=256),
    "llama2-34b": dict(
        dim=8192, n_layers=48, n_heads=64, n_kv_heads=8, vocab_size=32000,
        multiple_of=256, ffn_dim_multiplier=1.0,
    ),
    "llama2-70b": dict(
        dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, vocab_size=32000,
        multiple_of=4096, ffn_dim_multiplier=1.3,
    ),
    # Debug sizes: seconds on a CPU. Small vocab, since a 32000 vocab dominates a tiny model's cost.
    "debug": dict(dim=64, n_layers=2, n_heads=4, vocab_size=512, multiple_of=32, max_seq_len=256),
    # GQA + ffn_dim_multiplier, odd sizes (head_dim 12, FFN rounded up) to catch layout bugs.
    "debug-gqa": dict(
        dim=72, n_layers=3, n_heads=6, n_kv_heads=2, vocab_size=509, multiple_of=24,
        ffn_dim_multiplier=1.3, max_seq_len=256,
    ),
    # The demo's tiny model (~7M parameters with a 4k vocab).
    "tiny": dict(dim=256, n_layers=6, n_heads=8, vocab_size=4096, multiple_of=64, max_seq_len=512),
    # The benchmark configs of the foundation issue (llama2.c's 15M and a ~110M model).
    "bench-15m": dict(dim=288, n_layers=6, n_heads=6, vocab_size=32000, multiple_of=32, max_seq_len=1024),
    "bench-110m": dict(dim=768, n_layers=12, n_heads=12, vocab_size=32000, multiple_of=32, max_seq_len=1024),
    # The GPU pretraining benchmark's ~1B model (0.95B parameters; bench/gpu_pretrain.sh).
    "bench-1b": dict(dim=2048, n_layers=16, n_heads=16, vocab_size=32000, multiple_of=256, max_seq_len=2048),
}


def preset(name: str) -> dict:
    """Return a copy of the named preset's fields; ``ValueError`` lists the known names."""
    if name not in SIZES:
        raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(SIZES)}")
    return dict(SIZES[name])
