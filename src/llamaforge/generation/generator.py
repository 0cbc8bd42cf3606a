"""Batched, KV-cached generation of token ids: ``prefill``, ``decode_one_token``, one loop.

Prompts of different lengths share a batch by LEFT padding to the longest prompt, so that at each
step every row writes its new key/value to the same cache slot and one forward serves the batch.
Each row gets its own RoPE positions (slot - pad, so its first real token is at position 0) and an
attention mask over cache slots that hides its padding: a row's output is what it would get alone.
Caches are attached for one call and removed afterwards (also on errors and early ``close``), so the
same model trains again right after.

``compile=True`` runs the one-token decode step through ``torch.compile`` (gpt-fast style: fixed
shapes, the slot as a tensor, the cache length rounded up to a bucket so that calls with other
prompt lengths reuse the graph). Prefill stays eager: it runs once per call.

Result design: ``generate`` returns, per prompt, a ``GenerationResult`` holding the new ids
WITHOUT the prompt and WITHOUT the stop token that ended the row, plus why the row ended
("stop": it produced EOS or a ``stop_ids`` token; "length": ``max_new_tokens`` reached).
``stream`` yields the same tokens step by step; ``generate`` is a consumer of the same loop.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Literal, Optional, Sequence

import torch
from torch.utils.weak import WeakTensorKeyDictionary

from llamaforge.generation.sampling import SamplingParams, sample
from llamaforge.model.kv_cache import remove_kv_caches, setup_kv_caches

if TYPE_CHECKING:
    from llamaforge.chat_format import Dialog
    from llamaforge.model.llama import Transformer
    from llamaforge.tokenizer import Tokenizer


@dataclass
class GenerationResult:
    """What one prompt produced.

    Attributes:
        tokens: generated ids, without the prompt and without the stop token.
        finish_reason: "stop" (EOS or a stop id was produced) or "length" (max_new_tokens reached).
    """

    tokens: list[int]
    finish_reason: Literal["stop", "length"]


@dataclass
class PaddedBatch:
    """Left-padded prompts and the per-row tensors the loop needs, built once per call.

    Attributes:
        tokens: LongTensor [B, T], prompts left-padded to the longest (T tokens).
        pad_lens: LongTensor [B], padding slots in front of each row.
        positions: LongTensor [B, S], RoPE position of every cache slot per row (slot - pad,
            clamped to 0 on the padding, whose positions are never attended).
        key_valid: BoolTensor [B, S], False on a row's padding slots.
        slots: LongTensor [S], 0..S-1 (sliced per step rather than rebuilt).
    """

    tokens: torch.Tensor
    pad_lens: torch.Tensor
    positions: torch.Tensor
    key_valid: torch.Tensor
    slots: torch.Tensor


def left_pad(prompts: Sequence[Sequence[int]], cache_len: int, pad_id: int,
             device: torch.device | str | None = None) -> PaddedBatch:
    """Build a ``PaddedBatch`` for ``cache_len`` (S) cache slots; prompts must be non-empty."""
    longest = max(len(p) for p in prompts)
    tokens = torch.tensor([[pad_id] * (longest - len(p)) + list(p) for p in prompts], device=device)
    pad_lens = torch.tensor([longest - len(p) for p in prompts], device=device)
    slots = torch.arange(cache_len, device=device)
    rel = slots[None, :] - pad_lens[:, None]  # [B, S]
    return PaddedBatch(tokens, pad_lens, rel.clamp(min=0), rel >= 0, slots)


def prefill(model: Transformer, batch: PaddedBatch, last_n: Optional[int] = 1) -> torch.Tensor:
    """Run the whole padded prompt through the model in one forward, filling cache slots 0..T-1.

    Args:
        model: a Transformer with KV caches attached (``setup_kv_caches``) for B rows.
        batch: from ``left_pad``.
        last_n: logits for the last n positions only (1 for generation); None for all T.
    Returns:
        FloatTensor [B, last_n or T, vocab_size].
    """
    seqlen = batch.tokens.shape[1]
    input_pos = batch.slots[:seqlen]
    causal = batch.slots[None, :] <= input_pos[:, None]  # [T, S]
    own = batch.slots[None, :] == input_pos[:, None]  # [T, S]
    # A padding query sees only its own slot: a fully masked softmax row would give NaN, and the
    # NaN values cached for the padding would reach real rows as 0 * NaN in the next layer.
    mask = causal & (batch.key_valid[:, None, :] | own)  # [B, T, S]
    return model(batch.tokens, input_pos, pos_ids=batch.positions[:, :seqlen],
                 mask=mask[:, None], last_n=last_n)  # mask [B, 1, T, S] broadcasts over heads


def decode_one_token(model: Transformer, tokens: torch.Tensor, slot: int | torch.Tensor,
                     batch: PaddedBatch, head_t: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Feed one token per row at cache slot ``slot`` and return the next-token logits.

    Args:
        tokens: LongTensor [B], the previous step's tokens.
        slot: the cache slot they fill (the same for every row, thanks to left padding): an int,
            or a 0-d LongTensor, which the compiled path passes so that one graph serves every slot.
        head_t: optional [dim, vocab] contiguous copy of the output head (see ``decode_head``).
    Returns:
        FloatTensor [B, vocab_size].
    """
    # everything below is built from tensors, so a compiled graph does not specialise on the slot
    input_pos = batch.slots[slot:slot + 1] if isinstance(slot, int) else slot.view(1)  # [1]
    mask = batch.key_valid & (batch.slots <= input_pos)  # [B, S]: the row's real tokens up to this one
    logits = model(tokens[:, None], input_pos, pos_ids=batch.positions.index_select(1, input_pos),
                   mask=mask[:, None, None], head_t=head_t)  # tokens, pos_ids [B, 1]; mask [B, 1, 1, S]
    return logits[:, -1]


