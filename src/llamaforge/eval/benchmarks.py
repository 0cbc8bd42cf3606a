"""Benchmarks of pretrained models (paper Table 3, RECIPE.md "Evaluation"): perplexity, and
MMLU-style multiple choice scored by few-shot log-likelihood.

    perplexity(model, tok, texts)             nats per predicted token over non-overlapping windows
    read_choice_tasks(path)                   MMLU-style JSONL questions, validated
    multiple_choice(model, tok, items, ...)   accuracy, by category and macro-averaged (as MMLU reports)

The paper does not publish its prompts; ours is the MMLU paper's own format (Hendrycks et al.,
2021), which lm-evaluation-harness and HELM also follow. One string, encoded with BOS:

    The following are multiple choice questions about {category}.\\n\\n           (header)
    {question}\\nA. {choice}\\nB. {choice}\\n...\\nAnswer: {letter}\\n\\n            (k solved examples)
    {question}\\nA. {choice}\\nB. {choice}\\n...\\nAnswer:

For the default category "all" the header has no "about"; "_" in a category reads as a space. The
k examples are the first k of ``dev`` in the item's category, or without ``dev`` the first k other
items of its category (never the item, nor one with its question); a prompt longer than the model's
context loses examples from the end.

    method="letter"        the choice whose letter has the highest log-probability as the next
                           token after "Answer:", among the item's letters; the letter's id is the
                           last piece of "Answer: A" as the tokenizer encodes it: one forward per item
                           (a tokenizer with letters of several pieces: scored as continuations " A").
    method="continuation"  the choice whose text, as the continuation " {choice}" of the prompt, has
                           the highest summed log-probability ("acc"), or per character ("acc_norm",
                           lm-evaluation-harness's normalisation). One row per choice.
    method="cloze"         as "continuation", but after "{cloze} {answer}. " per example and the
                           item's "cloze" (the question as a statement's start: "Anna lives in"):
                           OLMES's cloze formulation (Gu et al., 2024), for models too small for MMLU's.
"""

from __future__ import annotations

import math
import string
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["perplexity", "read_choice_tasks", "validate_choice_item", "select_shots", "format_question",
           "choice_prompt", "cloze_prompt", "multiple_choice"]

LETTERS = string.ascii_uppercase
DEFAULT_CATEGORY = "all"
METHODS = ("letter", "continuation", "cloze")


@torch.inference_mode()
def perplexity(model, tokenizer, texts: Sequence[str], *, seq_len: int | None = None, batch_size: int = 8) -> dict:
    """Per-token perplexity of texts framed as pretraining frames documents (BOS ... EOS).

    Each text is cut into non-overlapping windows of at most ``seq_len`` (default: the model's
    context) tokens; every token of a window after its first is predicted from the window's earlier
    tokens. Windows are batched longest first and right-padded: the padding comes after each row's
    tokens, so the causal mask hides it from them, and it is left out of the loss.

    Returns:
        {"nll": mean nats per predicted token, "ppl": exp(nll), "tokens": predicted tokens, "texts": n}.
    """
    seq_len = model.args.max_seq_len if seq_len is None else seq_len
    if not 2 <= seq_len <= model.args.max_seq_len:
        raise ValueError(f"perplexity: seq_len must be in [2, {model.args.max_seq_len}], got {seq_len}")
    texts = list(texts)
    if not texts:
        raise ValueError("perplexity: no texts given")
    windows = [ids[s:s + seq_len] for ids in tokenizer.encode_batch(texts, bos=True, eos=True)
               for s in range(0, len(ids), seq_len)]
    windows = sorted((w for w in windows if len(w) > 1), key=len, reverse=True)
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    for b in range(0, len(windows), batch_size):
        chunk = windows[b:b + batch_size]
        tokens = torch.zeros(len(chunk), len(chunk[0]), dtype=torch.long)  # [B, T], T = longest window
        targets = torch.full_like(tokens, -100)  # the next token of each position; -100: no loss
        for i, w in enumerate(chunk):
            tokens[i, :len(w)] = torch.tensor(w)
            targets[i, :len(w) - 1] = torch.tensor(w[1:])
        loss = model(tokens.to(device), targets=targets.to(device), loss_reduction="sum")
        total += loss.double()
    count = sum(len(w) - 1 for w in windows)
    nll = total.item() / count
    return {"nll": nll, "ppl": math.exp(nll), "tokens": count, "texts": len(texts)}


