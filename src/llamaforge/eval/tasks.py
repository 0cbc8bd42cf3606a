"""Evaluation hooks on the built-in world: greedy answers scored by the world's verifiers.

    task_accuracy(model, tok, records)            helpful tasks: share of final answers that verify
    safety_rates(model, tok, unsafe, borderline)  refusal / violation rate on unsafe prompts and the
                                                  false-refusal rate on borderline ones (paper sec. 4)
    constraint_adherence(model, tok, dialogs)     GAtt: share of answers that still obey the first
                                                  turn's system instruction at turn 1, 2, 3, ... (Table 30)

Records are the world's (``llamaforge.world``; ``llamaforge world export`` writes them): a dialog
in ``messages`` whose last message is the reference answer, and one check per answer in
``checks``. A check of type "safety" is judged by ``world.safety.classify_safety``, every other
type by ``world.verify.verify``. Answers are greedy (temperature 0), generated in length-grouped
batches with the KV cache.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import torch

from llamaforge.generation import SamplingParams, chat

__all__ = ["judge", "answer", "task_accuracy", "task_scores", "safety_rates", "safety_scores",
           "constraint_adherence"]


def judge(check: dict, response: str) -> str | bool:
    """A safety check -> "safe" | "refusal" | "violation"; any other check -> verified (bool)."""
    if check.get("type") == "safety":
        from llamaforge.world.safety import classify_safety

        return classify_safety(check, response)
    from llamaforge.world.verify import verify

    return verify(check, response)


@torch.inference_mode()
def answer(model, tokenizer, prompts: Sequence[list[dict]], *, max_new_tokens: int = 64,
           batch_size: int = 64, plain: bool = False) -> list[str]:
    """Greedy answers to dialogs that end with a user turn (stripped text).

    Args:
        plain: prompt with the dialog's plain text (its messages' contents, one a line, after BOS),
            not the chat format: how a pretrained model, which never saw the chat markup, is asked.
    """
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    if not plain:
        return [a.strip() for a in chat(model, tokenizer, list(prompts), params, batch_size=batch_size)]
    from llamaforge.generation import generate

    ids = [tokenizer.encode("\n".join(m["content"].strip() for m in dialog), bos=True) for dialog in prompts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch
    out = [""] * len(ids)
    for s in range(0, len(order), batch_size):
        rows = order[s:s + batch_size]
        for i, r in zip(rows, generate(model, [ids[i] for i in rows], params, eos_id=tokenizer.eos_id)):
            out[i] = tokenizer.decode(r.tokens).strip()
    return out


def task_accuracy(model, tokenizer, records: Sequence[dict], *, max_new_tokens: int = 64, batch_size: int = 64,
                  samples: int = 5) -> dict:
    """Accuracy of the final answer of each record, the earlier turns given as their references.

    Returns:
        {"accuracy", "n", "by_family": {family: accuracy}, "samples": [first few {prompt, answer, correct}]}.
    """
    prompts = [r["messages"][:-1] for r in records]
    return task_scores(records, answer(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                       batch_size=batch_size), samples=samples)


def task_scores(records: Sequence[dict], answers: Sequence[str], *, samples: int = 5) -> dict:
    """``task_accuracy`` of given answers (one per record, to its last user turn)."""
    prompts = [r["messages"][:-1] for r in records]
    ok = [bool(judge(r["checks"][-1], a)) for r, a in zip(records, answers)]
    by_family: dict[str, list[bool]] = defaultdict(list)
    for r, good in zip(records, ok):
        by_family[r.get("family", "?")].append(good)
    return {"accuracy": sum(ok) / max(len(ok), 1), "n": len(ok),
            "by_family": {f: sum(v) / len(v) for f, v in sorted(by_family.items())},
            "samples": [{"prompt": p[-1]["content"], "answer": a, "correct": g}
                        for p, a, g in list(zip(prompts, answers, ok))[:samples]]}


def safety_rates(model, tokenizer, unsafe: Sequence[dict], borderline: Sequence[dict], *,
                 max_new_tokens: int = 64, batch_size: int = 64, samples: int = 3) -> dict:
    """How the model answers unsafe and borderline prompts (each answer classed safe/refusal/violation).

    Returns:
        {"refusal_rate": refusals among unsafe answers, "violation_rate": violations among them,
         "false_refusal_rate": refusals among borderline answers, "n_unsafe", "n_borderline",
         "unsafe_by_category": {category: refusal rate}, "samples": [...]}.
    """
    records = list(unsafe) + list(borderline)
    answers = answer(model, tokenizer, [r["messages"][:-1] for r in records], max_new_tokens=max_new_tokens,
                     batch_size=batch_size)
    return safety_scores(unsafe, borderline, answers, samples=samples)


def safety_scores(unsafe: Sequence[dict], borderline: Sequence[dict], answers: Sequence[str], *,
                  samples: int = 3) -> dict:
    """``safety_rates`` of given answers (to the unsafe prompts, then to the borderline ones)."""
    records = list(unsafe) + list(borderline)
    classes = [judge(r["checks"][-1], a) for r, a in zip(records, answers)]
    u, b = classes[:len(unsafe)], classes[len(unsafe):]
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for r, c in zip(unsafe, u):
        by_cat[r.get("category", "?")].append(c == "refusal")
    count_u, count_b = Counter(u), Counter(b)
    return {"refusal_rate": count_u["refusal"] / max(len(u), 1),
            "violation_rate": count_u["violation"] / max(len(u), 1),
            "false_refusal_rate": count_b["refusal"] / max(len(b), 1),
            "n_unsafe": len(u), "n_borderline": len(b),
            "unsafe_by_category": {c: sum(v) / len(v) for c, v in sorted(by_cat.items())},
            "samples": [{"prompt": r["messages"][-2]["content"], "answer": a, "class": c}
                        for r, a, c in (list(zip(records, answers, classes))[:samples]
                                        + list(zip(records, answers, classes))[len(unsafe):len(unsafe) + samples])]}


@torch.inference_mode()
def constraint_adherence(model, tokenizer, dialogs: Sequence[dict], *, max_new_tokens: int = 64,
                         batch_size: int = 64) -> dict:
    """GAtt's measure: the instruction is given once, as the first turn's system message; the model
    answers every user turn in order (its own answers are the history), and each answer is checked
    against the instruction's constraints.

    Args:
        dialogs: records {"messages": user turns (assistant turns, if any, are ignored),
            "constraints": [constraint names], "short": bool (use the short form)}.
    Returns:
        {"by_turn": {turn: adherence}, "n_by_turn": {turn: dialogs still within the context},
         "transcript": the first dialog's turns}.
    """
    from llamaforge.chat_format import encode_dialog
    from llamaforge.world.constraints import check_constraints, constraint, instruction

    plans = []
    for r in dialogs:
        cs = [constraint(n) for n in r["constraints"]]
        users = [m["content"] for m in r["messages"] if m["role"] == "user"]
        plans.append((users, cs, instruction(cs, bool(r.get("short")))))
    history = [[{"role": "system", "content": text}] for _, _, text in plans]
    alive = [True] * len(plans)
    by_turn, n_by_turn = {}, {}
    context = model.args.max_seq_len
    for t in range(max(len(p[0]) for p in plans)):
        rows = []
        for i, (users, _, _) in enumerate(plans):
            if alive[i] and t < len(users):
                history[i].append({"role": "user", "content": users[t]})
                if len(encode_dialog(tokenizer, history[i]).tokens) + max_new_tokens <= context:
                    rows.append(i)
                else:
                    alive[i] = False  # past the context: this dialog ends here (counted in n_by_turn)
        if not rows:
            break
        outs = answer(model, tokenizer, [history[i] for i in rows], max_new_tokens=max_new_tokens,
                      batch_size=batch_size)
        good = 0
        for i, out in zip(rows, outs):
            history[i].append({"role": "assistant", "content": out})
            good += check_constraints(plans[i][1], out)
        by_turn[t + 1], n_by_turn[t + 1] = good / len(rows), len(rows)
    return {"by_turn": by_turn, "n_by_turn": n_by_turn, "transcript": history[0] if history else []}
