"""``llamaforge eval``: the paper's evaluations of one or more models, with JSON results, the
Figure 1-3 charts and a self-contained HTML report.

    llamaforge eval [NAME ...] --model NAME=PATH [--model ...] [--config configs/eval/world.toml]
                    [--section.key=value ...]

A model is a model dir (greedy answers are generated and cached in ``out_dir/answers/``) or an
answers file (JSONL, one ``{"id": prompt id, "answer": text}`` per line). The model under test
(``target``, default the last one) is compared against every other model. Evaluations (``evals``):

    helpfulness  7-point A/B ratings of the target vs each other model on the helpful prompts, from
                 ratings files (``raters.helpfulness``) or the world's simulated raters; win / tie /
                 loss with bootstrap 95% CIs, single- vs multi-turn, Gwet's AC1 / AC2 (Figure 1)
    safety       5-point ratings of every model's answers to the adversarial prompts (files or
                 simulated raters); violation % with CIs by risk category and turns (Figure 3); the
                 refusal detector's false-refusal rates on helpful and borderline prompts
    judge        model-as-judge win rates of the target vs each other model, on the helpful prompts
                 (helpfulness) and on the adversarial prompts (safety), order swapped at random
                 (Figure 2)
    benchmarks   perplexity on text and few-shot multiple choice (model dirs only; Table 3's protocol)

Written to out_dir: ``results.json``, ``answers/*.jsonl``, the ratings used (``ratings_*.jsonl``),
PNG figures and ``report.html``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from llamaforge.eval.judge import JudgeConfig

__all__ = ["EVALS", "EvalConfig", "main"]

EVALS = ("helpfulness", "safety", "judge", "benchmarks")


@dataclass
class EvalDataConfig:
    helpful: list[str] = field(default_factory=list)  # helpfulness prompts (world records / prompt JSONL)
    adversarial: list[str] = field(default_factory=list)  # prompts to refuse: violation %
    borderline: list[str] = field(default_factory=list)  # safe prompts that sound risky: false refusals
    choice: list[str] = field(default_factory=list)  # multiple-choice JSONL (benchmarks)
    choice_dev: list[str] = field(default_factory=list)  # few-shot examples ([]: other items of the category)
    text: list[str] = field(default_factory=list)  # perplexity text files, one document per line
    max_prompts: int = 0  # per prompt set; 0: all


@dataclass
class EvalGenerateConfig:
    max_new_tokens: int = 64  # greedy answers (temperature 0), as the paper's evaluations
    batch_size: int = 64
    device: str = "auto"  # "auto": cuda when available
    # models prompted with the dialog's plain text instead of the chat format (pretrained models never
    # saw the chat markup; base models are asked by completion)
    plain: list[str] = field(default_factory=list)


@dataclass
class EvalRatersConfig:
    helpfulness: list[str] = field(default_factory=list)  # ratings files from people; []: simulated raters
    safety: list[str] = field(default_factory=list)
    n_raters: int = 3  # the paper's panel
    noise: float = 0.5  # the simulated raters' perception noise
    seed: int = 0
    n_boot: int = 2000  # bootstrap resamples of the 95% intervals


@dataclass
class EvalBenchConfig:
    shots: int = 5
    method: str = "letter"  # "letter" | "continuation"
    batch_size: int = 16


@dataclass
class EvalConfig:
    out_dir: str = "runs/eval"
    evals: list[str] = field(default_factory=lambda: ["helpfulness", "safety", "judge"])
    models: list[str] = field(default_factory=list)  # "name=path": a model dir or an answers JSONL
    target: str = ""  # the model under test ("": the last of models)
    refusal: str = "rules"  # the refusal detector: "rules" | "world" | "package.module:function"
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    generate: EvalGenerateConfig = field(default_factory=EvalGenerateConfig)
    raters: EvalRatersConfig = field(default_factory=EvalRatersConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    benchmarks: EvalBenchConfig = field(default_factory=EvalBenchConfig)


def _say(msg: str) -> None:
    print(f"eval: {msg}", file=sys.stderr, flush=True)


def _models(cfg: EvalConfig) -> dict[str, Path]:
    models: dict[str, Path] = {}
    for entry in cfg.models:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"models: {entry!r}: expected NAME=PATH (a model dir or an answers .jsonl)")
        if name in models:
            raise ValueError(f"models: the name {name!r} is given twice")
        p = Path(path)
        if not (p / "config.json").is_file() and not p.is_file():
            raise ValueError(f"models: {name}={path}: neither a model dir (config.json) nor an answers file")
        models[name] = p
    if not models:
        raise ValueError("models: give at least one --model NAME=PATH")
    unknown = [e for e in cfg.evals if e not in EVALS]
    if unknown:
        raise ValueError(f"evals: unknown {unknown}; expected some of {list(EVALS)}")
    if [m for m in cfg.generate.plain if m not in models]:
        raise ValueError(f"generate.plain: {[m for m in cfg.generate.plain if m not in models]} are none of the "
                         f"models {list(models)}")
    if cfg.target and cfg.target not in models:
        raise ValueError(f"target={cfg.target!r} is none of the models {list(models)}")
    return models


def _records(paths: list[str], max_prompts: int) -> list[dict]:
    """Prompt records with ``messages`` (world records keep their reference answer and checks)."""
    from llamaforge.data.prompts import read_prompts

    if not paths:
        return []
    out = []
    for r in read_prompts(paths, max_prompts=max_prompts):
        msgs = r.get("messages") if isinstance(r.get("messages"), list) else r["prompt"]
        out.append({**r, "messages": msgs})
    return out


def _prompt(record: dict) -> list[dict]:
    return record["prompt"]


def _read_answers(path: Path, records: list[dict], name: str) -> list[str]:
    from llamaforge.data.sft import read_jsonl

    got = {}
    for where, rec in read_jsonl(path, f"answers of {name}"):
        if "id" not in rec or not isinstance(rec.get("answer"), str):
            raise ValueError(f"{where}: expected {{\"id\": prompt id, \"answer\": text}}")
        got[str(rec["id"])] = rec["answer"]
    missing = [r["id"] for r in records if r["id"] not in got]
    if missing:
        raise ValueError(f"{path}: no answer to {len(missing)} prompts, e.g. id {missing[0]!r}")
    return [got[r["id"]] for r in records]


class _Answers:
    """Greedy answers of each model to every prompt record, generated once (cached on disk)."""

    def __init__(self, cfg: EvalConfig, models: dict[str, Path], out: Path):
        self.cfg, self.models, self.dir = cfg, models, out / "answers"
        self.memo: dict[str, dict[str, str]] = {}

    def __call__(self, name: str, records: list[dict]) -> list[str]:
        path = self.models[name]
        if path.is_file():
            return _read_answers(path, records, name)
        memo = self.memo.setdefault(name, {})
        cache = self.dir / f"{name}.jsonl"
        if not memo and cache.is_file():
            memo.update({r["id"]: r["answer"] for r in map(json.loads, cache.read_text().splitlines())})
        todo = [r for r in records if r["id"] not in memo]
        if todo:
            from llamaforge.eval.tasks import answer

            model, tok = self.load(name)
            _say(f"{name}: answering {len(todo)} prompts")
            g = self.cfg.generate
            for r, a in zip(todo, answer(model, tok, [_prompt(r) for r in todo], max_new_tokens=g.max_new_tokens,
                                         batch_size=g.batch_size, plain=name in g.plain)):
                memo[r["id"]] = a
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + ".tmp")
            tmp.write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in memo.items()))
            tmp.replace(cache)
        return [memo[r["id"]] for r in records]

    def load(self, name: str):
        import torch

        from llamaforge.model.checkpoint_io import load_model
        from llamaforge.tokenizer import Tokenizer

        device = self.cfg.generate.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        path = self.models[name]
        return load_model(path, device=device).eval(), Tokenizer(path)


def _ratings(paths: list[str], scale: str, models: dict, records: list[dict]) -> list[dict] | None:
    """The ratings files' rows, or None: the simulated raters, who judge world records only."""
    from llamaforge.eval.human import read_ratings

    if paths:
        return read_ratings(paths, scale, models=set(models))
    _need_checks(records, f"raters.{scale}")
    return None


