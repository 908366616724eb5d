"""Configs from YAML and `a.b=c` overrides: unknown keys are errors (a typo never silently falls back to a
default), and values are checked against the dataclass field types."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from cmdrec.errors import InputError


def from_dict(cls, data: dict | None, where: str = ""):
    """Build dataclass `cls` from a mapping, rejecting unknown keys and ill-typed values."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    upgrade = getattr(cls, "upgrade", None)
    if upgrade is not None:  # a config whose keys an earlier format spelled otherwise
        data = upgrade(data, where)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"allowed under '{where.rstrip('.') or cls.__name__}': {sorted(known)}"
        )
    values = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**values)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except InputError as error:
                errors.append(str(error))
        raise InputError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise InputError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any:
        return value
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise InputError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def to_dict(config) -> dict:
    """Plain mapping of a config (tuples as lists), suitable for YAML or JSON. An optional section
    left unset (a model section its backbone does not have) is left out, not written as null."""
    if dataclasses.is_dataclass(config):
        out = {}
        for item in dataclasses.fields(config):
            value = getattr(config, item.name)
            if value is None and _is_section(item.type):
                continue
            out[item.name] = to_dict(value)
        return out
    if isinstance(config, (tuple, list)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def _is_section(annotation) -> bool:
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return name.endswith("Config | None")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=c` overrides to a nested mapping; values are parsed as YAML scalars or lists."""
    data = _deep_copy(data)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise InputError(f"override '{override}' is not of the form key.sub=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"override '{override}': '{part}' is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as error:
            reason = str(error).splitlines()[0]
            raise InputError(
                f"override '{override}': the value is not valid YAML ({reason}); quote it to pass it as text, "
                f"e.g. {key}='\"{raw}\"'"
            ) from None
    return data


def _deep_copy(data: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(data, dict):
        raise InputError(f"{path}: the top level must be a mapping")
    return data


def load_config(cls, path: str | Path | None = None, overrides: list[str] = (), upgrade=None):
    """Config `cls` from a YAML file (or defaults) with `a.b=c` overrides; errors name the file.
    `upgrade` rewrites the file's mapping in today's spelling before the overrides apply to it."""
    data = load_yaml(path) if path else {}
    if upgrade is not None:
        data = upgrade(data)
    try:
        return from_dict(cls, apply_overrides(data, list(overrides)))
    except InputError as error:
        if overrides and _valid(cls, data):  # the file alone is fine: the command line is at fault
            raise InputError(
                f"command-line override(s) {' '.join(overrides)} on {path or 'the defaults'}: {error}"
            ) from error
        raise InputError(f"{path or 'config'}: {error}") from error


def _valid(cls, data: dict) -> bool:
    try:
        from_dict(cls, data)
    except InputError:
        return False
    return True
