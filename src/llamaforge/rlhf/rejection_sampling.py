"""Rejection-sampling fine-tuning (RECIPE.md, "RLHF"; paper sec. 3.2.3).

``llamaforge rejection-sampling --config configs/rejection_sampling/tiny.toml [--section.key=value ...] [--resume]``.

1. Sample K answers to every RLHF prompt (``rs.prompts``) from the latest policy (``model.init_from``).
2. Score each (prompt, answer) by R_c (eq. 3): the Safety RM's score (``reward.safety``) on safety-tagged
   prompts and on answers it finds unsafe, else the Helpfulness RM's (``reward.helpful``).
3. Per prompt keep the highest R_c among the new samples and earlier rounds' candidates (``rs.pool``:
   their samples.jsonl, re-scored by the current RMs; of equals the first, new samples first): from
   RLHF-V4 on the paper pools the top samples of all iterations, as the model otherwise forgot skills.
4. Fine-tune it on the kept dialogs (SFT loop, mixed with ``data.paths``; loss on the kept answer only).

Written to out_dir first: ``samples.jsonl`` (every candidate, scored), ``rs_stats.json`` (counts,
rewards, per family; Figure 7: the mean over prompts of the max and of the median R_c of the first N
samples, N = 1..K), ``reward_vs_k.png``; then by rename ``rs_data.jsonl`` (the kept dialogs): when
present it is complete, and --resume reuses it. A sample is cut where it starts a chat tag (``[INST]``:
a new turn); an empty answer is scored, never kept. Limitation: under torchrun rank 0 samples and
scores alone while the other ranks wait at a barrier: the policy, then both RMs, must fit one device.
"""

from __future__ import annotations

import contextlib
import gc
import json
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from llamaforge.train.sft import SFTConfig, SFTDataConfig

__all__ = ["best_of_n_curve", "clean_answer", "read_pool", "sample_answers", "select_best", "load_checked",
           "write_jsonl", "RSConfig", "main"]


def best_of_n_curve(rewards: torch.Tensor) -> dict[str, list[float]]:
    """The paper's Figure 7: the expected best and median reward among N samples, N = 1..K.

    Args:
        rewards: FloatTensor [P, K], R_c of K samples for each of P prompts, in sampling order.
    Returns:
        {"max": [K], "median": [K]}: entry N-1 is the mean over prompts of the max (of the median)
        of the first N samples. The median of an even count is the mean of its two middle values.
    """
    if rewards.dim() != 2 or min(rewards.shape) < 1 or not bool(torch.isfinite(rewards).all()):
        raise ValueError(f"best_of_n_curve: rewards must be a finite [P, K] tensor with P, K >= 1, got shape "
                         f"{tuple(rewards.shape)}")
    r = rewards.double()
    best = r.cummax(dim=1).values.mean(dim=0)  # [K]: running max per prompt, averaged over prompts
    median = [float(r[:, :n].quantile(0.5, dim=1).mean()) for n in range(1, r.shape[1] + 1)]
    return {"max": best.tolist(), "median": median}


def clean_answer(text: str) -> str:
    """A decoded sample cut where it starts a chat-format tag (a new turn), stripped."""
    from llamaforge.chat_format import SPECIAL_TAGS

    cut = min([text.find(tag) for tag in SPECIAL_TAGS if tag in text], default=len(text))
    return text[:cut].strip()


def read_pool(paths: Sequence[str | Path], prompts: dict[str, dict], known=()) -> tuple[list[dict], int]:
    """Candidates of earlier rounds (samples.jsonl lines) for the current prompts ({id: record}).
    A line of another id, or with other ``messages``, is not used; an (id, answer) already read or in
    ``known`` (the new samples') is skipped. Returns (candidates, lines not used)."""
    from llamaforge.data.sft import read_jsonl

    out, seen, unused = [], set(known), 0
    for path in paths:
        for where, rec in read_jsonl(path, "rs.pool"):
            if "id" not in rec or not isinstance(rec.get("answer"), str):
                raise ValueError(f"{where}: expected a samples.jsonl line with 'id' and 'answer'")
            pid, answer = str(rec["id"]), clean_answer(rec["answer"])
            p = prompts.get(pid)
            if p is None or rec.get("messages", p["prompt"]) != p["prompt"]:
                unused += 1
            elif (pid, answer) not in seen:
                seen.add((pid, answer))
                out.append({"id": pid, "answer": answer, "sample": rec.get("sample"), "finish": rec.get("finish"),
                            "source": "pool", "round": rec.get("round", str(path))})
    return out, unused


