"""Training data: pretraining token shards (`pretrain`); SFT dialogs, preference pairs and prompt sets follow."""

from llamaforge.data.pretrain import PretrainData, load_manifest, prepare, token_dtype, unigram_entropy

__all__ = ["prepare", "PretrainData", "load_manifest", "unigram_entropy", "token_dtype"]
