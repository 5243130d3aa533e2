"""Systematic offsets between MediaPipe's landmarks and FLAME's embedded points.

MediaPipe does not put its points exactly where the embedding says they are on the face: on
renders with known truth, about a third of its error is a constant per-landmark offset (largest
on the brows). recon3d models it as a fixed 3D displacement of each embedded point in FLAME's
canonical frame, so it moves and foreshortens with the head. The same holds for the jaw-line
points fitted to MediaPipe's face outline (its outline runs inside FLAME's jaw line, by up to
~8 mm at the chin on renders). The offsets are estimated from
synthetic renders (``scripts/calibrate_landmark_bias.py``) and added to the embedded points when
fitting (``fitting.landmark_offsets``: ``default``, ``none`` or a path).

``default`` is the model's own calibration, ``recon3d/data/mediapipe_landmark_offsets.<id>.npz``
where ``<id>`` names the model by its mean shape (:func:`model_identity`), and, for a model
without one (FLAME 2020 / 2023 files the project never sees), the stand-in's calibration
``mediapipe_landmark_offsets.npz``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from recon3d.config_io import ConfigError
from recon3d.flame.embeddings import LandmarkEmbedding
from recon3d.flame.model_file import FlameModelData

DATA = Path(__file__).resolve().parents[1] / "data"
#: Calibrated on the stand-in model; used for models without their own calibration.
DEFAULT_OFFSETS = DATA / "mediapipe_landmark_offsets.npz"


def model_identity(model: FlameModelData) -> str:
    """A short name of a FLAME model by its content: 12 hex digits of its mean shape's sha256."""
    return hashlib.sha256(np.ascontiguousarray(model.v_template, np.float64).tobytes()).hexdigest()[:12]


def model_offsets_path(model: FlameModelData) -> Path:
    """Where the model's own calibration is (or would be) kept."""
    return DATA / f"mediapipe_landmark_offsets.{model_identity(model)}.npz"


def resolve_offsets_path(setting: str | None, model: FlameModelData | None = None) -> Path | None:
    """``default`` -> the model's own calibration if there is one, else the packaged stand-in's;
    ``none``/empty -> no correction; else a path."""
    if not setting or str(setting).lower() == "none":
        return None
    if str(setting).lower() == "default":
        own = model_offsets_path(model) if model is not None else None
        path = own if own is not None and own.exists() else DEFAULT_OFFSETS
    else:
        path = Path(setting)
    if not path.exists():
        raise ConfigError(f"fitting.landmark_offsets: file not found: {path} (set fitting.landmark_offsets: none "
                                "to fit without the correction, or regenerate it with scripts/calibrate_landmark_bias.py)")
    return path


def _per_point(setting: str | None, model: FlameModelData | None, ids_key: str, values_key: str,
               source_ids: np.ndarray, missing: np.ndarray) -> np.ndarray | None:
    """``values_key`` of the calibration file for each of ``source_ids`` (``missing`` for ids it has
    none for, or all of them in a file written without that key), or None without a file."""
    path = resolve_offsets_path(setting, model)
    if path is None:
        return None
    with np.load(path) as data:
        table = dict(zip(data[ids_key].tolist(), data[values_key])) if values_key in data else {}
    return np.stack([np.asarray(table.get(int(i), missing), dtype=np.float64) for i in source_ids])


def offsets_for(embedding: LandmarkEmbedding, setting: str | None,
                model: FlameModelData | None = None) -> np.ndarray | None:
    """Per embedded point ``(N, 3)`` displacement in metres (zeros for ids without one), or None."""
    return _per_point(setting, model, "landmark_indices", "offsets", embedding.source_ids, np.zeros(3))


def contour_offsets_for(contour: LandmarkEmbedding, setting: str | None, model: FlameModelData | None = None,
                        outline: str = "contour") -> np.ndarray | None:
    """Per jaw-line point ``(K, 3)`` displacement in metres from the same calibration file, for the
    jaw line fitted to the ``outline`` named (``contour``: MediaPipe's face oval, ``dlib_contour``:
    dlib's jaw line); zeros for points it has none for, or None without a file."""
    return _per_point(setting, model, "contour_points", f"{outline}_offsets", contour.source_ids, np.zeros(3))


def noise_for(embedding: LandmarkEmbedding, contour: LandmarkEmbedding | None, setting: str | None,
              model: FlameModelData | None = None, outline: str = "contour") -> np.ndarray | None:
    """Each point's residual left after the offsets on the calibration renders, per image axis
    ``(N [+ K], 2)`` (rms over the IOD; landmarks, then the jaw line against ``outline`` if given;
    a file without per-axis values gives both axes the point's one; NaN where the file has
    none), or None."""
    nan = np.full(2, np.nan)
    noise = _per_point(setting, model, "landmark_indices", "residual_iod_xy", embedding.source_ids, nan)
    if noise is None:
        return None
    if np.isnan(noise).all():  # written before the per-axis noise was kept
        noise = _per_point(setting, model, "landmark_indices", "residual_iod", embedding.source_ids,
                           np.array(np.nan))[:, None].repeat(2, 1)
    if contour is not None:  # the jaw line's residual lies along the outline's normal: one value
        jaw = _per_point(setting, model, "contour_points", f"{outline}_residual_iod", contour.source_ids,
                         np.array(np.nan))
        noise = np.concatenate([noise, jaw[:, None].repeat(2, 1)])
    return noise


def estimate_offsets(jacobians: np.ndarray, residuals: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Least-squares 3D offsets per landmark from linearised observations.

    ``jacobians (S, N, 2, 3)``: d(pixels)/d(canonical displacement) of landmark n in sample s
    (projection Jacobian times the head rotation); ``residuals (S, N, 2)``: detected minus true
    projected pixels (NaN where unknown). Returns ``(N, 3)`` metres.
    """
    ok = np.isfinite(residuals).all(-1)
    j = np.where(ok[..., None, None], jacobians, 0.0)
    r = np.where(ok[..., None], residuals, 0.0)
    lhs = np.einsum("snai,snaj->nij", j, j)
    rhs = np.einsum("snai,sna->ni", j, r)
    k = lhs.shape[-1]
    scale = np.trace(lhs, axis1=1, axis2=2)[:, None, None] / k + 1e-30
    return np.linalg.solve(lhs + ridge * scale * np.eye(k), rhs[..., None])[..., 0]
