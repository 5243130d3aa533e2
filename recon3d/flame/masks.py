"""FLAME's vertex masks (``FLAME_masks.pkl``): named vertex regions such as lips, eye region, forehead."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recon3d.flame.model_file import FlameModelError
from recon3d.flame.safe_pickle import UnsafePickleError, load_pickle_file

MASKS_FILE = "FLAME_masks.pkl"
MASKS_SOURCE_HINT = ("FLAME_masks.pkl is distributed with FLAME (https://flame.is.tue.mpg.de/, 'FLAME Vertex Masks'); "
                     "put it next to the FLAME model, pass its path, or set RECON3D_FLAME_MASKS.")


def find_masks(given: str | os.PathLike | None = None, model_path: Path | None = None) -> Path:
    """Path given, else ``$RECON3D_FLAME_MASKS``, else ``FLAME_masks.pkl`` beside the model."""
    given = given or os.environ.get("RECON3D_FLAME_MASKS")
    if given:
        path = Path(given).expanduser()
    elif model_path is not None:
        path = Path(model_path).parent / MASKS_FILE
    else:
        raise FlameModelError(f"no FLAME masks file given. {MASKS_SOURCE_HINT}")
    if not path.exists():
        raise FlameModelError(f"{path}: file not found. {MASKS_SOURCE_HINT}")
    return path


def load_flame_masks(path: str | os.PathLike, n_vertices: int = 5023) -> dict[str, np.ndarray]:
    """Region name -> sorted vertex ids, checked against ``n_vertices``."""
    path = Path(path)
    try:
        raw = load_pickle_file(path)
    except UnsafePickleError as exc:
        raise FlameModelError(f"{path}: refused to load: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a masks file"
        raise FlameModelError(f"{path}: not a FLAME masks file ({exc}). {MASKS_SOURCE_HINT}") from exc
    if not isinstance(raw, dict) or "lips" not in raw:
        raise FlameModelError(f"{path}: not a FLAME masks file (no 'lips' region). {MASKS_SOURCE_HINT}")
    masks = {str(k): np.unique(np.asarray(v).astype(np.int64)) for k, v in raw.items()}
    for name, ids in masks.items():
        if ids.size and (ids.min() < 0 or ids.max() >= n_vertices):
            raise FlameModelError(f"{path}: region '{name}' indexes vertex {ids.max()} but the model has {n_vertices}")
    return masks


def eye_and_forehead(masks: dict[str, np.ndarray]) -> np.ndarray:
    """The EVE region: eye region plus forehead."""
    return np.union1d(masks["eye_region"], masks["forehead"])
