"""Run configs: TOML files, --section.key=value overrides, unknown keys and wrong types."""

import dataclasses
from typing import Optional

import pytest

from llamaforge.config import load_config, parse_overrides, to_toml


@dataclasses.dataclass
class Optim:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    fused: bool = False


@dataclasses.dataclass
class Run:
    out_dir: str = "runs/x"
    steps: int = 10
    init_from: Optional[str] = None
    optim: Optim = dataclasses.field(default_factory=Optim)


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('steps = 20\n[optim]\nlr = 1\nbetas = [0.8, 0.9]\n')
    cfg = load_config(Run, f, ["--optim.lr=2e-4", "--out_dir", "runs/y", "--optim.fused=true"])
    assert cfg == Run(out_dir="runs/y", steps=20, optim=Optim(lr=2e-4, betas=(0.8, 0.9), fused=True))
    assert isinstance(load_config(Run, f).optim.lr, float)  # the integer 1 in the file becomes 1.0


def test_round_trip_through_toml(tmp_path):
    cfg = Run(steps=3, init_from="models/a", optim=Optim(lr=1e-5, fused=True))
    f = tmp_path / "resolved.toml"
    f.write_text(to_toml(cfg))
    assert load_config(Run, f) == cfg
    f.write_text(to_toml(Run()))  # None is written as a comment and reads back as the default
    assert load_config(Run, f) == Run()


def test_errors_name_file_section_and_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[optim]\nlrr = 1e-4\n")
    with pytest.raises(ValueError, match=r"c.toml: \[optim\] lrr: unknown key"):
        load_config(Run, f)
    f.write_text("[optimizer]\nlr = 1e-4\n")
    with pytest.raises(ValueError, match=r"c.toml: optimizer: unknown section"):
        load_config(Run, f)
    f.write_text('steps = "ten"\n')
    with pytest.raises(ValueError, match=r"c.toml: steps: expected an integer"):
        load_config(Run, f)
    f.write_text("steps = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(Run, f)
    with pytest.raises(ValueError, match=r"--optim.betas: expected 2 values"):
        load_config(Run, None, ["--optim.betas=[0.9]"])
    with pytest.raises(ValueError, match=r"--optim.momentum: unknown key"):
        load_config(Run, None, ["--optim.momentum=0.9"])
    with pytest.raises(ValueError, match="has no value"):
        load_config(Run, None, ["--steps"])
    with pytest.raises(FileNotFoundError):
        load_config(Run, tmp_path / "missing.toml")


def test_override_values_parse_as_toml_literals_else_strings():
    assert parse_overrides(["--a.b=3", "--a.c=x/y", "--d=none", "--e=[1, 2]", "--f-g=true"]) == {
        "a": {"b": 3, "c": "x/y"}, "d": "none", "e": [1, 2], "f_g": True}


def test_a_bare_none_is_none_for_an_optional_field_and_the_word_for_a_str_field():
    cfg = load_config(Run, None, ["--init_from=none", "--out_dir=none"])
    assert cfg.init_from is None and cfg.out_dir == "none"


def test_every_shipped_config_loads_into_its_stage_dataclass():
    # configs/<stage>/*.toml map 1:1 to the stage's dataclass: an unknown or mistyped key is an error
    from pathlib import Path

    from llamaforge.gatt import GattConfig
    from llamaforge.reward.train import RewardConfig
    from llamaforge.rlhf.iterate import RLHFConfig
    from llamaforge.rlhf.ppo_train import PPOConfig
    from llamaforge.rlhf.rejection_sampling import RSConfig
    from llamaforge.eval.run import EvalConfig
    from llamaforge.safety.context_distillation import CDConfig
    from llamaforge.train.pretrain import PretrainConfig
    from llamaforge.train.sft import SFTConfig

    classes = {"pretrain": PretrainConfig, "sft": SFTConfig, "gatt": GattConfig, "reward": RewardConfig,
               "rejection_sampling": RSConfig, "ppo": PPOConfig, "rlhf": RLHFConfig,
               "context_distill": CDConfig, "eval": EvalConfig}
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*/*.toml"))
    assert {f.parent.name for f in files} == set(classes)
    for f in files:
        load_config(classes[f.parent.name], f)
