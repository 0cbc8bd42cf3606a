"""Supervised fine-tuning data (RECIPE.md, "Supervised fine-tuning"; paper sec. 3.1).

Dialog JSONL, one record a line: ``{"messages": [{"role": ..., "content": ...}, ...]}`` (the field
name is configurable), an optional system message, then user / assistant turns ending with an
assistant answer. Optional ``"loss": "last_turn"`` trains only on the final answer (Ghost
Attention's synthetic dialogs, ``llamaforge.gatt``); the default ``"all"`` trains on every answer.

Each dialog is rendered by ``chat_format.encode_dialog`` (Meta's ids) and its loss mask keeps only
answer tokens (each answer's text and the EOS that ends it): no loss on BOS, system, user or
``[INST]`` tokens. Examples are then packed as the paper does, concatenated in a seeded order to
fill each ``seq_len`` sequence; a sample that does not fit starts the next sequence, so no sample is
ever split. Attention stays inside each sample (the paper is silent; our choice): every token
carries its sample's id, ``block_causal_mask`` lets a query see only earlier keys of the same
sample, and RoPE positions restart at 0 with each sample, so a packed sample computes exactly what
it would alone.

A dialog longer than ``seq_len`` tokens follows the ``truncation`` policy, never a silent drop:
``"error"`` stops with the file and line; ``"drop_turns"`` (default) removes trailing turns until it
fits (a dialog whose first exchange alone is too long is dropped); ``"drop"`` drops it. Both are
counted in ``DataStats`` and reported with the first few file:line locations.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from llamaforge.chat_format import encode_dialog
from llamaforge.tokenizer import Tokenizer

__all__ = ["Example", "DataStats", "read_jsonl", "read_dialogs", "encode_example", "load_examples", "pack", "SFTData",
           "SFTBatch", "block_causal_mask", "TRUNCATION"]

TRUNCATION = ("error", "drop_turns", "drop")
IGNORE = -100  # target id without a loss (linear_cross_entropy's ignore_index)


@dataclass
class Example:
    """One rendered dialog: ``tokens`` and the per-token answer ``mask`` (same length)."""

    tokens: list[int]
    mask: list[bool]
    where: str  # "file:line", for messages about it


@dataclass
class DataStats:
    """What loading kept and changed (reported by the loops, never silent)."""

    dialogs: int = 0  # records read
    examples: int = 0  # examples kept (after weighting)
    truncated: int = 0  # dialogs that lost trailing turns to fit seq_len
    dropped: int = 0  # dialogs dropped as too long
    tokens: int = 0
    answer_tokens: int = 0  # tokens with a loss
    where: list[str] = field(default_factory=list)  # the first few truncated / dropped dialogs

    def report(self) -> str:
        text = (f"{self.dialogs} dialogs -> {self.examples} examples, {self.tokens:,} tokens "
                f"({self.answer_tokens:,} with a loss)")
        if self.truncated or self.dropped:
            text += (f"; longer than the context: {self.truncated} truncated (trailing turns removed), "
                     f"{self.dropped} dropped (e.g. {', '.join(self.where)})")
        return text


def read_jsonl(path: str | Path, what: str = "data") -> Iterator[tuple[str, dict]]:
    """Yield ("file:line", object) for each non-empty line of a JSONL file; ValueError names the
    line that is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield where, record


def read_dialogs(path: str | Path, field_name: str = "messages") -> Iterator[tuple[str, dict]]:
    """Yield ("file:line", record) for each non-empty line; ValueError names the line of a bad one."""
    for where, record in read_jsonl(path, "SFT data"):
        if not isinstance(record.get(field_name), list):
            raise ValueError(f"{where}: expected an object with a {field_name!r} list of messages")
        yield where, record


def _pairs_end(messages: list[dict]) -> list[int]:
    """Lengths of the message prefixes that end after each assistant turn: [.., 2k (+1 with system)]."""
    return [i + 1 for i, m in enumerate(messages) if m.get("role") == "assistant"]


