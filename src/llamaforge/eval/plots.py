"""The figures of ``llamaforge eval``, in the form of the paper's introduction (no torch).

    plot_win_tie_loss(rows, path)        Figure 1: win / tie / loss stacked bars, one per comparison
    plot_winrate_scatter(points, path)   Figure 2: helpfulness vs safety win rate, the "better" quadrant
    plot_violations(rows, path)          Figure 3: violation % per model
    plot_violations_by(rows, path, key)  Figure 3 split by category (grouped bars)

Shares come in [0, 1] and are drawn in %; a 95% interval is a ``[low, high]`` pair in the same units.
A missing, None or NaN interval draws no error bar; a NaN share draws nothing (its text reads "-").
Each function writes one PNG and returns its path, or None (with a notice on stderr) without
matplotlib. ``matplotlib.figure.Figure`` is used without pyplot: no global backend or figure registry.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

__all__ = ["plot_win_tie_loss", "plot_winrate_scatter", "plot_violations", "plot_violations_by"]

DPI = 110
COLOURS = {"win": "#3b75c4", "tie": "#b8bcc4", "loss": "#d9614c"}
ERR = {"ecolor": "#222222", "elinewidth": 1.0, "capsize": 3}


def _num(x: Any) -> float:
    """``x`` as a float; NaN for None or anything that is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _ci(ci: Any) -> Optional[tuple[float, float]]:
    """A ``(low, high)`` pair of finite floats, or None when missing, malformed or NaN."""
    try:
        lo, hi = (_num(v) for v in ci) if not isinstance(ci, (str, bytes)) else ()
    except (TypeError, ValueError):  # None, not a pair
        return None
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _err(value: float, ci: Any) -> Optional[list[list[float]]]:
    """matplotlib's asymmetric error ``[[below], [above]]`` in % around ``value`` (a share), or None."""
    pair = _ci(ci)
    if pair is None or not math.isfinite(value):
        return None
    lo, hi = sorted(pair)
    return [[max(0.0, 100 * (value - lo))], [max(0.0, 100 * (hi - value))]]


def _fmt(share: float) -> str:
    return f"{100 * share:.1f}%" if math.isfinite(share) else "-"


