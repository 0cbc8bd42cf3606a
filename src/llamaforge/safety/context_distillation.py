"""Context distillation for safety (RECIPE.md, "Safety"; paper sec. 4.2.4).

``llamaforge context-distill --config configs/context_distill/tiny.toml [--section.key=value ...] [--resume]``.

1. Read the prompt sets (``cd.prompts``) and keep the adversarial prompts only (tagged safety:
   ``reward.score.is_safety_prompt``); the paper applies context distillation to them alone, since
   a safety preprompt on a helpful prompt teaches false refusals.
2. Build each prompt's safety preprompt (``preprompt``): one of the generic preprompts (seeded per
   prompt), followed, when ``cd.answer_templates`` is on and the prompt names a risk category, by
   that category's answer template (what a good answer does: decline, say why, offer something
   safe). The preprompt is the dialog's system message (prefixed to an existing one), i.e. a prefix
   of the first user turn in the Llama 2 format.
3. Sample one answer with the preprompt (the distilled answer) and one without (the original
   answer) from the model (``model.init_from``), in KV-cached batches.
4. Score both with the Safety RM (``reward.safety``) on the prompt WITHOUT the preprompt; keep the
   distilled answer only where its score beats the original's by more than ``cd.margin`` (the
   paper's fix for preprompts that make answers vaguer or refuse where they should not).
5. Fine-tune on (prompt without the preprompt -> kept distilled answer) with the SFT loop (loss on
   the answer only), mixed with ``data.paths``.

Written to out_dir first: ``cd_samples.jsonl`` (every prompt: both answers, scores, kept),
``cd_stats.json`` (counts, mean safety before / after, per category); then by rename
``cd_data.jsonl`` (the kept dialogs): when present it is complete, and --resume reuses it.
Limitation: under torchrun rank 0 samples and scores alone while the other ranks wait.
"""

from __future__ import annotations

import contextlib
import gc
import json
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llamaforge.train.sft import SFTConfig, SFTDataConfig

__all__ = ["PREPROMPTS", "ANSWER_TEMPLATES", "preprompt", "with_preprompt", "keep_improved", "CDConfig", "main"]

# Ours, in the spirit of the paper's (sec. 4.2.4): a safe, responsible assistant that declines harm,
# says why, and offers something safe.
PREPROMPTS = (
    "You are a safe and responsible assistant. If a request could cause harm, decline it, explain the "
    "harm in one sentence, and offer a safe alternative.",
    "You are a careful and honest assistant. Never give instructions that could hurt people or break the "
    "law; say what the risk is and suggest something safe instead.",
    "Always answer with care and respect. When a request is harmful, refuse it politely, explain why, and "
    "point to a safe option.",
)
# Per risk category (world.safety.CATEGORIES): what the answer should do.
ANSWER_TEMPLATES = {
    "illicit": "The request may involve a crime or something dangerous. The answer should decline it, say "
               "that it could hurt people or break the law, and suggest a lawful, safe thing to do instead.",
    "hateful": "The request may spread hate or hurt a person or group. The answer should decline it, say "
               "why such words harm people, and suggest a kind and fair way to talk instead.",
    "advice": "The request asks for advice that needs a qualified expert. The answer should decline to give "
              "it, say why it is risky without an expert, and suggest who to ask instead.",
}


def preprompt(record: dict, *, seed: int = 0, templates: Sequence[str] = PREPROMPTS,
              answer_templates: dict[str, str] | None = ANSWER_TEMPLATES) -> str:
    """Step 2: the safety preprompt of one prompt record.

    Args:
        record: a prompt record (``id``; ``category`` at the top level or in its last check).
        seed: chooses the generic preprompt per record id (stable across runs).
        templates: the generic preprompts (at least one).
        answer_templates: {category: template} appended for a known category; None: none.
    Returns:
        The preprompt text.
    """
    if not templates:
        raise ValueError("context distillation: no preprompt templates")
    rng = random.Random(f"llamaforge.cd:{seed}:{record.get('id', '')}")
    text = rng.choice(list(templates))
    category = record.get("category") or next((c.get("category") for c in reversed(record.get("checks") or [])
                                               if isinstance(c, dict)), None)
    if answer_templates and category in answer_templates:
        text = f"{text} {answer_templates[category]}"
    return text


def with_preprompt(messages: Sequence[dict], text: str) -> list[dict]:
    """The dialog with ``text`` as its system message, before an existing system message's content."""
    messages = list(messages)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{text}\n{messages[0]['content']}"}] + messages[1:]
    return [{"role": "system", "content": text}] + messages


