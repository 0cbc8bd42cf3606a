"""Supervised fine-tuning (RECIPE.md, "Supervised fine-tuning"; paper sec. 3.1).

``llamaforge sft --config configs/sft/tiny.toml [--section.key=value ...] [--resume]``.
Starts from a model dir (``model.init_from``), trains on dialog JSONL files (``data.paths``, mixed
by ``data.weights``, e.g. safety demonstrations) rendered in Meta's chat format, with the loss only
on answer tokens, packed as the paper does with attention kept inside each sample
(``llamaforge.data.sft``). The paper's recipe: LR 2e-5 cosine, weight decay 0.1, batch 64,
sequence 4096, 2 epochs. The same loop conventions as pretraining (``train.loop``): 1 process or
N torchrun ranks with FSDP2, checkpoints with the data position, exact resume, signals, metrics.

The loss of a step is the mean over every answer token of the global batch (a sum divided by the
global count, not a mean of per-micro-batch means), so it does not depend on how the batch is
split over ranks and micro-batches.
"""

from __future__ import annotations

import math
import sys
import time
import dataclasses
from pathlib import Path
from dataclasses import dataclass, field
from typing import Optional

import torch

from llamaforge.data.sft import SFTData, load_examples
from llamaforge.model.llama import packed_documents
from llamaforge.parallel import Dist, all_reduce_mean, init_distributed
from llamaforge.train.checkpoint import save_checkpoint
from llamaforge.train.common import OptimConfig, build_optimizer, lr_at, set_lr
from llamaforge.train.loop import (CheckpointConfig, LogConfig, SignalStop, StepGuard, accumulation, autocast_for,
                                   build_model, check_run_dir, checkpoint_or_stop, finetune_args, finish_run, log_step,
                                   progress_bar, resume, write_config)
from llamaforge.train.metrics import MetricsLogger

__all__ = ["SFTConfig", "main", "run"]


@dataclass
class SFTModelConfig:
    init_from: str = ""  # the model dir to fine-tune (required): a pretrained or chat model
    max_seq_len: Optional[int] = None  # override the model's context length


@dataclass
class SFTDataConfig:
    paths: list[str] = field(default_factory=lambda: ["data/sft.jsonl"])  # dialog JSONL files
    weights: list[float] = field(default_factory=list)  # per path: times each dialog is used an epoch (1.0)
    field: str = "messages"  # the record's list of messages
    seq_len: int = 4096  # packed sequence length (the paper's)
    truncation: str = "drop_turns"  # a dialog longer than seq_len: "error" | "drop_turns" | "drop"
    seed: int = 0  # packing order and the per-epoch shuffle


@dataclass
class SFTTrainConfig:
    epochs: float = 2.0  # the paper's 2
    steps: int = 0  # optimizer updates; 0: from epochs
    batch_size: int = 64  # packed sequences per update (the paper's 64)
    micro_batch_size: int = 4  # sequences per rank per forward/backward
    precision: str = "bf16"  # "bf16" (autocast, fp32 master weights) or "fp32"
    compile: bool = False
    activation_checkpointing: bool = False
    device: Optional[str] = None
    max_bad_steps: int = 5


@dataclass
class SFTEvalConfig:
    path: Optional[str] = None  # held-out dialog JSONL: answer-token loss every `every` steps and at the end
    every: int = 0


def _sft_optim() -> OptimConfig:
    # Paper: 2e-5, cosine, wd 0.1. Warm-up and the final LR are not stated: no warm-up, cosine to 10%.
    return OptimConfig(lr=2e-5, warmup_steps=0)


