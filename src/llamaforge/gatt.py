"""Ghost Attention (RECIPE.md, "Ghost Attention"; paper sec. 3.3).

``llamaforge gatt --config configs/gatt/tiny.toml [--section.key=value ...] [--resume]``.

1. Take multi-turn dialogs (``gatt.dialogs``: dialog JSONL; only the user turns are used) and, per
   dialog, an instruction to hold throughout: a random combination of the constraint families
   (``llamaforge.world.constraints``: persona, hobby, language, style), half of the time in its
   short form ("Figure: Captain Bo.").
2. Sample the answers with the current model, turn by turn and in batches (KV-cached generation),
   with the instruction appended to EVERY user turn.
3. Keep the instruction only in the first turn, as the system message, and zero the loss on every
   token of the earlier turns, assistant turns included: each synthetic dialog, cut after turn t
   for every t, becomes one example whose loss is on turn t's answer only (``gatt_loss_mask``).
4. Fine-tune on them with the SFT loop (``train.sft.run``), optionally mixed with SFT data
   (``data.paths``).

The synthetic set is written to ``<out_dir>/gatt_data.jsonl`` (records with ``"loss": "last_turn"``
and the constraint names), readable and reusable as SFT data.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from llamaforge.train.sft import SFTConfig, SFTDataConfig

__all__ = ["gatt_loss_mask", "gatt_examples", "read_instructions", "synthesize", "GattConfig", "main"]


def gatt_loss_mask(mask: Sequence[bool]) -> list[bool]:
    """Zero the loss on every turn but the last (paper sec. 3.3).

    Args:
        mask: [T] the chat format's answer mask of one dialog (True on each answer's tokens and
            its EOS; answers are separated by at least one False token, the next prompt).
    Returns:
        [T] True only on the last contiguous run of True: the final answer and its EOS.
    """
    out = [False] * len(mask)
    t = len(mask) - 1
    while t >= 0 and not mask[t]:
        t -= 1
    while t >= 0 and mask[t]:
        out[t] = True
        t -= 1
    return out


def _with_instruction(user: str, instruction: str) -> str:
    return f"{user} {instruction}"


def gatt_examples(users: Sequence[str], answers: Sequence[str], instruction: str, constraints: Sequence[str],
                  short: bool) -> list[dict]:
    """The training records of one synthetic dialog: for each turn t, the dialog up to t with the
    instruction only as the system message, and the loss on turn t's answer (``"loss": "last_turn"``)."""
    records = []
    for t in range(1, len(answers) + 1):
        messages = [{"role": "system", "content": instruction}]
        for u, a in zip(users[:t], answers[:t]):
            messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        records.append({"messages": messages, "loss": "last_turn", "constraints": list(constraints),
                        "short": short, "turn": t})
    return records


def read_instructions(path: str | Path) -> list:
    """User instructions for GAtt: JSONL lines ``{"long": ..., "short": ..., "family": ...}``.

    ``short`` defaults to ``long``; ``family`` (default: the line's own) groups instructions of
    which at most one is drawn into a combination. Returns ``world.constraints.Constraint`` objects
    named ``user:<line>``; they have no verifier, so synthesis reports no adherence for them.
    """
    from llamaforge.data.sft import read_jsonl
    from llamaforge.world.constraints import Constraint

    out = []
    for where, rec in read_jsonl(path, "gatt.instructions:"):
        if not isinstance(rec.get("long"), str) or not rec["long"].strip():
            raise ValueError(f"{where}: expected an object with a non-empty 'long' instruction")
        line = where.rsplit(":", 1)[1]
        short = rec.get("short") or rec["long"]
        out.append(Constraint(family=str(rec.get("family", f"line{line}")), name=f"user:{line}",
                              long=rec["long"].strip(), short=str(short).strip()))
    if not out:
        raise ValueError(f"gatt.instructions: {path} holds no instructions")
    return out


def _draw(pool: Sequence, rng: random.Random, max_k: int) -> list:
    """1..max_k instructions of distinct families from a user pool, in the pool's order."""
    families = sorted({c.family for c in pool}, key=[c.family for c in pool].index)
    chosen = rng.sample(families, rng.randint(1, min(max_k, len(families))))
    picks = [rng.choice([c for c in pool if c.family == f]) for f in chosen]
    return sorted(picks, key=pool.index)


