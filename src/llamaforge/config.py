"""Run configs: typed dataclasses, TOML files that map 1:1 to them, and ``--section.key=value`` overrides.

A stage's config is a dataclass whose fields are scalars (``out_dir``) or section dataclasses
(``train``, ``optim``, ...). Defaults live only on the dataclasses. A TOML file sets any subset;
command-line overrides are applied after it. Unknown sections or keys and values of the wrong type
are errors that name the file (or the flag) and the key. ``to_toml`` writes the resolved config that
a run directory keeps, and ``load_config`` reads it back to the same object.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

__all__ = ["load_config", "parse_overrides", "to_toml"]

T = TypeVar("T")


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


class _NoneWord(str):
    """A flag's bare ``none`` / ``null``: None for an Optional field, the word itself for a str field
    (``--loss.margin=none`` names a margin table)."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (from TOML or a parsed flag) checked against the annotation ``tp``."""
    if isinstance(value, _NoneWord):
        if tp is str:
            return str(value)
        value = None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        item = args[0] if args else Any
        return origin(_coerce(v, item, where) for v in value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected a string, got {value!r}")
    raise TypeError(f"config field type {tp!r} at {where} is not supported")  # a programming error


def _where(source: str | None, trail: tuple[str, ...]) -> str:
    """How an error names a key: ``file.toml: [train] steps`` or ``--train.steps``."""
    if source is None:
        return "--" + ".".join(trail)
    if len(trail) == 1:
        return f"{source}: {trail[0]}"
    return f"{source}: [{'.'.join(trail[:-1])}] {trail[-1]}"


def _apply(obj: Any, values: dict, source: str | None, trail: tuple[str, ...] = ()) -> Any:
    """A copy of dataclass ``obj`` with ``values`` (a TOML table) applied, recursively."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in values.items():
        where = _where(source, trail + (key,))
        if key not in names:
            kind = "section" if isinstance(value, dict) else "key"
            raise ValueError(f"{where}: unknown {kind} (known here: {', '.join(sorted(names))})")
        tp = hints[key]
        if _is_section(tp):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: is a section; expected a table, got {value!r}")
            changes[key] = _apply(getattr(obj, key), value, source, trail + (key,))
        else:
            changes[key] = _coerce(value, tp, where)
    return dataclasses.replace(obj, **changes)


def _parse_value(text: str) -> Any:
    """A flag's value: a TOML literal (3, 1e-4, true, [0.9, 0.95], "x") or else a bare string."""
    if text.lower() in ("none", "null"):
        return _NoneWord(text)
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(overrides: Sequence[str]) -> dict:
    """``["--train.steps=10", "--out_dir", "runs/x"]`` -> ``{"train": {"steps": 10}, "out_dir": "runs/x"}``."""
    tree: dict = {}
    items = list(overrides)
    i = 0
    while i < len(items):
        flag = items[i]
        if not flag.startswith("--") or len(flag) == 2:
            raise ValueError(f"override {flag!r}: expected --section.key=value")
        if "=" in flag:
            key, text = flag[2:].split("=", 1)
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            key, text = flag[2:], items[i + 1]
            i += 1
        else:
            raise ValueError(f"override {flag!r} has no value (use --section.key=value)")
        parts = key.replace("-", "_").split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override --{key}: {part!r} is set both as a value and as a section")
        node[parts[-1]] = _parse_value(text)
        i += 1
    return tree


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """The defaults of ``cls``, then the TOML file at ``path``, then the ``--section.key=value`` flags.

    Raises:
        ValueError: an unknown section or key, or a value of the wrong type (naming the file or flag).
        FileNotFoundError: ``path`` does not exist.
    """
    cfg = cls()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from e
        cfg = _apply(cfg, values, str(path))
    if overrides:
        cfg = _apply(cfg, parse_overrides(overrides), None)
    return cfg


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (JSON's escapes are valid TOML)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(cfg: Any) -> str:
    """The config as a TOML document that ``load_config`` reads back to an equal object.

    ``None`` has no TOML spelling: such keys are written as comments, which reads back as the
    field's default (None for every optional field of llamaforge's configs).
    """
    top, sections = [], []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            lines = [f"\n[{f.name}]"]
            for g in dataclasses.fields(value):
                v = getattr(value, g.name)
                lines.append(f"# {g.name} = none" if v is None else f"{g.name} = {_toml_value(v)}")
            sections.append("\n".join(lines))
        else:
            top.append(f"# {f.name} = none" if value is None else f"{f.name} = {_toml_value(value)}")
    return "\n".join(top + sections) + "\n"
