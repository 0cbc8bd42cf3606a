"""The pieces every training loop shares, as plain functions (no trainer class).

Each stage (pretrain, sft, gatt, later reward and rlhf) writes its own loop top to bottom and calls
these for the parts that must behave the same everywhere: the run directory's rules, building the
model on the meta device, resuming, the non-finite-step guard, signals, the progress bar and the
exported model dir.
"""

from __future__ import annotations

import math
import signal
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from llamaforge.config import to_toml
from llamaforge.model import ModelArgs, Transformer
from llamaforge.parallel import Dist, all_reduce_max, parallelize
from llamaforge.train.checkpoint import latest_checkpoint, load_checkpoint
from llamaforge.train.common import TrainingError, clip_grad_norm, init_params

__all__ = ["CheckpointConfig", "LogConfig", "check_run_dir", "write_config", "autocast_for", "finetune_args",
           "accumulation", "build_model",
           "resume", "StepGuard", "SignalStop", "progress_bar", "log_step", "checkpoint_or_stop", "export_model",
           "finish_run"]


@dataclass
class CheckpointConfig:
    every: int = 100  # steps between checkpoints (one is also written at the end and on SIGTERM/SIGINT)
    keep: int = 2  # newest complete checkpoints kept


@dataclass
class LogConfig:
    every: int = 10  # steps between metrics rows (the first and last steps are always logged)
    tensorboard: bool = True
    progress: bool = True


def check_run_dir(out_dir: str | Path, resume_run: bool) -> tuple[Path, Path]:
    """(run_dir, checkpoint root); refuses to start over a run that has checkpoints unless resuming."""
    run_dir = Path(out_dir)
    ckpt_root = run_dir / "checkpoints"
    if ckpt_root.is_dir() and any(ckpt_root.iterdir()) and not resume_run:
        raise ValueError(f"{run_dir} already holds checkpoints: pass --resume to continue it, or choose "
                         f"another out_dir (nothing was changed)")
    return run_dir, ckpt_root


def write_config(run_dir: Path, cfg, d: Dist) -> None:
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(to_toml(cfg))


def autocast_for(precision: str, d: Dist):
    """(autocast context, compute dtype) for ``train.precision`` ("bf16" autocast or "fp32")."""
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"train.precision must be 'bf16' or 'fp32', got {precision!r}")
    if precision == "bf16":
        return torch.autocast(d.device.type, dtype=torch.bfloat16), torch.bfloat16
    return nullcontext(), torch.float32


def finetune_args(init_from: str, max_seq_len: Optional[int], seq_len: int, what: str = "the model dir to fine-tune"
                  ) -> ModelArgs:
    """The architecture of the model dir a fine-tuning stage starts from (``model.init_from``), its
    context optionally raised to ``model.max_seq_len``, checked against the data's ``seq_len``."""
    from llamaforge.model.checkpoint_io import load_args

    if not init_from:
        raise ValueError(f"model.init_from is required: {what}")
    args = load_args(init_from)
    if max_seq_len:
        args = ModelArgs(**{**vars(args), "max_seq_len": max_seq_len})
    if seq_len > args.max_seq_len:
        raise ValueError(f"data.seq_len={seq_len} is beyond the model's context "
                         f"(max_seq_len={args.max_seq_len}); lower it or set model.max_seq_len")
    return args


def accumulation(batch_size: int, micro_batch_size: int, d: Dist) -> int:
    """Micro-batches per rank and update: ``train.batch_size`` must be a multiple of micro x ranks."""
    accum, rest = divmod(batch_size, micro_batch_size * d.world_size)
    if accum < 1 or rest:
        raise ValueError(f"train.batch_size={batch_size} must be a positive multiple of "
                         f"train.micro_batch_size * ranks = {micro_batch_size} * {d.world_size}")
    return accum


def build_model(args: ModelArgs, d: Dist, *, precision: str, compile: bool = False,
                activation_checkpointing: bool = False, init_from: Optional[str] = None,
                seed: int = 0, head: str = "lm") -> Transformer:
    """Built on the meta device, parallelized (FSDP2 on N ranks, compile, AC), then materialised and
    either loaded from the model dir ``init_from`` or initialised per parameter from ``seed``.

    ``head="scalar"`` builds a reward / value model (``model/heads.py``). From a chat model dir its
    LM head is dropped and the scalar head initialised from ``seed`` (the paper's RM init); from a
    reward model dir (PPO's value model) every weight, the head included, is loaded.
    """
    if head not in ("lm", "scalar"):
        raise ValueError(f"build_model: head must be 'lm' or 'scalar', got {head!r}")
    with torch.device("meta"):
        model = Transformer(args)
        if head == "scalar":
            from llamaforge.model.heads import scalar_head

            scalar_head(model)
    param_dtype = torch.bfloat16 if precision == "bf16" and d.device.type == "cuda" else None
    parallelize(model, d, activation_checkpointing=activation_checkpointing, compile=compile,
                param_dtype=param_dtype)
    model.to_empty(device=d.device)
    if not init_from or head == "scalar":  # (a scalar head from a chat model dir needs its init)
        init_params(model, seed)
    if init_from:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        from llamaforge.model.checkpoint_io import load_model

        weights = load_model(init_from, dtype=torch.float32).state_dict()
        scalar_dir = weights["output.weight"].shape[0] == 1 != args.vocab_size
        if head == "lm" and scalar_dir:
            raise ValueError(f"{init_from} is a reward / value model dir (scalar head); this stage needs a "
                             f"language model dir")
        if head == "scalar" and not scalar_dir:
            del weights["output.weight"]  # the LM head is replaced by the freshly initialised scalar head
        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True,
                                                                      strict="output.weight" in weights))
    return model.train()


