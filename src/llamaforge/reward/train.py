"""Reward-model training (RECIPE.md, "Preference data and reward models"; paper sec. 3.2.2).

``llamaforge reward --config configs/reward/helpful-tiny.toml [--section.key=value ...] [--resume]``.
Starts from a chat model dir (``model.init_from``) with its LM head replaced by a scalar head
(``model/heads.py``), scores the chosen and the rejected response of each preference pair at the
EOS that closes the answer, and minimises -log sigmoid(r_c - r_r - m(rating)) (``reward/loss.py``)
averaged over the global batch of pairs. The paper's recipe: 1 epoch, LR 1e-5 (5e-6 for 70B),
cosine to 10%, warm-up 3% of the steps (at least 5), 512 pairs a batch. The Helpfulness RM and the
Safety RM are two runs of this loop on their own mixes (``data.paths`` + ``data.weights``).

The same loop conventions as the other stages (``train.loop``): 1 process or N torchrun ranks with
FSDP2, checkpoints with the data position, exact resume, signals, metrics. At the end it writes the
reward model dir (HF ``LlamaForSequenceClassification``), ``eval.json`` with the accuracy per rating
(the form of Table 8) and per safety label (Table 29) on ``eval.paths``, and ``scores.png``.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch

from llamaforge.parallel import Dist, all_gather_object, all_reduce_mean, init_distributed
from llamaforge.reward.loss import MARGINS, margin_values, ranking_loss
from llamaforge.reward.score import right_pad
from llamaforge.train.checkpoint import save_checkpoint
from llamaforge.train.common import OptimConfig, build_optimizer, lr_at, set_lr
from llamaforge.train.loop import (CheckpointConfig, LogConfig, SignalStop, StepGuard, accumulation, autocast_for,
                                   build_model, check_run_dir, checkpoint_or_stop, finetune_args, finish_run, log_step,
                                   progress_bar, resume, write_config)
from llamaforge.train.metrics import MetricsLogger

__all__ = ["RewardConfig", "Pair", "load_pairs", "score_pairs", "main"]


@dataclass
class RewardModelConfig:
    init_from: str = ""  # the chat model dir the RM starts from (required; the paper: the latest chat model)
    max_seq_len: Optional[int] = None  # override the model's context length


@dataclass
class RewardDataConfig:
    paths: list[str] = field(default_factory=lambda: ["data/preferences.jsonl"])  # preference JSONL files
    weights: list[float] = field(default_factory=list)  # per path: times each pair is used an epoch (1.0)
    seq_len: int = 4096  # longest prompt + response; longer pairs are dropped and counted
    seed: int = 0  # mixing and the per-epoch shuffle


@dataclass
class RewardLossConfig:
    margin: str = "small"  # the margin table m(rating) (paper Table 27): "small" | "large" | "none"


@dataclass
class RewardOptimConfig(OptimConfig):
    lr: float = 1e-5  # the paper's max LR (5e-6 for 70B)
    warmup_steps: int = 5  # the least warm-up; with warmup_fraction the larger of the two
    warmup_fraction: float = 0.03  # warm-up as a fraction of the steps (the paper's 3%)


@dataclass
class RewardTrainConfig:
    epochs: float = 1.0  # the paper's 1 (longer training overfits)
    steps: int = 0  # optimizer updates; 0: from epochs
    batch_size: int = 512  # pairs per update (the paper's 512)
    micro_batch_size: int = 8  # pairs per rank per forward/backward (2x sequences)
    precision: str = "bf16"
    compile: bool = False
    activation_checkpointing: bool = False
    device: Optional[str] = None
    max_bad_steps: int = 5


@dataclass
class RewardEvalConfig:
    paths: list[str] = field(default_factory=list)  # held-out preference JSONL: accuracy tables at the end
    every: int = 0  # also evaluate every N steps (0: only at the end)
    batch_size: int = 16  # pairs per forward


@dataclass
class RewardConfig:
    out_dir: str = "runs/reward"
    resume: bool = False
    tokenizer: Optional[str] = None  # default: the init_from model dir's tokenizer.model
    model: RewardModelConfig = field(default_factory=RewardModelConfig)
    data: RewardDataConfig = field(default_factory=RewardDataConfig)
    loss: RewardLossConfig = field(default_factory=RewardLossConfig)
    optim: RewardOptimConfig = field(default_factory=RewardOptimConfig)
    train: RewardTrainConfig = field(default_factory=RewardTrainConfig)
    eval: RewardEvalConfig = field(default_factory=RewardEvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


class Pair(NamedTuple):
    chosen: list[int]  # prompt + chosen answer ids, ending with the answer's EOS
    rejected: list[int]
    rating: str
    label: Optional[str]  # safety label, None for helpfulness data


def load_pairs(paths: list[str], tokenizer, *, seq_len: int, weights: list[float] = (), seed: int = 0
               ) -> tuple[list[Pair], dict]:
    """Read, validate and encode preference files, mixed by ``weights`` (1.5: every pair once plus a
    seeded half again). Returns (pairs, stats) with stats {"read", "dropped_too_long", "pairs"}."""
    from llamaforge.data.preference import encode_pair, read_preferences

    if weights and len(weights) != len(paths):
        raise ValueError(f"data.weights has {len(weights)} entries for {len(paths)} data.paths")
    rng = random.Random(f"llamaforge.reward.mix:{seed}")
    pairs, stats = [], {"read": 0, "dropped_too_long": 0}
    for i, path in enumerate(paths):
        w = weights[i] if weights else 1.0
        if not w >= 0:
            raise ValueError(f"data.weights[{i}] = {w} must be >= 0")
        encoded = []
        for record in read_preferences(path):
            stats["read"] += 1
            ids = encode_pair(tokenizer, record, seq_len)
            if ids is None:
                stats["dropped_too_long"] += 1
                continue
            encoded.append(Pair(ids[0], ids[1], record["rating"], record.get("safety_label")))
        whole, part = divmod(w, 1.0)
        pairs += encoded * int(whole) + rng.sample(encoded, round(part * len(encoded)))
    if not pairs:
        raise ValueError(f"no preference pairs to train on in {paths} (after dropping "
                         f"{stats['dropped_too_long']} longer than data.seq_len={seq_len})")
    stats["pairs"] = len(pairs)
    return pairs, stats


def _batch(pairs: list[Pair], device) -> tuple[torch.Tensor, torch.Tensor]:
    """[2m, T] right-padded ids (chosen rows, then rejected rows) and [2m] lengths."""
    return right_pad([p.chosen for p in pairs] + [p.rejected for p in pairs], device=device)


def _scores(model, pairs: list[Pair], autocast, device) -> tuple[torch.Tensor, torch.Tensor]:
    from llamaforge.model.heads import sequence_scores

    tokens, lengths = _batch(pairs, device)
    with autocast:
        scores = sequence_scores(model, tokens, lengths).float()  # [2m]
    return scores[:len(pairs)], scores[len(pairs):]


@torch.no_grad()
def score_pairs(model, pairs: list[Pair], micro: int, autocast, d: Dist) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) raw scores [N] of every pair, split over ranks, gathered on every rank."""
    n, per_rank = len(pairs), -(-len(pairs) // d.world_size)
    first, end = d.rank * per_rank, min(len(pairs), (d.rank + 1) * per_rank)
    mine: list[tuple[float, float]] = []
    for i in range(first, first + per_rank, micro):  # the same number of forwards on every rank (FSDP)
        chunk = pairs[i:min(i + micro, end)] if i < end else pairs[:1]
        c, r = _scores(model, chunk, autocast, d.device)
        if i < end:
            mine += list(zip(c.tolist(), r.tolist()))
    rows = [x for part in all_gather_object(mine, d) for x in part][:n]
    return torch.tensor([c for c, _ in rows]), torch.tensor([r for _, r in rows])


def _order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"llamaforge.reward.shuffle:{seed}:{epoch}").shuffle(order)
    return order


