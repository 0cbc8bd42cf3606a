"""llamaforge: the Llama 2 system (model, tokenizer, chat format, training stages, evaluations)."""

from llamaforge.model import SIZES, ModelArgs, Transformer

__all__ = ["ModelArgs", "Transformer", "SIZES"]
__version__ = "0.1.0"
