"""Reward-model evaluation in the paper's forms: accuracy per rating bucket (Table 8) and per
safety label (Table 29), and a histogram of the scores of chosen and rejected responses.

    accuracy_report(chosen, rejected, ratings, labels)  {"accuracy", "n", "by_rating", "by_label", ...}
    report_markdown(report, title)                      the tables as markdown
    plot_score_histogram(chosen, rejected, path)        PNG (None without matplotlib)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import torch

from llamaforge.world.annotators import STRENGTHS

__all__ = ["accuracy_report", "report_markdown", "plot_score_histogram"]


def _bucket(ok: torch.Tensor, keys: Sequence[Optional[str]], order: Sequence[str]) -> dict:
    out = {}
    for key in list(order) + sorted({k for k in keys if k is not None and k not in order}):
        sel = torch.tensor([k == key for k in keys], dtype=torch.bool)
        if sel.any():
            out[key] = {"accuracy": round(float(ok[sel].double().mean()), 6), "n": int(sel.sum())}
    return out


def accuracy_report(chosen: torch.Tensor, rejected: torch.Tensor, ratings: Sequence[str],
                    labels: Sequence[Optional[str]] = ()) -> dict:
    """Pairwise accuracy (chosen scored strictly above rejected), overall and per bucket.

    Args:
        chosen, rejected: FloatTensor [N] raw scores.
        ratings: N strengths (``world.annotators.STRENGTHS``).
        labels: N safety labels or None (empty: no per-label table).
    Returns:
        {"accuracy", "n", "by_rating": {strength: {"accuracy", "n"}}, "by_label": {...},
         "mean_chosen", "mean_rejected"} (means of sigmoid scores).
    """
    if not (len(chosen) == len(rejected) == len(ratings)) or (labels and len(labels) != len(ratings)):
        raise ValueError("accuracy_report: chosen, rejected, ratings (and labels) must have the same length")
    ok = (chosen > rejected).cpu()
    from llamaforge.data.preference import SAFETY_LABELS

    report = {"accuracy": round(float(ok.double().mean()), 6) if len(ok) else float("nan"), "n": len(ok),
              "by_rating": _bucket(ok, list(ratings), STRENGTHS),
              "mean_chosen": float(torch.sigmoid(chosen).mean()), "mean_rejected": float(torch.sigmoid(rejected).mean())}
    if labels and any(x is not None for x in labels):
        report["by_label"] = _bucket(ok, list(labels), SAFETY_LABELS)
    return report


def report_markdown(report: dict, title: str = "reward model") -> str:
    """The per-rating table (the form of the paper's Table 8) and, if any, the per-label one (Table 29)."""
    rows = report["by_rating"]
    head = " | ".join(rows) + " | average"
    vals = " | ".join(f"{v['accuracy']:.1%} (n={v['n']})" for v in rows.values()) + f" | {report['accuracy']:.1%}"
    lines = [f"| {title} | {head} |", "|---" * (len(rows) + 2) + "|", f"| accuracy | {vals} |"]
    if "by_label" in report:
        labels = report["by_label"]
        lines += ["", "| safety label | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|",
                  "| accuracy | " + " | ".join(f"{v['accuracy']:.1%} (n={v['n']})" for v in labels.values()) + " |"]
    return "\n".join(lines)


def plot_score_histogram(chosen: torch.Tensor, rejected: torch.Tensor, path: str | Path,
                         title: str = "reward model scores") -> Optional[Path]:
    """Histogram of sigmoid(score) for chosen and rejected responses; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = [i / 40 for i in range(41)]
    ax.hist(torch.sigmoid(chosen).tolist(), bins=bins, alpha=0.6, label="chosen")
    ax.hist(torch.sigmoid(rejected).tolist(), bins=bins, alpha=0.6, label="rejected")
    ax.set_xlabel("reward model score (sigmoid)")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
