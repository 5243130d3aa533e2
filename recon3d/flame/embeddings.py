"""Landmark embeddings: 2D detector landmarks tied to points on FLAME's surface.

Each embedded landmark is a triangle of the mesh plus barycentric coordinates in it.

* MediaPipe: ``mediapipe_landmark_embedding.npz`` (105 face-mesh points; from metrical-tracker /
  SMIRK) plus the 10 iris points (468-477), which this module places on the model's own eyeballs.
* FAN 68: DECA's ``landmark_embedding.npy`` with 51 static points and a yaw-dependent contour of 17.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d.flame.model_file import FlameModelData, FlameModelError
from recon3d.flame.safe_pickle import UnsafePickleError, load_object_npy, to_numpy
from recon3d.landmarks.schemes import DLIB_OFFSET, FAN68, MEDIAPIPE

MEDIAPIPE_EMBEDDING_FILE = "mediapipe_landmark_embedding.npz"
FAN_EMBEDDING_FILE = "landmark_embedding.npy"
#: Each embedding file and the environment variable that may name it instead.
EMBEDDING_FILES = {MEDIAPIPE_EMBEDDING_FILE: "RECON3D_MEDIAPIPE_EMBEDDING", FAN_EMBEDDING_FILE: "RECON3D_FAN_EMBEDDING"}
EMBEDDING_SOURCE_HINT = (
    "The MediaPipe embedding 'mediapipe_landmark_embedding.npz' is published with SMIRK "
    "(github.com/georgeretsi/smirk, assets/) and metrical-tracker; DECA's 'landmark_embedding.npy' "
    "with DECA (github.com/yfeng95/DECA, data/). Put the file next to the FLAME model or pass its path."
)
#: Iris diameter MediaPipe assumes (mm), used to place the iris-contour points on the eyeballs.
IRIS_RADIUS_M = 0.00585
#: MediaPipe iris ids per FLAME eye joint: centre, then the contour at +x, +y, -x, -y in FLAME's
#: rest frame (subject's left = +x, up = +y). 468-472 is the subject's right eye (joint 4).
IRIS_IDS = {3: (473, 474, 475, 476, 477), 4: (468, 469, 470, 471, 472)}
N_MEDIAPIPE_POINTS = MEDIAPIPE.n_points
#: Points of the 68-point contour fitted against a detector's face outline: the chin (8) and the
#: lower jaw line on either side, which a frontal camera sees edge-on.
JAW_LINE_POINTS = range(6, 11)
#: dlib's points fitted beside MediaPipe's (68-point ids): all 51 inner points (brows, nose, eyes,
#: lips; on the calibration seeds they fit closer than the 20 lip points alone: docs/fitting.md).
#: Its jaw line (0-16) is fitted as the face outline (``MEDIAPIPE_DLIB.face_contour``).
DLIB_FITTED = tuple(range(17, 68))


@dataclass(frozen=True)
class LandmarkEmbedding:
    """Embedded landmarks: ``face_idx (N,)``, ``bary (N, 3)``, ``source_ids (N,)`` = detector ids."""

    face_idx: np.ndarray
    bary: np.ndarray
    source_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.face_idx)

    def joined(self, other: "LandmarkEmbedding") -> "LandmarkEmbedding":
        """This embedding's points followed by ``other``'s."""
        return LandmarkEmbedding(np.concatenate([self.face_idx, other.face_idx]),
                                 np.concatenate([self.bary, other.bary]),
                                 np.concatenate([self.source_ids, other.source_ids]))

    def subset(self, source_ids, shift: int = 0) -> "LandmarkEmbedding":
        """The points of ``source_ids`` (in that order), their ids shifted by ``shift``."""
        pos = {int(i): k for k, i in enumerate(self.source_ids)}
        rows = np.array([pos[int(i)] for i in source_ids], dtype=np.int64)
        return LandmarkEmbedding(self.face_idx[rows], self.bary[rows], self.source_ids[rows] + shift)

    def vertex_ids(self, faces: np.ndarray) -> np.ndarray:
        """``(N, 3)`` mesh vertex ids of each landmark's triangle."""
        return faces[self.face_idx]

    def points(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Landmark positions ``(..., N, 3)`` on ``vertices (..., V, 3)``."""
        tri = vertices[..., faces[self.face_idx], :]  # (..., N, 3 corners, 3)
        return np.einsum("...nkc,nk->...nc", tri, self.bary)


def _embedding_error(path: Path, what: str) -> FlameModelError:
    return FlameModelError(f"{path}: {what}. {EMBEDDING_SOURCE_HINT}")


def find_asset_beside_model(model: FlameModelData, filename: str, given: str | os.PathLike | None,
                            env_var: str | None = None) -> Path:
    """The path given, else ``$env_var``, else ``filename`` in the FLAME model's folder."""
    if given is None and env_var:
        given = os.environ.get(env_var)
    path = Path(given).expanduser() if given else model.path.parent / filename
    if not path.exists():
        raise _embedding_error(path, "file not found")
    return path


def embedding_files_found(model: FlameModelData) -> list[Path]:
    """The embedding files a fit of ``model`` would read, those that exist (see :data:`EMBEDDING_FILES`)."""
    found = []
    for filename, env_var in EMBEDDING_FILES.items():
        try:
            found.append(find_asset_beside_model(model, filename, None, env_var))
        except FlameModelError:
            pass
    return found


def _check_faces(path: Path, face_idx: np.ndarray, bary: np.ndarray, model: FlameModelData) -> None:
    if bary.shape != (len(face_idx), 3):
        raise _embedding_error(path, f"barycentric coordinates have shape {bary.shape}, expected ({len(face_idx)}, 3)")
    n_faces = len(model.faces)
    if len(face_idx) and (face_idx.min() < 0 or face_idx.max() >= n_faces):
        raise _embedding_error(path, f"names triangle {int(face_idx.max())} but the FLAME model "
                                     f"{model.path.name} has {n_faces} triangles: embedding and model do not match")
    if np.any(np.abs(bary.sum(axis=1) - 1.0) > 1e-3):
        raise _embedding_error(path, "barycentric coordinates do not sum to 1")


def _ray_hits(origin: np.ndarray, directions: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First triangle hit by each ray (Moller-Trumbore) and its barycentric coordinates."""
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    hits, barys = [], []
    for d in directions:
        p = np.cross(d, e2)
        det = np.einsum("fc,fc->f", e1, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            s = origin - tri[:, 0]
            u = np.einsum("fc,fc->f", s, p) * inv
            q = np.cross(s, e1)
            v = (q @ d) * inv
            t = np.einsum("fc,fc->f", e2, q) * inv
        ok = (np.abs(det) > 1e-15) & (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9) & (t > 0)
        if not ok.any():
            raise FlameModelError("could not place the iris landmarks: no eyeball triangle in the gaze direction")
        k = np.flatnonzero(ok)[np.argmin(t[ok])]
        hits.append(k)
        barys.append((1 - u[k] - v[k], u[k], v[k]))
    return np.array(hits), np.array(barys)


def iris_embedding(model: FlameModelData) -> LandmarkEmbedding:
    """The 10 MediaPipe iris points on FLAME's eyeballs (centre and 4 contour points per eye).

    Eyeballs are the vertices skinned entirely to an eye joint; rays from the eyeball centre along
    the rest gaze (+z) and at the iris radius around it give the triangles and barycentric weights.
    """
    face_idx, bary, ids = [], [], []
    for joint, mp_ids in IRIS_IDS.items():
        eyeball = model.lbs_weights[:, joint] > 0.99
        if eyeball.sum() < 10:
            raise FlameModelError(f"{model.path}: no eyeball vertices skinned to eye joint {joint}; cannot place iris landmarks")
        tri_mask = eyeball[model.faces].all(axis=1)
        tri_ids = np.flatnonzero(tri_mask)
        centre = model.v_template[eyeball].mean(axis=0)
        radius = np.linalg.norm(model.v_template[eyeball] - centre, axis=1).mean()
        a = np.arcsin(min(IRIS_RADIUS_M / radius, 0.9))
        s, c = np.sin(a), np.cos(a)
        directions = np.array([[0, 0, 1], [s, 0, c], [0, s, c], [-s, 0, c], [0, -s, c]], dtype=np.float64)
        hit, b = _ray_hits(centre, directions, model.v_template[model.faces[tri_ids]])
        face_idx.append(tri_ids[hit])
        bary.append(b)
        ids.extend(mp_ids)
    return LandmarkEmbedding(np.concatenate(face_idx), np.concatenate(bary), np.array(ids))


def load_mediapipe_embedding(model: FlameModelData, path: str | os.PathLike | None = None,
                             with_iris: bool = True) -> LandmarkEmbedding:
    """MediaPipe's 105 embedded face-mesh points (+ the 10 iris points), checked against ``model``."""
    path = find_asset_beside_model(model, MEDIAPIPE_EMBEDDING_FILE, path, EMBEDDING_FILES[MEDIAPIPE_EMBEDDING_FILE])
    try:
        data = np.load(path, allow_pickle=False)
        face_idx = np.asarray(data["lmk_face_idx"]).astype(np.int64)
        bary = np.asarray(data["lmk_b_coords"], dtype=np.float64)
        ids = np.asarray(data["landmark_indices"]).astype(np.int64)
    except (OSError, ValueError, KeyError) as exc:
        raise _embedding_error(path, f"not a MediaPipe landmark embedding ({exc})") from exc
    _check_faces(path, face_idx, bary, model)
    if ids.shape != face_idx.shape or ids.min() < 0 or ids.max() >= N_MEDIAPIPE_POINTS:
        raise _embedding_error(path, "'landmark_indices' must give one MediaPipe id (0-477) per point")
    embedding = LandmarkEmbedding(face_idx, bary, ids)
    return embedding.joined(iris_embedding(model)) if with_iris else embedding


@dataclass(frozen=True)
class Fan68Embedding:
    """DECA's 68-point embedding: 51 static points (ids 17-67) and a 17-point contour chosen by yaw.

    ``contour_face_idx (79, 17)`` and ``contour_bary (79, 17, 3)`` are indexed by yaw in whole
    degrees as DECA does: rows 0..39 for rotations of 0..-39 deg about +y (face turned toward the
    subject's right) and rows 40..78 for +1..+39 deg. The near side's contour moves onto the cheek.
    """

    static: LandmarkEmbedding
    contour_face_idx: np.ndarray
    contour_bary: np.ndarray

    def contour_row(self, yaw_rad: np.ndarray) -> np.ndarray:
        """Row of the contour table for head yaw ``yaw_rad`` (rotation about +y, radians)."""
        deg = np.clip(np.round(-np.degrees(yaw_rad)), -39, 39).astype(np.int64)
        return np.where(deg >= 0, deg, 39 - deg)

    def jaw_line(self, points: range = JAW_LINE_POINTS) -> LandmarkEmbedding:
        """The frontal (yaw 0) contour's ``points``: FLAME's chin and lower jaw line, whose outline
        changes little with small head turns (source ids are the 68-point ids)."""
        ids = np.asarray(points)
        return LandmarkEmbedding(self.contour_face_idx[0, ids], self.contour_bary[0, ids], ids)

    def for_yaw(self, yaw_rad: float) -> LandmarkEmbedding:
        """All 68 points (contour first, as in the 68-point convention) for one head yaw."""
        row = int(self.contour_row(np.asarray(yaw_rad)))
        return LandmarkEmbedding(
            np.concatenate([self.contour_face_idx[row], self.static.face_idx]),
            np.concatenate([self.contour_bary[row], self.static.bary]),
            np.arange(68),
        )


def load_mediapipe_dlib_embedding(model: FlameModelData, dlib_ids=DLIB_FITTED) -> LandmarkEmbedding:
    """MediaPipe's embedded points, then ``dlib_ids`` of DECA's 68-point embedding (static points)
    under their fused ids (``DLIB_OFFSET`` + 68-point id; :data:`recon3d.landmarks.schemes.MEDIAPIPE_DLIB`)."""
    try:
        fan = load_fan68_embedding(model)
    except FlameModelError as exc:
        raise FlameModelError(f"{exc} It places dlib's points on FLAME (landmarks.dlib); set landmarks.dlib: off "
                              "to build with MediaPipe alone.") from exc
    return load_mediapipe_embedding(model).joined(fan.static.subset(dlib_ids, DLIB_OFFSET))


def load_fan68_embedding(model: FlameModelData, path: str | os.PathLike | None = None) -> Fan68Embedding:
    """DECA's ``landmark_embedding.npy`` (pickled dict holding torch tensors), loaded safely."""
    path = find_asset_beside_model(model, FAN_EMBEDDING_FILE, path, EMBEDDING_FILES[FAN_EMBEDDING_FILE])
    try:
        raw = load_object_npy(path)
        raw = raw.item() if isinstance(raw, np.ndarray) and raw.dtype == object else raw
        raw = {k: np.asarray(to_numpy(v)) for k, v in dict(raw).items()}
        static_idx = raw["static_lmk_faces_idx"].astype(np.int64).reshape(-1)
        static_bary = raw["static_lmk_bary_coords"].astype(np.float64).reshape(-1, 3)
        dyn_idx = raw["dynamic_lmk_faces_idx"].astype(np.int64)
        dyn_bary = raw["dynamic_lmk_bary_coords"].astype(np.float64)
    except UnsafePickleError as exc:
        raise FlameModelError(f"{path}: refused to load: {exc}") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
        raise _embedding_error(path, f"not DECA's landmark embedding ({exc})") from exc
    if static_idx.shape != (51,) or dyn_idx.shape != (79, 17) or dyn_bary.shape != (79, 17, 3):
        raise _embedding_error(path, "expected 51 static points and a (79, 17) dynamic contour table")
    _check_faces(path, static_idx, static_bary, model)
    _check_faces(path, dyn_idx.reshape(-1), dyn_bary.reshape(-1, 3), model)
    return Fan68Embedding(LandmarkEmbedding(static_idx, static_bary, np.arange(17, 68)), dyn_idx, dyn_bary)
