"""The iterated RLHF loop (``llamaforge rlhf``) end to end on the debug model: two versions from a
random debug policy, with tiny stage configs written here, world prompts and offline preferences.
V1 is rejection sampling alone; V2 pools V1's samples, compares against V1 when collecting, and runs
PPO. Then: reuse on a rerun (nothing retrained), a third version on top, bad configs, the CLI."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from llamaforge import cli
from llamaforge.config import load_config
from llamaforge.data.preference import read_preferences, write_preferences
from llamaforge.model import ModelArgs, Transformer
from llamaforge.model.checkpoint_io import load_model, save_model
from llamaforge.model.heads import has_scalar_head
from llamaforge.model.sizes import preset
from llamaforge.rlhf import iterate
from llamaforge.rlhf.iterate import RLHFConfig
from llamaforge.train.metrics import read_metrics
from llamaforge.world.splits import WorldSizes, world_splits

COMMON = """
[train]
precision = "fp32"
device = "cpu"
{train}
[checkpoint]
every = 0
keep = 1
[log]
every = 1
progress = false
tensorboard = false
"""


pytestmark = pytest.mark.usefixtures("one_thread")


def _jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_tokenizer):
    """A random debug policy dir, world RLHF prompts (helpful, unsafe, borderline; with checks and
    family) and offline preference files, and the four stages' tiny TOML configs."""
    root = tmp_path_factory.mktemp("rlhf_loop")
    torch.manual_seed(0)
    policy = Transformer(ModelArgs(**{**preset("debug"), "vocab_size": tiny_tokenizer.vocab_size}))
    policy.init_weights()
    save_model(policy, root / "policy", tokenizer=tiny_tokenizer)
    sizes = dataclasses.replace(WorldSizes(**{f.name: 0 for f in dataclasses.fields(WorldSizes)}),
                                rlhf_helpful=6, rlhf_unsafe=3, rlhf_borderline=3,
                                preferences_helpful=6, preferences_safety=6)
    world = world_splits(0, sizes=sizes)
    prompts = _jsonl(root / "rlhf_prompts.jsonl", world["rlhf_prompts"])
    offline = {k: write_preferences(world[f"preferences_{k}"], root / f"preferences_{k}.jsonl")
               for k in ("helpful", "safety")}
    reward = """[data]
paths = ["{own}", "{other}"]
weights = [1.0, 0.5]
seq_len = 256
[optim]
lr = 1e-3
warmup_steps = 1
""" + COMMON.format(train="steps = 2\nbatch_size = 4\nmicro_batch_size = 2")
    configs = {
        "reward_helpful": reward.format(own=offline["helpful"], other=offline["safety"]),
        "reward_safety": reward.format(own=offline["safety"], other=offline["helpful"]),
        "rejection_sampling": f"""[rs]
prompts = ["{prompts}"]
k = 2
max_new_tokens = 6
temperature = 1.2
[data]
paths = []
seq_len = 256
[optim]
lr = 1e-3
""" + COMMON.format(train="steps = 1\nbatch_size = 2\nmicro_batch_size = 2\ncompile = false"),
        "ppo": f"""[data]
prompts = ["{prompts}"]
[ppo]
iterations = 2
prompts_per_iteration = 4
minibatch_size = 2
max_new_tokens = 4
value_lr = 1e-4
[optim]
lr = 1e-4
""" + COMMON.format(train="micro_batch_size = 2"),
    }
    stages = {}
    for name, text in configs.items():
        stages[name] = str(root / f"{name}.toml")
        Path(stages[name]).write_text(text)
    return {"root": root, "policy": root / "policy", "prompts": prompts, "offline": offline, "stages": stages,
            "world": world}


def _config(assets, out: Path, **changes) -> RLHFConfig:
    flags = [f"--out_dir={out}", f"--policy={assets['policy']}", "--iterations=2", "--pool_from=2", "--ppo_from=2",
             f"--collect.prompts=[\"{assets['prompts']}\"]", "--collect.per_iteration=12",
             "--collect.max_new_tokens=6", "--collect.batch_size=16",
             *[f"--stages.{k}={v}" for k, v in assets["stages"].items()],
             *[f"--{k}={v}" for k, v in changes.items()]]
    return load_config(RLHFConfig, None, flags)


@pytest.fixture(scope="module")
def loop(assets):
    """RLHF-V1 and V2 run once for the module (the tests below read it; the last ones extend it)."""
    out = assets["root"] / "run"
    summary = iterate.main(_config(assets, out))
    return {"out": out, "summary": summary, "versions": json.loads((out / "versions.json").read_text())}