def encode_example(tokenizer: Tokenizer, messages: list[dict], *, where: str, seq_len: int,
                   loss: str = "all", truncation: str = "drop_turns") -> tuple[Example | None, str]:
    """Render one training dialog; returns (example or None, "ok" | "truncated" | "dropped").

    Raises:
        ValueError: naming ``where`` and the message, on a wrong role order, an empty message, a
            dialog that does not end with an answer, or (``truncation="error"``) one that is too long.
    """
    for i, m in enumerate(messages):
        if isinstance(m, dict) and isinstance(m.get("content"), str) and not m["content"].strip():
            raise ValueError(f"{where}: message {i} ({m.get('role')}) is empty")
    try:
        enc = encode_dialog(tokenizer, messages)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{where}: the dialog ends with a {messages[-1]['role']} message; a training "
                         f"dialog ends with the assistant's answer")
    status = "ok"
    if len(enc.tokens) > seq_len:
        if truncation == "error":
            raise ValueError(f"{where}: the dialog has {len(enc.tokens)} tokens, more than data.seq_len={seq_len} "
                             f"(set data.truncation to 'drop_turns' or 'drop' to allow it)")
        if truncation not in TRUNCATION:
            raise ValueError(f"data.truncation must be one of {TRUNCATION}, got {truncation!r}")
        enc = None
        if truncation == "drop_turns":  # the longest prefix of whole exchanges that fits
            for end in reversed(_pairs_end(messages)[:-1]):
                shorter = encode_dialog(tokenizer, messages[:end])
                if len(shorter.tokens) <= seq_len:
                    enc = shorter
                    break
        if enc is None:
            return None, "dropped"
        status = "truncated"
    mask = enc.mask
    if loss == "last_turn":
        from llamaforge.gatt import gatt_loss_mask

        mask = gatt_loss_mask(mask)
    elif loss != "all":
        raise ValueError(f"{where}: 'loss' must be 'all' or 'last_turn', got {loss!r}")
    return Example(enc.tokens, mask, where), status


def load_examples(paths: Sequence[str | Path], tokenizer: Tokenizer, *, seq_len: int,
                  weights: Sequence[float] = (), truncation: str = "drop_turns", seed: int = 0,
                  field_name: str = "messages") -> tuple[list[Example], DataStats]:
    """Read and render every dialog of ``paths``.

    Args:
        weights: per path, how many times each of its dialogs appears (the mixing of splits, e.g.
            safety demonstrations): 2.0 twice, 0.5 a seeded half. Default 1.0 each.
    Returns:
        (examples in file order, stats).
    """
    weights = list(weights) or [1.0] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"data.weights has {len(weights)} values for {len(paths)} data.paths")
    stats, out = DataStats(), []
    for path, weight in zip(paths, weights):
        if weight < 0:
            raise ValueError(f"data.weights: {weight} for {path} is negative")
        kept = []
        for where, record in read_dialogs(path, field_name):
            stats.dialogs += 1
            ex, status = encode_example(tokenizer, record[field_name], where=where, seq_len=seq_len,
                                        loss=record.get("loss", "all"), truncation=truncation)
            if status != "ok":
                setattr(stats, status, getattr(stats, status) + 1)
                if len(stats.where) < 3:
                    stats.where.append(where)
            if ex is not None:
                kept.append(ex)
        whole, frac = divmod(weight, 1.0)
        rng = random.Random(f"llamaforge.sft.weights:{seed}:{path}")
        out += kept * int(whole) + [ex for ex in kept if rng.random() < frac]
    stats.examples = len(out)
    stats.tokens = sum(len(ex.tokens) for ex in out)
    stats.answer_tokens = sum(sum(ex.mask) for ex in out)
    return out, stats