def resume(ckpt_root: Path, model, optimizer, d: Dist, enabled: bool) -> Optional[dict]:
    """Load the newest complete checkpoint when ``enabled``; its trainer state, or None."""
    if not enabled:
        return None
    ckpt = latest_checkpoint(ckpt_root, d)
    if ckpt is None:
        if d.is_main:
            print(f"--resume: no complete checkpoint in {ckpt_root}; starting from step 0", file=sys.stderr)
        return None
    state = load_checkpoint(ckpt, model, optimizer, d)
    if d.is_main:
        print(f"resumed from {ckpt} (step {state['step']})", file=sys.stderr)
    return state


class StepGuard:
    """Clip, then step the optimizer only when the loss and the gradient norm are finite.

    A non-finite step is skipped with a warning and counted; ``max_bad`` in a row raise
    ``TrainingError``, so a checkpoint never holds NaN weights.
    """

    def __init__(self, max_bad: int, ckpt_root: Path, d: Dist, skipped: int = 0):
        self.max_bad, self.ckpt_root, self.d = max_bad, ckpt_root, d
        self.skipped, self.in_row = skipped, 0

    def step(self, model, optimizer, loss_value: float, grad_clip: float, step: int) -> float:
        """Returns the gradient norm (before clipping); zeroes the gradients either way."""
        grad_norm = clip_grad_norm(model, grad_clip)
        if math.isfinite(loss_value) and math.isfinite(grad_norm):
            optimizer.step()
            self.in_row = 0
        else:
            self.in_row += 1
            self.skipped += 1
            if self.d.is_main:
                warnings.warn(f"step {step + 1}: non-finite loss {loss_value} / grad norm {grad_norm}: step "
                              f"skipped ({self.in_row} in a row, {self.skipped} in this run)", stacklevel=2)
            if self.in_row >= self.max_bad:
                raise TrainingError(f"{self.in_row} non-finite steps in a row (train.max_bad_steps); stopping. "
                                   f"The last complete checkpoint in {self.ckpt_root} holds finite weights; "
                                   f"lower optim.lr or check the data, then --resume")
        optimizer.zero_grad(set_to_none=True)
        return grad_norm


class SignalStop:
    """While active, SIGTERM / SIGINT only set a flag; ``requested()`` (collective: every rank calls
    it each step) is the signal number once any rank got one, so all ranks stop at the same step."""

    def __init__(self, d: Dist):
        self.d, self.signum, self._old = d, 0, {}

    def _handler(self, signum, frame):
        self.signum = signum

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def requested(self) -> int:
        return int(all_reduce_max(self.signum, self.d))


def progress_bar(total: int, initial: int, desc: str, d: Dist, enabled: bool):
    """A tqdm bar on rank 0 (None elsewhere or when disabled)."""
    if not (d.is_main and enabled):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def log_step(row: dict, last: bool, logger, bar, log_every: int, **postfix) -> None:
    """Write the metrics row (every ``log_every`` steps, the first, the last and eval steps) and
    advance the progress bar with ``postfix``."""
    step = row["step"]
    if logger and (step % log_every == 0 or step == 1 or last or "val_loss" in row):
        logger.log(row)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(**postfix)


def checkpoint_or_stop(step: int, last: bool, every: int, signals: SignalStop, save, d: Dist) -> int:
    """Checkpoint at the end, every ``every`` steps and when a signal came (collective); returns the
    signal number (0: go on)."""
    stopping = signals.requested()
    if last or stopping or (every and step % every == 0):
        save(step)
    if stopping and d.is_main:
        print(f"\nstopped by signal at step {step}; checkpoint saved. Continue with --resume.", file=sys.stderr)
    return stopping


def finish_run(model, args: ModelArgs, tokenizer_path: Optional[str], run_dir: Path, d: Dist, title: str, *,
               keys: tuple[str, ...] = ("loss", "val_loss"), ylabel: str = "loss (nats/token)") -> dict:
    """The consolidated model dir (HF-compatible, rank 0) and the curves of ``keys`` in metrics.jsonl:
    {"model_dir", "loss_png"}."""
    from llamaforge.parallel import barrier, full_state_dict
    from llamaforge.train.metrics import plot_curves

    out = {}
    weights = full_state_dict(model, d)
    if d.is_main:
        out["model_dir"] = str(export_model(weights, args, tokenizer_path, run_dir / "model"))
        png = plot_curves(run_dir / "metrics.jsonl", run_dir / "loss.png", keys=keys, title=title, ylabel=ylabel)
        out["loss_png"] = str(png) if png else None
    barrier(d)
    return out


def export_model(weights: dict, args: ModelArgs, tokenizer_path: Optional[str], out: Path) -> Path:
    """Write the consolidated ``weights`` as an HF-compatible model dir (with the tokenizer if found)."""
    from llamaforge.model.checkpoint_io import save_model
    from llamaforge.tokenizer import Tokenizer

    with torch.device("meta"):
        model = Transformer(args)
        if weights["output.weight"].shape[0] == 1 != args.vocab_size:
            from llamaforge.model.heads import scalar_head

            scalar_head(model)
    model.load_state_dict(weights, assign=True, strict=True)
    tokenizer = Tokenizer(tokenizer_path) if tokenizer_path and Path(tokenizer_path).exists() else None
    if tokenizer is None:
        warnings.warn(f"tokenizer {tokenizer_path} not found: {out} is written without tokenizer.model", stacklevel=2)
    save_model(model, out, tokenizer=tokenizer)
    return out