def decode_head(model: Transformer) -> Optional[torch.Tensor]:
    """The output head as a contiguous [dim, vocab] copy for the decode steps of one call, on CPU.

    A decode step multiplies a few rows by the head, the largest matrix of a small model (32000 x
    dim). MKL/oneDNN read the [dim, vocab] layout of that product much faster than the transposed
    view of the [vocab, dim] parameter (fp32, 2 cores, 32000 x 288: 1.6 vs 3.9 ms at batch 1, 4.6
    vs 6.6 ms at batch 4; 32000 x 768: 4.0 vs 6.5 ms at batch 1). The copy is made afresh at every
    call (~7 ms at 32000 x 288, in blocks of rows), so a model that trains between calls decodes
    with its current head: version counters cannot tell, as the fused AdamW step does not move
    them. Its buffer (one head's memory) is kept while the parameter lives, so no call page-faults
    a new one in. None on accelerators (their GEMMs take either layout at full speed) and for
    sharded heads.
    """
    w = model.output.weight
    if w.device.type != "cpu" or hasattr(w, "device_mesh"):
        return None
    # a normal tensor whatever the caller's mode: one made under inference mode could not be
    # refilled outside it
    with torch.inference_mode(False), torch.no_grad():
        out = _DECODE_HEADS.get(w)
        if out is None or out.shape != w.shape[::-1] or out.dtype != w.dtype:
            out = _DECODE_HEADS[w] = torch.empty(w.shape[::-1], dtype=w.dtype)
        for s in range(0, w.shape[0], 1024):  # a block of 1024 rows transposes in cache (2.3x faster)
            out[:, s:s + 1024].copy_(w[s:s + 1024].t())
    return out


_DECODE_HEADS = WeakTensorKeyDictionary()  # output.weight -> its [dim, vocab] buffer


_MIN_BUCKET = 64  # cache slots of the smallest bucket (and the step between buckets up to 512)
_RECOMPILE_LIMIT = 64  # decode graphs kept: distinct (batch size, bucket, dtype, device) in a process


@functools.cache
def _compiled_decode_one_token(decompose_mm: bool = False):
    """``decode_one_token`` through ``torch.compile``, created on first use (``torch.compile``
    imports the compiler stack, a second or so that a plain import should not pay).

    Fixed shapes (dynamic=False): every input of a step has the same shape for the whole call, and
    the slot is a tensor, so one graph per (batch size, cache bucket, dtype) serves every step and
    every later call of that size. Options, measured on a 2-core CPU (bench-15m, batch 1, ms per
    step: eager 2.6): the C++ wrapper removes the Python call per kernel (1.92 -> 1.77);
    ``decompose_mm_pass`` turns the small one-row matmuls of the layers (dims <= 2048) into
    generated kernels fused with their neighbours instead of ~40 MKL calls (-> 1.64). No gain from
    max_autotune (its C++ GEMMs need frozen weights) nor from freezing, which would also bake in
    the weights: here parameters stay graph inputs, so a model that trains between calls is decoded
    with its current weights. ``decompose_mm`` is for batch 1 only: at batch 4-8 the pass also
    decomposes the output head's [B, dim] x [dim, vocab] matmul, ~30x slower a step (320 vs 11 ms,
    bench-15m batch 8, bench/bench_rollout.py). Past ``_RECOMPILE_LIMIT`` graphs torch raises
    ``FailOnRecompileLimitHit``; the loop then warns and decodes that call eagerly.
    """
    options = {"cpp_wrapper": True}
    if decompose_mm:
        options["post_grad_fusion_options"] = {"decompose_mm_pass": {}}
    return torch.compile(decode_one_token, fullgraph=True, dynamic=False, options=options,
                         recompile_limit=_RECOMPILE_LIMIT)


