"""llamaforge: the Llama 2 system (model, tokenizer, chat format, training stages, evaluations).

The public API: ``ModelArgs``, ``Transformer``, ``SIZES``, ``load_model``, ``save_model``,
``save_meta``, ``Tokenizer``, ``chat_format`` (dialogs -> ids + loss mask), and ``generate`` /
``stream`` / ``chat`` with ``SamplingParams`` (from ``llamaforge.generation``).
"""

from llamaforge import chat_format
from llamaforge.generation import GenerationResult, SamplingParams, chat, generate, stream
from llamaforge.model import SIZES, ModelArgs, Transformer
from llamaforge.model.checkpoint_io import load_model, save_meta, save_model
from llamaforge.tokenizer import Tokenizer

__all__ = ["ModelArgs", "Transformer", "SIZES", "load_model", "save_model", "save_meta",
           "Tokenizer", "chat_format", "generate", "stream", "chat", "SamplingParams",
           "GenerationResult"]
__version__ = "0.1.0"
