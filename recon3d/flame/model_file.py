"""Reading and validating FLAME model files (FLAME 2020, 2023, 2023 Open, and stand-ins).

The files are latin1 pickles of a dict with the keys ``v_template, f, shapedirs, posedirs,
J_regressor, weights, kintree_table``. FLAME 2020's arrays may be chumpy objects; they are
converted to numpy without chumpy (see :mod:`recon3d.flame.safe_pickle`).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from recon3d.errors import SetupError
from recon3d.flame.safe_pickle import UnsafePickleError, load_pickle_file, to_numpy

FLAME_ENV_VAR = "RECON3D_FLAME_MODEL"
FLAME_SOURCE_HINT = (
    "The FLAME model is licence-gated: register at https://flame.is.tue.mpg.de/, download "
    "FLAME 2020 (generic_model.pkl) or FLAME 2023 / 2023 Open (flame2023*.pkl), and pass its path "
    f"with --flame-model PATH or the environment variable {FLAME_ENV_VAR}."
)
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
N_IDENTITY_COLUMNS = 300
N_JOINTS = 5


class FlameModelError(SetupError):
    """A FLAME model file is missing, unreadable or not in FLAME's format."""


@dataclass(frozen=True)
class FlameModelData:
    """The arrays of a FLAME model, as numpy, with the requested numbers of components.

    ``shapedirs`` holds the identity components and ``exprdirs`` the expression components, both
    (V, 3, n); ``posedirs`` is (V, 3, 9 * (joints - 1)); ``parents[0]`` is -1.
    """

    path: Path
    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    posedirs: np.ndarray
    j_regressor: np.ndarray
    lbs_weights: np.ndarray
    parents: np.ndarray

    @property
    def n_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def n_shape(self) -> int:
        return self.shapedirs.shape[2]

    @property
    def n_expr(self) -> int:
        return self.exprdirs.shape[2]


def resolve_flame_model_path(path: str | os.PathLike | None) -> Path:
    """The model path given, else ``$RECON3D_FLAME_MODEL``; a clear error when neither is set."""
    if path is None:
        path = os.environ.get(FLAME_ENV_VAR)
    if not path:
        raise FlameModelError(f"no FLAME model given. {FLAME_SOURCE_HINT}")
    return Path(path).expanduser()


def _fail(path: Path, what: str) -> FlameModelError:
    return FlameModelError(f"{path}: {what}. {FLAME_SOURCE_HINT}")


def _read_dict(path: Path) -> dict:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a folder, not a FLAME .pkl file")
    try:
        raw = load_pickle_file(path)
    except UnsafePickleError as exc:
        raise FlameModelError(f"{path}: refused to load: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not a FLAME pickle (could not unpickle: {exc})") from exc
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(raw, dict):
        raise _fail(path, f"not a FLAME pickle (holds a {type(raw).__name__}, not a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise _fail(path, f"not a FLAME pickle (missing keys: {', '.join(missing)})")
    return {k: to_numpy(raw[k]) for k in REQUIRED_KEYS}


def _check_shape(path: Path, name: str, array: np.ndarray, expected: tuple) -> None:
    ok = array.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, array.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise _fail(path, f"'{name}' has shape {array.shape}, expected {want}")


def load_flame_model(path: str | os.PathLike | None, n_shape: int = 300, n_expr: int = 100) -> FlameModelData:
    """Load and check a FLAME pickle; keep the first ``n_shape`` identity and ``n_expr`` expression columns."""
    path = resolve_flame_model_path(path)
    raw = _read_dict(path)
    v_template = np.asarray(raw["v_template"], dtype=np.float64)
    _check_shape(path, "v_template", v_template, (None, 3))
    n_v = v_template.shape[0]
    faces = np.asarray(raw["f"]).astype(np.int64)
    _check_shape(path, "f", faces, (None, 3))
    if faces.size and (faces.min() < 0 or faces.max() >= n_v):
        raise _fail(path, f"'f' indexes vertex {faces.max()} but the model has {n_v} vertices")
    shapedirs = np.asarray(raw["shapedirs"], dtype=np.float64)
    _check_shape(path, "shapedirs", shapedirs, (n_v, 3, None))
    n_cols = shapedirs.shape[2]
    n_expr_avail = n_cols - N_IDENTITY_COLUMNS
    if not 0 < n_shape <= N_IDENTITY_COLUMNS:
        raise FlameModelError(f"n_shape must be in 1..{N_IDENTITY_COLUMNS}, got {n_shape}")
    if n_expr_avail < 1:
        raise _fail(path, f"'shapedirs' has {n_cols} columns: FLAME has 300 identity + expression columns")
    if not 0 < n_expr <= n_expr_avail:
        raise FlameModelError(f"{path}: n_expr must be in 1..{n_expr_avail} for this model, got {n_expr}")
    posedirs = np.asarray(raw["posedirs"], dtype=np.float64)
    _check_shape(path, "posedirs", posedirs, (n_v, 3, 9 * (N_JOINTS - 1)))
    j_reg = raw["J_regressor"]
    j_reg = j_reg.toarray() if scipy.sparse.issparse(j_reg) else np.asarray(j_reg)
    j_reg = j_reg.astype(np.float64)
    _check_shape(path, "J_regressor", j_reg, (N_JOINTS, n_v))
    weights = np.asarray(raw["weights"], dtype=np.float64)
    _check_shape(path, "weights", weights, (n_v, N_JOINTS))
    kintree = np.asarray(raw["kintree_table"]).astype(np.int64)
    _check_shape(path, "kintree_table", kintree, (2, N_JOINTS))
    parents = kintree[0].copy()
    parents[0] = -1
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, N_JOINTS)):
        raise _fail(path, f"'kintree_table' parents {kintree[0].tolist()} are not a tree rooted at joint 0")
    return FlameModelData(
        path=path,
        v_template=v_template,
        faces=faces,
        shapedirs=shapedirs[:, :, :n_shape].copy(),
        exprdirs=shapedirs[:, :, N_IDENTITY_COLUMNS:N_IDENTITY_COLUMNS + n_expr].copy(),
        posedirs=posedirs,
        j_regressor=j_reg,
        lbs_weights=weights,
        parents=parents,
    )
