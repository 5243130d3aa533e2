"""How far a second landmark source is trusted, per frame and point (pure functions and one small
class, like ``flame/lbs.py``).

MediaPipe's points are the primary source. A second source (dlib's 68 points, ids from
:data:`~recon3d.landmarks.schemes.DLIB_OFFSET` on) enters a frame's fit with a weight in [0, 1],
the product of:

- **the head pose of the fit** (:func:`pose_gate`): 1 while the face is turned from the camera by
  at most ``full`` degrees of yaw (and pitch), 0 from ``zero`` on, a cosine ramp between, so the fit
  does not jump when a frame crosses the line. The view angles are the head's rotation relative
  to the ray from the camera to the head (:func:`view_angles`), not to the optical axis;
- **agreement** (:func:`agreement_weights`): each point is predicted from MediaPipe's points around
  it on the mesh (:class:`SourceAgreement`); a point, and a whole frame (its median point), farther
  from that prediction than the sources' ordinary disagreement ``free_mm`` is down-weighted
  smoothly (a Cauchy weight of the excess: 1/2 at ``scale_mm`` beyond it, 1/5 at twice that).

The same rule serves any later source whose points follow MediaPipe's in the scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon3d.flame.embeddings import LandmarkEmbedding
from recon3d.flame.model_file import FlameModelData
from recon3d.landmarks.schemes import DLIB_OFFSET

#: MediaPipe points that predict one second-source point (the embedded MediaPipe points that stay
#: nearest it through the face's motion), and the ridge that keeps their affine weights even where
#: they lie on a line; the expression components that span that motion.
NEIGHBOURS = 6
MOTION_COMPONENTS = 20
RIDGE = 1e-5
IRIS_IDS = range(468, 478)
#: Frames a clip needs where both sources are trusted by pose before the second source's constant
#: offsets from MediaPipe's are measured on it (:meth:`SourceAgreement.disagreement_mm`).
MIN_REFERENCE_FRAMES = 10


def cosine_ramp(x: np.ndarray, full: float, zero: float) -> np.ndarray:
    """1 for ``x <= full``, 0 for ``x >= zero``, a half cosine between (continuous, flat at both ends)."""
    t = np.clip((np.asarray(x, float) - full) / max(zero - full, 1e-9), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def view_angles(rotvec: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's |yaw| and |pitch| (degrees) as the camera sees it: rotations ``(T, 3)`` axis-angle
    and head translations ``(T, 3)`` (camera looking down -z, the face toward +z at rest), taken
    relative to the ray from the head to the camera, so a frontal face off the image's centre reads 0."""
    from scipy.spatial.transform import Rotation

    head = Rotation.from_rotvec(rotvec).as_matrix()
    to_camera = -translation / np.linalg.norm(translation, axis=1, keepdims=True).clip(1e-12)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, to_camera)
    angle = np.arctan2(np.linalg.norm(axis, axis=1), to_camera @ z)
    axis = axis / np.linalg.norm(axis, axis=1, keepdims=True).clip(1e-12)
    ray = Rotation.from_rotvec(axis * angle[:, None]).as_matrix()  # +z -> the ray to the camera
    rel = np.einsum("tba,tbc->tac", ray, head)
    yaw = np.degrees(np.arctan2(rel[:, 0, 2], rel[:, 2, 2]))
    pitch = np.degrees(np.arctan2(-rel[:, 1, 2], rel[:, 2, 2]))
    return np.abs(yaw), np.abs(pitch)


