"""The mouth-flow term of the clip fit, as pure functions: surface samples and their residuals.

Surface samples are FLAME vertices on the skin around the mouth (lips, mouth corners, chin,
cheeks beside the mouth; the mouth's interior left out). Between consecutive frames ``t`` and
``t + 1`` each sample's projected motion is compared with the optical flow measured at its
projection in frame ``t`` (:class:`recon3d.landmarks.mouth_flow.MouthFlow`)::

    r_t = (pi(X_{t+1}) - pi(X_t) - flow_t(pi(X_t))) * mm_per_px

The flow at the sample is held fixed while a step is computed (its change with the sample's
position is not differentiated), so ``dr_t / d theta_t = -J_t`` and ``dr_t / d theta_{t+1} =
J_{t+1}``. Consecutive frames are coupled, which the clip's banded solve already allows
(:func:`recon3d.fitting.normal_equations.solve_smoothed_blocks` with ``coupling``).
"""

from __future__ import annotations

import numpy as np
import torch

from recon3d.fitting.objective import huber_rho, huber_weights
from recon3d.flame.embeddings import LandmarkEmbedding

#: The sampled region around the mouth in half mouth widths (corner to corner, on the template):
#: sideways from the mouth's centre, down to the chin and up to below the nose.
REGION_SIDEWAYS = 1.6
REGION_DOWN = 2.2
REGION_UP = 1.1
#: Only skin whose template normal points this far toward the front (the lips' inner surfaces and
#: the mouth's interior point up, down or back).
MIN_FRONT_COS = 0.35
#: Samples kept (spread evenly over the region by farthest-point sampling).
N_SAMPLES = 160


def vertex_embedding(vertex_ids: np.ndarray, faces: np.ndarray) -> LandmarkEmbedding:
    """An embedding whose points are the given mesh vertices (a triangle containing each, with
    all the weight on that corner); ``source_ids`` are the vertex ids."""
    vertex_ids = np.asarray(vertex_ids, dtype=np.int64)
    face_of = np.full(faces.max() + 1, -1, np.int64)
    corner_of = np.zeros(faces.max() + 1, np.int64)
    for corner in range(3):
        unset = face_of[faces[:, corner]] < 0
        face_of[faces[unset, corner]] = np.flatnonzero(unset)
        corner_of[faces[unset, corner]] = corner
    bary = np.zeros((len(vertex_ids), 3))
    bary[np.arange(len(vertex_ids)), corner_of[vertex_ids]] = 1.0
    return LandmarkEmbedding(face_of[vertex_ids], bary, vertex_ids)


def farthest_points(points: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` of ``points (P, 3)`` spread evenly: greedy farthest-point sampling from the
    point nearest their centroid (deterministic)."""
    if len(points) <= n:
        return np.arange(len(points))
    chosen = [int(np.argmin(np.linalg.norm(points - points.mean(0), axis=1)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(n - 1):
        k = int(np.argmax(dist))
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(points - points[k], axis=1))
    return np.sort(np.array(chosen))


def mouth_samples(template: np.ndarray, normals: np.ndarray, lips: np.ndarray, n: int = N_SAMPLES) -> np.ndarray:
    """Vertex ids of the surface samples on ``template (V, 3)`` (unit ``normals (V, 3)``), placed
    by the template's lip landmarks ``lips (L, 3)``."""
    centre = lips.mean(0)
    half = 0.5 * np.ptp(lips[:, 0])
    rel = (template - centre) / half
    front = template[:, 2] >= lips[:, 2].min() - half  # the face's front, not the head's far side
    region = (np.abs(rel[:, 0]) <= REGION_SIDEWAYS) & (rel[:, 1] >= -REGION_DOWN) & (rel[:, 1] <= REGION_UP)
    candidates = np.flatnonzero(region & front & (normals[:, 2] >= MIN_FRONT_COS))
    return candidates[farthest_points(template[candidates], n)]


def flow_residuals(pixels: torch.Tensor, flow: torch.Tensor, mm_per_px: torch.Tensor) -> torch.Tensor:
    """``(T - 1, S, 2)`` mm: the samples' projected motion ``pixels (T, S, 2)`` from each frame to
    the next, minus the flow measured there ``flow (T, S, 2)`` (frame ``t``'s row: to ``t + 1``)."""
    return (pixels[1:] - pixels[:-1] - flow[:-1]) * mm_per_px[:-1, None, None]


def flow_weights(r: torch.Tensor, known: torch.Tensor, weight: float, sigma_mm: float, huber_mm: float,
                 vertical: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-residual, per-axis weights ``(T - 1, S, 2)`` for the normal equations and the robust cost
    (a scalar): ``known (T - 1, S)`` (0 to 1: where the flow was measured and the sample is seen in
    both frames) times ``weight / sigma_mm^2``, the image's vertical axis times ``vertical``, with
    the Huber loss of each residual's length."""
    err = r.norm(dim=-1)
    axes = torch.tensor([1.0, vertical], dtype=r.dtype, device=r.device)
    base = (known * weight / sigma_mm ** 2)[..., None] * axes
    rho = huber_rho(err, huber_mm)[..., None] * (r * r) / (r * r).sum(-1, keepdim=True).clamp_min(1e-30)
    return base * huber_weights(err, huber_mm)[..., None], (base * rho).sum()


def flow_system(r: torch.Tensor, jac: torch.Tensor, w: torch.Tensor, mm_per_px: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gauss-Newton blocks of the term: ``diag (T, p, p)`` added to each frame's block,
    ``coupling (T - 1, p, p)`` between frame ``t`` (rows) and ``t + 1`` (columns), and the
    gradient ``(T, p)``; ``jac (T, S, 2, p)`` is d pixels / d frame unknowns, ``w (T - 1, S, 2)``
    the weights of :func:`flow_weights`."""
    n_frames, p = jac.shape[0], jac.shape[-1]
    axes = (w != 0).flatten(0, 1).any(0).nonzero()[:, 0]  # an image axis weighted nowhere costs nothing
    j = (jac[:, :, axes] * mm_per_px[:, None, None, None]).reshape(n_frames, -1, p)
    ja, jb = -j[:-1], j[1:]  # d r_t / d theta_t and / d theta_{t+1}
    w2 = w[:, :, axes].reshape(n_frames - 1, -1)
    rf = r[:, :, axes].reshape(n_frames - 1, -1)
    wa, wb = ja * w2[..., None], jb * w2[..., None]
    diag = torch.zeros(n_frames, p, p, dtype=jac.dtype, device=jac.device)
    diag[:-1] += wa.transpose(1, 2) @ ja
    diag[1:] += wb.transpose(1, 2) @ jb
    coupling = wa.transpose(1, 2) @ jb
    grad = torch.zeros(n_frames, p, dtype=jac.dtype, device=jac.device)
    grad[:-1] += (wa.transpose(1, 2) @ rf[..., None])[..., 0]
    grad[1:] += (wb.transpose(1, 2) @ rf[..., None])[..., 0]
    return diag, coupling, grad

