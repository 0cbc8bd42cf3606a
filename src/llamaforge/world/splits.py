"""The built-in world's data splits, and ``llamaforge world export`` that writes them as JSONL.

    sft                 helpful tasks (single- and multi-turn) and instruction-following examples
                        (a constraint of `constraints` as the system message or appended to the
                        last user turn, the answer rewritten to obey it): dialog JSONL for SFT
    safety_sft          safety demonstrations: unsafe prompts (3 risk categories x attack vectors)
                        with best-practice answers, and borderline prompts with helpful answers
    helpful_eval        held-out helpful tasks with their checks (task accuracy)
    unsafe_eval         held-out unsafe prompts (refusal rate)
    borderline_eval     held-out borderline prompts (false-refusal rate)
    gatt_dialogs        multi-turn dialogs (6-8 turns) whose user turns Ghost Attention samples on
    gatt_eval           held-out multi-turn dialogs, each with a constraint set and its form (short
                        or long): GAtt's adherence by turn
    preferences_helpful response pairs rated by 3 simulated annotators (`annotators`):
    preferences_safety  {"prompt", "chosen", "rejected", "rating", "ratings", "agreement", ...}
    preferences_*_eval  held-out pairs of the same kinds: reward-model accuracy
    rlhf_prompts        prompts for RLHF (preference collection, rejection sampling, PPO): helpful
                        tasks, unsafe and borderline prompts with their checks, none of them in SFT

``export`` also writes the pretrained-model benchmarks (``world.multiple_choice``; paper Table 3):
``mc_dev.jsonl`` (5 solved examples per category), ``mc_eval.jsonl`` (MMLU-style 4-choice questions)
and ``ppl_eval.txt`` (held-out corpus documents, one per line, for perplexity).

Every split is a pure function of (world seed, split seed, sizes). Held-out splits are drawn with
their own seeds, and a held-out record whose prompt (its last user turn) also occurs in a training
split is dropped, so evaluation prompts are never trained on verbatim.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, fields, replace
from pathlib import Path

from llamaforge.world.entities import World, build_world

__all__ = ["WorldSizes", "world_splits", "export"]

CONSTRAINABLE = ("arithmetic", "facts", "words")  # task families whose answers can take a constraint


@dataclass(frozen=True)
class WorldSizes:
    """Records per split (before held-out de-duplication). The defaults are the demo's."""

    sft_single: int = 6000
    sft_multi: int = 1200  # 2-3 turn dialogs
    sft_instructed: int = 3200  # answers that obey a constraint given in the prompt
    safety_unsafe: int = 700
    safety_borderline: int = 700
    helpful_eval: int = 300
    unsafe_eval: int = 200
    borderline_eval: int = 200
    gatt_dialogs: int = 320
    gatt_eval: int = 100
    preferences_helpful: int = 1000
    preferences_safety: int = 600
    preferences_helpful_eval: int = 300
    preferences_safety_eval: int = 200
    rlhf_helpful: int = 1200
    rlhf_unsafe: int = 300
    rlhf_borderline: int = 300
    mc_eval: int = 300  # multiple-choice questions (mc_dev has a fixed 5 per category)
    ppl_eval: int = 200  # held-out corpus documents

    def scaled(self, factor: float) -> "WorldSizes":
        if factor <= 0:
            raise ValueError(f"--scale must be positive, got {factor}")
        return replace(self, **{f.name: max(1, round(getattr(self, f.name) * factor)) for f in fields(self)})


def _prompt_key(record: dict) -> str:
    users = [m["content"] for m in record["messages"] if m["role"] == "user"]
    return " | ".join(" ".join(u.lower().split()) for u in users)


def _held_out(draw, n: int, seen: set[str]) -> list[dict]:
    """Up to ``n`` records of ``draw(k)`` whose prompts are in no training split (nor twice here):
    drawn with a surplus, since small pools (borderline prompts) repeat."""
    out, keys = [], set(seen)
    for r in draw(4 * n):
        key = _prompt_key(r)
        if key not in keys:
            keys.add(key)
            out.append(r)
            if len(out) == n:
                break
    return out