def synthesize(model, tokenizer, dialogs: Sequence[Sequence[str]], *, seed: int, params, batch_size: int,
               short_form: float = 0.5, max_constraints: int = 2, max_turns: int = 6,
               keep_only_adherent: bool = False, instructions: Sequence | None = None) -> tuple[list[dict], dict]:
    """Steps 1-3: sample the answers of every dialog with the instruction on every user turn.

    Args:
        dialogs: per dialog its user turns.
        params: SamplingParams of the answers.
        keep_only_adherent: drop a dialog from its first answer that breaks a constraint (an
            addition to the paper, which keeps every sample; off by default).
        instructions: a user pool (``read_instructions``) instead of the world's constraint
            families; these have no verifier (no adherence stats, no filtering).
    Returns:
        (training records, stats: dialogs, answers sampled, adherence of the samples per turn).
    """
    from llamaforge.world.constraints import check_constraints, instruction, sample_constraints

    if instructions is not None and keep_only_adherent:
        raise ValueError("gatt.keep_only_adherent needs the world's constraints (user instructions have no verifier)")
    rng = random.Random(f"llamaforge.gatt:{seed}")
    plans = []  # (user turns, constraints, short, instruction text)
    for users in dialogs:
        if instructions is None:
            cs = sample_constraints(rng, max_constraints)
            short = rng.random() < short_form
            text = instruction(cs, short)
        else:
            cs = _draw(instructions, rng, max_constraints)
            short = rng.random() < short_form
            text = " ".join(c.short if short else c.long for c in cs)
        plans.append((list(users)[:max_turns], cs, short, text))
    answers: list[list[str]] = [[] for _ in plans]
    alive = [True] * len(plans)
    adherent = {}
    context = model.args.max_seq_len
    for t in range(max(len(p[0]) for p in plans)):
        rows, prompts = [], []
        for i, (users, cs, short, text) in enumerate(plans):
            if t >= len(users) or not alive[i]:
                continue
            history = []
            for u, a in zip(users[:t], answers[i]):
                history += [{"role": "user", "content": _with_instruction(u, text)},
                            {"role": "assistant", "content": a}]
            history.append({"role": "user", "content": _with_instruction(users[t], text)})
            rows.append(i)
            prompts.append(history)
        if not rows:
            break
        # a dialog whose next prompt leaves no room for an answer in the context stops here
        outs = _answer_fitting(model, tokenizer, prompts, params, batch_size, context)
        ok = 0
        for i, out in zip(rows, outs):
            if not out:  # past the context, or an empty answer (EOS at once): the dialog ends here
                alive[i] = False
                continue
            good = instructions is not None or check_constraints(plans[i][1], out)
            ok += good
            if keep_only_adherent and not good:
                alive[i] = False
                continue
            answers[i].append(out)
        if instructions is None:
            adherent[t + 1] = ok / len(rows)
    records = []
    for (users, cs, short, text), ans in zip(plans, answers):
        if ans:
            records += gatt_examples(users, ans, text, [c.name for c in cs], short)
    stats = {"dialogs": len(plans), "answers": sum(len(a) for a in answers),
             "sample_adherence_by_turn": adherent}
    return records, stats


def _answer_fitting(model, tokenizer, prompts, params, batch_size, context):
    """chat() on the prompts that leave room for ``params.max_new_tokens``; None for the others."""
    from llamaforge.chat_format import encode_dialog
    from llamaforge.generation import chat

    room = [len(encode_dialog(tokenizer, p).tokens) + params.max_new_tokens <= context for p in prompts]
    keep = [p for p, r in zip(prompts, room) if r]
    got = iter(chat(model, tokenizer, keep, params, batch_size=batch_size) if keep else [])
    return [next(got).strip() if r else None for r in room]


