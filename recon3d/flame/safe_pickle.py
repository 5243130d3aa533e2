"""A restricted unpickler for model files.

FLAME and its landmark embeddings are distributed as pickles. A pickle can name any importable
callable, so loading an untrusted one with :func:`pickle.load` can run arbitrary code. The
unpickler here resolves only the classes a model file needs (numpy arrays, scipy sparse matrices,
chumpy's array class, torch tensors stored by value) and refuses everything else with
:class:`UnsafePickleError`.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse

from recon3d.errors import SetupError

_SPARSE_CLASSES = {"csc_matrix", "csr_matrix", "coo_matrix"}
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_NUMPY_MULTIARRAY = {"_reconstruct", "scalar"}
_BUILTINS = {"object": object, "set": set, "frozenset": frozenset, "list": list, "dict": dict,
             "tuple": tuple, "slice": slice}


class UnsafePickleError(SetupError, pickle.UnpicklingError):
    """The file references a callable that a model file has no reason to contain."""


class ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps the pickled state so the array can be taken out.

    FLAME 2020's ``generic_model.pkl`` stores some arrays as chumpy objects. Their pickled state
    holds the value in ``x``; nothing of chumpy is imported or run.
    """

    def __setstate__(self, state: dict) -> None:
        self.state = state

    def to_numpy(self) -> np.ndarray:
        if "x" not in getattr(self, "state", {}):
            raise UnsafePickleError("a chumpy object in this file holds no array value ('x')")
        return np.asarray(self.state["x"])


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` limited to plain ``object`` bases (Python 2 pickles use it)."""
    if base is not object:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r} from base {base!r}")
    return object.__new__(cls)


def _torch_storage_from_bytes(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _torch_rebuild_tensor(*args: Any) -> Any:
    import torch._utils

    return torch._utils._rebuild_tensor_v2(*args)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a model or embedding file needs."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in _NUMPY_MULTIARRAY:
            from numpy.core import multiarray

            return getattr(multiarray, name)
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return getattr(scipy.sparse, name)
        if module in ("__builtin__", "builtins") and name in _BUILTINS:
            return _BUILTINS[name]
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _reconstructor
        if module == "_codecs" and name == "encode":
            import codecs

            return codecs.encode
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "chumpy.ch" and name == "Ch":
            return ChumpyArray
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _torch_rebuild_tensor
        if module == "torch.storage" and name == "_load_from_bytes":
            return _torch_storage_from_bytes
        raise UnsafePickleError(
            f"refusing to load '{module}.{name}': a model file only holds arrays, and this name "
            "could run code. The file is not a genuine model file or has been tampered with."
        )


def restricted_load(stream: BinaryIO) -> Any:
    """Unpickle ``stream`` (latin1 for Python 2 pickles) allowing only model-file classes."""
    return RestrictedUnpickler(stream, encoding="latin1").load()


def load_pickle_file(path: Path) -> Any:
    """Load a ``.pkl`` file through :class:`RestrictedUnpickler`."""
    with open(path, "rb") as f:
        return restricted_load(f)


def load_object_npy(path: Path) -> Any:
    """Load a ``.npy`` file that holds one pickled object (DECA's embedding format), safely."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise pickle.UnpicklingError(f"unsupported .npy version {version}")
        _, _, dtype = read_header(f)
        if dtype != np.dtype(object):
            return np.load(path, allow_pickle=False)
        return restricted_load(f)


def to_numpy(value: Any) -> Any:
    """Convert chumpy stand-ins and torch tensors (recursively in dicts) to numpy arrays."""
    if isinstance(value, ChumpyArray):
        return value.to_numpy()
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    if type(value).__module__.startswith("torch"):
        return value.numpy()
    return value