def pose_gate(yaw_deg: np.ndarray, pitch_deg: np.ndarray, yaw_range: tuple[float, float],
              pitch_range: tuple[float, float]) -> np.ndarray:
    """Per-frame weight ``(T,)`` of a second source from the head's view angles."""
    return cosine_ramp(yaw_deg, *yaw_range) * cosine_ramp(pitch_deg, *pitch_range)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals ``(..., V, 3)`` of a mesh (FLAME's faces wind outward)."""
    tri = vertices[..., faces, :]
    face_n = np.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    out = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(out, (..., faces[:, corner], slice(None)), face_n)
    return out / np.linalg.norm(out, axis=-1, keepdims=True).clip(1e-12)


def facing_camera(normals: np.ndarray, points: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Cosine ``(T, N)`` between each point's surface normal and the ray to the camera: canonical
    ``normals``/``points (N, 3)`` under head ``rotation (T, 3, 3)`` and ``translation (T, 3)``
    (camera at the origin). 1: facing the camera; 0: seen edge-on; below 0: turned away."""
    n = np.einsum("tab,nb->tna", rotation, normals)
    x = np.einsum("tab,nb->tna", rotation, points) + translation[:, None]
    return -(n * x).sum(-1) / np.linalg.norm(x, axis=-1).clip(1e-12)


def visibility_weights(cosine: np.ndarray, full: float, floor: float) -> np.ndarray:
    """A point's weight from how squarely it faces the camera: 1 from ``cosine >= full`` on, down
    to ``floor`` at edge-on and beyond (a cosine ramp between): points on the far side of a turned
    face are the detectors' guesses."""
    return floor + (1.0 - floor) * cosine_ramp(-np.asarray(cosine), -full, 0.0)


def cauchy(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + z^2)``; NaN (a point not seen) gives 0."""
    return np.nan_to_num(1.0 / (1.0 + np.asarray(z, float) ** 2), nan=0.0)


def agreement_weights(disagreement_mm: np.ndarray, scale_mm: float, free_mm: float = 0.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-point ``(T, S)`` and per-frame ``(T,)`` weights from each point's distance to its
    prediction (``(T, S)`` mm at the face, NaN where unseen): 1 up to ``free_mm`` (the two sources'
    ordinary disagreement), a Cauchy weight of the excess beyond it (smooth at ``free_mm``); per
    point, and per frame from its median point (a frame whose points are mostly off is dropped whole)."""
    def weight(d: np.ndarray) -> np.ndarray:
        return cauchy(np.maximum(d - free_mm, 0.0) / scale_mm)

    with np.errstate(all="ignore"):
        median = np.nanmedian(np.where(np.isfinite(disagreement_mm), disagreement_mm, np.nan), axis=1) \
            if disagreement_mm.shape[1] else np.zeros(len(disagreement_mm))
    return weight(disagreement_mm), weight(median)


def motion_poses(model: FlameModelData) -> np.ndarray:
    """Mesh vertices ``(P, V, 3)`` over the face's range of motion: the template, the first
    :data:`MOTION_COMPONENTS` expression components at +-2 standard deviations and the jaw opening by
    steps, the widest open last."""
    import torch

    from recon3d.flame.layer import FlameLayer

    layer = FlameLayer(model, dtype=torch.float64)
    n_expr = min(MOTION_COMPONENTS, layer.n_expr)
    expr = np.zeros((1 + 2 * n_expr + 3, layer.n_expr))
    jaw = np.zeros((len(expr), 3))
    for i in range(n_expr):
        expr[1 + 2 * i, i], expr[2 + 2 * i, i] = 2.0, -2.0
    jaw[-3:, 0] = [0.1, 0.2, 0.3]
    with torch.no_grad():
        return layer.canonical(torch.zeros(len(expr), layer.n_shape, dtype=torch.float64), torch.as_tensor(expr),
                               torch.as_tensor(jaw), torch.zeros(len(expr), 6, dtype=torch.float64)).numpy()


@dataclass(frozen=True)
class SourceAgreement:
    """Predicts each second-source point from MediaPipe's embedded points near it on the mesh.

    ``second_ids (S,)``: the second source's detector ids; ``neighbour_ids (S, k)``: MediaPipe
    ids; ``weights (S, k)``: affine weights (summing to 1) that best rebuild the point's template
    position from its neighbours'. In an image the same weights of MediaPipe's detected points give
    where MediaPipe's points put the second source's point (exact for an affine camera and a
    mesh that moves affinely around it; the rest is read as disagreement).
    """

    second_ids: np.ndarray
    neighbour_ids: np.ndarray
    weights: np.ndarray
    residual: np.ndarray  # (S, 3) metres, head frame: the point minus its neighbours' combination, on the template

    @classmethod
    def for_model(cls, model: FlameModelData, embedding: LandmarkEmbedding, k: int = NEIGHBOURS) -> "SourceAgreement":
        """From ``embedding`` (MediaPipe's points and the second source's, ids >= DLIB_OFFSET). The
        neighbours are the nearest over the face's range of motion (:func:`motion_poses`: so an
        upper-lip point is predicted from the upper lip, a brow point from the brow, not the eye
        below it), and the weights rebuild the point over that range, not only on the template."""
        ids = embedding.source_ids
        poses = embedding.points(motion_poses(model), model.faces)  # (P, N, 3)
        primary = np.flatnonzero((ids < DLIB_OFFSET) & ~np.isin(ids, IRIS_IDS))
        second = np.flatnonzero(ids >= DLIB_OFFSET)
        neighbours = np.zeros((len(second), k), np.int64)
        weights = np.zeros((len(second), k))
        residual = np.zeros((len(second), 3))
        for row, j in enumerate(second):
            apart = np.linalg.norm(poses[:, primary] - poses[:, j:j + 1], axis=2).sum(0)
            near = primary[np.argsort(apart)[:k]]
            q = poses[:, near].transpose(1, 0, 2).reshape(k, -1)  # (k, 3P)
            target = poses[:, j].reshape(-1)
            # min |q^T w - p|^2 + ridge |w|^2 subject to sum(w) = 1 (KKT system).
            a = np.zeros((k + 1, k + 1))
            a[:k, :k] = q @ q.T + RIDGE * len(poses) * np.eye(k)
            a[:k, k] = a[k, :k] = 1.0
            w = np.linalg.solve(a, np.concatenate([q @ target, [1.0]]))[:k]
            neighbours[row], weights[row] = ids[near], w
            residual[row] = poses[0, j] - w @ poses[0, near]
        return cls(ids[second], neighbours, weights, residual)

    def __len__(self) -> int:
        return len(self.second_ids)

    def disagreement_mm(self, points: np.ndarray, mm_per_px: np.ndarray, rotation: np.ndarray | None = None,
                        reference: np.ndarray | None = None) -> np.ndarray:
        """``(T, S)`` distance (mm at the face) of each second-source point from MediaPipe's
        prediction of it; ``points (T, P, 2)`` by detector id (NaN where not detected),
        ``mm_per_px (T,)``; ``rotation (T, 3, 3)``: the head's, which turns the part of each point
        that its neighbours do not span (:attr:`residual`; without it, the head is taken as
        frontal). With ``reference (T,)`` frames (where the pose lets both sources be
        trusted; at least :data:`MIN_REFERENCE_FRAMES`), each point's median offset over them is
        taken off first: the two detectors place some points differently by convention, and that
        constant part is no disagreement."""
        predicted = np.einsum("sk,tska->tsa", self.weights, points[:, self.neighbour_ids])
        offset = (points[:, self.second_ids] - predicted) * np.asarray(mm_per_px)[:, None, None]
        turned = self.residual[None] if rotation is None else np.einsum("tab,sb->tsa", rotation, self.residual)
        offset = offset - 1000.0 * turned[..., :2] * np.array([1.0, -1.0])  # image y points down
        if reference is not None and np.isfinite(offset[reference]).all(-1).any(-1).sum() >= MIN_REFERENCE_FRAMES:
            with np.errstate(all="ignore"):
                offset = offset - np.nan_to_num(np.nanmedian(offset[reference], axis=0))
        return np.linalg.norm(offset, axis=-1)
