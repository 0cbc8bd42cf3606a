"""The iterated RLHF loop (paper sec. 3.2.3, RLHF-V1 .. V5): ``llamaforge rlhf --config configs/rlhf/tiny.toml``.

Each iteration v = 1 .. N, under ``out_dir/v{v}/``, numbered steps:

  1. ``prefs/``: fresh preferences from the newest policy: two answers per prompt from the policy at
     two temperatures (and the previous version, when there is one), rated by the world's simulated
     annotators (``data.preference.collect_preferences``); helpfulness and safety collected apart;
  2. ``reward-helpful/``, ``reward-safety/``: both RMs retrained from the newest policy on every
     preference file so far (the offline ones and each iteration's), as Meta retrained on the
     growing collection;
  3. ``rs/``: rejection sampling from the newest policy against the new RMs, then fine-tuning on the
     best answers; from ``pool_from`` on, the candidates of all earlier rounds compete too;
  4. ``ppo/``: from ``ppo_from`` on, PPO starting from the rejection-sampling model.

The newest policy after iteration v is RLHF-V{v}; every version's model dirs, metrics and
``versions.json`` (each stage's summary) are kept. A stage whose model dir exists is reused, so an
interrupted loop continues where it stopped (a training stage resumes from its checkpoint).
Each stage runs from its own config file (``stages.*``) with the paths set here, plus the
``--STAGE.section.key=value`` overrides in ``overrides.*``.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RLHFConfig", "main"]


@dataclass
class RLHFStageConfigs:
    reward_helpful: str = "configs/reward/helpful-tiny.toml"
    reward_safety: str = "configs/reward/safety-tiny.toml"
    rejection_sampling: str = "configs/rejection_sampling/tiny.toml"
    ppo: str = "configs/ppo/tiny.toml"


@dataclass
class RLHFOverrides:  # "--section.key=value" flags per stage
    reward_helpful: list[str] = field(default_factory=list)
    reward_safety: list[str] = field(default_factory=list)
    rejection_sampling: list[str] = field(default_factory=list)
    ppo: list[str] = field(default_factory=list)


@dataclass
class RLHFCollectConfig:
    prompts: list[str] = field(default_factory=lambda: ["data/world/rlhf_prompts.jsonl"])  # world records
    per_iteration: int = 400  # prompts rated per iteration (safety prompts: family unsafe / borderline)
    temperatures: list[float] = field(default_factory=lambda: [0.7, 1.2])
    n_raters: int = 3
    noise: float = 0.5
    max_new_tokens: int = 64
    batch_size: int = 64
    seed: int = 0


@dataclass
class RLHFConfig:
    out_dir: str = "runs/rlhf"
    iterations: int = 1
    policy: str = ""  # the starting chat model (required): the SFT model dir
    ppo_from: int = 1  # PPO from this version on (the paper: V5; rejection sampling alone before)
    pool_from: int = 2  # rejection sampling's pool of earlier rounds from this version on (the paper: V4)
    collect: RLHFCollectConfig = field(default_factory=RLHFCollectConfig)
    stages: RLHFStageConfigs = field(default_factory=RLHFStageConfigs)
    overrides: RLHFOverrides = field(default_factory=RLHFOverrides)


def _say(msg: str) -> None:
    print(f"[rlhf] {msg}", file=sys.stderr, flush=True)


def _paths_flag(key: str, paths: list) -> str:
    return f"--{key}=[{', '.join(json.dumps(str(p)) for p in paths)}]"


def _run_stage(name: str, module, cfg_cls, config_file: str, run_dir: Path, flags: list[str]) -> dict:
    """Run a stage unless its model dir exists (then its saved summary); resume an interrupted one."""
    from llamaforge.config import load_config

    done = run_dir / "stage_summary.json"
    if (run_dir / "model" / "config.json").exists() and done.exists():
        return json.loads(done.read_text())
    flags = [f"--out_dir={run_dir}", *flags]
    if (run_dir / "checkpoints").is_dir():
        flags.append("--resume=true")
    _say(f"{name} -> {run_dir}")
    summary = module.main(load_config(cfg_cls, config_file, flags))
    if summary.get("stopped"):
        raise KeyboardInterrupt(f"{name} stopped by signal {summary['stopped']}; run again to continue")
    clean = {k: v for k, v in summary.items() if k not in ("eval_markdown",)}
    done.write_text(json.dumps(clean, indent=1, default=str))
    return clean


def _collect(cfg: RLHFConfig, v: int, policy: str, previous: str | None, out: Path) -> dict[str, Path]:
    """Step 1: fresh helpfulness and safety preferences from the newest policy (cached in ``out``)."""
    from llamaforge.data.preference import collect_preferences, write_preferences
    from llamaforge.data.prompts import read_prompts
    from llamaforge.model.checkpoint_io import load_model
    from llamaforge.tokenizer import Tokenizer

    files = {"helpful": out / "preferences_helpful.jsonl", "safety": out / "preferences_safety.jsonl"}
    if all(f.exists() for f in files.values()):
        return files
    c = cfg.collect
    records = [r for r in read_prompts(c.prompts) if "checks" in r]
    if not records:
        raise ValueError(f"collect.prompts {c.prompts}: no world records with 'checks' (the annotators need them)")
    rng = random.Random(f"llamaforge.rlhf.collect:{c.seed}:{v}")
    chosen = rng.sample(records, min(c.per_iteration, len(records)))
    tokenizer = Tokenizer(policy)
    model = load_model(policy).eval()
    variants = [(f"V{v - 1}@{t}", model, t) for t in c.temperatures]
    if previous:
        variants.append((f"V{v - 2}@{c.temperatures[0]}", load_model(previous).eval(), c.temperatures[0]))
    out.mkdir(parents=True, exist_ok=True)
    for kind, path in files.items():
        subset = [r for r in chosen if (r.get("family") in ("unsafe", "borderline")) == (kind == "safety")]
        if not subset:
            raise ValueError(f"collect: no {kind} prompts among {c.per_iteration} drawn from {c.prompts}")
        prefs, stats = collect_preferences(variants, tokenizer, subset, kind=kind, seed=c.seed * 1000 + v,
                                           n_raters=c.n_raters, noise=c.noise, max_new_tokens=c.max_new_tokens,
                                           batch_size=c.batch_size)
        _say(f"V{v} {kind} preferences: {stats.report()}")
        write_preferences(prefs, path)
    return files


def _with_paths(config_file: str, overrides: list[str], extra: list[Path]) -> list[str]:
    """data.paths / data.weights flags: the stage's own files (its config and ``overrides``, at their
    weights) plus ``extra`` at weight 1."""
    from llamaforge.config import load_config
    from llamaforge.reward.train import RewardConfig

    base = load_config(RewardConfig, config_file, overrides)
    weights = list(base.data.weights) or [1.0] * len(base.data.paths)
    return [_paths_flag("data.paths", list(base.data.paths) + extra),
            f"--data.weights=[{', '.join(str(w) for w in weights + [1.0] * len(extra))}]"]


def main(cfg: RLHFConfig) -> dict:
    """Run (or continue) ``cfg.iterations`` RLHF iterations; return {"versions": [...], "policy"}."""
    from llamaforge.reward import train as reward
    from llamaforge.rlhf import ppo_train, rejection_sampling

    if not cfg.policy:
        raise ValueError("policy is required: the chat model dir RLHF starts from (the SFT model)")
    if cfg.iterations < 1 or len(cfg.collect.temperatures) < 1:
        raise ValueError("iterations must be >= 1 and collect.temperatures non-empty")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy, previous = str(cfg.policy), None
    index = out / "versions.json"
    earlier = json.loads(index.read_text()) if index.exists() else []  # kept beyond this run's versions
    versions: list[dict] = []
    collected: dict[str, list[Path]] = {"helpful": [], "safety": []}
    for v in range(1, cfg.iterations + 1):
        vdir = out / f"v{v}"
        # 1. fresh preferences from the newest policy
        prefs = _collect(cfg, v, policy, previous, vdir / "prefs")
        for kind in collected:
            if prefs[kind].stat().st_size:  # a round can keep no pair of a kind (all identical answers)
                collected[kind].append(prefs[kind])
        # 2. both reward models, from the newest policy, on every preference file so far
        rms = {}
        for kind, module_cfg in (("helpful", cfg.stages.reward_helpful), ("safety", cfg.stages.reward_safety)):
            own, other = collected[kind], collected["safety" if kind == "helpful" else "helpful"]
            extra = own + (other if kind == "helpful" else [])  # the Helpfulness RM also sees safety pairs
            own_flags = getattr(cfg.overrides, f"reward_{kind}")
            flags = [f"--model.init_from={policy}", *own_flags, *_with_paths(module_cfg, own_flags, extra)]
            rms[kind] = _run_stage(f"V{v} {kind} reward model", reward, reward.RewardConfig, module_cfg,
                                   vdir / f"reward-{kind}", flags)
        rm_flags = [f"--reward.helpful={rms['helpful']['model_dir']}", f"--reward.safety={rms['safety']['model_dir']}"]
        # 3. rejection sampling (with the pool of earlier rounds from pool_from on)
        pool = [out / f"v{u}" / "rs" / "samples.jsonl" for u in range(1, v)] if v >= cfg.pool_from else []
        rs = _run_stage(f"V{v} rejection sampling", rejection_sampling, rejection_sampling.RSConfig,
                        cfg.stages.rejection_sampling, vdir / "rs",
                        [f"--model.init_from={policy}", *rm_flags, _paths_flag("rs.pool", pool),
                         *cfg.overrides.rejection_sampling])
        new_policy = rs["model_dir"]
        # 4. PPO from the rejection-sampling model
        ppo = None
        if v >= cfg.ppo_from:
            ppo = _run_stage(f"V{v} PPO", ppo_train, ppo_train.PPOConfig, cfg.stages.ppo, vdir / "ppo",
                             [f"--model.init_from={new_policy}", *rm_flags, *cfg.overrides.ppo])
            new_policy = ppo["model_dir"]
        versions.append({"version": f"RLHF-V{v}", "policy": new_policy, "rs_model": rs["model_dir"],
                         "reward_helpful": rms["helpful"], "reward_safety": rms["safety"], "rejection_sampling": rs,
                         "ppo": ppo, "preferences": {k: str(p) for k, p in prefs.items()}})
        index.write_text(json.dumps(versions + earlier[len(versions):], indent=1, default=str))
        previous, policy = policy, new_policy
        _say(f"RLHF-V{v}: {policy}")
    return {"versions": versions, "policy": policy, "out_dir": str(out)}