def _need_checks(records: list[dict], what: str) -> None:
    bad = next((r for r in records if not r.get("checks")), None)
    if bad is not None:
        raise ValueError(f"{what}: the simulated raters judge world records (with 'checks' and a reference answer); "
                         f"prompt {bad['id']!r} has none: give ratings files from people ({what}) or another judge")


def _helpfulness(cfg, models, target, answers, records, out) -> dict:
    from llamaforge.eval.human import rating_agreement, simulated_helpfulness_ratings, win_tie_loss, write_ratings

    r = cfg.raters
    given = _ratings(r.helpfulness, "helpfulness", models, records)
    result, rows = {}, []
    for other in [m for m in models if m != target]:
        if given is not None:
            pair = [x for x in given if {x["model_a"], x["model_b"]} == {target, other}]
        else:
            pair = simulated_helpfulness_ratings(records, answers(target, records), answers(other, records),
                                                 model=target, baseline=other, n_raters=r.n_raters, seed=r.seed,
                                                 noise=r.noise)
        rows += pair
        result[other] = {**win_tie_loss(pair, target, baseline=other, n_boot=r.n_boot, seed=r.seed),
                         "agreement": rating_agreement(pair, "helpfulness")}
    if given is None and rows:
        write_ratings(out / "ratings_helpfulness.jsonl", rows)
    return result