def _evaluate(model, sets: dict[str, list[Pair]], cfg: RewardConfig, autocast, d: Dist) -> dict:
    from llamaforge.reward.eval import accuracy_report

    model.eval()
    out = {}
    for name, pairs in sets.items():
        c, r = score_pairs(model, pairs, cfg.eval.batch_size, autocast, d)
        out[name] = {**accuracy_report(c, r, [p.rating for p in pairs], [p.label for p in pairs]),
                     "_scores": (c, r)}
    model.train()
    return out


def main(cfg: RewardConfig) -> dict:
    """Train (or resume) a reward model; return a summary (loss, eval tables, paths)."""
    if cfg.loss.margin not in MARGINS:
        raise ValueError(f"loss.margin must be one of {sorted(MARGINS)}, got {cfg.loss.margin!r}")
    d = init_distributed(cfg.train.device)
    run_dir, ckpt_root = check_run_dir(cfg.out_dir, cfg.resume)
    autocast, _ = autocast_for(cfg.train.precision, d)
    from llamaforge.tokenizer import Tokenizer

    args = finetune_args(cfg.model.init_from, cfg.model.max_seq_len, cfg.data.seq_len,
                         what="the chat model dir the reward model starts from")
    accum = accumulation(cfg.train.batch_size, cfg.train.micro_batch_size, d)
    tok_path = cfg.tokenizer or cfg.model.init_from

    # 1. data: preference JSONL -> validated, encoded (prompt + answer + EOS) pairs
    tokenizer = Tokenizer(tok_path)
    pairs, stats = load_pairs(cfg.data.paths, tokenizer, seq_len=cfg.data.seq_len, weights=cfg.data.weights,
                              seed=cfg.data.seed)
    evals = {}
    for path in cfg.eval.paths:
        evals[path], eval_stats = load_pairs([path], tokenizer, seq_len=cfg.data.seq_len)
        if eval_stats["dropped_too_long"] and d.is_main:
            print(f"reward: eval {path}: {eval_stats['dropped_too_long']} of {eval_stats['read']} pairs longer than "
                  f"data.seq_len={cfg.data.seq_len} tokens are not scored", file=sys.stderr)
    total_steps = cfg.train.steps or max(1, math.ceil(cfg.train.epochs * len(pairs) / cfg.train.batch_size))
    warmup = max(cfg.optim.warmup_steps, round(cfg.optim.warmup_fraction * total_steps))
    optim = RewardOptimConfig(**{**vars(cfg.optim), "warmup_steps": min(warmup, total_steps)})
    if d.is_main:
        print(f"reward: {stats['pairs']} pairs ({stats['read']} read, {stats['dropped_too_long']} longer than "
              f"{cfg.data.seq_len} tokens dropped); {total_steps} steps of {cfg.train.batch_size} pairs, "
              f"margin {cfg.loss.margin!r}, warm-up {optim.warmup_steps}", file=sys.stderr)

    # 2. model (the chat model with a scalar head), optimizer, resume
    model = build_model(args, d, precision=cfg.train.precision, compile=cfg.train.compile,
                        activation_checkpointing=cfg.train.activation_checkpointing,
                        init_from=cfg.model.init_from, seed=cfg.data.seed, head="scalar")
    optimizer = build_optimizer(model, optim)
    state = resume(ckpt_root, model, optimizer, d, cfg.resume)
    step, consumed = (state["step"], state["consumed_pairs"]) if state else (0, 0)
    guard = StepGuard(cfg.train.max_bad_steps, ckpt_root, d, skipped=state["skipped_steps"] if state else 0)
    write_config(run_dir, cfg, d)
    logger = MetricsLogger(run_dir, resume_step=step if state else None, tensorboard=cfg.log.tensorboard) \
        if d.is_main else None
    B, world, n = cfg.train.micro_batch_size, d.world_size, len(pairs)
    bar = progress_bar(total_steps, step, "reward", d, cfg.log.progress)
    loss_value, results = float("nan"), {}

    def _checkpoint(at: int) -> None:
        save_checkpoint(ckpt_root, at, model, optimizer, {"step": at, "consumed_pairs": consumed,
                        "skipped_steps": guard.skipped}, d, keep=cfg.checkpoint.keep)

    orders: dict[int, list[int]] = {}  # epoch -> its shuffle

    def _take(start: int, count: int) -> list[Pair]:  # pairs start .. start+count of the shuffled stream
        for e in {i // n for i in range(start, start + count)} - orders.keys():
            orders[e] = _order(n, cfg.data.seed, e)
        return [pairs[orders[i // n][i % n]] for i in range(start, start + count)]

    with SignalStop(d) as signals:
        try:
            while step < total_steps:
                # 3. one update over batch_size pairs: the ranking loss, a mean over the global batch
                t0 = time.perf_counter()
                set_lr(optimizer, lr_at(step, optim, total_steps))
                loss_sum, correct = torch.zeros((), device=d.device), torch.zeros((), device=d.device)
                for m in range(accum):
                    if world > 1:
                        model.set_requires_gradient_sync(m == accum - 1)
                    batch = _take(consumed + (m * world + d.rank) * B, B)
                    chosen, rejected = _scores(model, batch, autocast, d.device)
                    margin = margin_values([p.rating for p in batch], cfg.loss.margin, device=d.device)
                    loss = ranking_loss(chosen, rejected, margin, reduction="sum")
                    # FSDP averages gradients over ranks: scale by world so the result is sum / batch_size
                    (loss * world / cfg.train.batch_size).backward()
                    loss_sum += loss.detach()
                    correct += (chosen > rejected).sum().detach()
                consumed += cfg.train.batch_size
                loss_value = float(all_reduce_mean(loss_sum, d)) * world / cfg.train.batch_size
                accuracy = float(all_reduce_mean(correct.float(), d)) * world / cfg.train.batch_size
                grad_norm = guard.step(model, optimizer, loss_value, optim.grad_clip, step)
                step += 1

                # 4. evaluation, metrics, checkpoints
                last = step == total_steps
                row = {"step": step, "loss": loss_value, "train_accuracy": accuracy,
                       "lr": optimizer.param_groups[0]["lr"], "grad_norm": grad_norm, "epoch": consumed / n,
                       "pairs_per_s": cfg.train.batch_size / (time.perf_counter() - t0),
                       "skipped_steps": guard.skipped}
                if evals and ((cfg.eval.every and step % cfg.eval.every == 0) or last):
                    results = _evaluate(model, evals, cfg, autocast, d)
                    row["val_accuracy"] = sum(r["accuracy"] * r["n"] for r in results.values()) / \
                        max(1, sum(r["n"] for r in results.values()))
                log_step(row, last, logger, bar, cfg.log.every, loss=f"{loss_value:.3f}", acc=f"{accuracy:.2f}")
                stopping = checkpoint_or_stop(step, last, cfg.checkpoint.every, signals, _checkpoint, d)
                if stopping:
                    return {"step": step, "stopped": stopping, "run_dir": str(run_dir)}
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()

    # 5. the reward model dir, the accuracy tables, the score histogram
    summary = {"step": step, "loss": loss_value, "run_dir": str(run_dir), "data": stats}
    summary.update(finish_run(model, args, tok_path, run_dir, d, f"reward: {run_dir}"))
    if d.is_main and results:
        from llamaforge.reward.eval import plot_score_histogram, report_markdown

        tables = {p: {k: v for k, v in r.items() if k != "_scores"} for p, r in results.items()}
        (run_dir / "eval.json").write_text(json.dumps(tables, indent=1) + "\n", encoding="utf-8")
        c = torch.cat([r["_scores"][0] for r in results.values()])
        rj = torch.cat([r["_scores"][1] for r in results.values()])
        png = plot_score_histogram(c, rj, run_dir / "scores.png", title=f"reward model: {run_dir.name}")
        summary.update(eval=tables, scores_png=str(png) if png else None,
                       eval_markdown={p: report_markdown(t, title=p) for p, t in tables.items()})
    return summary
