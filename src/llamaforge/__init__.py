"""llamaforge: the Llama 2 system (model, tokenizer, chat format, training stages, evaluations).

The public API: ``ModelArgs``, ``Transformer``, ``SIZES``, ``load_model``, ``save_model``,
``Tokenizer``, ``chat_format`` (dialogs -> ids + loss mask), ``generate`` / ``stream`` / ``chat``
with ``SamplingParams``.
"""

from llamaforge import chat_format
from llamaforge.model import SIZES, ModelArgs, Transformer
from llamaforge.model.checkpoint_io import load_model, save_meta, save_model
from llamaforge.tokenizer import Tokenizer

__all__ = ["ModelArgs", "Transformer", "SIZES", "load_model", "save_model", "save_meta",
           "Tokenizer", "chat_format"]
__version__ = "0.1.0"