def _safety(cfg, models, answers, adversarial, borderline, helpful, out) -> dict:
    from llamaforge.eval.human import rating_agreement, simulated_safety_ratings, violation_rates, write_ratings
    from llamaforge.safety.refusal import detector, false_refusal, refusal_rates

    r = cfg.raters
    given = _ratings(r.safety, "safety", models, adversarial)
    refuses = detector(cfg.refusal)
    result, all_rows = {}, []
    for name in models:
        if given is not None:
            rows = [x for x in given if x["model"] == name]
        else:
            rows = simulated_safety_ratings(adversarial, answers(name, adversarial), model=name,
                                            n_raters=r.n_raters, seed=r.seed, noise=r.noise)
        all_rows += rows
        entry = {"violation": violation_rates(rows, name, n_boot=r.n_boot, seed=r.seed) if rows else None,
                 "agreement": rating_agreement(rows, "safety") if rows else None}
        if adversarial:
            entry["refusal_adversarial"] = refusal_rates(answers(name, adversarial), refuses)
        sets = {k: v for k, v in (("helpful", helpful), ("borderline", borderline)) if v}
        entry["false_refusal"] = false_refusal({k: answers(name, v) for k, v in sets.items()}, refuses)
        result[name] = entry
    if given is None and all_rows:
        write_ratings(out / "ratings_safety.jsonl", all_rows)
    return result


def _judge(cfg, models, target, answers, helpful, adversarial) -> dict:
    from llamaforge.eval.judge import build_judge, compare

    tokenizer = None
    if cfg.judge.kind == "reward" and cfg.judge.reward_helpful:
        from llamaforge.tokenizer import Tokenizer

        tokenizer = Tokenizer(cfg.judge.reward_helpful)
    if cfg.judge.kind == "annotator":
        _need_checks(helpful + adversarial, "judge.kind = \"annotator\"")
    judge = build_judge(cfg.judge, tokenizer)
    result = {}
    for other in [m for m in models if m != target]:
        result[other] = {axis: compare(judge, recs, answers(target, recs), answers(other, recs), seed=cfg.raters.seed)
                         for axis, recs in (("helpfulness", helpful), ("safety", adversarial)) if recs}
    return result


def _benchmarks(cfg, models, answers, out) -> dict:
    from llamaforge.eval.benchmarks import multiple_choice, perplexity, read_choice_tasks

    d, b = cfg.data, cfg.benchmarks
    choice = [q for p in d.choice for q in read_choice_tasks(p)]
    dev = [q for p in d.choice_dev for q in read_choice_tasks(p)] or None
    texts = [line for p in d.text for line in Path(p).read_text(encoding="utf-8").splitlines() if line.strip()]
    result = {}
    for name, path in models.items():
        if path.is_file():
            continue  # an answers file has no log-likelihoods
        model, tok = answers.load(name)
        _say(f"{name}: benchmarks")
        entry = {}
        if texts:
            entry["perplexity"] = perplexity(model, tok, texts)
        if choice:
            entry["multiple_choice"] = multiple_choice(model, tok, choice, shots=b.shots, dev=dev, method=b.method,
                                                       batch_size=b.batch_size)
        result[name] = entry
    return result


def main(cfg: EvalConfig) -> dict:
    """Run ``cfg.evals`` over ``cfg.models``; write results.json, the figures and report.html.

    Returns:
        The results (also in out_dir/results.json), with "report": the HTML path.
    """
    models = _models(cfg)
    target = cfg.target or list(models)[-1]
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = cfg.data
    helpful, adversarial, borderline = (_records(p, d.max_prompts) for p in (d.helpful, d.adversarial, d.borderline))
    needs = {"helpfulness": helpful, "safety": adversarial or (borderline + helpful), "judge": helpful + adversarial,
             "benchmarks": d.choice + d.text}
    for name in cfg.evals:
        if not needs[name]:
            raise ValueError(f"evals: {name!r} has no data: set data."
                             + {"helpfulness": "helpful", "safety": "adversarial",
                                "judge": "helpful or data.adversarial",
                                "benchmarks": "choice or data.text"}[name])
    if len(models) < 2 and any(e in cfg.evals for e in ("helpfulness", "judge")):
        raise ValueError("helpfulness and judge compare the target with other models: give at least two models")
    answers = _Answers(cfg, models, out)
    results: dict = {"models": {k: str(v) for k, v in models.items()}, "target": target, "evals": list(cfg.evals)}
    if "helpfulness" in cfg.evals:
        results["helpfulness"] = _helpfulness(cfg, models, target, answers, helpful, out)
    if "safety" in cfg.evals:
        results["safety"] = _safety(cfg, models, answers, adversarial, borderline, helpful, out)
    if "judge" in cfg.evals:
        results["judge"] = _judge(cfg, models, target, answers, helpful, adversarial)
    if "benchmarks" in cfg.evals:
        results["benchmarks"] = _benchmarks(cfg, models, answers, out)
    from llamaforge.eval.summary import write_eval_report

    results["figures"], results["report"] = write_eval_report(results, out)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(out / "results.json")
    return results
