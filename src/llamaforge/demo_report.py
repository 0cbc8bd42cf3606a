"""The demo's report: ``report.md`` with what each stage measured, PNG figures and a chat transcript."""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["write_report"]

TRANSCRIPT_SYSTEM_NAMES = ("hobby:fishing", "style:caps")  # tried in order; the first known constraint set
TRANSCRIPT_TURNS = ("What is 3 + 4?", "Where does Anna live?", "Sort these numbers: 9, 2, 5.")


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _last(rows: list[dict], key: str):
    return next((r[key] for r in reversed(rows) if r.get(key) is not None), None)


def _figures(out: Path, runs: dict, evals: dict) -> dict[str, Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    from llamaforge.train.metrics import read_metrics

    figs = {}
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.4), dpi=110)
    for ax, (stage, run) in zip(axes, runs.items()):
        rows = read_metrics(run / "metrics.jsonl")
        for key in ("loss", "val_loss"):
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), label=key, marker="o" if key == "val_loss" else None, markersize=3)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("loss (nats / token)")
    fig.tight_layout()
    figs["losses"] = out / "losses.png"
    fig.savefig(figs["losses"])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    for stage, label in (("sft", "SFT (no GAtt)"), ("gatt", "SFT + GAtt")):
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

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    names = ["task accuracy", "refusal (unsafe)", "false refusal (borderline)"]
    width = 0.38
    for k, stage in enumerate(("sft", "gatt")):
        e = evals[stage]
        vals = [e["helpful"]["accuracy"], e["safety"]["refusal_rate"], e["safety"]["false_refusal_rate"]]
        ax.bar([i + (k - 0.5) * width for i in range(3)], [100 * v for v in vals], width, label=stage.upper())
    ax.set_xticks(range(3), names)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title("held-out prompts of the built-in world")
    ax.legend()
    fig.tight_layout()
    figs["evals"] = out / "evals.png"
    fig.savefig(figs["evals"])
    plt.close(fig)
    return figs


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


def write_report(out: Path, runs: dict, evals: dict, *, entropy: float, times: dict, minutes: float,
                 targets: dict) -> dict:
    """Write ``out/report.md`` (+ PNGs, ``report.json``); return the figures and the text."""
    from llamaforge.train.metrics import read_metrics

    pre = read_metrics(runs["pretrain"] / "metrics.jsonl")
    val_loss = _last(pre, "val_loss")
    sft_e, gatt_e = evals["sft"], evals["gatt"]
    adh = {s: {int(t): v for t, v in evals[s]["adherence"]["by_turn"].items()} for s in ("sft", "gatt")}
    n_turn = {int(t): v for t, v in gatt_e["adherence"]["n_by_turn"].items()}
    turns = [t for t in sorted(adh["gatt"]) if t % 2 == 0]
    figs = _figures(out, runs, evals)
    transcript = _transcript(runs["gatt"] / "model")
    synth = json.loads((runs["gatt"] / "gatt_synthesis.json").read_text()) \
        if (runs["gatt"] / "gatt_synthesis.json").exists() else {}

    def mark(value, key, lower=False):
        ok = value is not None and (value <= targets[key] if lower else value >= targets[key])
        return f"{_pct(value)} ({'met' if ok else 'missed'}: target {'<=' if lower else '>='} {_pct(targets[key])})"

    turn6 = adh["gatt"].get(6)
    lines = [
        "# llamaforge demo report", "",
        f"The whole chain on the built-in world in {minutes:.1f} min "
        f"(data {times.get('data', 0) / 60:.1f}, pretrain {times.get('pretrain', 0) / 60:.1f}, "
        f"SFT + eval {times.get('sft', 0) / 60:.1f}, GAtt + eval {times.get('gatt', 0) / 60:.1f} min).", "",
        "## Pretraining", "",
        f"- validation loss {val_loss:.3f} nats/token against the corpus's unigram entropy {entropy:.3f} "
        "(the loss of a model that knows only token frequencies)." if val_loss is not None else "- no validation loss",
        "", "## SFT (held-out prompts, greedy answers, scored by the world's verifiers)", "",
        "| measure | SFT | SFT + GAtt |", "|---|---|---|",
        f"| task accuracy (helpful prompts, n={sft_e['helpful']['n']}) | {mark(sft_e['helpful']['accuracy'], 'accuracy')} "
        f"| {_pct(gatt_e['helpful']['accuracy'])} |",
        f"| refusal rate (unsafe prompts, n={sft_e['safety']['n_unsafe']}) | "
        f"{mark(sft_e['safety']['refusal_rate'], 'refusal_rate')} | {_pct(gatt_e['safety']['refusal_rate'])} |",
        f"| violation rate (unsafe prompts) | {_pct(sft_e['safety']['violation_rate'])} | "
        f"{_pct(gatt_e['safety']['violation_rate'])} |",
        f"| false-refusal rate (borderline prompts, n={sft_e['safety']['n_borderline']}) | "
        f"{mark(sft_e['safety']['false_refusal_rate'], 'false_refusal_rate', lower=True)} | "
        f"{_pct(gatt_e['safety']['false_refusal_rate'])} |", "",
        "Task accuracy by family (SFT): " + ", ".join(f"{f} {_pct(v)}" for f, v in sft_e["helpful"]["by_family"].items()),
        "", "## Ghost Attention (in the form of the paper's Table 30)", "",
        "Share of answers that still obey the instruction given once, as the first turn's system message "
        f"({n_turn.get(1, 0)} held-out dialogs; persona, hobby, "
        "language and style constraints, half in short form).", "",
        "| | " + " | ".join(f"turn {t}" for t in turns) + " |", "|---|" + "---|" * len(turns),
        "| SFT (baseline) | " + " | ".join(_pct(adh["sft"].get(t)) for t in turns) + " |",
        "| SFT + GAtt | " + " | ".join(_pct(adh["gatt"].get(t)) for t in turns) + " |", "",
        f"Turn 6 with GAtt: {mark(turn6, 'gatt_turn6')}; baseline {_pct(adh['sft'].get(6))}. "
        f"GAtt's synthetic set: {synth.get('dialogs', '?')} dialogs, {synth.get('examples', '?')} examples.", "",
        "## Chat transcript (the final model, greedy)", "",
    ]
    for m in transcript:
        lines.append(f"- **{m['role']}**: {m['content']}")
    if figs:
        lines += ["", "## Figures", ""] + [f"![{k}]({p.name})" for k, p in figs.items()]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    report = {"val_loss": val_loss, "unigram_entropy": entropy, "minutes": minutes,
              "sft": {"accuracy": sft_e["helpful"]["accuracy"], **{k: sft_e["safety"][k] for k in
                      ("refusal_rate", "violation_rate", "false_refusal_rate")}},
              "gatt": {"accuracy": gatt_e["helpful"]["accuracy"], **{k: gatt_e["safety"][k] for k in
                       ("refusal_rate", "violation_rate", "false_refusal_rate")}},
              "adherence": adh, "figures": {k: str(p) for k, p in figs.items()}, "report": str(out / "report.md")}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    report["text"] = text
    return report