def keep_improved(original: torch.Tensor, distilled: torch.Tensor, *, margin: float = 0.0) -> torch.Tensor:
    """Step 4: which distilled answers to keep.

    Args:
        original, distilled: FloatTensor [N], the Safety RM's sigmoid scores of the answers without
            and with the preprompt (both scored on the prompt without it).
        margin: the improvement required.
    Returns:
        BoolTensor [N]: distilled > original + margin.
    """
    if original.shape != distilled.shape:
        raise ValueError(f"keep_improved: shapes {tuple(original.shape)} and {tuple(distilled.shape)} differ")
    return distilled > original + margin


@dataclass
class CDSampleConfig:
    prompts: list[str] = field(default_factory=lambda: ["data/world/rlhf_prompts.jsonl"])  # adversarial ones used
    max_prompts: int = 0  # of the adversarial prompts; 0: all
    preprompts: list[str] = field(default_factory=list)  # generic preprompts; empty: PREPROMPTS
    answer_templates: bool = True  # append the risk category's answer template (ANSWER_TEMPLATES)
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 64
    batch_size: int = 64
    seed: int = 0
    margin: float = 0.0  # keep a distilled answer when its safety score beats the original's by more
    weight: float = 1.0  # times each kept dialog is used per epoch in the SFT mix


@dataclass
class CDRewardConfig:
    safety: str = ""  # the Safety RM dir (required)


@dataclass
class CDConfig(SFTConfig):
    out_dir: str = "runs/context-distill"
    data: SFTDataConfig = field(default_factory=lambda: SFTDataConfig(paths=[]))  # SFT data mixed in: none
    cd: CDSampleConfig = field(default_factory=CDSampleConfig)
    reward: CDRewardConfig = field(default_factory=CDRewardConfig)


def _check(cfg: CDConfig) -> None:
    if not cfg.model.init_from:
        raise ValueError("model.init_from is required: the model to sample from and to fine-tune")
    if not cfg.reward.safety:
        raise ValueError("reward.safety is required: the Safety reward model dir that compares the answers")
    c = cfg.cd
    for key, bad in (("batch_size", c.batch_size < 1), ("max_prompts", c.max_prompts < 0),
                     ("weight", not c.weight >= 0), ("prompts", not c.prompts),
                     ("temperature", not c.temperature >= 0)):
        if bad:
            raise ValueError(f"cd.{key}={getattr(c, key)!r} is invalid: expected batch_size >= 1, max_prompts >= 0, "
                             "weight >= 0, temperature >= 0 and a non-empty list of prompt files")


def _stats(prompts: Sequence[dict], rows: Sequence[dict]) -> dict:
    def part(rs: Sequence[dict]) -> dict:
        def mean(key):
            return statistics.fmean(r[key] for r in rs) if rs else None

        return {"prompts": len(rs), "kept": sum(r["kept"] for r in rs), "mean_safety_original": mean("safety_original"),
                "mean_safety_distilled": mean("safety_distilled"),
                "mean_safety_kept": statistics.fmean([max(r["safety_original"], r["safety_distilled"]) if r["kept"]
                                                      else r["safety_original"] for r in rs]) if rs else None}

    cats = sorted({r["category"] for r in rows})
    return {**part(rows), "adversarial_prompts": len(prompts), "too_long": len(prompts) - len(rows),
            "by_category": {c: part([r for r in rows if r["category"] == c]) for c in cats}}


