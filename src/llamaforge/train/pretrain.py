"""Pretraining (RECIPE.md, "Pretraining"; paper sec. 2.2): next-token loss on packed token shards.

``llamaforge pretrain --config configs/pretrain/tiny.toml [--section.key=value ...] [--resume]``.
One loop for 1 process or N torchrun ranks (FSDP2): each optimizer step reads one global batch of
``train.global_batch_tokens`` tokens, as ``micro_batch_size``-sequence micro-batches spread over
ranks and gradient-accumulation steps. Which sequences a step reads depends only on the step, so a
2-rank run sees the same batches as a 1-rank run, and a resumed run the same as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from llamaforge.data.pretrain import PretrainData
from llamaforge.model import ModelArgs, Transformer
from llamaforge.model.sizes import preset
from llamaforge.parallel import Dist, all_reduce_mean, init_distributed
from llamaforge.train.checkpoint import save_checkpoint
from llamaforge.train.common import OptimConfig, build_optimizer, flops_per_token, lr_at, measure_matmul_peak, set_lr
from llamaforge.train.loop import (CheckpointConfig, LogConfig, SignalStop, StepGuard, autocast_for, build_model,
                                   check_run_dir, checkpoint_or_stop, finish_run, log_step, progress_bar, resume,
                                   write_config)
from llamaforge.train.metrics import MetricsLogger

__all__ = ["PretrainConfig", "main"]


@dataclass
class ModelConfig:
    preset: str = "debug"  # a name from llamaforge.SIZES
    vocab_size: Optional[int] = None  # default: the data's tokenizer's; larger pads (e.g. 32000)
    init_from: Optional[str] = None  # continue pretraining a model dir (its architecture wins)
    max_seq_len: Optional[int] = None  # override the preset's context length


@dataclass
class DataConfig:
    path: str = "data/pretrain"  # a directory written by `llamaforge data prepare`
    seq_len: int = 256
    seed: int = 0  # shuffling seed of the training sequences
    verify: bool = False  # check every shard's sha256 before training
    # sequence-length warm-up: the first short_seq_steps updates cut every window into
    # seq_len / short_seq_len shorter sequences (the same tokens, the same data order, cheaper
    # attention); 0 = off. Validation always runs at seq_len.
    short_seq_len: int = 0
    short_seq_steps: int = 0


@dataclass
class TrainConfig:
    steps: int = 100  # optimizer updates
    global_batch_tokens: int = 16384  # Llama 2: 4M; must be micro_batch_size * seq_len * ranks * k
    micro_batch_size: int = 8  # sequences per rank per forward/backward
    precision: str = "bf16"  # "bf16" (autocast, fp32 master weights) or "fp32"
    compile: bool = False  # torch.compile each block
    activation_checkpointing: bool = False
    seed: int = 0  # weight init
    device: Optional[str] = None  # default: cuda if available, else cpu
    max_bad_steps: int = 5  # consecutive non-finite steps (skipped) before the run stops


@dataclass
class EvalConfig:
    every: int = 100  # steps between validation passes (0: only at the end)
    sequences: int = 64  # validation sequences per pass


@dataclass
class PretrainConfig:
    out_dir: str = "runs/pretrain"
    resume: bool = False  # continue from the newest complete checkpoint in out_dir
    tokenizer: Optional[str] = None  # default: the tokenizer recorded in the data's manifest
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


def _model_args(cfg: PretrainConfig, vocab_size: int) -> ModelArgs:
    if cfg.model.init_from:
        from llamaforge.model.checkpoint_io import load_args

        args = load_args(cfg.model.init_from)
    else:
        args = ModelArgs(**{**preset(cfg.model.preset), "vocab_size": cfg.model.vocab_size or vocab_size})
    if cfg.model.max_seq_len:
        args = ModelArgs(**{**vars(args), "max_seq_len": cfg.model.max_seq_len})
    if vocab_size > args.vocab_size:
        raise ValueError(f"the data's tokenizer has {vocab_size} ids but the model's vocab_size is {args.vocab_size} "
                         f"(model.vocab_size or the init_from model)")
    if cfg.data.seq_len > args.max_seq_len:
        raise ValueError(f"data.seq_len={cfg.data.seq_len} is beyond the model's context "
                         f"(max_seq_len={args.max_seq_len}); lower it or set model.max_seq_len")
    return args


def _batch_geometry(cfg: PretrainConfig, d: Dist) -> int:
    """Gradient-accumulation steps per optimizer update."""
    per_micro = cfg.train.micro_batch_size * cfg.data.seq_len * d.world_size
    accum, rest = divmod(cfg.train.global_batch_tokens, per_micro)
    if accum < 1 or rest:
        raise ValueError(f"train.global_batch_tokens={cfg.train.global_batch_tokens} must be a positive multiple "
                         f"of train.micro_batch_size * data.seq_len * ranks = {cfg.train.micro_batch_size} * "
                         f"{cfg.data.seq_len} * {d.world_size} = {per_micro}")
    s = cfg.data.short_seq_len
    if s < 0 or (s and cfg.data.seq_len % s):
        raise ValueError(f"data.short_seq_len={s} must divide data.seq_len={cfg.data.seq_len}")
    if cfg.data.short_seq_steps < 0 or (cfg.data.short_seq_steps and not s):
        raise ValueError(f"data.short_seq_steps={cfg.data.short_seq_steps} needs data.short_seq_len > 0 "
                         f"(and must be >= 0)")
    return accum


def _window_shape(x: torch.Tensor, y: torch.Tensor, cfg: DataConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] windows as [B * T / s, s] sequences during the sequence-length warm-up (s =
    ``short_seq_len``): row-major, so each short sequence is a contiguous piece of one window and
    its targets are the same tokens' next tokens."""
    if step < cfg.short_seq_steps:
        return x.view(-1, cfg.short_seq_len), y.view(-1, cfg.short_seq_len)
    return x, y