def _stage_cls(name: str):
    """The config dataclass of a stage dir's config.toml."""
    from llamaforge.reward.train import RewardConfig
    from llamaforge.rlhf.ppo_train import PPOConfig
    from llamaforge.rlhf.rejection_sampling import RSConfig

    return {"reward-helpful": RewardConfig, "reward-safety": RewardConfig, "rs": RSConfig, "ppo": PPOConfig}[name]


# ---------------------------------------------------------------- the two versions

def test_two_versions_with_the_right_policies(loop, assets):
    out, versions = loop["out"], loop["versions"]
    assert [v["version"] for v in versions] == ["RLHF-V1", "RLHF-V2"]
    assert loop["summary"]["versions"] == versions and loop["summary"]["policy"] == versions[1]["policy"]
    v1, v2 = versions
    # V1: rejection sampling only (ppo_from=2); V2: PPO on top of its rejection-sampling model
    assert v1["ppo"] is None and not (out / "v1" / "ppo").exists()
    assert v1["policy"] == v1["rs_model"] == str(out / "v1" / "rs" / "model")
    assert v2["rs_model"] == str(out / "v2" / "rs" / "model")
    assert v2["policy"] == v2["ppo"]["model_dir"] == str(out / "v2" / "ppo" / "model")
    for v, vdir in ((v1, out / "v1"), (v2, out / "v2")):
        for kind in ("helpful", "safety"):
            assert v[f"reward_{kind}"]["model_dir"] == str(vdir / f"reward-{kind}" / "model")
            assert has_scalar_head(load_model(vdir / f"reward-{kind}" / "model"))
            assert v["preferences"][kind] == str(vdir / "prefs" / f"preferences_{kind}.jsonl")
        assert not has_scalar_head(load_model(v["policy"]))

    def init_from(stage_dir):
        return load_config(_stage_cls(stage_dir.name), stage_dir / "config.toml").model.init_from

    # each stage starts from the newest policy: V1's from the SFT model, V2's from V1's
    for stage in ("reward-helpful", "reward-safety", "rs"):
        assert init_from(out / "v1" / stage) == str(assets["policy"])
        assert init_from(out / "v2" / stage) == v1["policy"]
    assert init_from(out / "v2" / "ppo") == v2["rs_model"]
    # PPO: two iterations, against V2's reward models
    rows = read_metrics(out / "v2" / "ppo" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(0 <= r["reward"] <= 1 for r in rows)
    ppo_cfg = load_config(_stage_cls("ppo"), out / "v2" / "ppo" / "config.toml")
    assert ppo_cfg.reward.helpful == v2["reward_helpful"]["model_dir"]
    assert ppo_cfg.reward.safety == v2["reward_safety"]["model_dir"]


def test_fresh_preferences_are_valid_and_v2_compares_against_v1(loop):
    out = loop["out"]
    names = {}
    for v in (1, 2):
        for kind in ("helpful", "safety"):
            records = read_preferences(out / f"v{v}" / "prefs" / f"preferences_{kind}.jsonl",
                                       kind=kind if kind == "safety" else None)
            assert records
            safety_family = {r["family"] in ("unsafe", "borderline") for r in records}
            assert safety_family == {kind == "safety"}  # the two kinds are collected apart
            names[v, kind] = {n for r in records for n in r["variants"]}
    # V1: the SFT model (RLHF-V0) at the two temperatures; V2: V1 at both, and V0 (the previous policy)
    assert set().union(names[1, "helpful"], names[1, "safety"]) <= {"V0@0.7", "V0@1.2"}
    v2 = set().union(names[2, "helpful"], names[2, "safety"])
    assert v2 <= {"V1@0.7", "V1@1.2", "V0@0.7"} and "V0@0.7" in v2 and v2 & {"V1@0.7", "V1@1.2"}


def test_reward_models_train_on_every_preference_file_so_far(loop, assets):
    out = loop["out"]
    offline = assets["offline"]
    fresh = {k: [out / f"v{v}" / "prefs" / f"preferences_{k}.jsonl" for v in (1, 2)] for k in ("helpful", "safety")}
    n = {p: len(_lines(Path(p))) for p in [*offline.values(), *fresh["helpful"], *fresh["safety"]]}
    for v in (1, 2):
        for kind in ("helpful", "safety"):
            rm_dir = out / f"v{v}" / f"reward-{kind}"
            cfg = load_config(_stage_cls("reward-helpful"), rm_dir / "config.toml")
            other = "safety" if kind == "helpful" else "helpful"
            # the config's own files at their weights, then this kind's fresh files so far (and, for the
            # Helpfulness RM, the fresh safety files too), each at weight 1
            extra = fresh[kind][:v] + (fresh["safety"][:v] if kind == "helpful" else [])
            assert cfg.data.paths == [str(offline[kind]), str(offline[other]), *map(str, extra)]
            assert cfg.data.weights == [1.0, 0.5] + [1.0] * len(extra)
            stats = json.loads((rm_dir / "stage_summary.json").read_text())["data"]
            assert stats["read"] == sum(n[Path(p)] for p in cfg.data.paths) and stats["dropped_too_long"] == 0
            assert stats["pairs"] == n[offline[kind]] + round(n[offline[other]] / 2) + sum(n[p] for p in extra)
            assert loop["versions"][v - 1][f"reward_{kind}"]["data"] == stats


def test_v2_rejection_sampling_pools_v1_samples(loop):
    out = loop["out"]
    rs1 = _lines(out / "v1" / "rs" / "samples.jsonl")
    assert {s["source"] for s in rs1} == {"new"}  # pool_from=2: V1 has no pool
    cfg = load_config(_stage_cls("rs"), out / "v2" / "rs" / "config.toml")
    assert cfg.rs.pool == [str(out / "v1" / "rs" / "samples.jsonl")]
    rs2 = _lines(out / "v2" / "rs" / "samples.jsonl")
    pooled = [s for s in rs2 if s["source"] == "pool"]
    new = {(s["id"], s["answer"]) for s in rs2 if s["source"] == "new"}
    # every distinct earlier candidate not sampled again competes (re-scored by V2's reward models)
    assert {(s["id"], s["answer"]) for s in pooled} == {(s["id"], s["answer"]) for s in rs1} - new
    assert pooled and all(s["round"] == str(out / "v1" / "rs") for s in pooled)
    stats = loop["versions"][1]["rejection_sampling"]["rs"]
    assert stats["pool_candidates"] == len(pooled) and stats["k"] == 2


# ---------------------------------------------------------------- reuse, a third version

def test_a_rerun_trains_nothing_and_more_iterations_add_only_the_new_version(loop, assets, monkeypatch):
    from llamaforge.data import preference
    from llamaforge.reward import train as reward_train
    from llamaforge.rlhf import ppo_train, rejection_sampling

    out = loop["out"]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "versions.json"}

    def never(*a, **k):
        raise AssertionError("a finished stage ran again")

    with monkeypatch.context() as m:
        for module in (reward_train, rejection_sampling, ppo_train):
            m.setattr(module, "main", never)
        m.setattr(preference, "collect_preferences", never)
        again = iterate.main(_config(assets, out))
    assert again["versions"] == loop["versions"] == json.loads((out / "versions.json").read_text())
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "versions.json"}
    assert after == before  # no file written, none added

    third = iterate.main(_config(assets, out, iterations=3))
    assert [v["version"] for v in third["versions"]] == ["RLHF-V1", "RLHF-V2", "RLHF-V3"]
    assert third["versions"][:2] == loop["versions"]
    assert {p: p.stat().st_mtime_ns for p in before} == before  # V1 and V2 untouched
    assert sorted(p.name for p in out.iterdir()) == ["v1", "v2", "v3", "versions.json"]
    v3 = third["versions"][2]
    assert v3["policy"] == str(out / "v3" / "ppo" / "model") == third["policy"]
    # V3's pool holds both earlier rounds
    pool = load_config(_stage_cls("rs"), out / "v3" / "rs" / "config.toml").rs.pool
    assert pool == [str(out / f"v{u}" / "rs" / "samples.jsonl") for u in (1, 2)]


