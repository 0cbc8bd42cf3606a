"""Preference pairs for the reward models (RECIPE.md, "Preference data and reward models"; sec. 3.2.1).

Preference JSONL, one comparison a line, in the format ``llamaforge world export`` writes::

    {"prompt": [{"role": "user", "content": ...}, ...], "chosen": "...", "rejected": "...",
     "rating": "better", "safety_label": "chosen safe, rejected unsafe", ...}

``prompt`` is a Llama 2 dialog ending with the user turn the two answers reply to (a plain string
is taken as one user turn); ``rating`` is one of the paper's four strengths (`RATINGS`, the margin
of the ranking loss is looked up from it); ``safety_label`` is the extra label of safety pairs
(`SAFETY_LABELS`). Any other field (id, agreement, ratings, source, ...) is kept as it is.

``collect_preferences`` runs the paper's collection protocol on the built-in world: two answers per
prompt, sampled from two model variants (a model and a temperature), rated by a panel of simulated
annotators (`llamaforge.world.annotators`); it writes records in the same format.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llamaforge.chat_format import _check_dialog, encode_dialog
from llamaforge.data.sft import read_jsonl
from llamaforge.world.annotators import STRENGTHS, majority, panel

if TYPE_CHECKING:
    from llamaforge.model.llama import Transformer
    from llamaforge.tokenizer import Tokenizer

__all__ = ["RATINGS", "SAFETY_LABELS", "KINDS", "CollectStats", "prompt_messages", "validate_preference",
           "read_preferences", "encode_pair", "collect_preferences", "write_preferences"]

RATINGS = STRENGTHS  # strongest first: "significantly better" .. "negligibly better / unsure"
SAFETY_LABELS = ("both safe", "chosen safe, rejected unsafe", "both unsafe", "chosen unsafe, rejected safe")
KINDS = ("helpful", "safety")
TOP_P = 0.9  # Llama 2-Chat's nucleus; the variants differ by model and temperature only


def _field_error(where: str, name: str, what: str) -> ValueError:
    return ValueError(f"{where}: field {name!r}: {what}")


def prompt_messages(prompt: object, where: str, name: str = "prompt") -> list[dict]:
    """A record's ``prompt`` as a checked list of messages ending with a user turn."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise _field_error(where, name, f"expected a non-empty list of messages or a string, got {prompt!r:.80}")
    try:
        _check_dialog(prompt, allow_special_tags=False)
    except ValueError as e:
        raise _field_error(where, name, str(e)) from None
    for i, m in enumerate(prompt):
        if not m["content"].strip():
            raise _field_error(where, name, f"message {i} ({m['role']}) is empty")
    if prompt[-1]["role"] != "user":
        raise _field_error(where, name, f"the last message has role {prompt[-1]['role']!r}; a comparison's "
                                            "prompt ends with the user turn both answers reply to")
    return [dict(m) for m in prompt]