def validate_choice_item(record: object, where: str) -> dict:
    """One question in the normal form {"id", "question", "choices", "answer": index, "category"
    (+ "cloze" if given)}; ``ValueError`` names ``where`` and the field that is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("question", "choices", "answer") if k not in record]
    if missing:
        raise ValueError(f"{where}: missing field {missing[0]!r}")
    for key in ("question", "category", "cloze"):
        if key in record and (not isinstance(record[key], str) or not record[key].strip()):
            raise ValueError(f"{where}: field {key!r} must be a non-empty string, got {record[key]!r}")
    choices, answer = record["choices"], record["answer"]
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f"{where}: field 'choices' must be a list of 2..{len(LETTERS)} strings, got {choices!r}")
    for j, c in enumerate(choices):
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"{where}: field 'choices' item {j} must be a non-empty string, got {c!r}")
    dup = [c for j, c in enumerate(choices) if c in choices[:j]]
    if dup:
        raise ValueError(f"{where}: field 'choices' has the duplicate choice {dup[0]!r}")
    n, letter = len(choices), isinstance(answer, str) and len(answer) == 1 and answer in LETTERS
    if not letter and (isinstance(answer, bool) or not isinstance(answer, int)):
        raise ValueError(f"{where}: field 'answer' must be an index or a letter A..Z, got {answer!r}")
    index = LETTERS.index(answer) if letter else answer
    if not 0 <= index < n:
        raise ValueError(f"{where}: field 'answer' {answer!r} is out of range for {n} choices "
                         f"(0..{n - 1} or A..{LETTERS[n - 1]})")
    out = {"id": record.get("id", where), "question": record["question"], "choices": list(choices),
           "answer": index, "category": record.get("category", DEFAULT_CATEGORY)}
    return {**out, "cloze": record["cloze"]} if "cloze" in record else out


def read_choice_tasks(path: str | Path) -> list[dict]:
    """Multiple-choice questions from JSONL, one per line: {"question", "choices": [2..26 distinct non-empty
    strings], "answer": index or letter, "category" ("all"), "id" ("file:line"), "cloze" (optional)}.

    Returns:
        The questions in normal form (``validate_choice_item``), "answer" an index.
    Raises:
        FileNotFoundError: no such file. ValueError: naming ``file:line`` and the field; or an empty file.
    """
    from llamaforge.data.sft import read_jsonl

    items = [validate_choice_item(r, where) for where, r in read_jsonl(path, "multiple-choice data")]
    if not items:
        raise ValueError(f"{path}: no questions (the file is empty)")
    return items


def select_shots(items: Sequence[dict], shots: int, dev: Sequence[dict] | None = None) -> list[list[dict]]:
    """The solved examples of each item: the first ``shots`` of ``dev`` in its category, or with no
    ``dev`` the first ``shots`` other items of its category; never the item, nor one with its question."""
    pool = list(items if dev is None else dev)
    by_cat: dict[str, list[int]] = defaultdict(list)
    for j, d in enumerate(pool):
        by_cat[d.get("category", DEFAULT_CATEGORY)].append(j)
    out = []
    for i, item in enumerate(items):
        same = (pool[j] for j in by_cat[item.get("category", DEFAULT_CATEGORY)]
                if not (dev is None and j == i) and pool[j]["question"] != item["question"])
        out.append([d for _, d in zip(range(shots), same)])
    return out


def format_question(item: dict, *, solved: bool = False) -> str:
    """"{question}\\nA. {choice}\\n...\\nAnswer:" (+ " {letter}" when ``solved``)."""
    lines = [item["question"], *(f"{LETTERS[j]}. {c}" for j, c in enumerate(item["choices"]))]
    answer = item["answer"] if isinstance(item["answer"], int) else LETTERS.index(item["answer"])
    return "\n".join(lines) + "\nAnswer:" + (f" {LETTERS[answer]}" if solved else "")


def choice_prompt(item: dict, examples: Sequence[dict] = (), *, header: bool = True) -> str:
    """The whole prompt of ``item`` after its solved ``examples`` (the module docstring's format)."""
    category = item.get("category", DEFAULT_CATEGORY)
    about = "" if category == DEFAULT_CATEGORY else " about " + category.replace("_", " ")
    head = f"The following are multiple choice questions{about}.\n\n" if header else ""
    return head + "".join(format_question(e, solved=True) + "\n\n" for e in examples) + format_question(item)


def cloze_prompt(item: dict, examples: Sequence[dict] = ()) -> str:
    """"{cloze} {answer}. " per solved example, then the item's "cloze" (method "cloze")."""
    return "".join(f"{e['cloze']} {e['choices'][e['answer']]}. " for e in examples) + item["cloze"]


def _split(tokenizer, context: str, continuation: str) -> tuple[list[int], int]:
    """(ids of context + continuation with BOS, how many are the continuation's): encoded whole, so the
    pieces are the text's own, split where they stop agreeing with the context's own encoding."""
    ctx, whole = tokenizer.encode(context, bos=True), tokenizer.encode(context + continuation, bos=True)
    common = next((p for p, (a, b) in enumerate(zip(ctx, whole)) if a != b), min(len(ctx), len(whole)))
    assert common < len(whole), (context, continuation)
    return whole, len(whole) - common


def _last_logprobs(model, rows: Sequence[Sequence[int]], last_n: int) -> torch.Tensor:
    """Log-probs [B, last_n, vocab] of the next token at each row's last ``last_n`` positions. Rows are
    left-padded, positions from 0 at each row's first token, padding masked: a row scores as alone."""
    longest = max(map(len, rows))
    tokens = torch.zeros(len(rows), longest, dtype=torch.long)  # [B, T]
    valid = torch.zeros(len(rows), longest, dtype=torch.bool)  # [B, T]
    for i, r in enumerate(rows):
        tokens[i, longest - len(r):] = torch.tensor(r)
        valid[i, longest - len(r):] = True
    device = next(model.parameters()).device
    if valid.all():
        logits = model(tokens.to(device), last_n=last_n)
    else:
        pos = (torch.arange(longest) - (~valid).sum(1, keepdim=True)).clamp(min=0)  # [B, T]
        causal = torch.ones(longest, longest, dtype=torch.bool).tril()  # [T, T]
        # a padding query sees only itself: a fully masked softmax row would give NaN
        mask = causal & (valid[:, None, :] | torch.eye(longest, dtype=torch.bool))  # [B, T, T]
        logits = model(tokens.to(device), pos_ids=pos.to(device), mask=mask[:, None].to(device),
                       last_n=last_n)  # mask [B, 1, T, T] broadcasts over heads
    return logits.float().log_softmax(-1)  # [B, last_n, vocab]


def _length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:  # longest first: little padding
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    return [order[b:b + batch_size] for b in range(0, len(order), batch_size)]


def _continuation_scores(model, rows: list[tuple[list[int], int]], batch_size: int) -> list[float]:
    """Summed log-prob of the last ``k`` tokens of each (ids, k): the input is ids[:-1]."""
    scores = [0.0] * len(rows)
    for chunk in _length_batches([len(ids) for ids, _ in rows], batch_size):
        last_n = max(rows[r][1] for r in chunk)
        logp = _last_logprobs(model, [rows[r][0][:-1] for r in chunk], last_n)  # [B, last_n, V]
        for i, r in enumerate(chunk):
            ids, k = rows[r]
            target = torch.tensor(ids[-k:], device=logp.device)[:, None]  # [k, 1]
            scores[r] = logp[i, last_n - k:].gather(-1, target).sum().item()
    return scores


@torch.inference_mode()
def multiple_choice(model, tokenizer, items: Sequence[dict], *, shots: int = 5, dev: Sequence[dict] | None = None,
                    batch_size: int = 16, method: str = "letter", header: bool = True) -> dict:
    """Few-shot multiple-choice accuracy by log-likelihood (the module docstring's protocol).

    Args:
        items: questions (``read_choice_tasks``' schema; "answer" an index or a letter).
        shots: solved examples per prompt (``select_shots``). dev: where they come from (default: the items).
        method: "letter", "continuation" or "cloze". header: start MMLU prompts with the category line.
    Returns:
        {"accuracy", "n", "by_category": {category: {"accuracy", "n"}}, "macro_accuracy": mean over
        categories, "shots", "method", "shots_dropped": examples cut to fit the context (all items),
        "protocol": one sentence, "predictions": chosen index per item, "scores": per-choice log-probs};
        scoring choice texts also "acc" (= accuracy), "acc_norm", "macro_acc_norm", per category "acc_norm".
    """
    if method not in METHODS:
        raise ValueError(f"multiple_choice: method must be one of {METHODS}, got {method!r}")
    if shots < 0 or batch_size < 1:
        raise ValueError(f"multiple_choice: need shots >= 0 and batch_size >= 1, got {shots}, {batch_size}")
    items = [validate_choice_item(it, f"items[{i}]") for i, it in enumerate(items)]
    dev = None if dev is None else [validate_choice_item(d, f"dev[{i}]") for i, d in enumerate(dev)]
    if method == "cloze" and not all("cloze" in it for it in items + (dev or [])):
        raise ValueError("multiple_choice: method 'cloze' needs a 'cloze' field in every item and dev item")
    if not items:
        raise ValueError("multiple_choice: no items given")
    context = model.args.max_seq_len
    # letter ids: "Answer: A" minus "Answer:"; one distinct piece each allows one forward per item
    letters = [_split(tokenizer, "Answer:", f" {c}") for c in LETTERS[:max(len(it["choices"]) for it in items)]]
    fast = method == "letter" and all(k == 1 for _, k in letters) and len({i[-1] for i, _ in letters}) == len(letters)
    rows, spans, dropped = [], [], 0  # spans: each item's rows
    for item, examples in zip(items, select_shots(items, shots, dev)):
        conts = [f" {c}" for c in (LETTERS[:len(item["choices"])] if method == "letter" else item["choices"])]
        for k in range(len(examples), -1, -1):
            prompt = (cloze_prompt(item, examples[:k]) if method == "cloze"
                      else choice_prompt(item, examples[:k], header=header))
            encoded = ([(tokenizer.encode(prompt, bos=True), 0)] if fast  # read at its last position
                       else [_split(tokenizer, prompt, c) for c in conts])  # (prompt + choice, choice tokens)
            if max(len(ids) - (n > 0) for ids, n in encoded) <= context:  # the input: ids, or ids[:-1]
                break
        else:
            raise ValueError(f"multiple_choice: item {item['id']!r} does not fit the {context}-token context "
                             f"even without examples")
        dropped += len(examples) - k
        spans.append(range(len(rows), len(rows) + len(encoded)))
        rows.extend(encoded)
    if fast:  # one row per item: its letters' log-probs at the last position
        scores, letter_ids = [[]] * len(items), [ids[-1] for ids, _ in letters]
        for chunk in _length_batches([len(ids) for ids, _ in rows], batch_size):
            logp = _last_logprobs(model, [rows[r][0] for r in chunk], 1)[:, 0, letter_ids]  # [B, letters]
            for r, lp in zip(chunk, logp.tolist()):
                scores[r] = lp[:len(items[r]["choices"])]
    else:
        flat = _continuation_scores(model, rows, batch_size)
        scores = [[flat[r] for r in s] for s in spans]
    preds = [max(range(len(s)), key=s.__getitem__) for s in scores]
    acc, by_category, macro = _accuracy(items, preds)
    out = {"accuracy": acc, "n": len(items), "by_category": by_category, "macro_accuracy": macro,
           "shots": shots, "method": method, "shots_dropped": dropped}
    if method != "letter":  # acc_norm: log-prob per character of the choice
        norm = [max(range(len(s)), key=lambda j: s[j] / len(it["choices"][j])) for s, it in zip(scores, items)]
        out["acc"], (out["acc_norm"], norm_by_category, out["macro_acc_norm"]) = acc, _accuracy(items, norm)
        for c, v in norm_by_category.items():
            by_category[c]["acc_norm"] = v["accuracy"]
    prompt = ("cloze prompts (solved statements '{cloze} {answer}.', then the item's statement up to its answer)"
              if method == "cloze" else f"MMLU-format prompts ({'category header, ' if header else ''}solved "
              f"examples, then the question with lettered choices and 'Answer:')")
    rule = ("whose letter is the likeliest next token after 'Answer:'" if method == "letter" else
            "whose text as the continuation has the highest log-probability, summed (acc) or per character (acc_norm)")
    out["protocol"] = (f"{shots}-shot {prompt}, with BOS, examples dropped from the end to fit {context} tokens; "
                       f"the prediction is the choice {rule}.")
    return {**out, "predictions": preds, "scores": scores}


def _accuracy(items: Sequence[dict], preds: Sequence[int]) -> tuple[float, dict, float]:
    """(accuracy, {category: {"accuracy", "n"}}, mean accuracy over categories) of predicted indices."""
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for item, p in zip(items, preds):
        by_cat[item["category"]].append(p == item["answer"])
    cats = {c: {"accuracy": sum(v) / len(v), "n": len(v)} for c, v in sorted(by_cat.items())}
    overall = sum(p == it["answer"] for it, p in zip(items, preds)) / len(items)
    return overall, cats, sum(v["accuracy"] for v in cats.values()) / len(cats)
