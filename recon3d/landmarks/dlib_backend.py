"""dlib's 68-point shape predictor as a second landmark source beside MediaPipe.

The predictor (``shape_predictor_68_face_landmarks.dat`` from the ``face-recognition-models``
package) needs a face box; dlib's own face detector costs 15-65 ms a frame, so the box is taken
from MediaPipe's landmarks of the same frame instead (:func:`box_from_mediapipe`, matched to where
dlib's detector puts its box on the shared RAVDESS and MEAD clips). The predictor's points are
whole pixels; it runs on the face cropped and enlarged :data:`UPSCALE` times, which gives
sub-pixel points (the predictor itself ~1.8 ms a frame on one core; with both cores building,
the source adds 3.1-3.4 ms a frame: docs/benchmarks.md).

Licence: the 68-point model was trained on iBUG 300-W, whose terms exclude commercial use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from recon3d.landmarks.base import LandmarkBackendError, LandmarkDetector
from recon3d.landmarks.schemes import MEDIAPIPE_DLIB

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
LICENCE_NOTE = ("dlib's 68-point model was trained on iBUG 300-W, whose terms exclude commercial use; "
                "a dataset built with it inherits that restriction")
INSTALL_HINT = "pip install 'recon3d[dlib]' (dlib-bin and face-recognition-models)"
#: The face is cropped and enlarged this many times before the predictor runs on it.
UPSCALE = 2
#: dlib's detector box against the box of MediaPipe's 468 mesh points, on 129 frames of the shared
#: RAVDESS and MEAD clips: side = 0.535 * width + 0.442 * height, centre 1.2 % of the width left
#: and 1.6 % of the height above the mesh box's centre.
BOX_SIDE = (0.535, 0.442)
BOX_SHIFT = (-0.012, -0.016)
#: Margin around the box kept in the crop, as a fraction of its side: the predictor reads no pixel
#: beyond it (0.15 and 0.25 give the same points on the shared clips; 0.10 does not). The crop is
#: what is converted to grey and enlarged, so a smaller one costs less.
CROP_MARGIN = 0.15


def predictor_path() -> Path:
    """The 68-point model's file inside the installed ``face_recognition_models`` package (found
    without importing it: its ``__init__`` needs ``pkg_resources``)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "models" / PREDICTOR_FILE
        if path.exists():
            return path
    raise LandmarkBackendError(f"dlib's 68-point model ({PREDICTOR_FILE}) is not installed: {INSTALL_HINT}")


def dlib_missing() -> str | None:
    """Why the dlib source cannot run here (one line), or None when it can."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return f"dlib is not installed: {INSTALL_HINT}"
    try:
        predictor_path()
    except LandmarkBackendError as exc:
        return str(exc)
    return None


def box_from_mediapipe(points: np.ndarray) -> tuple[float, float, float]:
    """The face box dlib's detector would give, ``(centre x, centre y, side)`` pixels, from
    MediaPipe's points ``(478, 2)`` of the same face."""
    mesh = points[:468]
    lo, hi = mesh.min(0), mesh.max(0)
    w, h = hi - lo
    side = BOX_SIDE[0] * w + BOX_SIDE[1] * h
    cx, cy = (lo + hi) / 2 + np.array(BOX_SHIFT) * (w, h)
    return float(cx), float(cy), float(side)


class DlibPredictor:
    """The 68 points of a face given its box, from a crop enlarged :data:`UPSCALE` times."""

    def __init__(self):
        missing = dlib_missing()
        if missing:
            raise LandmarkBackendError(missing)
        import cv2
        import dlib

        self._dlib, self._cv2 = dlib, cv2
        self._predictor = dlib.shape_predictor(str(predictor_path()))

    def points(self, rgb: np.ndarray, box: tuple[float, float, float]) -> np.ndarray:
        """``(68, 2)`` float pixels of the face in ``box`` (:func:`box_from_mediapipe`) of the RGB
        frame (only the crop is converted to grey)."""
        cx, cy, side = box
        half = side * (0.5 + CROP_MARGIN)
        h, w = rgb.shape[:2]
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
        s, cv2 = UPSCALE, self._cv2
        crop = cv2.resize(cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), None, fx=s, fy=s,
                          interpolation=cv2.INTER_LINEAR)
        bx, by = (cx - x0) * s, (cy - y0) * s
        r = side * s / 2
        rect = self._dlib.rectangle(int(round(bx - r)), int(round(by - r)), int(round(bx + r)), int(round(by + r)))
        shape = self._predictor(crop, rect)
        xy = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        # A pixel's centre in the enlarged crop is at (i + 0.5) / s - 0.5 in the original.
        return ((xy + 0.5) / s - 0.5 + (x0, y0)).astype(np.float32)


class MediaPipeDlibDetector:
    """MediaPipe's 478 points followed by dlib's 68 (ids 478-545) for every face MediaPipe finds."""

    name = "mediapipe+dlib"
    scheme = MEDIAPIPE_DLIB
    n_points = MEDIAPIPE_DLIB.n_points

    def __init__(self, mediapipe: LandmarkDetector, predictor: DlibPredictor | None = None):
        self._mediapipe = mediapipe
        self._predictor = predictor or DlibPredictor()

    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        return [(np.concatenate([points, self._predictor.points(rgb, box_from_mediapipe(points))]), score)
                for points, score in self._mediapipe.detect(rgb)]

    def reset(self) -> None:
        self._mediapipe.reset()

    def close(self) -> None:
        self._mediapipe.close()