def validate_preference(record: dict, where: str, *, kind: str | None = None) -> dict:
    """Check one preference record and return it normalised (a new dict; extra fields kept).

    Args:
        record: a decoded JSONL object.
        where: "file:line" (or any location) put at the front of every error.
        kind: "safety" also requires a ``safety_label``; "helpful" or None do not.

    Returns:
        The record with ``prompt`` as a list of {"role", "content"} messages (a string prompt
        becomes one user turn).

    Raises:
        ValueError: ``where`` and the field: a missing or empty field, a prompt that is not a Llama 2
            dialog ending with a user turn, chosen equal to rejected, an unknown rating or label.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"preference kind must be one of {KINDS} or None, got {kind!r}")
    for name in ("prompt", "chosen", "rejected", "rating"):
        if name not in record:
            raise _field_error(where, name, "missing (a preference record has prompt, chosen, rejected, rating)")
    out = dict(record)
    out["prompt"] = prompt_messages(record["prompt"], where)
    for name in ("chosen", "rejected"):
        value = record[name]
        if not isinstance(value, str) or not value.strip():
            raise _field_error(where, name, f"expected a non-empty string, got {value!r:.80}")
    if record["chosen"].strip() == record["rejected"].strip():
        raise _field_error(where, "rejected", "chosen equals rejected (a comparison needs two different answers)")
    try:  # the answers render as assistant turns: no special tags in them either
        _check_dialog(out["prompt"] + [{"role": "assistant", "content": record["chosen"]}], False)
        _check_dialog(out["prompt"] + [{"role": "assistant", "content": record["rejected"]}], False)
    except ValueError as e:
        raise _field_error(where, "chosen/rejected", str(e)) from None
    if record["rating"] not in RATINGS:
        raise _field_error(where, "rating", f"{record['rating']!r} is not one of {', '.join(map(repr, RATINGS))}")
    if "safety_label" in record:
        if record["safety_label"] not in SAFETY_LABELS:
            raise _field_error(where, "safety_label", f"{record['safety_label']!r} is not one of "
                                                      f"{', '.join(map(repr, SAFETY_LABELS))}")
    elif kind == "safety":
        raise _field_error(where, "safety_label", "missing (safety pairs carry one of "
                                                  f"{', '.join(map(repr, SAFETY_LABELS))})")
    return out


def read_preferences(path: str | Path, *, kind: str | None = None) -> list[dict]:
    """Read and validate a preference JSONL file.

    Args:
        path: the file, one record a line (blank lines skipped).
        kind: as in `validate_preference` ("safety" requires a safety_label on every record).

    Returns:
        The normalised records, in file order.

    Raises:
        ValueError: on the first bad line or record (naming file:line and the field), or an empty file.
        FileNotFoundError: if ``path`` does not exist.
    """
    records = [validate_preference(record, where, kind=kind)
               for where, record in read_jsonl(path, "preference data")]
    if not records:
        raise ValueError(f"{path}: no preference records (the file is empty)")
    return records


def encode_pair(tokenizer: Tokenizer, record: dict, max_len: int) -> tuple[list[int], list[int]] | None:
    """Token ids of (prompt + chosen answer, prompt + rejected answer), as the reward model reads them.

    Each is ``encode_dialog(tokenizer, prompt + [{"role": "assistant", "content": answer}]).tokens``:
    Meta's ids for the whole dialog (earlier turns included), ending with the EOS that closes the
    answer, whose position the reward model scores. Both start with the same prompt ids.

    Args:
        tokenizer: the chat model's tokenizer.
        record: a validated preference record (``prompt`` may still be a string).
        max_len: the longest sequence allowed (the reward model's context, or a training seq_len).

    Returns:
        (chosen ids, rejected ids), or None when either is longer than ``max_len`` (the caller
        counts and reports dropped pairs).
    """
    prompt = [{"role": "user", "content": record["prompt"]}] if isinstance(record["prompt"], str) else record["prompt"]
    chosen, rejected = (encode_dialog(tokenizer, list(prompt) + [{"role": "assistant", "content": record[k]}]).tokens
                        for k in ("chosen", "rejected"))
    if max(len(chosen), len(rejected)) > max_len:
        return None
    return chosen, rejected


@dataclass
class CollectStats:
    """What `collect_preferences` sampled, kept and dropped (reported, never silent)."""

    prompts: int = 0  # world records given
    pairs: int = 0  # comparisons kept
    too_long: int = 0  # prompt + max_new_tokens past a variant's context: not sampled
    empty: int = 0  # an answer was empty (an immediate EOS)
    identical: int = 0  # both answers the same text
    ties: int = 0  # the panel split evenly
    ratings: Counter = field(default_factory=Counter)  # rating -> kept pairs
    wins: Counter = field(default_factory=Counter)  # variant name -> pairs it was chosen in

    def report(self) -> str:
        text = (f"{self.prompts} prompts -> {self.pairs} pairs; dropped {self.ties} ties, {self.identical} "
                f"identical, {self.empty} with an empty answer, {self.too_long} too long")
        if self.ratings:
            text += "; ratings " + ", ".join(f"{r}: {self.ratings[r]}" for r in RATINGS)
        if self.wins:
            text += "; chosen " + ", ".join(f"{v}: {n}" for v, n in sorted(self.wins.items()))
        return text


def _safety_label(unsafe_chosen: bool, unsafe_rejected: bool) -> str:
    if unsafe_chosen:
        return "both unsafe" if unsafe_rejected else "chosen unsafe, rejected safe"
    return "chosen safe, rejected unsafe" if unsafe_rejected else "both safe"


def _sample(model: Transformer, tokenizer: Tokenizer, dialogs: list[list[dict]], temperature: float,
            max_new_tokens: int, batch_size: int, seed: str) -> list[str]:
    """Answers to ``dialogs`` in batches of similar prompt length, each batch with its own seed (a
    shared seed would give two copies of a prompt at the same row of two batches the same answer)."""
    from llamaforge.generation import SamplingParams, chat

    lengths = [len(encode_dialog(tokenizer, d).tokens) for d in dialogs]
    order = sorted(range(len(dialogs)), key=lengths.__getitem__)
    answers = [""] * len(dialogs)
    for b, s in enumerate(range(0, len(order), batch_size)):
        rows = order[s:s + batch_size]
        params = SamplingParams(temperature=temperature, top_p=TOP_P, max_new_tokens=max_new_tokens,
                                seed=random.Random(f"{seed}:{b}").getrandbits(62))
        for i, text in zip(rows, chat(model, tokenizer, [dialogs[i] for i in rows], params)):
            answers[i] = text
    return answers


def collect_preferences(variants: Sequence[tuple[str, Transformer, float]], tokenizer: Tokenizer,
                        records: Sequence[dict], *, kind: str, seed: int = 0, n_raters: int = 3,
                        noise: float = 0.5, max_new_tokens: int = 64, batch_size: int = 64
                        ) -> tuple[list[dict], CollectStats]:
    """Collect rated comparisons of sampled answers (sec. 3.2.1) on world records.

    Steps: (1) per prompt, pick two different variants at random (with one variant, it answers
    twice); (2) sample every variant's answers in large seeded batches (top-p 0.9); (3) show each
    pair to a panel of simulated annotators in a random A/B order and take the majority; (4) keep
    the pair as chosen/rejected with the majority's strength, dropping ties, identical answers and
    empty ones.

    Args:
        variants: (name, model, temperature), e.g. ("sft@0.7", sft_model, 0.7). The models must
            share ``tokenizer``.
        tokenizer: the tokenizer of every variant.
        records: world records (``helpful_eval.jsonl`` / ``unsafe_eval.jsonl`` rows): "id",
            "family", "messages" ending with the reference answer (the annotators judge against
            it), "checks" with one check per assistant turn.
        kind: "helpful" or "safety" (safety pairs get a ``safety_label``).
        seed: seeds the variant choice, sampling, A/B placement and the annotators.
        n_raters, noise: the panel (`llamaforge.world.annotators.panel`).
        max_new_tokens: answer length bound; batch_size: dialogs per generation batch.

    Returns:
        (records, stats): records as ``world/splits.py`` writes them: "id", "prompt", "chosen",
        "rejected", "rating", "agreement", "ratings", "source", "family", ("safety_label",) plus
        "variants": [chosen's name, rejected's name]; each passes `validate_preference`.

    Raises:
        ValueError: no variants, an unknown kind, or a record that is not a world record (names its id).
    """
    if kind not in KINDS:
        raise ValueError(f"collect_preferences: kind must be one of {KINDS}, got {kind!r}")
    if not variants:
        raise ValueError("collect_preferences: no model variants to sample from")
    if batch_size < 1:
        raise ValueError(f"collect_preferences: batch_size must be >= 1, got {batch_size}")
    for n, r in enumerate(records):
        msgs = r.get("messages")
        if not (isinstance(msgs, list) and len(msgs) >= 2 and msgs[-1].get("role") == "assistant"
                and r.get("checks") and "id" in r and "family" in r):
            raise ValueError(f"collect_preferences: record {r.get('id', n)!r} is not a world record "
                             "(id, family, messages ending with the reference answer, checks)")
    stats = CollectStats(prompts=len(records))
    rng = random.Random(f"llamaforge.preference.collect:{kind}:{seed}")
    # 1. Each prompt's two variants; jobs[v] lists the (record, side) answers variant v samples.
    picks: dict[int, tuple[int, int]] = {}
    jobs: dict[int, list[tuple[int, int]]] = {v: [] for v in range(len(variants))}
    for n, r in enumerate(records):
        pair = tuple(rng.sample(range(len(variants)), 2)) if len(variants) > 1 else (0, 0)
        prompt_len = len(encode_dialog(tokenizer, r["messages"][:-1]).tokens)
        if any(prompt_len + max_new_tokens > variants[v][1].args.max_seq_len for v in pair):
            stats.too_long += 1
            continue
        picks[n] = pair
        for side, v in enumerate(pair):
            jobs[v].append((n, side))
    # 2. Sampling, one seeded pass per variant over all its prompts.
    answers: dict[tuple[int, int], str] = {}
    for v, todo in jobs.items():
        if todo:
            name, model, temperature = variants[v]
            texts = _sample(model, tokenizer, [records[n]["messages"][:-1] for n, _ in todo], temperature,
                            max_new_tokens, batch_size, f"llamaforge.preference.sample:{kind}:{seed}:{v}")
            answers.update(zip(todo, texts))
    # 3-4. Rating by the panel; chosen / rejected from its majority.
    out = []
    for n, (v0, v1) in picks.items():
        r = records[n]
        x, y = answers[n, 0].strip(), answers[n, 1].strip()
        swap = rng.random() < 0.5  # drawn for every pair, so a drop does not shift later placements
        if not x or not y:
            stats.empty += 1
            continue
        if x == y:
            stats.identical += 1
            continue
        (a, va), (b, vb) = ((y, v1), (x, v0)) if swap else ((x, v0), (y, v1))
        ratings = panel(r, a, b, item=f"{kind}:{r['id']}", n_raters=n_raters, seed=seed, noise=noise)
        verdict = majority(ratings)
        if verdict.preferred == "tie":
            stats.ties += 1
            continue
        a_wins = verdict.preferred == "a"
        (chosen, vc), (rejected, vr) = ((a, va), (b, vb)) if a_wins else ((b, vb), (a, va))
        record = {"id": f"pref-{kind}-{seed}-{n}", "prompt": r["messages"][:-1], "chosen": chosen,
                  "rejected": rejected, "rating": verdict.strength, "agreement": verdict.agreement,
                  "ratings": [vars(rating) for rating in ratings], "source": r["id"], "family": r["family"]}
        if kind == "safety":
            unsafe_a, unsafe_b = verdict.violation_a, verdict.violation_b
            record["safety_label"] = _safety_label(*((unsafe_a, unsafe_b) if a_wins else (unsafe_b, unsafe_a)))
        record["variants"] = [variants[vc][0], variants[vr][0]]
        out.append(record)
        stats.pairs += 1
        stats.ratings[verdict.strength] += 1
        stats.wins[variants[vc][0]] += 1
    return out, stats


def write_preferences(records: Sequence[dict], path: str | Path) -> Path:
    """Write validated records as JSONL, to a temporary name renamed when complete.

    Raises:
        ValueError: if a record is invalid (``path`` and its index), before anything is written.
    """
    path = Path(path)
    lines = [json.dumps(validate_preference(r, f"{path}: record {i}"), ensure_ascii=False) + "\n"
             for i, r in enumerate(records)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return path
