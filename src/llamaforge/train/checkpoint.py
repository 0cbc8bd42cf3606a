"""Training checkpoints: enough state to resume exactly, never a partial one loaded.

Layout of ``<run>/checkpoints/step_00000100/``: the model and optimizer through
``torch.distributed.checkpoint`` (sharded: each rank writes its own shards, and a later run with a
different number of ranks reshards on load), ``rng_rank{r}.pt`` (each rank's RNG states),
``trainer_state.json`` (step, data position, counters) and, written last, ``checksums.json`` with
the size and sha256 of every file. The directory is written as ``step_N.tmp`` and renamed when
complete; on resume a directory whose files do not match their checksums is skipped with a message
and the previous complete one is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from llamaforge.parallel import Dist, barrier, broadcast_object

__all__ = ["save_checkpoint", "latest_checkpoint", "load_checkpoint", "verify_checkpoint"]

PREFIX = "step_"
CHECKSUMS = "checksums.json"
STATE = "trainer_state.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**24), b""):
            h.update(block)
    return h.hexdigest()


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def _single_process_ok():
    """DCP warns that it 'assumes a single process' without a process group: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        yield


def _step_dirs(root: Path) -> list[Path]:
    """Renamed (complete-looking) checkpoint dirs, newest first."""
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(dirs, key=lambda p: int(p.name[len(PREFIX):]), reverse=True)


def save_checkpoint(root: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, d: Dist, keep: int = 2) -> Path:
    """Write the checkpoint of ``step`` (collective: every rank calls it) and keep the newest ``keep``.

    Args:
        state: JSON-able trainer state (step, data position, counters), written by rank 0.
    Returns:
        the final directory.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(root)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f"{final.name}.tmp"
    if d.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)  # a previous attempt that never completed
        tmp.mkdir(parents=True)
    barrier(d)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with _single_process_ok():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save(_rng_state(), tmp / f"rng_rank{d.rank}.pt")
    barrier(d)
    if d.is_main:
        (tmp / STATE).write_text(json.dumps({**state, "world_size": d.world_size}, indent=1))
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        sums = {str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
        (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1))
        for p in files + [tmp / CHECKSUMS]:
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():  # the same step written again (a resumed run): replace it whole
            old = root / f"{final.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
        for stale in _step_dirs(root)[keep:]:
            shutil.rmtree(stale)
    barrier(d)
    return final


def verify_checkpoint(path: str | Path) -> Optional[str]:
    """None if every file of the checkpoint matches ``checksums.json``, else what is wrong."""
    path = Path(path)
    sums_path = path / CHECKSUMS
    if not sums_path.is_file():
        return f"no {CHECKSUMS} (the checkpoint was never completed)"
    try:
        sums = json.loads(sums_path.read_text())
    except json.JSONDecodeError as e:
        return f"{CHECKSUMS} is unreadable ({e})"
    for name, want in sums.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != want["bytes"]:
            return f"{name} has {f.stat().st_size} bytes, expected {want['bytes']} (truncated?)"
        if _sha256(f) != want["sha256"]:
            return f"{name} does not match its sha256 (corrupted)"
    return None


def latest_checkpoint(root: str | Path, d: Dist) -> Optional[Path]:
    """The newest checkpoint under ``root`` that verifies (rank 0 checks, every rank gets the
    answer); damaged ones are skipped with a warning naming the problem."""
    choice = None
    if d.is_main:
        for path in _step_dirs(Path(root)):
            problem = verify_checkpoint(path)
            if problem is None:
                choice = str(path)
                break
            warnings.warn(f"skipping checkpoint {path}: {problem}; trying the previous one", stacklevel=2)
    choice = broadcast_object(choice, d)
    return Path(choice) if choice else None


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, d: Dist) -> dict:
    """Load model and optimizer (resharding if the rank count changed) and, when the rank count is
    the same, this rank's RNG states. Returns the trainer state saved with it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = Path(path)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    sd = {"model": model_sd, "optim": optim_sd}
    with _single_process_ok():
        dcp.load(sd, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    state = json.loads((path / STATE).read_text())
    rng = path / f"rng_rank{d.rank}.pt"
    if state.get("world_size") == d.world_size and rng.is_file():
        _set_rng_state(torch.load(rng, weights_only=False))
    return state