def sample_answers(model, tokenizer, prompts: Sequence[Sequence[int]], k: int, params, batch_size: int,
                   progress=None) -> list[list[tuple[str, str]]]:
    """Step 1: K answers to each of P prompts (id lists that leave room for ``params.max_new_tokens``).

    The P*K jobs go by prompt length (little padding; a prompt's K copies mostly share a batch); batch b
    is seeded from (``params.seed``, b). Returns [P][K] (``clean_answer`` text, "stop" | "length").
    """
    from llamaforge.generation import generate

    jobs = sorted(((i, j) for i in range(len(prompts)) for j in range(k)), key=lambda job: len(prompts[job[0]]))
    out: list[list] = [[None] * k for _ in prompts]
    for b, s in enumerate(range(0, len(jobs), batch_size)):
        batch = jobs[s:s + batch_size]
        seed = random.Random(f"llamaforge.rs:{params.seed or 0}:{b}").getrandbits(63)
        results = generate(model, [prompts[i] for i, _ in batch], replace(params, seed=seed), eos_id=tokenizer.eos_id)
        for (i, j), r in zip(batch, results):
            out[i][j] = (clean_answer(tokenizer.decode(r.tokens)), r.finish_reason)
        if progress is not None:
            progress.update(1)
    return out


def select_best(candidates: Sequence[dict]) -> dict[str, dict]:
    """Step 3: per prompt id, the candidate with the highest ``reward`` (R_c) among those with a
    non-empty answer; the first of equals wins. Returns {id: candidate}."""
    best: dict[str, dict] = {}
    for c in candidates:
        if c["answer"] and (c["id"] not in best or c["reward"] > best[c["id"]]["reward"]):
            best[c["id"]] = c
    return best


@dataclass
class RSSampleConfig:
    prompts: list[str] = field(default_factory=lambda: ["data/rlhf_prompts.jsonl"])  # prompt JSONL files
    max_prompts: int = 0  # 0: all
    k: int = 4  # samples per prompt (the paper: up to 10 for its 70B)
    # The paper found T in [1.2, 1.3] best for its RLHF models (Figure 8); the best T moves as the model changes.
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    batch_size: int = 64  # sequences sampled (and scored) together
    seed: int = 0
    pool: list[str] = field(default_factory=list)  # samples.jsonl of earlier rounds, re-scored (the paper, from V4)
    min_reward: float = 0.0  # drop a prompt whose best R_c is below it
    weight: float = 1.0  # times each kept dialog is used per epoch in the SFT mix


@dataclass
class RSRewardConfig:
    helpful: str = ""  # the Helpfulness RM dir (required)
    safety: str = ""  # the Safety RM dir ("": R_c is the helpfulness score)


@dataclass
class RSConfig(SFTConfig):
    out_dir: str = "runs/rejection-sampling"
    data: SFTDataConfig = field(default_factory=lambda: SFTDataConfig(paths=[]))  # SFT data mixed in: none
    rs: RSSampleConfig = field(default_factory=RSSampleConfig)
    reward: RSRewardConfig = field(default_factory=RSRewardConfig)


def _check(cfg: RSConfig) -> None:
    if not cfg.model.init_from:
        raise ValueError("model.init_from is required: the policy to sample from and to fine-tune")
    if not cfg.reward.helpful:
        raise ValueError("reward.helpful is required: the Helpfulness reward model dir that scores the samples")
    r = cfg.rs
    for key, bad in (("k", r.k < 1), ("batch_size", r.batch_size < 1), ("max_prompts", r.max_prompts < 0),
                     ("weight", not r.weight >= 0), ("prompts", not r.prompts)):
        if bad:
            raise ValueError(f"rs.{key}={getattr(r, key)!r} is invalid: expected k >= 1 (samples per prompt), "
                             "batch_size >= 1, max_prompts >= 0, weight >= 0 and a non-empty list of prompt files")


def load_checked(path: str, what: str, device, dtype, scalar: bool):
    """A model dir for inference (eval mode), checked to be an LM (``scalar`` False) or a reward model;
    ValueError names ``what`` (the config key) otherwise."""
    from llamaforge.model.checkpoint_io import load_model
    from llamaforge.model.heads import has_scalar_head

    model = load_model(path, device=device, dtype=dtype).eval()
    if has_scalar_head(model) != scalar:
        kinds = ("a language model", "a reward model (scalar head)")
        raise ValueError(f"{what}={path}: expected {kinds[scalar]} dir, found {kinds[not scalar]}")
    return model