def pack(lengths: Sequence[int], seq_len: int, seed: int | None) -> list[list[int]]:
    """Group examples into sequences of at most ``seq_len`` tokens (the paper's concatenation).

    The examples are taken in a seeded order (file order when ``seed`` is None) and appended to the current sequence while they fit;
    one that does not fit starts the next. Every example is in exactly one pack, whole.

    Args:
        lengths: token count of each example (each <= seq_len).
    Returns:
        packs: lists of example indices.
    """
    order = list(range(len(lengths)))
    if seed is not None:
        random.Random(f"llamaforge.sft.pack:{seed}").shuffle(order)
    packs: list[list[int]] = []
    used = seq_len + 1
    for i in order:
        assert lengths[i] <= seq_len, "examples are truncated to seq_len before packing"
        if used + lengths[i] > seq_len:
            packs.append([])
            used = 0
        packs[-1].append(i)
        used += lengths[i]
    return packs


class SFTBatch(NamedTuple):
    tokens: torch.Tensor  # [B, T] input ids (0 in the padding)
    targets: torch.Tensor  # [B, T] next token where it is an answer token, else -100
    pos_ids: torch.Tensor  # [B, T] RoPE positions, restarting at 0 with each sample
    doc_ids: torch.Tensor  # [B, T] the sample each token belongs to (-1: padding)


def block_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] sample ids -> BoolTensor [B, 1, T, T]: query i sees key j iff j <= i, same sample."""
    T = doc_ids.shape[1]
    same = doc_ids.unsqueeze(2) == doc_ids.unsqueeze(1)  # [B, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return (same & causal).unsqueeze(1)


class SFTData:
    """Packed SFT sequences addressed by a global counter, like ``PretrainData``.

    Sequence number ``i`` is pack ``perm_e[i % n]`` of epoch ``e = i // n``, where ``perm_e`` is a
    seeded permutation per epoch: the data position is one integer, so resumed and multi-rank runs
    read exactly the batches of an uninterrupted single-rank run.
    """

    def __init__(self, examples: Sequence[Example], seq_len: int, seed: int = 0, shuffle: bool = True):
        if not examples:
            raise ValueError("no SFT examples to train on (every dialog was empty or dropped)")
        self.examples, self.seq_len, self.seed, self.shuffle = list(examples), seq_len, seed, shuffle
        self.packs = pack([len(ex.tokens) for ex in self.examples], seq_len, seed if shuffle else None)
        self._perm: dict[int, list[int]] = {}

    @property
    def num_sequences(self) -> int:
        return len(self.packs)

    def _pack_at(self, i: int) -> list[int]:
        epoch, k = divmod(i, len(self.packs))
        if not self.shuffle:
            return self.packs[k]
        if epoch not in self._perm:
            self._perm = {epoch: list(range(len(self.packs)))}  # only the current epoch is kept
            random.Random(f"llamaforge.sft.epoch:{self.seed}:{epoch}").shuffle(self._perm[epoch])
        return self.packs[self._perm[epoch][k]]

    def get(self, start: int, count: int) -> SFTBatch:
        """Sequences ``start .. start + count - 1`` as one batch of ``seq_len`` positions."""
        T = self.seq_len
        tokens = torch.zeros(count, T, dtype=torch.long)
        targets = torch.full((count, T), IGNORE, dtype=torch.long)
        pos_ids = torch.zeros(count, T, dtype=torch.long)
        doc_ids = torch.full((count, T), -1, dtype=torch.long)
        for b in range(count):
            at = 0
            for j, idx in enumerate(self._pack_at(start + b)):
                ex = self.examples[idx]
                n = len(ex.tokens)
                ids = torch.tensor(ex.tokens)
                tokens[b, at:at + n] = ids
                # position t predicts token t + 1 of the same sample, where that token is an answer token
                keep = torch.tensor(ex.mask[1:], dtype=torch.bool)
                targets[b, at:at + n - 1] = torch.where(keep, ids[1:], IGNORE)
                pos_ids[b, at:at + n] = torch.arange(n)
                doc_ids[b, at:at + n] = j
                at += n
            pos_ids[b, at:] = torch.arange(T - at)  # padding: its own block, no loss
        return SFTBatch(tokens, targets, pos_ids, doc_ids)