@dataclass
class GattSynthConfig:
    dialogs: str = "data/gatt_dialogs.jsonl"  # multi-turn dialog JSONL; only the user turns are used
    max_dialogs: int = 0  # 0: all
    max_turns: int = 6  # turns sampled per dialog
    short_form: float = 0.5  # the paper: half of the instructions in a short form
    max_constraints: int = 2  # instructions combine 1..max_constraints families
    temperature: float = 0.6  # sampling of the answers (Meta's chat defaults)
    top_p: float = 0.9
    max_new_tokens: int = 64
    batch_size: int = 64  # dialogs sampled together
    keep_only_adherent: bool = False  # drop samples that break the instruction (not in the paper)
    instructions: Optional[str] = None  # JSONL of {"long", "short", "family"}; default: the world's constraints
    seed: int = 0


def _gatt_data() -> SFTDataConfig:
    return SFTDataConfig(paths=[])  # SFT data mixed into GAtt fine-tuning: none by default


@dataclass
class GattConfig(SFTConfig):
    out_dir: str = "runs/gatt"
    data: SFTDataConfig = field(default_factory=_gatt_data)
    gatt: GattSynthConfig = field(default_factory=GattSynthConfig)


def _user_turns(path: str | Path, max_dialogs: int) -> list[list[str]]:
    from llamaforge.data.sft import read_dialogs

    out = []
    for where, record in read_dialogs(path):
        users = [m.get("content", "") for m in record["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        if not users or not all(isinstance(u, str) and u.strip() for u in users):
            raise ValueError(f"{where}: expected user messages with non-empty text")
        out.append(users)
        if max_dialogs and len(out) == max_dialogs:
            break
    return out


def main(cfg: GattConfig) -> dict:
    """Synthesize the GAtt data with the model ``model.init_from`` (once; reused on --resume), then
    fine-tune on it with the SFT loop. Returns the SFT summary plus the synthesis stats."""
    import torch

    from llamaforge.generation import SamplingParams
    from llamaforge.model.checkpoint_io import load_model
    from llamaforge.parallel import barrier, init_distributed
    from llamaforge.tokenizer import Tokenizer
    from llamaforge.train.loop import check_run_dir

    d = init_distributed(cfg.train.device)
    out = Path(cfg.out_dir)
    synth_path, stats_path = out / "gatt_data.jsonl", out / "gatt_synthesis.json"
    if not cfg.model.init_from:
        raise ValueError("model.init_from is required: the model dir whose answers GAtt samples")
    check_run_dir(out, cfg.resume)  # before sampling: a run with checkpoints keeps its data unless resumed
    if d.is_main and not (cfg.resume and synth_path.is_file()):
        # one process samples (the synthetic set is small next to training); others wait
        dialogs = _user_turns(cfg.gatt.dialogs, cfg.gatt.max_dialogs)
        pool = read_instructions(cfg.gatt.instructions) if cfg.gatt.instructions else None
        tokenizer = Tokenizer(cfg.tokenizer or cfg.model.init_from)
        model = load_model(cfg.model.init_from, device=d.device).eval()
        params = SamplingParams(temperature=cfg.gatt.temperature, top_p=cfg.gatt.top_p,
                                max_new_tokens=cfg.gatt.max_new_tokens, seed=cfg.gatt.seed)
        print(f"gatt: sampling answers for {len(dialogs)} dialogs, up to {cfg.gatt.max_turns} turns each",
              file=sys.stderr)
        with torch.inference_mode():
            records, stats = synthesize(model, tokenizer, dialogs, seed=cfg.gatt.seed, params=params,
                                        batch_size=cfg.gatt.batch_size, short_form=cfg.gatt.short_form,
                                        max_constraints=cfg.gatt.max_constraints, max_turns=cfg.gatt.max_turns,
                                        keep_only_adherent=cfg.gatt.keep_only_adherent,
                                        instructions=pool)
        del model
        out.mkdir(parents=True, exist_ok=True)
        tmp = synth_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        tmp.rename(synth_path)
        stats_path.write_text(json.dumps({**stats, "examples": len(records)}, indent=1))
    barrier(d)
    from llamaforge.train.sft import run_with

    summary = run_with(cfg, synth_path, 1.0, stage="gatt")
    summary["synthesis"] = json.loads(stats_path.read_text()) if stats_path.is_file() else None
    return summary
