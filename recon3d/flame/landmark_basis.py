"""FLAME restricted to landmark points: the fast path for fitting.

A landmark is a barycentric combination of three vertices, each skinned by its own weights. With
the neck left at rest (head rotation is carried by the global pose), LBS at a landmark is exactly

    y = x_0 + sum_s (R_s - I) (x_s - w_s J_s)          s in {jaw, left eye, right eye}
    x_s = sum_c b_c w_{c,s} (T + S beta + E psi + P phi)_c    (x_0: the same with w = 1)

so the blendshape bases can be pre-combined per landmark and per joint ("slot"). Each slot keeps only
the landmarks it moves (the jaw moves the lower face, an eye only its iris points). Evaluating the
landmarks then costs O(landmarks), not O(5023 vertices), with exact Jacobians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon3d.flame.embeddings import LandmarkEmbedding
from recon3d.flame.model_file import FlameModelData

#: Joints that rotate relative to the head in fitting (the neck stays at rest): jaw, left eye, right eye.
SLOT_JOINTS = (2, 3, 4)


@dataclass
class SlotBasis:
    """Bases of one rotating joint at the landmarks it moves (``idx`` into the landmark list)."""

    joint: int
    idx: torch.Tensor  # (n,)
    template: torch.Tensor  # (n, 3)
    shapedirs: torch.Tensor  # (n, 3, K)
    exprdirs: torch.Tensor  # (n, 3, E)
    posedirs: torch.Tensor  # (n, 3, P)
    weight: torch.Tensor  # (n,)
    # The same bases relative to the joint, d(x_s - w_s J)/d(coefficients): constant.
    shapedirs_rel: torch.Tensor  # (n, 3, K)
    exprdirs_rel: torch.Tensor  # (n, 3, E)


@dataclass
class LandmarkBasis:
    """FLAME at ``N`` embedded landmarks: plain bases, per-joint slots and joint regressions."""

    template: torch.Tensor  # (N, 3)
    shapedirs: torch.Tensor  # (N, 3, K)
    exprdirs: torch.Tensor  # (N, 3, E)
    posedirs: torch.Tensor  # (N, 3, P)
    slots: list[SlotBasis]
    j_template: torch.Tensor  # (5, 3)
    j_shapedirs: torch.Tensor  # (5, 3, K)
    j_exprdirs: torch.Tensor  # (5, 3, E)
    pose_joints: tuple[int, ...]  # rotating joints whose pose correctives touch the landmarks;
    # ``posedirs`` (here and in slots) hold only their 9 columns each, in this order.

    @property
    def n_points(self) -> int:
        return self.template.shape[0]

    def to(self, device: torch.device | str) -> "LandmarkBasis":
        def move(x):
            return x.to(device) if isinstance(x, torch.Tensor) else x

        slots = [SlotBasis(**{k: move(v) for k, v in vars(s).items()}) for s in self.slots]
        return LandmarkBasis(**{k: move(v) for k, v in vars(self).items() if k != "slots"}, slots=slots)



def landmark_basis(model: FlameModelData, embedding: LandmarkEmbedding, shape_basis: np.ndarray,
                   expr_basis: np.ndarray, dtype: torch.dtype = torch.float64,
                   point_offsets: np.ndarray | None = None) -> LandmarkBasis:
    """Pre-combine FLAME's bases at the embedded landmarks.

    Identity and expression are re-parameterised by ``shape_basis (K, k)`` and ``expr_basis (E, m)``:
    coefficients ``z`` stand for FLAME's ``basis @ z`` (identity matrices keep FLAME's own components).
    ``point_offsets (N, 3)`` displace the embedded points in the rest pose (metres); a displaced
    point is skinned with its landmark's blended weights.
    """
    offsets = np.zeros((len(embedding), 3)) if point_offsets is None else np.asarray(point_offsets, np.float64)
    vids = embedding.vertex_ids(model.faces)  # (N, 3)
    bary = embedding.bary  # (N, 3)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

    shapedirs = model.shapedirs[:, :, :shape_basis.shape[0]] @ shape_basis
    exprdirs = model.exprdirs[:, :, :expr_basis.shape[0]] @ expr_basis
    j_shapedirs = np.einsum("jv,vck->jck", model.j_regressor, shapedirs)
    j_exprdirs = np.einsum("jv,vck->jck", model.j_regressor, exprdirs)
    # Pose correctives: keep the columns of the rotating joints that touch these landmarks.
    lmk_vertices = np.unique(vids)
    pose_joints = tuple(j for j in SLOT_JOINTS
                        if np.abs(model.posedirs[lmk_vertices][:, :, 9 * (j - 1):9 * j]).max() > 0)
    pose_cols = [9 * (j - 1) + q for j in pose_joints for q in range(9)]
    posedirs = model.posedirs[:, :, pose_cols]

    def combine(per_vertex: np.ndarray, coef: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return np.einsum("nc,nc...->n...", coef, per_vertex[ids])

    slots = []
    for joint in SLOT_JOINTS:
        w = model.lbs_weights[:, joint]
        lw = np.einsum("nc,nc->n", bary, w[vids])
        idx = np.flatnonzero(lw > 1e-6)
        if len(idx) == 0:
            continue
        coef, ids = bary[idx] * w[vids[idx]], vids[idx]
        s_dirs, e_dirs = combine(shapedirs, coef, ids), combine(exprdirs, coef, ids)
        slots.append(SlotBasis(
            joint=joint,
            idx=torch.as_tensor(idx),
            template=t(combine(model.v_template, coef, ids) + lw[idx, None] * offsets[idx]),
            shapedirs=t(s_dirs),
            exprdirs=t(e_dirs),
            posedirs=t(combine(posedirs, coef, ids)),
            weight=t(lw[idx]),
            shapedirs_rel=t(s_dirs - lw[idx, None, None] * j_shapedirs[joint][None]),
            exprdirs_rel=t(e_dirs - lw[idx, None, None] * j_exprdirs[joint][None]),
        ))
    return LandmarkBasis(
        template=t(combine(model.v_template, bary, vids) + offsets),
        shapedirs=t(combine(shapedirs, bary, vids)),
        exprdirs=t(combine(exprdirs, bary, vids)),
        posedirs=t(combine(posedirs, bary, vids)),
        slots=slots,
        j_template=t(model.j_regressor @ model.v_template),
        j_shapedirs=t(j_shapedirs),
        j_exprdirs=t(j_exprdirs),
        pose_joints=pose_joints,
    )
