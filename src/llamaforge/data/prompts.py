"""Prompt sets for the RLHF stages (rejection sampling, PPO, evaluation).

A prompt file is JSONL; each record holds the dialog to answer in ``messages`` (ending with a user
turn, or with a reference answer, which is dropped) or in ``prompt`` (a string or a message
list). Other fields are kept: ``id``, ``family`` and ``safety`` (a prompt tagged safety, R_c's first
branch; world records are tagged by family, ``reward.score.is_safety_prompt``), and a world
record's ``checks`` so that its answers can be judged. ``llamaforge world export`` writes
``rlhf_prompts.jsonl`` and the held-out ``*_eval.jsonl`` files in this form.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["read_prompts"]


def read_prompts(paths: Sequence[str | Path], *, max_prompts: int = 0) -> list[dict]:
    """Read prompt records: each a copy of the file's record with ``prompt`` (the checked message
    list ending with a user turn) and ``id`` (the record's, else "file:line") set.

    Args:
        paths: JSONL files, read in order.
        max_prompts: keep the first N (0: all).
    Raises:
        ValueError naming file:line and the field of a bad record, a repeated id; a set with no prompt.
    """
    from llamaforge.data.preference import prompt_messages
    from llamaforge.data.sft import read_jsonl

    out: list[dict] = []
    seen: dict[str, str] = {}  # id -> where (rejection sampling's pool matches candidates by id)
    for path in paths:
        for where, record in read_jsonl(path, "prompt file"):
            if "prompt" in record:
                prompt = prompt_messages(record["prompt"], where, name="prompt")
            elif isinstance(record.get("messages"), list):
                messages = record["messages"]
                if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
                    messages = messages[:-1]  # a reference answer: the prompt is what it answers
                prompt = prompt_messages(messages, where, name="messages")
            else:
                raise ValueError(f"{where}: expected a 'messages' list or a 'prompt' (string or messages)")
            pid = str(record.get("id", where))
            if pid in seen:
                raise ValueError(f"{where}: prompt id {pid!r} is also at {seen[pid]}")
            seen[pid] = where
            out.append({**record, "prompt": prompt, "id": pid})
            if max_prompts and len(out) == max_prompts:
                return out
    if not out:
        raise ValueError(f"no prompts in {[str(p) for p in paths]}")
    return out
