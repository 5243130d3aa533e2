"""Dataclass configurations read from YAML: one loader and one merge rule for every config."""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import TypeVar

import yaml

from recon3d.errors import SetupError

T = TypeVar("T")


class ConfigError(SetupError):
    """A configuration file or section that cannot be used; the message names the key."""


def config_from_dict(cls: type[T], values: dict | None, where: str = "", base: T | None = None) -> T:
    """``cls`` (or the instance ``base``) with ``values`` applied; nested sections keep the defaults
    of their parent (so a partial ``fitting:`` section only changes the keys it names).

    Unknown keys raise :class:`ConfigError` naming the section and the keys it knows."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{where or 'top'}' must be a mapping")
    base = base if base is not None else cls()
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) in config section '{where or 'top'}': {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    changes = {}
    for name, value in values.items():
        current = getattr(base, name)
        if is_dataclass(current):
            changes[name] = config_from_dict(type(current), value, f"{where}.{name}".strip("."), current)
        else:
            changes[name] = value
    return replace(base, **changes)


def load_config(cls: type[T], path: str | Path | None) -> T:
    """``cls`` from the YAML file at ``path`` (the defaults when ``path`` is None)."""
    if path is None:
        return cls()
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return config_from_dict(cls, values)
