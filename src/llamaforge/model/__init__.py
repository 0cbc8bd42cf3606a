"""The Llama 2 model family: architecture, presets, KV cache, checkpoint formats."""

from llamaforge.model.llama import ModelArgs, Transformer
from llamaforge.model.sizes import SIZES

__all__ = ["ModelArgs", "Transformer", "SIZES"]
