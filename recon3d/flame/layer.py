"""A thin ``nn.Module`` around the FLAME math in :mod:`recon3d.flame.lbs`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recon3d.flame.lbs import lbs
from recon3d.flame.model_file import FlameModelData

#: Frames posed per LBS pass: the per-vertex blended transforms of 16 frames stay in the CPU's
#: cache (a 105-frame clip's mesh: 52 ms in passes of 16, 57-88 in one; benchmarks.md, 2026-12-03).
LBS_CHUNK = 16


@dataclass
class FlameOutput:
    vertices: torch.Tensor  # (B, V, 3) metres
    joints: torch.Tensor  # (B, 5, 3) posed joint locations


class FlameLayer(nn.Module):
    """Batched, differentiable FLAME.

    Poses are axis-angle: ``global_pose, neck_pose, jaw_pose`` (B, 3) and ``eye_pose`` (B, 6) as
    left eye then right eye. Missing inputs are zero. A 1-D ``shape`` (K,) is shared by the whole
    batch and applied to the template once. ``vertex_ids`` poses only those vertices.
    """

    def __init__(self, model: FlameModelData, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = model
        self.parents = model.parents.tolist()

        def buf(name: str, array: np.ndarray) -> None:
            self.register_buffer(name, torch.as_tensor(array, dtype=dtype), persistent=False)

        buf("v_template", model.v_template)
        buf("shapedirs", model.shapedirs)
        buf("exprdirs", model.exprdirs)
        buf("posedirs", model.posedirs)
        buf("lbs_weights", model.lbs_weights)
        buf("j_template", model.j_regressor @ model.v_template)
        buf("j_shapedirs", np.einsum("jv,vck->jck", model.j_regressor, model.shapedirs))
        buf("j_exprdirs", np.einsum("jv,vck->jck", model.j_regressor, model.exprdirs))
        self.register_buffer("faces", torch.as_tensor(model.faces), persistent=False)

    @property
    def n_shape(self) -> int:
        return self.shapedirs.shape[2]

    @property
    def n_expr(self) -> int:
        return self.exprdirs.shape[2]

    def forward(
        self,
        shape: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        global_pose: torch.Tensor | None = None,
        neck_pose: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
        eye_pose: torch.Tensor | None = None,
        translation: torch.Tensor | None = None,
        vertex_ids: torch.Tensor | None = None,
    ) -> FlameOutput:
        """Posed vertices and joints (root/global, neck, jaw, left eye, right eye) for a batch.

        Poses are axis-angle ``(B, 3)`` (``eye_pose`` ``(B, 6)``: left then right); a 1-D ``shape``
        is one identity for the whole batch; ``vertex_ids`` evaluates only those vertices."""
        per_frame = (expression, global_pose, neck_pose, jaw_pose, eye_pose, translation)
        given = [t for t in per_frame if t is not None] + ([shape] if shape is not None and shape.dim() == 2 else [])
        batch = given[0].shape[0] if given else 1

        def zeros(n: int, value: torch.Tensor | None) -> torch.Tensor:
            if value is not None:
                return value.to(self.v_template.dtype)
            return self.v_template.new_zeros(batch, n)

        v_template, shapedirs, exprdirs, posedirs, weights = (
            self.v_template, self.shapedirs, self.exprdirs, self.posedirs, self.lbs_weights)
        j_template, j_shapedirs = self.j_template, self.j_shapedirs
        if vertex_ids is not None:
            v_template, shapedirs, exprdirs, posedirs, weights = (
                t[vertex_ids] for t in (v_template, shapedirs, exprdirs, posedirs, weights))
        if shape is not None and shape.dim() == 1:
            shape = shape.to(v_template.dtype)
            v_template = v_template + shapedirs @ shape
            j_template = j_template + j_shapedirs @ shape
            shapedirs, j_shapedirs, shape = shapedirs[..., :0], j_shapedirs[..., :0], v_template.new_zeros(batch, 0)
        shape = zeros(self.n_shape, shape)
        expression = zeros(self.n_expr, expression)
        full_pose = torch.cat([zeros(3, global_pose), zeros(3, neck_pose), zeros(3, jaw_pose),
                               zeros(6, eye_pose)], dim=1).view(batch, 5, 3)
        parts = [lbs(shape[a:a + LBS_CHUNK], expression[a:a + LBS_CHUNK], full_pose[a:a + LBS_CHUNK], v_template,
                     shapedirs, exprdirs, posedirs, j_template, j_shapedirs, self.j_exprdirs, self.parents, weights)
                 for a in range(0, batch, LBS_CHUNK)]
        vertices, joints = (torch.cat(x) for x in zip(*parts))
        if translation is not None:
            vertices = vertices + translation.to(vertices.dtype)[:, None]
            joints = joints + translation.to(joints.dtype)[:, None]
        return FlameOutput(vertices=vertices, joints=joints)

    def canonical(self, shape: torch.Tensor, expression: torch.Tensor, jaw_pose: torch.Tensor,
                  eye_pose: torch.Tensor | None = None) -> torch.Tensor:
        """Vertices in canonical head space: face motion only, no head rotation or translation."""
        return self.forward(shape=shape, expression=expression, jaw_pose=jaw_pose, eye_pose=eye_pose).vertices

    def template(self, shape: torch.Tensor) -> torch.Tensor:
        """Identity template ``(B, V, 3)`` for shapes ``(B, K)``: zero expression and pose."""
        return self.forward(shape=shape).vertices