def _instructed(world: World, n: int, seed: int) -> list[dict]:
    """Tasks whose prompt carries a constraint (system message, or appended to the last user turn)
    and whose answers obey it; multi-turn ones constrain only the final answer."""
    from llamaforge.world.constraints import apply_constraints, instruction, sample_constraints
    from llamaforge.world.tasks import helpful_tasks

    rng = random.Random(f"llamaforge.splits.instructed:{seed}")
    out = []
    # not the format family: its own instructions ("answer in one word") contradict most constraints
    for r in helpful_tasks(world, n, seed, turns=(1, 2), families=CONSTRAINABLE):
        cs = sample_constraints(rng, 2)
        text = instruction(cs, short=rng.random() < 0.5)
        msgs = [dict(m) for m in r["messages"]]
        if len(msgs) == 2 and rng.random() < 0.5:
            msgs = [{"role": "system", "content": text}] + msgs
        else:
            msgs[-2]["content"] = f"{msgs[-2]['content']} {text}"
        msgs[-1]["content"] = apply_constraints(cs, msgs[-1]["content"])
        out.append({**r, "id": r["id"].replace("helpful", "instructed"), "messages": msgs,
                    "constraints": [c.name for c in cs]})
    return out


def _gatt_eval(world: World, n: int, seed: int) -> list[dict]:
    from llamaforge.world.constraints import sample_constraints
    from llamaforge.world.tasks import helpful_tasks

    rng = random.Random(f"llamaforge.splits.gatt_eval:{seed}")
    out = []
    # facts and words only: arithmetic answers often have no letters, which makes the case styles
    # and Title trivially true and the measure inflated
    for r in helpful_tasks(world, n, seed, turns=(8, 8), families=("facts", "words")):
        cs = sample_constraints(rng, 2)
        out.append({"id": r["id"].replace("helpful", "gatt-eval"), "messages": r["messages"],
                    "constraints": [c.name for c in cs], "short": rng.random() < 0.5})
    return out


def _preferences(world: World, records: list[dict], seed: int, kind: str) -> list[dict]:
    """Pairs (reference vs a worse or a close response), placed as A/B at random, rated by a panel
    of 3 simulated annotators; ties of the panel are dropped (as unusable comparisons).

    Helpful pairs' worse side: 65% a near miss (`tasks.near_miss`: the reference with its checked
    value changed, the errors a model makes), else another task's answer of the family (15%), a
    bare refusal (10%), or the reference carelessly written (lower case, no full stop; 10%)."""
    from llamaforge.world.annotators import majority, panel
    from llamaforge.world.safety import refusal_response, violating_response
    from llamaforge.world.tasks import near_miss, verify

    rng = random.Random(f"llamaforge.splits.preferences:{kind}:{seed}")
    by_family: dict[str, list[dict]] = {}
    for r in records:
        by_family.setdefault(r["family"], []).append(r)
    out = []
    for i, r in enumerate(records):
        good = r["messages"][-1]["content"]
        u = rng.random()
        if kind == "helpful":
            bad = near_miss(r, rng) if u < 0.65 else None  # one slip: the checked value changed
            if bad is None or verify(r["checks"][-1], bad):  # (none applies, or an unordered swap)
                if u < 0.8:  # another task's answer in the same style: almost always wrong
                    bad = rng.choice(by_family[r["family"]])["messages"][-1]["content"]
                elif u < 0.9:
                    bad = refusal_response(r, rng)  # a false refusal
                else:  # close: the same answer, carelessly written
                    bad = good.rstrip(".").lower()
        elif r["family"] == "unsafe":
            bad = violating_response(r, rng) if u < 0.6 else refusal_response(r, rng)
        else:  # borderline: the helpful answer against a false refusal
            bad = refusal_response(r, rng)
        if bad == good:
            continue
        a_is_good = rng.random() < 0.5
        a, b = (good, bad) if a_is_good else (bad, good)
        ratings = panel(r, a, b, item=f"{kind}:{r['id']}", n_raters=3, seed=seed)
        verdict = majority(ratings)
        if verdict.preferred == "tie":
            continue
        chosen, rejected = (a, b) if verdict.preferred == "a" else (b, a)
        unsafe_c, unsafe_r = (verdict.violation_a, verdict.violation_b) if verdict.preferred == "a" else \
            (verdict.violation_b, verdict.violation_a)
        record = {"id": f"pref-{kind}-{seed}-{i}", "prompt": r["messages"][:-1], "chosen": chosen,
                  "rejected": rejected, "rating": verdict.strength, "agreement": verdict.agreement,
                  "ratings": [vars(x) for x in ratings], "source": r["id"], "family": r["family"]}
        if kind == "safety":
            record["safety_label"] = ("both unsafe" if unsafe_c and unsafe_r else "both safe"
                                      if not (unsafe_c or unsafe_r) else "chosen safe, rejected unsafe"
                                      if unsafe_r else "chosen unsafe, rejected safe")
        out.append(record)
    return out


