"""Checkpoint files: tensors and plain data only, written atomically, read without running code.

A ``.pt`` file is a pickle, and a pickle can name any importable callable: loading a shared run's
checkpoint with ``torch.load(weights_only=False)`` runs whatever it carries. Checkpoints here hold
tensors, numbers, strings, lists, tuples and dicts (numpy arrays are stored as tensors) and are
read with ``weights_only=True``. Runs written before that change stored numpy arrays; those still
load, through torch's restricted unpickler with numpy's array reconstruction allowed (data only).
Anything else is refused by name before a byte of it is unpickled.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon3d.atomic import atomic_path
from recon3d.errors import SetupError


class CheckpointError(SetupError):
    """A checkpoint that holds more than tensors and plain data (it could run code), or is unreadable."""


def _numpy_globals() -> list:
    """The globals a pickled numpy array names (numpy 1.x and 2.x spell its module differently)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")] if hasattr(np, "dtypes") else []
    return [multiarray._reconstruct, np.ndarray, np.dtype, *dtype_classes]


def plain(value: Any) -> Any:
    """``value`` with every numpy array turned into a tensor (recursively through dicts, lists, tuples)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically, as tensors and plain data."""
    with atomic_path(path) as tmp:
        torch.save(plain(state), tmp)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without running code; :class:`CheckpointError` names the file and what it
    holds besides data when it is anything more."""
    path = Path(path)
    try:
        unsafe = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                  if not g.startswith(("numpy.core.multiarray.", "numpy._core.multiarray.", "numpy.dtype"))
                  and g != "numpy.ndarray"]
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:  # damaged or foreign
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc}); retrain, or use another run") from exc
    if unsafe:
        raise CheckpointError(
            f"{path}: refused, not loaded: besides tensors and plain data it names {', '.join(sorted(unsafe)[:5])}, "
            "which loading would run (recon3d never writes such checkpoints). Do not use this run; retrain, or ask "
            "whoever shared it for a run written by recon3d")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:  # the restricted unpickler refused something the scan missed
        raise CheckpointError(f"{path}: refused, not loaded: {str(exc).splitlines()[0]}") from exc