def write_jsonl(path: Path, records: Sequence[dict]) -> None:
    """``records`` as JSONL, under a temporary name renamed onto ``path`` (complete if present)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


def _stats(prompts: Sequence[dict], cands: Sequence[dict], best: dict[str, dict], kept: Sequence[dict]) -> dict:
    """Counts and rewards, overall and per family (``*_best``: of each prompt's best; ``mean_reward``: new samples)."""
    def mean(xs):
        return statistics.fmean(xs) if xs else None

    def part(ps: Sequence[dict]) -> dict:
        ids = {p["id"] for p in ps}
        b = [best[i]["reward"] for i in ids if i in best]
        return {"prompts": len(ps), "kept": sum(c["id"] in ids for c in kept), "mean_best": mean(b),
                "median_best": statistics.median(b) if b else None,
                "mean_reward": mean([c["reward"] for c in cands if c["id"] in ids and c["source"] == "new"])}

    family = [str(p.get("family", "-")) for p in prompts]
    new = [c for c in cands if c["source"] == "new"]
    return {**part(prompts), "samples": len(new), "pool_candidates": len(cands) - len(new),
            "kept_from_pool": sum(c["source"] == "pool" for c in kept),
            "mean_helpful": mean([c["helpful"] for c in new]),
            "mean_safety": mean([c["safety"] for c in new if c["safety"] is not None]),
            "by_family": {f: part([p for p, g in zip(prompts, family) if g == f]) for f in sorted(set(family))}}


def _plot(curve: dict, path: Path, k: int):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key in ("max", "median"):
        ax.plot(range(1, k + 1), curve[key], marker="o", label=f"{key} of N samples")
    ax.set(xlabel="N samples", ylabel="R_c, mean over prompts", title="reward vs samples per prompt (paper Fig. 7)")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def _sample_and_select(cfg: RSConfig, d, out: Path) -> None:
    """Steps 1-3 and the files of out_dir (rank 0)."""
    from llamaforge.chat_format import encode_dialog
    from llamaforge.data.prompts import read_prompts
    from llamaforge.generation import SamplingParams
    from llamaforge.reward.score import RewardModels, encode_scored
    from llamaforge.tokenizer import Tokenizer
    from llamaforge.train.loop import progress_bar

    r = cfg.rs
    tokenizer = Tokenizer(cfg.tokenizer or cfg.model.init_from)
    dtype = torch.bfloat16 if d.device.type == "cuda" and cfg.train.precision == "bf16" else None
    prompts = read_prompts(r.prompts, max_prompts=r.max_prompts)
    by_id = {p["id"]: p for p in prompts}

    # 1. K samples per prompt that leaves room for an answer in the context
    policy = load_checked(cfg.model.init_from, "model.init_from", d.device, dtype, scalar=False)
    ids = []
    for p in prompts:
        try:
            ids.append(encode_dialog(tokenizer, p["prompt"]).tokens)
        except ValueError as e:
            raise ValueError(f"rs.prompts: prompt {p['id']!r}: {e}") from None
    fits = [i for i, x in enumerate(ids) if len(x) + r.max_new_tokens <= policy.args.max_seq_len]
    n_batches = -(-len(fits) * r.k // r.batch_size)
    print(f"rejection-sampling: {r.k} samples for each of {len(fits)} prompts ({len(prompts) - len(fits)} too long "
          f"for the context), T={r.temperature}, in {n_batches} batches", file=sys.stderr)
    params = SamplingParams(temperature=r.temperature, top_p=r.top_p, max_new_tokens=r.max_new_tokens, seed=r.seed)
    bar = progress_bar(n_batches, 0, "rejection-sampling: sampling", d, cfg.log.progress)
    with bar or contextlib.nullcontext(), torch.inference_mode():
        answers = sample_answers(policy, tokenizer, [ids[i] for i in fits], r.k, params, r.batch_size, bar)
    del policy
    gc.collect()
    torch.cuda.empty_cache()  # (a no-op unless CUDA is in use)
    cands = [{"id": prompts[i]["id"], "answer": a, "sample": j, "finish": f, "source": "new", "round": cfg.out_dir}
             for i, row in zip(fits, answers) for j, (a, f) in enumerate(row)]

    # 2. score the new samples and the pool's candidates (those that fit the context) with the current RMs
    helpful = load_checked(cfg.reward.helpful, "reward.helpful", d.device, dtype, scalar=True)
    safety = (load_checked(cfg.reward.safety, "reward.safety", d.device, dtype, scalar=True)
              if cfg.reward.safety else None)
    pool, unused = read_pool(r.pool, by_id, known={(c["id"], c["answer"]) for c in cands})
    fit = [len(encode_scored(tokenizer, by_id[c["id"]]["prompt"], c["answer"])) <= helpful.args.max_seq_len
           for c in pool]
    cands += [c for c, ok in zip(pool, fit) if ok]
    if cands:
        scores = RewardModels(helpful, safety, batch_size=r.batch_size).score(
            tokenizer, [by_id[c["id"]] for c in cands], [c["answer"] for c in cands])
        for n, c in enumerate(cands):
            c["helpful"], c["reward"] = float(scores["helpful"][n]), float(scores["combined"][n])
            c["safety"] = None if scores["safety"] is None else float(scores["safety"][n])
    del helpful, safety
    gc.collect()
    torch.cuda.empty_cache()

    # 3. the best candidate per prompt, if good enough; Figure 7 from the new samples
    best = select_best(cands)
    kept = [best[p["id"]] for p in prompts if p["id"] in best and best[p["id"]]["reward"] >= r.min_reward]
    stats = {**_stats(prompts, cands, best, kept), "k": r.k, "temperature": r.temperature,
             "too_long": len(prompts) - len(fits), "pool_unused": unused + fit.count(False),
             "no_answer": len(prompts) - len(best), "below_min_reward": len(best) - len(kept)}
    new = torch.tensor([c["reward"] for c in cands[:len(fits) * r.k]])  # [P' * K]: by prompt, then sample
    curve = best_of_n_curve(new.view(len(fits), r.k)) if fits else None
    stats["reward_vs_k"] = {"n": list(range(1, r.k + 1)), **curve} if curve else None

    # 4. every candidate, the stats and the plot; then the kept dialogs (last, by rename: complete if present)
    out.mkdir(parents=True, exist_ok=True)
    chosen = {id(c) for c in kept}
    write_jsonl(out / "samples.jsonl", [{"id": c["id"], "family": by_id[c["id"]].get("family"),
                                    "messages": by_id[c["id"]]["prompt"], **{k: v for k, v in c.items() if k != "id"},
                                    "kept": id(c) in chosen} for c in cands])
    stats["plot"] = _plot(curve, out / "reward_vs_k.png", r.k) if curve else None
    (out / "rs_stats.json").write_text(json.dumps(stats, indent=1))
    turn = [{"role": "assistant", "content": c["answer"]} for c in kept]
    write_jsonl(out / "rs_data.jsonl", [{"id": c["id"], "family": by_id[c["id"]].get("family"), "loss": "last_turn",
                                    "messages": by_id[c["id"]]["prompt"] + [t], "reward": c["reward"],
                                    "source": c["source"]} for c, t in zip(kept, turn)])


def main(cfg: RSConfig) -> dict:
    """Sample, score and select (once; reused on --resume), then fine-tune on the kept set with the
    SFT loop. Returns the SFT summary plus ``"rs"``: the rs_stats.json numbers."""
    from llamaforge.parallel import barrier, init_distributed
    from llamaforge.train.loop import check_run_dir
    from llamaforge.train.sft import run_with

    _check(cfg)
    d = init_distributed(cfg.train.device)
    check_run_dir(cfg.out_dir, cfg.resume)  # before sampling: never overwrite the data of a checkpointed run
    out = Path(cfg.out_dir)
    data_path, stats_path = out / "rs_data.jsonl", out / "rs_stats.json"
    if d.is_main and not (cfg.resume and data_path.is_file()):
        _sample_and_select(cfg, d, out)  # one process samples; the others wait
    barrier(d)
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    if not stats.get("kept", data_path.read_text().strip()):
        raise ValueError(f"rejection sampling kept no prompt (rs.min_reward={cfg.rs.min_reward}; see {stats_path}): "
                         "nothing to fine-tune on")
    summary = run_with(cfg, data_path, cfg.rs.weight, stage="rejection-sampling")
    summary["rs"] = stats
    return summary