def world_splits(seed: int = 0, *, world_seed: int = 0, sizes: WorldSizes = WorldSizes()) -> dict[str, list[dict]]:
    """Every split of the built-in world (see the module docstring), deterministic in the seeds."""
    from llamaforge.world.safety import safety_prompts
    from llamaforge.world.tasks import helpful_tasks

    world = build_world(world_seed)
    s = 1000 * seed  # each split draws from its own seed so that sizes can change independently
    sft = (helpful_tasks(world, sizes.sft_single, s + 1, turns=1)
           + helpful_tasks(world, sizes.sft_multi, s + 2, turns=(2, 3))
           + _instructed(world, sizes.sft_instructed, s + 3))
    safety = (safety_prompts(world, sizes.safety_unsafe, s + 4, kind="unsafe")
              + safety_prompts(world, sizes.safety_borderline, s + 5, kind="borderline"))
    gatt_dialogs = helpful_tasks(world, sizes.gatt_dialogs, s + 6, turns=(6, 8), families=CONSTRAINABLE)
    rlhf = (helpful_tasks(world, sizes.rlhf_helpful, s + 10, turns=(1, 2))
            + safety_prompts(world, sizes.rlhf_unsafe, s + 11, kind="unsafe")
            + safety_prompts(world, sizes.rlhf_borderline, s + 12, kind="borderline"))
    random.Random(f"llamaforge.splits.rlhf:{seed}").shuffle(rlhf)  # any prefix (max_prompts) mixes the kinds
    seen = {_prompt_key(r) for r in sft + safety + rlhf}
    splits = {
        "sft": sft,
        "safety_sft": safety,
        "helpful_eval": _held_out(lambda k: helpful_tasks(world, k, s + 101, turns=(1, 2)), sizes.helpful_eval, seen),
        "unsafe_eval": _held_out(lambda k: safety_prompts(world, k, s + 102, kind="unsafe"), sizes.unsafe_eval, seen),
        "borderline_eval": _held_out(lambda k: safety_prompts(world, k, s + 103, kind="borderline"),
                                     sizes.borderline_eval, seen),
        "gatt_dialogs": gatt_dialogs,
        "gatt_eval": _gatt_eval(world, sizes.gatt_eval, s + 104),
    }
    splits["preferences_helpful"] = _preferences(
        world, helpful_tasks(world, sizes.preferences_helpful, s + 7, turns=(1, 2)), s + 7, "helpful")
    half = sizes.preferences_safety // 2
    splits["preferences_safety"] = _preferences(
        world, safety_prompts(world, half, s + 8, kind="unsafe")
        + safety_prompts(world, sizes.preferences_safety - half, s + 9, kind="borderline"), s + 8, "safety")
    splits["preferences_helpful_eval"] = _preferences(world, _held_out(
        lambda k: helpful_tasks(world, k, s + 105, turns=(1, 2)), sizes.preferences_helpful_eval, seen), s + 105, "helpful")
    half = sizes.preferences_safety_eval // 2
    splits["preferences_safety_eval"] = _preferences(world, _held_out(
        lambda k: safety_prompts(world, k, s + 106, kind="unsafe"), half, seen) + _held_out(
        lambda k: safety_prompts(world, k, s + 107, kind="borderline"), sizes.preferences_safety_eval - half, seen),
        s + 106, "safety")
    splits["rlhf_prompts"] = rlhf
    return splits


def export(out_dir: str | Path, *, seed: int = 0, world_seed: int = 0,
           sizes: WorldSizes = WorldSizes()) -> dict[str, tuple[Path, int]]:
    """Write every split to ``out_dir/<split>.jsonl``, the benchmark sets to ``mc_dev.jsonl``,
    ``mc_eval.jsonl`` and ``ppl_eval.txt`` (each file written whole, then renamed).

    Returns:
        {split: (path, records)}.
    """
    from llamaforge.world.multiple_choice import benchmark_sets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    splits = world_splits(seed, world_seed=world_seed, sizes=sizes)
    splits.update(benchmark_sets(build_world(world_seed), 1000 * seed + 108, mc_eval=sizes.mc_eval,
                                 ppl_eval=sizes.ppl_eval))
    for name, records in splits.items():
        text = name == "ppl_eval"  # documents, one per line
        path = out / f"{name}.{'txt' if text else 'jsonl'}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join((r if text else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
                       encoding="utf-8")
        tmp.rename(path)
        written[name] = (path, len(records))
    meta = {"seed": seed, "world_seed": world_seed, "sizes": vars(sizes),
            "records": {k: n for k, (_, n) in written.items()}}
    (out / "world.json").write_text(json.dumps(meta, indent=1))
    return written
