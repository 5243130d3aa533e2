"""Package attributes imported on first use (PEP 562): a package's light parts stay importable
without loading its heavy dependencies (torch, PyAV, MediaPipe)."""

from __future__ import annotations

from importlib import import_module
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``package``: ``name`` in ``exports`` is taken from the
    module ``exports[name]``, imported when the name is first used."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