@torch.no_grad()
def evaluate(model: Transformer, data: PretrainData, n: int, micro: int, autocast, d: Dist) -> float:
    """Mean next-token loss (nats) over the first ``n`` validation sequences, split over ranks."""
    total = torch.zeros(2, device=d.device)  # [loss sum, token count]
    per_rank = -(-n // d.world_size)
    first, end = d.rank * per_rank, min(n, (d.rank + 1) * per_rank)  # this rank's sequences
    for i in range(first, first + per_rank, micro):  # the same number of forwards on every rank (FSDP)
        count = max(0, min(micro, end - i))
        x, y = data.get(i if count else 0, max(count, 1))
        with autocast:
            loss = model(x.to(d.device), targets=y.to(d.device), loss_reduction="sum")
        if count:
            total += torch.stack([loss.float(), torch.tensor(float(y.numel()), device=d.device)])
    total = all_reduce_mean(total, d)
    return float(total[0] / total[1])


def main(cfg: PretrainConfig) -> dict:
    """Run (or resume) a pretraining run; return a summary (final losses, paths)."""
    d = init_distributed(cfg.train.device)
    run_dir, ckpt_root = check_run_dir(cfg.out_dir, cfg.resume)
    autocast, compute_dtype = autocast_for(cfg.train.precision, d)

    # 1. data and model
    data = PretrainData(cfg.data.path, "train", seq_len=cfg.data.seq_len, seed=cfg.data.seed, verify=cfg.data.verify)
    manifest = json.loads((Path(cfg.data.path) / "manifest.json").read_text())
    val = None
    if manifest.get("splits", {}).get("val", {}).get("tokens", 0) > cfg.data.seq_len:
        val = PretrainData(cfg.data.path, "val", seq_len=cfg.data.seq_len, shuffle=False)
    args = _model_args(cfg, manifest["tokenizer"]["vocab_size"])
    accum = _batch_geometry(cfg, d)
    model = build_model(args, d, precision=cfg.train.precision, compile=cfg.train.compile,
                        activation_checkpointing=cfg.train.activation_checkpointing,
                        init_from=cfg.model.init_from, seed=cfg.train.seed)
    optimizer = build_optimizer(model, cfg.optim)
    B, world = cfg.train.micro_batch_size, d.world_size
    global_seqs = B * world * accum

    # 2. resume: the newest complete checkpoint (damaged ones are skipped with a warning)
    state = resume(ckpt_root, model, optimizer, d, cfg.resume)
    step, consumed = (state["step"], state["consumed_sequences"]) if state else (0, 0)
    guard = StepGuard(cfg.train.max_bad_steps, ckpt_root, d, skipped=state["skipped_steps"] if state else 0)
    write_config(run_dir, cfg, d)
    logger = MetricsLogger(run_dir, resume_step=step if state else None, tensorboard=cfg.log.tensorboard) \
        if d.is_main else None

    # 3. throughput accounting: MFU against the measured matmul peak of all ranks' devices
    peak = float(all_reduce_mean(torch.tensor(measure_matmul_peak(d.device, compute_dtype), device=d.device), d)) * world
    flops_tok = {T: flops_per_token(args, T) for T in (cfg.data.seq_len, cfg.data.short_seq_len) if T}

    bar = progress_bar(cfg.train.steps, step, "pretrain", d, cfg.log.progress)
    val_loss, loss_value = None, float("nan")

    def _checkpoint(at: int) -> None:
        save_checkpoint(ckpt_root, at, model, optimizer, {"step": at, "consumed_sequences": consumed,
                        "skipped_steps": guard.skipped}, d, keep=cfg.checkpoint.keep)

    # 4. SIGTERM / SIGINT: finish the step, checkpoint, exit (ranks agree on the flag every step)
    with SignalStop(d) as signals:
        try:
            while step < cfg.train.steps:
                # 5. one optimizer update over the global batch: sequences consumed .. consumed + global_seqs
                t0 = time.perf_counter()
                set_lr(optimizer, lr_at(step, cfg.optim, cfg.train.steps))
                loss_sum = torch.zeros((), device=d.device)
                for m in range(accum):
                    x, y = data.get(consumed + (m * world + d.rank) * B, B)  # [B, T] each
                    x, y = _window_shape(x, y, cfg.data, step)
                    if world > 1:
                        model.set_requires_gradient_sync(m == accum - 1)  # reduce-scatter once per update
                    with autocast:
                        loss = model(x.to(d.device), targets=y.to(d.device))
                    (loss / accum).backward()
                    loss_sum += loss.detach()
                consumed += global_seqs
                loss_value = float(all_reduce_mean(loss_sum / accum, d))
                # 6. never let a non-finite loss or gradient reach the weights
                grad_norm = guard.step(model, optimizer, loss_value, cfg.optim.grad_clip, step)
                step += 1
                dt = time.perf_counter() - t0
                tok_s = global_seqs * cfg.data.seq_len / dt

                # 7. validation, metrics, checkpoints
                last = step == cfg.train.steps
                row = {"step": step, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"], "grad_norm": grad_norm,
                       "tokens_per_s": tok_s, "mfu": flops_tok[x.shape[1]] * tok_s / peak,
                       "tokens": consumed * cfg.data.seq_len, "skipped_steps": guard.skipped}
                if val is not None and ((cfg.eval.every and step % cfg.eval.every == 0) or last):
                    n = min(cfg.eval.sequences, val.num_sequences)
                    val_loss = evaluate(model, val, n, B, autocast, d)
                    row.update(val_loss=val_loss, val_ppl=math.exp(min(val_loss, 50.0)))
                log_step(row, last, logger, bar, cfg.log.every, loss=f"{loss_value:.3f}", tok_s=f"{tok_s:,.0f}", mfu=f"{row['mfu']:.1%}")
                stopping = checkpoint_or_stop(step, last, cfg.checkpoint.every, signals, _checkpoint, d)
                if stopping:
                    return {"step": step, "stopped": stopping, "run_dir": str(run_dir)}
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()

    # 8. the consolidated model dir (HF-compatible) and the loss curve
    summary = {"step": step, "loss": loss_value, "val_loss": val_loss, "run_dir": str(run_dir)}
    tok_path = cfg.tokenizer or manifest.get("tokenizer", {}).get("path")
    summary.update(finish_run(model, args, tok_path, run_dir, d, f"pretraining: {run_dir}"))
    return summary