def cache_bucket(needed: int, context: int) -> int:
    """Cache length for the compiled path: ``needed`` slots rounded up to a bucket, at most ``context``.

    The step between buckets is a quarter of the octave ``needed`` falls in (never below 64): a
    bucket wastes under 25% of its slots (decode attention reads every slot), and a context of
    4096 has 20 buckets, each compiled once per batch size. E.g. 144 -> 192, 600 -> 640, 2100 -> 2560.
    """
    step = max(_MIN_BUCKET, 2 ** max((needed - 1).bit_length() - 3, 0))
    return min(-(-needed // step) * step, context)


def _start(model: Transformer, prompts: Sequence[Sequence[int]], params: SamplingParams,
           eos_id: Optional[int], stop_ids: Optional[Iterable[int]], pad_id: int, compile: bool
           ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Validate now (so errors surface at the call, not at the first ``next``), return the loop."""
    vocab, context = model.args.vocab_size, model.args.max_seq_len
    if len(prompts) == 0:
        raise ValueError("generate: the list of prompts is empty")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"generate: prompt {i} is empty")
        if min(p) < 0 or max(p) >= vocab:
            bad = next(t for t in p if not 0 <= t < vocab)
            raise ValueError(f"generate: prompt {i} holds token id {bad}, outside the vocabulary [0, {vocab})")
    if not 0 <= pad_id < vocab:
        raise ValueError(f"generate: pad_id={pad_id} is outside the vocabulary [0, {vocab})")
    longest = max(len(p) for p in prompts)
    cache_len = longest + params.max_new_tokens
    if cache_len > context:
        raise ValueError(f"generate: longest prompt ({longest} tokens) + max_new_tokens "
                         f"({params.max_new_tokens}) = {cache_len} exceeds the model's max_seq_len {context}")
    if compile:  # more slots than needed (masked like the padding) so that other calls reuse the graph
        cache_len = cache_bucket(cache_len, context)
    device = model.tok_embeddings.weight.device
    stop = sorted(set(stop_ids or ()) | ({eos_id} if eos_id is not None else set()))
    batch = left_pad(prompts, cache_len, pad_id, device)
    return _loop(model, batch, params, torch.tensor(stop, dtype=torch.long, device=device), compile)


def _loop(model: Transformer, batch: PaddedBatch, params: SamplingParams, stop: torch.Tensor,
          compile: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The core loop. Yields per step (tokens LongTensor [B], live BoolTensor [B]); live marks the
    rows whose token belongs to their output (not finished earlier, not a stop token).

    Inference mode is entered around each step's compute, never across a ``yield``: it is thread
    state, and the consumer's code between steps must not run under it.
    """
    bsz, seqlen = batch.tokens.shape
    device = batch.tokens.device
    decode = _compiled_decode_one_token(decompose_mm=bsz == 1) if compile else decode_one_token
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)
    setup_kv_caches(model, bsz, batch.slots.numel())
    head_t = decode_head(model) if params.max_new_tokens > 1 else None  # one token: prefill only
    try:
        done = torch.zeros(bsz, dtype=torch.bool, device=device)
        for step in range(params.max_new_tokens):
            with torch.inference_mode():
                if step == 0:
                    logits = prefill(model, batch)[:, -1]  # [B, V]
                else:  # the token sampled at step s - 1 fills slot T + s - 1
                    slot = seqlen + step - 1
                    if compile:  # a tensor: a Python int would be baked into the graph
                        slot = torch.tensor(slot, device=device)
                    try:
                        # Steps after the first skip dynamo's guard checks (~0.2 ms of ~860 guards
                        # on the model's modules and tensors, ~10% of a small model's step): every
                        # step of one call has the model, shapes, dtypes and grad mode of the
                        # first, whose full check chose the graph; only the differentiating guards
                        # run. Entered per step: the stance is global, and the consumer's code
                        # between steps must keep its guards.
                        with torch.compiler.set_stance(skip_guard_eval_unsafe=compile and step > 1):
                            logits = decode(model, tokens, slot, batch, head_t)
                    except torch._dynamo.exc.FailOnRecompileLimitHit:
                        # too many (batch size, bucket) graphs in this process: finish eagerly
                        warnings.warn(f"generate: torch.compile's recompile limit reached; batch {bsz} "
                                      f"x {batch.slots.numel()} slots decodes eagerly", stacklevel=2)
                        decode, compile = decode_one_token, False
                        logits = decode(model, tokens, int(slot), batch, head_t)
                tokens = sample(logits, params, generator)
                hit = torch.isin(tokens, stop)
                live = ~(done | hit)
                done = done | hit
            yield tokens, live
            if bool(done.all()):  # the one host sync per step
                break
    finally:
        remove_kv_caches(model)


def stream(model: Transformer, prompts: Sequence[Sequence[int]], params: SamplingParams, *,
           eos_id: Optional[int] = 2, stop_ids: Optional[Iterable[int]] = None, pad_id: int = 0,
           compile: bool = False) -> Iterator[list[Optional[int]]]:
    """Generate step by step, e.g. to print tokens as they come.

    Args: as ``generate``.
    Returns:
        An iterator yielding, per decode step, a list of B entries: the new token of each row, or
        None for a row that has finished (including the step where it produced its stop token,
        which is not part of the output). Exhaust it or ``close()`` it to free the caches; one
        stream at a time per model (the caches live on the model).
    """
    steps = _start(model, prompts, params, eos_id, stop_ids, pad_id, compile)

    def as_lists() -> Iterator[list[Optional[int]]]:
        with contextlib.closing(steps):  # closing this iterator closes the loop, removing caches
            for tokens, live in steps:
                yield [t if keep else None for t, keep in zip(tokens.tolist(), live.tolist())]

    return as_lists()


def generate(model: Transformer, prompts: Sequence[Sequence[int]], params: SamplingParams, *,
             eos_id: Optional[int] = 2, stop_ids: Optional[Iterable[int]] = None, pad_id: int = 0,
             compile: bool = False) -> list[GenerationResult]:
    """Generate a continuation of every prompt in one batch.

    Args:
        model: a Transformer (any device/dtype); caches are attached and removed here.
        prompts: B lists of token ids, any lengths >= 1, each id in [0, vocab_size).
        params: sampling and ``max_new_tokens``; a ``seed`` makes sampling reproducible.
        eos_id: ends a row (Llama 2's EOS is 2); None: no EOS.
        stop_ids: more ids that end a row.
        pad_id: the id fed in the padding slots (never attended; Llama 2 has no pad token).
        compile: run the decode step through ``torch.compile``: the first call for a batch size
            and cache bucket (``cache_bucket``) compiles (seconds), later ones are faster per token.
            Same tokens as eager up to float rounding (identical greedy tokens unless two logits
            tie within it).
    Returns:
        B ``GenerationResult``, in prompt order.
    Raises:
        ValueError: no prompts, an empty prompt or an out-of-vocabulary id (naming the row), or
            longest prompt + max_new_tokens > model.args.max_seq_len.
    """
    steps = _start(model, prompts, params, eos_id, stop_ids, pad_id, compile)
    device = model.tok_embeddings.weight.device
    # Preallocated: a list of per-step tensors would pin small blocks across the heap between
    # each step's freed logits, and the process's peak memory would grow with every step.
    out = torch.empty(len(prompts), params.max_new_tokens, dtype=torch.long, device=device)
    counts = torch.zeros(len(prompts), dtype=torch.long, device=device)
    for step, (tokens, live) in enumerate(steps):
        out[:, step] = tokens
        counts += live
    ids, counts = out.tolist(), counts.tolist()  # [B, max_new_tokens], [B]: one transfer at the end
    # live is True on a prefix of the steps (a row stays done), so a row's output is its first
    # counts[b] tokens; a row that hit a stop id has fewer than max_new_tokens of them.
    return [GenerationResult(row[:n], "length" if n == params.max_new_tokens else "stop")
            for row, n in zip(ids, counts)]


def chat(model: Transformer, tokenizer: Tokenizer, dialogs: Sequence[Dialog], params: SamplingParams, *,
         batch_size: Optional[int] = None, compile: bool = False) -> list[str]:
    """Answer each dialog (Llama 2 chat format), stopping at the tokenizer's EOS.

    Args:
        dialogs: B dialogs as ``llamaforge.chat_format.encode_dialog`` takes them (an optional
            system message, then user/assistant turns, ending with a user turn).
        batch_size: generate in batches of at most this many dialogs, grouped by prompt length so
            that little padding is decoded (default: all in one batch).
        compile: passed to ``generate``.
    Returns:
        B decoded answers, in dialog order.
    """
    # imported late: generation of ids needs no tokenizer (and no sentencepiece) installed
    from llamaforge.chat_format import encode_dialog

    prompts = [encode_dialog(tokenizer, dialog).tokens for dialog in dialogs]
    size = batch_size or max(len(prompts), 1)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    answers: list[str] = [""] * len(prompts)
    for s in range(0, len(order), size):
        rows = order[s:s + size]
        results = generate(model, [prompts[i] for i in rows], params, eos_id=tokenizer.eos_id, compile=compile)
        for i, r in zip(rows, results):
            answers[i] = tokenizer.decode(r.tokens)
    return answers