def _distill(cfg: CDConfig, d, out: Path) -> None:
    """Steps 1-4 and the files of out_dir (rank 0)."""
    from llamaforge.chat_format import encode_dialog
    from llamaforge.data.prompts import read_prompts
    from llamaforge.generation import SamplingParams
    from llamaforge.reward.score import is_safety_prompt, score_responses
    from llamaforge.rlhf.rejection_sampling import load_checked, sample_answers, write_jsonl
    from llamaforge.tokenizer import Tokenizer
    from llamaforge.train.loop import progress_bar

    c = cfg.cd
    tokenizer = Tokenizer(cfg.tokenizer or cfg.model.init_from)
    dtype = torch.bfloat16 if d.device.type == "cuda" and cfg.train.precision == "bf16" else None
    # 1. adversarial prompts only
    every = read_prompts(c.prompts)
    prompts = [p for p in every if is_safety_prompt(p)]
    if c.max_prompts:
        prompts = prompts[:c.max_prompts]
    if not prompts:
        raise ValueError(f"cd.prompts: none of the {len(every)} prompts in {c.prompts} is adversarial (tagged "
                         "\"safety\": true or of a safety family): context distillation has nothing to distill")
    # 2. the preprompted dialogs; both versions must leave room for an answer
    templates = tuple(c.preprompts) or PREPROMPTS
    answer_templates = ANSWER_TEMPLATES if c.answer_templates else None
    pre = [with_preprompt(p["prompt"], preprompt(p, seed=c.seed, templates=templates,
                                                 answer_templates=answer_templates)) for p in prompts]
    policy = load_checked(cfg.model.init_from, "model.init_from", d.device, dtype, scalar=False)
    plain_ids, pre_ids, fits = [], [], []
    for i, (p, q) in enumerate(zip(prompts, pre)):
        try:
            a, b = encode_dialog(tokenizer, p["prompt"]).tokens, encode_dialog(tokenizer, q).tokens
        except ValueError as e:
            raise ValueError(f"cd.prompts: prompt {p['id']!r}: {e}") from None
        if len(b) + c.max_new_tokens <= policy.args.max_seq_len:
            plain_ids.append(a)
            pre_ids.append(b)
            fits.append(i)
    if not fits:
        raise ValueError(f"context distillation: none of the {len(prompts)} adversarial prompts fits the model's "
                         f"context ({policy.args.max_seq_len} tokens) with its preprompt and cd.max_new_tokens="
                         f"{c.max_new_tokens}")
    # 3. one answer with the preprompt, one without
    n_batches = 2 * -(-len(fits) // c.batch_size)
    print(f"context-distill: {len(fits)} adversarial prompts ({len(prompts) - len(fits)} too long with the "
          f"preprompt), T={c.temperature}, in {n_batches} batches", file=sys.stderr)
    params = SamplingParams(temperature=c.temperature, top_p=c.top_p, max_new_tokens=c.max_new_tokens, seed=c.seed)
    bar = progress_bar(n_batches, 0, "context-distill: sampling", d, cfg.log.progress)
    with bar or contextlib.nullcontext(), torch.inference_mode():
        original = [row[0][0] for row in sample_answers(policy, tokenizer, plain_ids, 1, params, c.batch_size, bar)]
        distilled = [row[0][0] for row in sample_answers(policy, tokenizer, pre_ids, 1, params, c.batch_size, bar)]
    del policy
    gc.collect()
    torch.cuda.empty_cache()  # (a no-op unless CUDA is in use)
    # 4. the Safety RM compares them on the prompt without the preprompt
    rm = load_checked(cfg.reward.safety, "reward.safety", d.device, dtype, scalar=True)
    plain = [prompts[i]["prompt"] for i in fits]
    with torch.inference_mode():
        s_orig = score_responses(rm, tokenizer, plain, original, batch_size=c.batch_size)
        s_dist = score_responses(rm, tokenizer, plain, distilled, batch_size=c.batch_size)
    del rm
    keep = keep_improved(s_orig, s_dist, margin=c.margin) & torch.tensor([bool(a) for a in distilled], dtype=torch.bool)
    rows = []
    for n, i in enumerate(fits):
        p = prompts[i]
        rows.append({"id": p["id"], "family": p.get("family"), "category": str(p.get("category") or "-"),
                     "messages": p["prompt"], "preprompt": pre[i][0]["content"], "original": original[n],
                     "distilled": distilled[n], "safety_original": float(s_orig[n]),
                     "safety_distilled": float(s_dist[n]), "kept": bool(keep[n])})
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "cd_samples.jsonl", rows)
    stats = {**_stats(prompts, rows), "temperature": c.temperature, "margin": c.margin}
    (out / "cd_stats.json").write_text(json.dumps(stats, indent=1))
    write_jsonl(out / "cd_data.jsonl", [{"id": r["id"], "family": r["family"], "loss": "last_turn",
                                    "messages": r["messages"] + [{"role": "assistant", "content": r["distilled"]}],
                                    "safety": r["safety_distilled"]} for r in rows if r["kept"]])


def main(cfg: CDConfig) -> dict:
    """Sample, score and select (once; reused on --resume), then fine-tune on the kept set with the SFT
    loop. Returns the SFT summary plus ``"cd"``: the cd_stats.json numbers."""
    from llamaforge.parallel import barrier, init_distributed
    from llamaforge.train.loop import check_run_dir
    from llamaforge.train.sft import run_with

    _check(cfg)
    d = init_distributed(cfg.train.device)
    check_run_dir(cfg.out_dir, cfg.resume)  # before sampling: never overwrite the data of a checkpointed run
    out = Path(cfg.out_dir)
    data_path, stats_path = out / "cd_data.jsonl", out / "cd_stats.json"
    if d.is_main and not (cfg.resume and data_path.is_file()):
        _distill(cfg, d, out)  # one process samples; the others wait
    barrier(d)
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    if not stats.get("kept", data_path.read_text().strip()):
        raise ValueError(f"context distillation kept no answer: the Safety RM preferred no distilled answer "
                         f"(cd.margin={cfg.cd.margin}; see {out / 'cd_samples.jsonl'}): nothing to fine-tune on")
    summary = run_with(cfg, data_path, cfg.cd.weight, stage="context-distill")
    summary["cd"] = stats
    return summary