@dataclass
class SFTConfig:
    out_dir: str = "runs/sft"
    resume: bool = False
    tokenizer: Optional[str] = None  # default: the init_from model dir's tokenizer.model
    model: SFTModelConfig = field(default_factory=SFTModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    optim: OptimConfig = field(default_factory=_sft_optim)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    eval: SFTEvalConfig = field(default_factory=SFTEvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


def _loss_sum(model, batch, autocast, device) -> torch.Tensor:
    """Summed answer-token loss of one packed micro-batch (attention inside each sample, computed
    sample by sample: ``packed_documents``)."""
    mask = packed_documents(batch.doc_ids, device=device)
    with autocast:
        return model(batch.tokens.to(device), pos_ids=batch.pos_ids.to(device), mask=mask,
                     targets=batch.targets.to(device), loss_reduction="sum")


@torch.no_grad()
def evaluate(model, data: SFTData, micro: int, autocast, d: Dist) -> float:
    """Mean loss per answer token over every held-out sequence, split over ranks."""
    total = torch.zeros(2, device=d.device)  # [loss sum, answer tokens]
    n = data.num_sequences
    per_rank = -(-n // d.world_size)
    first, end = d.rank * per_rank, min(n, (d.rank + 1) * per_rank)
    for i in range(first, first + per_rank, micro):  # the same number of forwards on every rank (FSDP)
        count = max(0, min(micro, end - i))
        batch = data.get(i if count else 0, max(count, 1))
        loss = _loss_sum(model, batch, autocast, d.device)
        if count:
            total += torch.stack([loss.float(), (batch.targets != -100).sum().float().to(d.device)])
    total = all_reduce_mean(total, d)
    return float(total[0] / total[1].clamp(min=1))


def main(cfg: SFTConfig) -> dict:
    """Run (or resume) supervised fine-tuning; return a summary (losses, data stats, paths)."""
    return run(cfg, stage="sft")


def run_with(cfg: SFTConfig, path: str | Path, weight: float, stage: str) -> dict:
    """``run`` with a stage's own dialogs (``path``: rejection sampling's kept answers, GAtt's
    synthetic dialogs, context distillation's) ahead of ``data.paths``, used ``weight`` times an
    epoch; the mixed-in files keep their weights (1.0 each when none are given)."""
    weights = [weight, *(cfg.data.weights or [1.0] * len(cfg.data.paths))]
    data = dataclasses.replace(cfg.data, paths=[str(path), *cfg.data.paths], weights=weights)
    return run(dataclasses.replace(cfg, data=data), stage=stage)


def run(cfg: SFTConfig, stage: str = "sft") -> dict:
    """The SFT loop; ``stage`` names the progress bar and plots (Ghost Attention reuses the loop)."""
    d = init_distributed(cfg.train.device)
    run_dir, ckpt_root = check_run_dir(cfg.out_dir, cfg.resume)
    autocast, _ = autocast_for(cfg.train.precision, d)
    args = finetune_args(cfg.model.init_from, cfg.model.max_seq_len, cfg.data.seq_len)
    accum = accumulation(cfg.train.batch_size, cfg.train.micro_batch_size, d)
    tok_path = cfg.tokenizer or cfg.model.init_from

    # 1. data: dialogs -> answer-masked examples -> packed sequences
    from llamaforge.tokenizer import Tokenizer

    tokenizer = Tokenizer(tok_path)
    examples, stats = load_examples(cfg.data.paths, tokenizer, seq_len=cfg.data.seq_len, weights=cfg.data.weights,
                                    truncation=cfg.data.truncation, seed=cfg.data.seed, field_name=cfg.data.field)
    data = SFTData(examples, cfg.data.seq_len, seed=cfg.data.seed)
    val = None
    if cfg.eval.path:
        val_examples, _ = load_examples([cfg.eval.path], tokenizer, seq_len=cfg.data.seq_len,
                                        truncation=cfg.data.truncation, field_name=cfg.data.field)
        val = SFTData(val_examples, cfg.data.seq_len, shuffle=False)
    total_steps = cfg.train.steps or max(1, math.ceil(cfg.train.epochs * data.num_sequences / cfg.train.batch_size))
    if d.is_main:
        print(f"{stage}: {stats.report()}; {data.num_sequences} packed sequences of {cfg.data.seq_len}; "
              f"{total_steps} steps of {cfg.train.batch_size} sequences", file=sys.stderr)

    # 2. model, optimizer, resume
    model = build_model(args, d, precision=cfg.train.precision, compile=cfg.train.compile,
                        activation_checkpointing=cfg.train.activation_checkpointing, init_from=cfg.model.init_from)
    optimizer = build_optimizer(model, cfg.optim)
    state = resume(ckpt_root, model, optimizer, d, cfg.resume)
    step, consumed = (state["step"], state["consumed_sequences"]) if state else (0, 0)
    guard = StepGuard(cfg.train.max_bad_steps, ckpt_root, d, skipped=state["skipped_steps"] if state else 0)
    write_config(run_dir, cfg, d)
    logger = MetricsLogger(run_dir, resume_step=step if state else None, tensorboard=cfg.log.tensorboard) \
        if d.is_main else None
    B, world = cfg.train.micro_batch_size, d.world_size
    bar = progress_bar(total_steps, step, stage, d, cfg.log.progress)
    val_loss, loss_value = None, float("nan")

    def _checkpoint(at: int) -> None:
        save_checkpoint(ckpt_root, at, model, optimizer, {"step": at, "consumed_sequences": consumed,
                        "skipped_steps": guard.skipped}, d, keep=cfg.checkpoint.keep)

    with SignalStop(d) as signals:
        try:
            while step < total_steps:
                # 3. one update over cfg.train.batch_size packed sequences, the loss a mean per answer token
                t0 = time.perf_counter()
                set_lr(optimizer, lr_at(step, cfg.optim, total_steps))
                batches = [data.get(consumed + (m * world + d.rank) * B, B) for m in range(accum)]
                local = sum(int((b.targets != -100).sum()) for b in batches)
                n_answer = float(all_reduce_mean(torch.tensor(float(local), device=d.device), d)) * world
                loss_sum = torch.zeros((), device=d.device)
                for m, batch in enumerate(batches):
                    if world > 1:
                        model.set_requires_gradient_sync(m == accum - 1)
                    loss = _loss_sum(model, batch, autocast, d.device)
                    # FSDP averages gradients over ranks: scale by world so the result is sum / n_answer
                    (loss * world / max(n_answer, 1.0)).backward()
                    loss_sum += loss.detach()
                consumed += B * world * accum
                loss_value = float(all_reduce_mean(loss_sum, d)) * world / max(n_answer, 1.0)
                grad_norm = guard.step(model, optimizer, loss_value, cfg.optim.grad_clip, step)
                step += 1
                tok_s = sum(int((b.doc_ids >= 0).sum()) for b in batches) * world / (time.perf_counter() - t0)

                # 4. validation, metrics, checkpoints
                last = step == total_steps
                row = {"step": step, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"],
                       "grad_norm": grad_norm, "tokens_per_s": tok_s, "answer_tokens": n_answer,
                       "epoch": consumed / data.num_sequences, "skipped_steps": guard.skipped}
                if val is not None and ((cfg.eval.every and step % cfg.eval.every == 0) or last):
                    val_loss = evaluate(model, val, B, autocast, d)
                    row["val_loss"] = val_loss
                log_step(row, last, logger, bar, cfg.log.every, loss=f"{loss_value:.3f}", tok_s=f"{tok_s:,.0f}")
                stopping = checkpoint_or_stop(step, last, cfg.checkpoint.every, signals, _checkpoint, d)
                if stopping:
                    return {"step": step, "stopped": stopping, "run_dir": str(run_dir)}
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()

    # 5. the fine-tuned model dir and the loss curve
    summary = {"step": step, "loss": loss_value, "val_loss": val_loss, "run_dir": str(run_dir),
               "data": vars(stats)}
    summary.update(finish_run(model, args, tok_path, run_dir, d, f"{stage}: {run_dir}"))
    return summary
