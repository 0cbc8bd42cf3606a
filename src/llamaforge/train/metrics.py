"""A run's metrics: ``metrics.jsonl`` (one JSON object a line), TensorBoard events, PNG curves.

TensorBoard and matplotlib are optional (the ``logging`` extra): without them the run logs to
metrics.jsonl only and says so once.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Optional

__all__ = ["MetricsLogger", "read_metrics", "plot_curves"]


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash: everything after it is unreliable
    return rows


class MetricsLogger:
    """Appends rows to ``run_dir/metrics.jsonl`` and scalars to TensorBoard (rank 0 only).

    Args:
        run_dir: the run directory.
        resume_step: when resuming from the checkpoint of this step, rows of later steps (logged
            before the crash and about to be recomputed) are dropped from metrics.jsonl first.
        tensorboard: also write TensorBoard events under ``run_dir/tensorboard``.
    """

    def __init__(self, run_dir: str | Path, resume_step: Optional[int] = None, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        elif resume_step is None and self.path.exists():
            self.path.unlink()  # a fresh run in this dir (the caller refuses dirs with checkpoints)
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)
            except ImportError:
                warnings.warn("tensorboard is not installed: logging to metrics.jsonl only "
                              "(pip install 'llamaforge[logging]')", stacklevel=2)

    def log(self, row: dict) -> None:
        """One row with a ``step`` key; floats that are not finite are written as null."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in clean.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def plot_curves(metrics_path: str | Path, png_path: str | Path, keys: tuple[str, ...] = ("loss", "val_loss"),
                title: str = "", ylabel: str = "loss (nats/token)") -> Optional[Path]:
    """A PNG of ``keys`` against step from metrics.jsonl (None, with a warning, without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no PNG plot (pip install 'llamaforge[logging]')", stacklevel=2)
        return None
    rows = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=3, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