def _figure(path: str | Path, figsize: tuple[float, float]):
    """A new Figure, or None (with a notice) when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(f"llamaforge eval: matplotlib is not installed; skipped the figure {path}", file=sys.stderr)
        return None
    return Figure(figsize=figsize, dpi=DPI)


def _finish(fig, ax, path: str | Path, title: str, *, empty: bool, grid: str = "both") -> Path:
    """Title, grid and a "no data" note on ``ax``; ``fig`` written to ``path`` as PNG."""
    if empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_title(title, fontsize=10)
    ax.grid(axis=grid, alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight")
    return path


def _violation_axes(ax, labels: list[str], top: float) -> None:
    ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 5 else 0)
    ax.set(ylim=(0, max(5.0, 1.2 * top + 1)), ylabel="violation %")


def plot_win_tie_loss(rows: Sequence[dict], path: str | Path, *,
                      title: str = "Helpfulness: win / tie / loss (95% CI)") -> Optional[Path]:
    """Figure 1: one horizontal bar per comparison, split into win, tie and loss, in row order from the top.

    Each segment shows its share and, when it is wide enough, its interval as text; the win interval
    is also an error bar at the win/tie boundary and the loss interval one at the tie/loss boundary
    (both boundaries are exactly those shares, so the bar is the interval of the share itself).

    Args:
        rows: ``{"label", "win", "tie", "loss", "ci95": {"win": [lo, hi], "tie": ..., "loss": ...}}``,
            shares in [0, 1]; "ci95" and any of its entries may be missing.
        path: the PNG to write.
        title: the figure's title.
    Returns:
        ``path`` as a Path, or None without matplotlib.
    """
    fig = _figure(path, (8.0, 1.4 + 0.55 * max(1, len(rows))))
    if fig is None:
        return None
    ax = fig.add_subplot()
    for i, row in enumerate(rows):
        cis = row["ci95"] if isinstance(row.get("ci95"), dict) else {}
        left = 0.0
        for part in ("win", "tie", "loss"):
            share = _num(row.get(part))
            width = 100 * share if math.isfinite(share) else 0.0
            ax.barh(i, width, left=left, height=0.6, color=COLOURS[part], edgecolor="white",
                    label=part if i == 0 else None)
            if width >= 4:
                pair = _ci(cis.get(part))
                text = _fmt(share)
                if pair is not None and width >= 16:
                    text += f"\n[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}]"
                ax.text(left + width / 2, i, text, ha="center", va="center", fontsize=8,
                        color="white" if part != "tie" else "#222222")
            left += width
            if part == "win" and (err := _err(share, cis.get("win"))) is not None:
                ax.errorbar(100 * share, i, xerr=err, fmt="none", **ERR)
            if part == "tie" and (loss_ci := _ci(cis.get("loss"))) is not None:
                edge = 1 - _num(row.get("loss"))  # the tie/loss boundary; its interval mirrors the loss's
                if (err := _err(edge, (1 - loss_ci[1], 1 - loss_ci[0]))) is not None:
                    ax.errorbar(100 * edge, i, xerr=err, fmt="none", **ERR)
    ax.set_yticks(range(len(rows)), [str(r.get("label", "")) for r in rows])
    ax.set(xlim=(0, 100), ylim=(max(1, len(rows)) - 0.5, -0.5), xlabel="% of prompts")  # first row on top
    if rows:
        ax.legend(ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.5 / len(rows)), frameon=False,
                  fontsize=8)  # below the x label; savefig's tight bounding box keeps it in the PNG
    return _finish(fig, ax, path, title, empty=not rows, grid="x")


def plot_winrate_scatter(points: Sequence[dict], path: str | Path, *,
                         title: str = "Win rate of the model under test (judge; ties removed)",
                         xlabel: str = "helpfulness win rate (%)",
                         ylabel: str = "safety win rate (%)") -> Optional[Path]:
    """Figure 2: one point per compared model, x = helpfulness win rate, y = safety win rate (0..100 %).

    The quadrant x > 50 and y > 50, where the model under test wins on both, is shaded and labelled
    "better"; dashed lines mark 50%. A point with a NaN coordinate is left out.

    Args:
        points: ``{"label", "helpfulness", "safety", "helpfulness_ci": [lo, hi], "safety_ci": [lo, hi]}``,
            rates in [0, 1]; the intervals may be missing or None.
        path: the PNG to write.
        title, xlabel, ylabel: the figure's texts.
    Returns:
        ``path`` as a Path, or None without matplotlib.
    """
    fig = _figure(path, (5.6, 5.2))
    if fig is None:
        return None
    ax = fig.add_subplot()
    ax.axvspan(50, 100, ymin=0.5, ymax=1.0, color="#7fbf7f", alpha=0.18, lw=0)
    ax.text(97, 97, "better", ha="right", va="top", fontsize=10, color="#2e7d32", weight="bold")
    ax.axvline(50, ls="--", lw=1, color="#555555")
    ax.axhline(50, ls="--", lw=1, color="#555555")
    drawn = 0
    for k, p in enumerate(points):
        x, y = _num(p.get("helpfulness")), _num(p.get("safety"))
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        ax.errorbar(100 * x, 100 * y, xerr=_err(x, p.get("helpfulness_ci")), yerr=_err(y, p.get("safety_ci")),
                    fmt="o", color=f"C{k % 10}", ms=6, elinewidth=1, capsize=3, label=str(p.get("label", "")))
        ax.annotate(str(p.get("label", "")), (100 * x, 100 * y), xytext=(6, 6), textcoords="offset points",
                    fontsize=8)
        drawn += 1
    ax.set(xlim=(0, 100), ylim=(0, 100), aspect="equal", xlabel=xlabel, ylabel=ylabel)
    if drawn:
        ax.legend(loc="lower left", fontsize=7)
    return _finish(fig, ax, path, title, empty=not drawn)


def _bars(ax, xs: list[float], cells: Sequence[Optional[dict]], width: float, colour, label=None) -> float:
    """Bars of ``cell["violation"]`` (drawn in %) with ``cell["ci95"]`` as error bars and the value above
    each (a None cell: no bar, no text); returns the highest point drawn."""
    top = 0.0
    vals = [_num(c.get("violation")) if c is not None else math.nan for c in cells]
    heights = [100 * v if math.isfinite(v) else 0.0 for v in vals]
    ax.bar(xs, heights, width, color=colour, label=label)
    for x, h, v, c in zip(xs, heights, vals, cells):
        if c is None:
            continue
        err = _err(v, c.get("ci95"))
        if err is not None:
            ax.errorbar(x, h, yerr=err, fmt="none", **ERR)
        end = h + (err[1][0] if err is not None else 0.0)
        ax.text(x, end, _fmt(v), ha="center", va="bottom", fontsize=7 if len(xs) > 6 else 8)
        top = max(top, end)
    return top


def plot_violations(rows: Sequence[dict], path: str | Path, *,
                    title: str = "Safety: violation % (95% CI; lower is safer)") -> Optional[Path]:
    """Figure 3: one bar per model, its violation % with the interval as an error bar and the value on top.

    Args:
        rows: ``{"label", "violation", "ci95": [lo, hi]}``, shares in [0, 1]; "ci95" may be missing.
        path: the PNG to write.
        title: the figure's title.
    Returns:
        ``path`` as a Path, or None without matplotlib.
    """
    fig = _figure(path, (max(4.5, 1.0 + 0.9 * len(rows)), 3.8))
    if fig is None:
        return None
    ax = fig.add_subplot()
    top = _bars(ax, list(range(len(rows))), rows, 0.6, "#d9614c")
    _violation_axes(ax, [str(r.get("label", "")) for r in rows], top)
    return _finish(fig, ax, path, title, empty=not rows, grid="y")


def plot_violations_by(rows: Sequence[dict], path: str | Path, key: str = "by_category", *,
                       title: str = "Safety: violation % by category (95% CI)") -> Optional[Path]:
    """Figure 3 split by ``key``: a group of bars per category, one bar (colour) per model.

    Categories are the union of the rows' ``row[key]`` keys in first-seen order; a model without a
    category gets no bar there.

    Args:
        rows: ``{"label", key: {category: {"violation": share, "ci95": [lo, hi]}}}``.
        path: the PNG to write.
        key: the field holding the split (e.g. "by_category", "by_risk").
        title: the figure's title.
    Returns:
        ``path`` as a Path, or None without matplotlib.
    """
    cats: list[str] = []
    for r in rows:
        cats += [c for c in (r.get(key) or {}) if c not in cats]
    fig = _figure(path, (max(5.5, 1.5 + 0.35 * len(cats) * max(1, len(rows))), 4.0))
    if fig is None:
        return None
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(rows))
    top = 0.0
    for k, r in enumerate(rows):
        split = r.get(key) or {}
        xs = [i + (k - (len(rows) - 1) / 2) * width for i in range(len(cats))]
        cells = [split.get(c) if isinstance(split.get(c), dict) else None for c in cats]
        top = max(top, _bars(ax, xs, cells, width, f"C{k % 10}", label=str(r.get("label", ""))))
    _violation_axes(ax, [str(c) for c in cats], top)
    if rows and cats:
        ax.legend(fontsize=8)
    return _finish(fig, ax, path, title, empty=not cats, grid="y")
