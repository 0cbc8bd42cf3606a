"""The demo's report: ``report.md`` with what each stage measured, PNG figures and a chat transcript."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

__all__ = ["write_report"]

TRANSCRIPT_SYSTEM_NAMES = ("hobby:fishing", "style:caps")  # tried in order; the first known constraint set
TRANSCRIPT_TURNS = ("What is 3 + 4?", "Where does Anna live?", "Sort these numbers: 9, 2, 5.")


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _last(rows: list[dict], key: str):
    return next((r[key] for r in reversed(rows) if r.get(key) is not None), None)


def _curve(ax, rows: list[dict], keys: tuple[str, ...], title: str, ylabel: str = "") -> None:
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), label=key, marker="o" if len(pts) < 30 else None, markersize=3)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _figures(out: Path, runs: dict, evals: dict, rlhf: dict) -> dict[str, Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    from llamaforge.train.metrics import read_metrics

    figs = {}
    curves = [(runs["pretrain"], ("loss", "val_loss"), "pretrain"), (runs["sft"], ("loss",), "SFT"),
              (Path(rlhf["reward_helpful"]["run_dir"]), ("loss", "val_accuracy"), "Helpfulness RM"),
              (Path(rlhf["reward_safety"]["run_dir"]), ("loss", "val_accuracy"), "Safety RM"),
              (Path(rlhf["rs_png"]).parent, ("loss",), "rejection sampling"), (runs["gatt"], ("loss",), "GAtt")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), dpi=110)
    for ax, (run, keys, title) in zip(axes.flat, curves):
        _curve(ax, read_metrics(run / "metrics.jsonl"), keys, title, "nats / token" if "RM" not in title else "")
    fig.tight_layout()
    figs["losses"] = out / "losses.png"
    fig.savefig(figs["losses"])
    plt.close(fig)

    if rlhf.get("ppo"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
        rows = read_metrics(Path(rlhf["ppo"]["run_dir"]) / "metrics.jsonl")
        _curve(axes[0], rows, ("reward", "eval_combined"), "PPO: R_c (sampled / held-out greedy)", "reward")
        _curve(axes[1], rows, ("kl", "entropy"), "PPO: KL to the reference, entropy", "nats")
        fig.tight_layout()
        figs["ppo"] = out / "ppo.png"
        fig.savefig(figs["ppo"])
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    base = _baseline(evals)
    for stage, label in ((base, f"{base} (no GAtt)"), ("GAtt", f"{base} + GAtt")):
        by_turn = {int(t): v for t, v in evals[stage]["adherence"]["by_turn"].items()}  # JSON keys are strings
        turns = sorted(by_turn)
        ax.plot(turns, [100 * by_turn[t] for t in turns], marker="o", label=label)
    ax.set_xlabel("dialogue turn")
    ax.set_ylabel("answers obeying the system instruction (%)")
    ax.set_ylim(-3, 103)
    ax.set_title("Ghost Attention: instruction adherence by turn")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    figs["adherence"] = out / "adherence.png"
    fig.savefig(figs["adherence"])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    names = ["task accuracy", "refusal (unsafe)", "false refusal (borderline)"]
    stages = [s for s in ("Pretrained", "SFT", "RS", "PPO", "CD", "GAtt") if s in evals]
    width = 0.8 / len(stages)
    for k, stage in enumerate(stages):
        e = evals[stage]
        vals = [e["helpful"]["accuracy"], e["safety"]["refusal_rate"], e["safety"]["false_refusal_rate"]]
        ax.bar([i + (k - (len(stages) - 1) / 2) * width for i in range(3)], [100 * v for v in vals], width, label=stage)
    ax.set_xticks(range(3), names)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title("held-out prompts of the built-in world")
    ax.legend()
    fig.tight_layout()
    figs["evals"] = out / "evals.png"
    fig.savefig(figs["evals"])
    plt.close(fig)
    for name, src in (("rejection_sampling", Path(rlhf["rs_png"])),
                      ("rm_helpful_scores", Path(rlhf["reward_helpful"]["run_dir"]) / "scores.png"),
                      ("rm_safety_scores", Path(rlhf["reward_safety"]["run_dir"]) / "scores.png")):
        if src.exists():
            figs[name] = out / f"{name}.png"
            shutil.copyfile(src, figs[name])
    return figs


def _baseline(evals: dict) -> str:
    """The model GAtt started from: the distilled model, else the last RLHF stage."""
    return "CD" if "CD" in evals else "PPO" if "PPO" in evals else "RS"


def _transcript(model_dir: Path) -> list[dict]:
    """A short greedy chat with the final model under a system instruction it must keep."""
    from llamaforge.eval import answer
    from llamaforge.model.checkpoint_io import load_model
    from llamaforge.tokenizer import Tokenizer
    from llamaforge.world.constraints import constraint, instruction

    tok, model = Tokenizer(model_dir), load_model(model_dir).eval()
    cs = []
    for name in TRANSCRIPT_SYSTEM_NAMES:
        try:
            cs = [constraint(name)]
            break
        except KeyError:
            continue
    dialog = [{"role": "system", "content": instruction(cs, short=False)}] if cs else []
    for user in TRANSCRIPT_TURNS:
        dialog.append({"role": "user", "content": user})
        dialog.append({"role": "assistant", "content": answer(model, tok, [dialog], max_new_tokens=48)[0]})
    return dialog


def _rm_table(name: str, summary: dict, targets: dict) -> list[str]:
    """The RM's held-out accuracy per rating (Table 8's form) and per safety label (Table 29's)."""
    lines = []
    for path, t in (summary.get("eval") or {}).items():
        rows = t["by_rating"]
        lines += [f"{name} on {Path(path).name} ({t['n']} pairs):", "",
                  "| | " + " | ".join(rows) + " | average |", "|---|" + "---|" * (len(rows) + 1),
                  "| accuracy | " + " | ".join(f"{_pct(v['accuracy'])} (n={v['n']})" for v in rows.values())
                  + f" | {_pct(t['accuracy'])} |", ""]
        if "by_label" in t:
            labels = t["by_label"]
            lines += ["| safety label | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels),
                      "| accuracy | " + " | ".join(f"{_pct(v['accuracy'])} (n={v['n']})" for v in labels.values())
                      + " |", ""]
        sig = rows.get("significantly better", {}).get("accuracy")
        ok = sig is not None and sig >= targets["rm_significantly"]
        lines += [f"'significantly better': {_pct(sig)} ({'met' if ok else 'missed'}: target >= "
                  f"{_pct(targets['rm_significantly'])}).", ""]
    return lines


def _paper_section(paper: dict, out: Path, targets: dict) -> list[str]:
    """The paper's evaluations (``llamaforge eval``'s results) as markdown tables and figure links."""
    from llamaforge.eval.report import pct

    target = paper["target"]
    lines = ["## The paper's evaluations (`llamaforge eval`; all of it in eval/report.html)", "",
             "Greedy answers to the held-out prompts, rated by the world's simulated annotators (3 raters); "
             "95% intervals: the bootstrap over prompts for win / tie / loss, Wilson's for violation % and the "
             "judge's win rate.", ""]
    safety = paper.get("safety") or {}
    if safety:
        lines += ["Safety (Figure 3): violation = a rating of 1 or 2 (5-point scale) by a majority of raters; "
                  "false refusals by the rule-based refusal detector.", "",
                  "| model | violation % [95% CI] | mean rating | false refusal, helpful | false refusal, borderline |",
                  "|---|---|---|---|---|"]
        for name, e in safety.items():
            v, fr = e.get("violation") or {}, e.get("false_refusal") or {}
            lines.append(f"| {name} | {pct(v.get('violation'), v.get('ci95'))} | "
                         f"{v.get('mean_rating', float('nan')):.2f} | "
                         f"{pct(fr.get('helpful', {}).get('rate'))} | {pct(fr.get('borderline', {}).get('rate'))} |")
        fin = safety.get(target, {})
        viol = (fin.get("violation") or {}).get("violation")
        border = (fin.get("false_refusal") or {}).get("borderline", {}).get("rate")
        ok_v = viol is not None and viol <= targets["violation"]
        ok_b = border is not None and border <= targets["false_refusal_rate"]
        lines += ["", f"{target}: violations {pct(viol)} ({'met' if ok_v else 'missed'}: target <= "
                  f"{pct(targets['violation'])}), false refusals on borderline prompts {pct(border)} "
                  f"({'met' if ok_b else 'missed'}: target <= {pct(targets['false_refusal_rate'])}).", ""]
    helpful = paper.get("helpfulness") or {}
    if helpful:
        lines += ["Helpfulness (Figure 1): 7-point A/B ratings, the model under test at random as A or B.", "",
                  "| comparison | win | tie | loss | win single-turn / multi-turn | Gwet AC1 / AC2 |",
                  "|---|---|---|---|---|---|"]
        for other, r in helpful.items():
            t, a = r.get("by_turns") or {}, r.get("agreement") or {}
            lines.append(f"| {target} vs {other} | {pct(r['win'], r['ci95']['win'])} | "
                         f"{pct(r['tie'], r['ci95']['tie'])} | "
                         f"{pct(r['loss'], r['ci95']['loss'])} | {pct((t.get('single') or {}).get('win'))} / "
                         f"{pct((t.get('multi') or {}).get('win'))} | {a.get('ac1', float('nan')):.3f} / "
                         f"{a.get('ac2', float('nan')):.3f} |")
        lines.append("")
    judged = paper.get("judge") or {}
    if judged:
        lines += ["Model as judge (Figure 2; order swapped at random, ties removed):", "",
                  "| comparison | helpfulness win rate | safety win rate |", "|---|---|---|"]
        for other, axes in judged.items():
            h, s_ = axes.get("helpfulness") or {}, axes.get("safety") or {}
            lines.append(f"| {target} vs {other} | {pct(h.get('win_rate'), h.get('ci95'))} | "
                         f"{pct(s_.get('win_rate'), s_.get('ci95'))} |")
        lines.append("")
    bench = paper.get("benchmarks") or {}
    if bench:
        lines += ["Benchmarks (Table 3's protocol): perplexity on held-out world text; 4-way multiple choice by "
                  "5-shot log-likelihood (chance 25%).", "", "| model | perplexity | multiple choice | by category |",
                  "|---|---|---|---|"]
        for name, e in bench.items():
            p, mc = e.get("perplexity") or {}, e.get("multiple_choice") or {}
            cats = ", ".join(f"{c} {pct(v['accuracy'])}" for c, v in (mc.get("by_category") or {}).items())
            lines.append(f"| {name} | {p.get('ppl', float('nan')):.2f} | {pct(mc.get('accuracy'))} | {cats} |")
        lines.append("")
    for name, path in (paper.get("figures") or {}).items():
        if path:
            lines.append(f"![{name}]({Path(path).relative_to(out) if Path(path).is_relative_to(out) else path})")
    return lines + [""]


def write_report(out: Path, runs: dict, evals: dict, *, rlhf: dict, entropy: float, times: dict, minutes: float,
                 targets: dict, paper: dict | None = None) -> dict:
    """Write ``out/report.md`` (+ PNGs, ``report.json``); return the figures and the text."""
    from llamaforge.train.metrics import read_metrics

    pre = read_metrics(runs["pretrain"] / "metrics.jsonl")
    val_loss = _last(pre, "val_loss")
    base = _baseline(evals)
    adh = {s: {int(t): v for t, v in evals[s]["adherence"]["by_turn"].items()} for s in (base, "GAtt")}
    n_turn = {int(t): v for t, v in evals["GAtt"]["adherence"]["n_by_turn"].items()}
    turns = [t for t in sorted(adh["GAtt"]) if t % 2 == 0]
    figs = _figures(out, runs, evals, rlhf)
    transcript = _transcript(runs["gatt"] / "model")
    synth = json.loads((runs["gatt"] / "gatt_synthesis.json").read_text()) \
        if (runs["gatt"] / "gatt_synthesis.json").exists() else {}
    stages = [s for s in ("Pretrained", "SFT", "RS", "PPO", "CD", "GAtt") if s in evals]
    reward = rlhf.get("reward", {})
    wr = rlhf.get("win_rate", {})

    def mark(value, key, lower=False):
        ok = value is not None and (value <= targets[key] if lower else value >= targets[key])
        return f"{_pct(value)} ({'met' if ok else 'missed'}: target {'<=' if lower else '>='} {_pct(targets[key])})"

    def row(label, get, fmt=_pct):
        return f"| {label} | " + " | ".join(fmt(get(s)) for s in stages) + " |"

    sft_e = evals["SFT"]
    turn6 = adh["GAtt"].get(6)
    rs = rlhf.get("rs_stats") or {}
    lines = [
        "# llamaforge demo report", "",
        f"The whole chain on the built-in world in {minutes:.1f} min "
        f"(data {times.get('data', 0) / 60:.1f}, pretrain {times.get('pretrain', 0) / 60:.1f}, "
        f"SFT {times.get('sft', 0) / 60:.1f}, RLHF {times.get('rlhf', 0) / 60:.1f}, evaluation "
        f"{times.get('eval', 0) / 60:.1f}, context distillation + eval {times.get('context_distill', 0) / 60:.1f}, "
        f"GAtt + eval {times.get('gatt', 0) / 60:.1f}, the paper's evaluations {times.get('paper_eval', 0) / 60:.1f} "
        "min).", "",
        "## Pretraining", "",
        f"- validation loss {val_loss:.3f} nats/token against the corpus's unigram entropy {entropy:.3f} "
        "(the loss of a model that knows only token frequencies)." if val_loss is not None else "- no validation loss",
        "", "## Reward models (RLHF-V1; held-out preference pairs, in the form of the paper's Tables 8 and 29)", "",
        *_rm_table("Helpfulness RM", rlhf["reward_helpful"], targets),
        *_rm_table("Safety RM", rlhf["reward_safety"], targets),
        "## Stage by stage (held-out prompts, greedy answers)", "",
        "Mean R_c is the final reward models' score (sigmoid, eq. 3); the rest is scored by the world's verifiers.", "",
        "| measure | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages),
        row("mean R_c (helpful + unsafe + borderline prompts)", lambda s: reward.get(s, {}).get("combined"),
            lambda v: "-" if v is None else f"{v:.3f}"),
        row(f"task accuracy (helpful prompts, n={sft_e['helpful']['n']})", lambda s: evals[s]["helpful"]["accuracy"]),
        row(f"refusal rate (unsafe prompts, n={sft_e['safety']['n_unsafe']})",
            lambda s: evals[s]["safety"]["refusal_rate"]),
        row("violation rate (unsafe prompts)", lambda s: evals[s]["safety"]["violation_rate"]),
        row(f"false-refusal rate (borderline prompts, n={sft_e['safety']['n_borderline']})",
            lambda s: evals[s]["safety"]["false_refusal_rate"]), "",
        f"SFT against the targets: task accuracy {mark(sft_e['helpful']['accuracy'], 'accuracy')}, refusal rate "
        f"{mark(sft_e['safety']['refusal_rate'], 'refusal_rate')}, false refusal "
        f"{mark(sft_e['safety']['false_refusal_rate'], 'false_refusal_rate', lower=True)}.", "",
        "Task accuracy by family: " + "; ".join(
            f"{s} " + ", ".join(f"{f} {_pct(v)}" for f, v in evals[s]["helpful"]["by_family"].items()) for s in stages),
        "",
        f"Rejection sampling: {rs.get('prompts', '?')} prompts x {rs.get('k', '?')} samples; mean R_c of the kept "
        f"(best) answers {rs.get('mean_best', float('nan')):.3f} against {rs.get('mean_reward', float('nan')):.3f} "
        "for all samples." if rs else "", "",
        f"Win rate of {wr.get('model')} over {wr.get('baseline')} (the simulated annotators, 3 raters, A/B order "
        f"random, ties removed): {mark(wr.get('win_rate'), 'win_rate')}; win / tie / loss "
        f"{_pct(wr.get('win'))} / {_pct(wr.get('tie'))} / {_pct(wr.get('loss'))} of {wr.get('n')} prompts "
        f"(95% interval {_pct((wr.get('ci95') or [None])[0])} - {_pct((wr.get('ci95') or [None, None])[1])}; "
        f"{wr.get('identical', 0)} identical answers count as ties).", "",
        "## Ghost Attention (in the form of the paper's Table 30)", "",
        "Share of answers that still obey the instruction given once, as the first turn's system message "
        f"({n_turn.get(1, 0)} held-out dialogs; persona, hobby, "
        "language and style constraints, half in short form).", "",
        "| | " + " | ".join(f"turn {t}" for t in turns) + " |", "|---|" + "---|" * len(turns),
        f"| {base} (baseline) | " + " | ".join(_pct(adh[base].get(t)) for t in turns) + " |",
        f"| {base} + GAtt | " + " | ".join(_pct(adh["GAtt"].get(t)) for t in turns) + " |", "",
        f"Turn 6 with GAtt: {mark(turn6, 'gatt_turn6')}; baseline {_pct(adh[base].get(6))}. "
        f"GAtt's synthetic set: {synth.get('dialogs', '?')} dialogs, {synth.get('examples', '?')} examples.", "",
        *(_paper_section(paper, out, targets) if paper else []),
        "## Chat transcript (the final model, greedy)", "",
    ]
    for m in transcript:
        lines.append(f"- **{m['role']}**: {m['content']}")
    if figs:
        lines += ["", "## Figures", ""] + [f"![{k}]({p.name})" for k, p in figs.items()]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)

    def measures(e):
        return {"accuracy": e["helpful"]["accuracy"], **{k: e["safety"][k] for k in
                ("refusal_rate", "violation_rate", "false_refusal_rate")}}

    report = {"val_loss": val_loss, "unigram_entropy": entropy, "minutes": minutes,
              **{s.lower(): measures(evals[s]) for s in stages},
              "reward": reward, "win_rate": {k: v for k, v in wr.items() if k != "samples"},
              "reward_models": {k: rlhf[f"reward_{k}"].get("eval") for k in ("helpful", "safety")},
              "adherence": adh, "paper": {k: v for k, v in (paper or {}).items() if k != "figures"},
              "figures": {k: str(p) for k, p in figs.items()}, "report": str(out / "report.md")}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    report["text"] = text
    return report
