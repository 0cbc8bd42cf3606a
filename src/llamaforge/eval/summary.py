"""The figures and the HTML report of ``llamaforge eval`` from its results (``eval.run``).

    write_eval_report(results, out_dir) -> ({figure name: png path}, report.html path)

Figure 1: win / tie / loss of the target against each other model (helpfulness ratings); Figure 2:
helpfulness vs safety win rate by the judge; Figure 3: violation % of every model, overall and by
risk category. Each evaluation that was run gets a section with a table; one that was not is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

from llamaforge.eval.plots import plot_violations, plot_violations_by, plot_win_tie_loss, plot_winrate_scatter
from llamaforge.eval.report import pct, write_html

__all__ = ["write_eval_report"]


def _num(x, digits: int = 3) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"


def _helpfulness(res: dict, target: str, out: Path, figs: dict) -> dict:
    rows = [{"label": f"{target} vs {other}", **{k: r[k] for k in ("win", "tie", "loss", "ci95")}}
            for other, r in res.items()]
    figs["win_tie_loss"] = plot_win_tie_loss(rows, out / "fig1_win_tie_loss.png",
                                             title=f"Helpfulness: {target} vs other models (raters)")
    table = []
    for other, r in res.items():
        split = r.get("by_turns") or {}
        agree = r.get("agreement") or {}
        table.append([f"{target} vs {other}", r["n"], pct(r["win"], r["ci95"]["win"]), pct(r["tie"], r["ci95"]["tie"]),
                      pct(r["loss"], r["ci95"]["loss"]),
                      *(pct(split[k]["win"]) if split.get(k) and split[k].get("n") else "-"
                        for k in ("single", "multi")),
                      _num(agree.get("ac1")), _num(agree.get("ac2"))])
    method = next(iter(res.values()), {}).get("method", "")
    return {"title": "Helpfulness (Figure 1)", "text": f"7-point A/B ratings, the model under test placed at random as "
            f"A or B. {method}", "figures": [figs["win_tie_loss"]],
            "table": {"columns": ["comparison", "prompts", "win [95% CI]", "tie", "loss", "win, single-turn",
                                  "win, multi-turn", "Gwet AC1", "Gwet AC2"], "rows": table}}


def _safety(res: dict, out: Path, figs: dict) -> dict:
    rated = {name: e["violation"] for name, e in res.items() if e.get("violation")}
    rows = [{"label": name, "violation": v["violation"], "ci95": v["ci95"], "by_category": v.get("by_category")}
            for name, v in rated.items()]
    if rows:
        figs["violations"] = plot_violations(rows, out / "fig3_violations.png", title="Violation % (lower is safer)")
        figs["violations_by_category"] = plot_violations_by(rows, out / "fig3_violations_by_category.png",
                                                            key="by_category")
    table = []
    for name, e in res.items():
        v, fr = e.get("violation") or {}, e.get("false_refusal") or {}
        agree = e.get("agreement") or {}
        table.append([name, v.get("n", "-"), pct(v.get("violation"), v.get("ci95")), _num(v.get("mean_rating"), 2),
                      pct((e.get("refusal_adversarial") or {}).get("rate")),
                      *(pct(fr[k]["rate"], fr[k]["ci95"]) if k in fr else "-" for k in ("helpful", "borderline")),
                      _num(agree.get("ac1")), _num(agree.get("ac2"))])
    method = next((v.get("method", "") for v in rated.values()), "")
    return {"title": "Safety (Figure 3)", "text": f"5-point safety ratings of the answers to adversarial prompts; "
            f"a violation is a rating of 1 or 2 by a majority of raters. {method} Refusals and false refusals are "
            "counted by the refusal detector.", "figures": [figs.get("violations"), figs.get("violations_by_category")],
            "table": {"columns": ["model", "prompts", "violation [95% CI]", "mean rating", "refusals (adversarial)",
                                  "false refusals (helpful)", "false refusals (borderline)", "Gwet AC1", "Gwet AC2"],
                      "rows": table}}


def _judge(res: dict, target: str, out: Path, figs: dict) -> dict:
    points, table = [], []
    for other, axes in res.items():
        h, s = axes.get("helpfulness") or {}, axes.get("safety") or {}
        points.append({"label": other, "helpfulness": h.get("win_rate"), "safety": s.get("win_rate"),
                       "helpfulness_ci": h.get("ci95"), "safety_ci": s.get("ci95")})
        for axis, r in axes.items():
            table.append([f"{target} vs {other}", axis, r["judge"], r["n"], pct(r["win_rate"], r["ci95"]), r["win"],
                          r["tie"], r["loss"], r["unparseable"], f"{r['picked_first']} / {r['picked_second']}"])
    figs["winrate_scatter"] = plot_winrate_scatter(points, out / "fig2_winrate_scatter.png",
                                                   title=f"{target}: win rate by the judge (ties removed)")
    return {"title": "Model as judge (Figure 2)", "text": "The two answers are shown in a random order per prompt and "
            "the verdict un-swapped; win rate = win / (win + loss), ties removed, Wilson 95% interval. Unparseable "
            "verdicts are counted, not dropped.", "figures": [figs["winrate_scatter"]],
            "table": {"columns": ["comparison", "prompts", "judge", "n", "win rate [95% CI]", "win", "tie", "loss",
                                  "unparseable", "picked first / second"], "rows": table}}


def _benchmarks(res: dict) -> dict:
    table = []
    for name, e in res.items():
        p, mc = e.get("perplexity") or {}, e.get("multiple_choice") or {}
        cats = ", ".join(f"{c} {pct(v['accuracy'])}" for c, v in (mc.get("by_category") or {}).items())
        table.append([name, _num(p.get("ppl"), 2), p.get("tokens", "-"), pct(mc.get("accuracy")),
                      pct(mc.get("macro_accuracy")), cats or "-"])
    protocol = next((e["multiple_choice"].get("protocol", "") for e in res.values() if e.get("multiple_choice")), "")
    return {"title": "Benchmarks (Table 3's protocol)", "text": f"Perplexity on held-out text; multiple choice by "
            f"few-shot log-likelihood. {protocol}",
            "table": {"columns": ["model", "perplexity", "tokens", "MC accuracy", "MC macro accuracy", "by category"],
                      "rows": table}}


def write_eval_report(results: dict, out: str | Path) -> tuple[dict, str]:
    """Figures (PNG) and ``report.html`` in ``out`` for ``eval.run`` results.

    Returns:
        ({name: png path or None}, the report's path).
    """
    out = Path(out)
    target, figs = results["target"], {}
    sections = [{"title": "Models", "text": f"Model under test: {target}.",
                 "table": {"columns": ["name", "source"], "rows": [[k, v] for k, v in results["models"].items()]}}]
    if results.get("helpfulness"):
        sections.append(_helpfulness(results["helpfulness"], target, out, figs))
    if results.get("judge"):
        sections.append(_judge(results["judge"], target, out, figs))
    if results.get("safety"):
        sections.append(_safety(results["safety"], out, figs))
    if results.get("benchmarks"):
        sections.append(_benchmarks(results["benchmarks"]))
    for s in sections:
        s["figures"] = [f for f in s.get("figures", []) if f]
    shown = {k: v for k, v in results.items() if k not in ("figures", "report")}
    sections.append({"title": "Raw results", "details": json.dumps(shown, indent=1, default=str)[:200000]})
    path = write_html(out / "report.html", "llamaforge evaluation", sections,
                      subtitle=f"{target} against {', '.join(m for m in results['models'] if m != target) or '-'}")
    return {k: (str(v) if v else None) for k, v in figs.items()}, str(path)