# ---------------------------------------------------------------- bad configs, the CLI

@pytest.mark.parametrize("change, match", [({"policy": ""}, "policy is required"),
                                           ({"iterations": 0}, "iterations must be >= 1")])
def test_bad_configs_are_value_errors(assets, tmp_path, change, match):
    cfg = dataclasses.replace(_config(assets, tmp_path / "r"), **change)
    with pytest.raises(ValueError, match=match):
        iterate.main(cfg)
    assert not (tmp_path / "r").exists()  # checked before anything is written


def test_rlhf_cli_runs_one_iteration(assets, tmp_path, capsys):
    out = tmp_path / "cli"
    stages = "\n".join(f'{k} = "{v}"' for k, v in assets["stages"].items())
    config = tmp_path / "rlhf.toml"
    config.write_text(f"""out_dir = "{out}"
iterations = 3
policy = "{assets['policy']}"
ppo_from = 1
[collect]
prompts = ["{assets['prompts']}"]
per_iteration = 12
max_new_tokens = 6
[stages]
{stages}
[overrides]
ppo = ["--ppo.iterations=1"]
""")
    assert cli.main(["rlhf", "--config", str(config), "--iterations", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"RLHF-V1: {out / 'v1' / 'ppo' / 'model'}" in printed and "RLHF-V2" not in printed
    assert f"versions: {out}/versions.json" in printed
    assert [v["version"] for v in json.loads((out / "versions.json").read_text())] == ["RLHF-V1"]
    assert [r["step"] for r in read_metrics(out / "v1" / "ppo" / "metrics.jsonl")] == [1]  # the override
