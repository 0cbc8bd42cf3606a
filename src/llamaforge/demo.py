"""``llamaforge demo``: the recipe's chain on the built-in world, on a CPU, with a report at the end.

    corpus -> world splits -> tokenizer -> token shards -> pretrain -> SFT -> eval -> GAtt -> eval -> report

1. the world's pretraining text and its task / safety / GAtt splits (``world export``);
2. a SentencePiece tokenizer on the corpus and the dialogs' text, token shards;
3. pretraining of the ``tiny`` model (configs/pretrain/tiny.toml);
4. SFT on the helpful dialogs mixed with the safety demonstrations (configs/sft/tiny.toml), then its
   task accuracy, refusal and false-refusal rates on held-out prompts and its constraint adherence by
   turn (the baseline of GAtt);
5. Ghost Attention from the SFT model (configs/gatt/tiny.toml), then the same measures;
6. ``report.md`` with the figures (PNG) and a short chat transcript.

A stage whose output exists is reused, so an interrupted demo continues where it stopped (a training
stage resumes from its last checkpoint); ``--fresh`` starts over. Extra ``--STAGE.section.key=value``
flags (STAGE: pretrain, sft, gatt) override that stage's config.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

__all__ = ["main"]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STAGES = ("pretrain", "sft", "gatt")
PROMPTS = ["Emma's coat is", "What is 7 plus 5? The answer is", "Here are some sums."]
TARGETS = {"accuracy": 0.80, "refusal_rate": 0.90, "false_refusal_rate": 0.10, "gatt_turn6": 0.90}


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def _route(overrides: list[str]) -> dict[str, list[str]]:
    """``--sft.train.steps=5`` -> {"sft": ["--train.steps=5"]}; a flag without a stage is an error."""
    routed: dict[str, list[str]] = {s: [] for s in STAGES}
    for flag in overrides:
        stage, _, rest = flag.lstrip("-").partition(".")
        if stage not in STAGES or not rest:
            raise ValueError(f"demo: {flag!r}: expected --STAGE.section.key=value with STAGE one of {', '.join(STAGES)}")
        routed[stage].append(f"--{rest}")
    return routed


def _train(stage: str, module, cfg_cls, run_dir: Path, flags: list[str]) -> dict | None:
    """Run a training stage unless its model dir exists; resume an interrupted one."""
    from llamaforge.config import load_config

    if (run_dir / "model" / "config.json").exists():
        return None
    flags = [f"--out_dir={run_dir}", *flags]
    if (run_dir / "checkpoints").is_dir():
        flags.append("--resume=true")
    cfg = load_config(cfg_cls, CONFIGS / stage / "tiny.toml", flags)
    _say(f"{stage} ({cfg.train.precision}; Ctrl-C checkpoints and stops; run the demo again to continue)")
    return module.main(cfg)


def _evaluate(model_dir: Path, world: Path, out: Path, *, helpful: bool = True) -> dict:
    """Task accuracy, safety rates and constraint adherence of one model (cached in ``out``)."""
    if out.exists():
        return json.loads(out.read_text())
    from llamaforge.eval import constraint_adherence, safety_rates, task_accuracy
    from llamaforge.model.checkpoint_io import load_model
    from llamaforge.tokenizer import Tokenizer

    def read(name):
        return [json.loads(line) for line in (world / f"{name}.jsonl").read_text().splitlines() if line.strip()]

    tok, model = Tokenizer(model_dir), load_model(model_dir).eval()
    _say(f"evaluating {model_dir}")
    result = {"adherence": constraint_adherence(model, tok, read("gatt_eval"), max_new_tokens=48)}
    if helpful:
        result["helpful"] = task_accuracy(model, tok, read("helpful_eval"))
        result["safety"] = safety_rates(model, tok, read("unsafe_eval"), read("borderline_eval"))
    out.write_text(json.dumps(result, indent=1))
    return result


def main(out_dir: str | Path = "runs/demo", *, docs: int = 60000, vocab_size: int = 2048, scale: float = 1.0,
         steps: int | None = None, fresh: bool = False, overrides: list[str] | None = None) -> dict:
    """Run the demo chain under ``out_dir``; return the report's figures.

    Args:
        docs: world-corpus documents (60000: ~8.6 MiB of text, ~2.7M tokens).
        vocab_size: tokenizer size (the world's text supports up to ~5500 pieces).
        scale: multiplies the size of every world split (SFT data, eval sets, GAtt dialogs).
        steps: pretraining steps (default: the tiny config's).
        overrides: ``--STAGE.section.key=value`` flags for the stages' configs.
    """
    from llamaforge import gatt
    from llamaforge.data.pretrain import prepare, unigram_entropy
    from llamaforge.tokenizer import train_tokenizer
    from llamaforge.train import pretrain, sft
    from llamaforge.world.corpus import write_corpus
    from llamaforge.world.splits import WorldSizes, export

    routed = _route(list(overrides or []))
    out = Path(out_dir)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start, times = time.perf_counter(), {}

    # 1. the built-in world: pretraining text and every split
    corpus, world = out / "corpus.txt", out / "world"
    if not corpus.exists():
        _say(f"writing the world corpus ({docs} documents)")
        write_corpus(corpus, docs, seed=0)
    if not (world / "world.json").exists():
        _say("writing the world's splits (SFT, safety, evaluation, GAtt, preferences)")
        export(world, sizes=WorldSizes().scaled(scale))
    # 2. tokenizer (Llama 2's options) on the corpus and the dialogs' text; token shards
    tok_dir, data_dir = out / "tokenizer", out / "data"
    if not (tok_dir / "tokenizer.model").exists():
        _say(f"training a {vocab_size}-piece SentencePiece tokenizer")
        train_tokenizer([corpus, _dialog_text(world)], vocab_size, tok_dir)
    if not (data_dir / "manifest.json").exists():
        _say("tokenizing into shards")
        prepare([corpus], tok_dir, data_dir)
    times["data"] = time.perf_counter() - t_start

    # 3-5. pretrain -> SFT -> GAtt, each from the previous stage's model dir
    runs = {s: out / s for s in STAGES}
    flags = {
        "pretrain": [f"--data.path={data_dir}", *([f"--train.steps={steps}"] if steps is not None else [])],
        "sft": [f"--model.init_from={runs['pretrain'] / 'model'}",
                f"--data.paths=[\"{world / 'sft.jsonl'}\", \"{world / 'safety_sft.jsonl'}\"]"],
        "gatt": [f"--model.init_from={runs['sft'] / 'model'}", f"--gatt.dialogs={world / 'gatt_dialogs.jsonl'}",
                 f"--data.paths=[\"{world / 'sft.jsonl'}\", \"{world / 'safety_sft.jsonl'}\"]"],
    }
    modules = {"pretrain": (pretrain, pretrain.PretrainConfig), "sft": (sft, sft.SFTConfig),
               "gatt": (gatt, gatt.GattConfig)}
    evals = {}
    for stage in STAGES:
        t0 = time.perf_counter()
        summary = _train(stage, *modules[stage], runs[stage], flags[stage] + routed[stage])
        if summary and summary.get("stopped"):
            return summary
        if stage != "pretrain":
            evals[stage] = _evaluate(runs[stage] / "model", world, out / f"eval_{stage}.json")
        times[stage] = time.perf_counter() - t0

    # 6. the report
    from llamaforge.demo_report import write_report

    entropy = unigram_entropy(data_dir, "val")
    report = write_report(out, runs, evals, entropy=entropy, times=times,
                          minutes=(time.perf_counter() - t_start) / 60, targets=TARGETS)
    print(report["text"])
    return report


def _dialog_text(world: Path) -> Path:
    """The SFT dialogs rendered in the chat format, one per line: tokenizer training text, so that
    the chat markup and the answers' styles get their own pieces."""
    from llamaforge.chat_format import B_INST, B_SYS, E_INST, E_SYS

    path = world / "dialog_text.txt"
    lines = []
    for name in ("sft", "safety_sft"):
        for line in (world / f"{name}.jsonl").read_text().splitlines():
            msgs = json.loads(line)["messages"]
            text = []
            for m in msgs:
                if m["role"] == "system":
                    text.append(f"{B_INST} {B_SYS}{m['content']}{E_SYS}")
                elif m["role"] == "user":
                    text.append(f"{B_INST} {m['content']} {E_INST}")
                else:
                    text.append(m["content"])
            lines.append(" ".join(text))
    path.write_text("\n".join(lines) + "\n")
    return path
