"""Projected FLAME landmarks and their exact Jacobians, batched over frames.

Per-frame unknowns are laid out as ``[expression (E) | jaw (3) | left eye (2) | right eye (2) |
head rotation (3) | head translation (3)]`` (see :class:`ParamLayout`). Rotations are axis-angle;
eyes rotate about x and y only. The head rotation is FLAME's global pose with the neck at rest, and
the model point ``y`` (canonical head space) maps to the camera as ``R y + tau``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recon3d.fitting.camera import PinholeCamera
from recon3d.fitting.so3 import projected_rotate_jacobian, right_jacobian, rotate_jacobian, rotmat_derivatives
from recon3d.flame.landmark_basis import LandmarkBasis
from recon3d.flame.lbs import axis_angle_to_matrix


@dataclass(frozen=True)
class ParamLayout:
    """Where each unknown sits in a frame's parameter vector."""

    n_expr: int

    @property
    def expr(self) -> slice:
        return slice(0, self.n_expr)

    @property
    def jaw(self) -> slice:
        return slice(self.n_expr, self.n_expr + 3)

    @property
    def eyes(self) -> slice:
        return slice(self.n_expr + 3, self.n_expr + 7)

    @property
    def rot(self) -> slice:
        return slice(self.n_expr + 7, self.n_expr + 10)

    @property
    def trans(self) -> slice:
        return slice(self.n_expr + 10, self.n_expr + 13)

    @property
    def size(self) -> int:
        return self.n_expr + 13

    def eye_rotvecs(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left and right eye axis-angle ``(T, 3)`` (z component zero)."""
        eyes = params[:, self.eyes]
        zero = torch.zeros_like(eyes[:, :1])
        return torch.cat([eyes[:, 0:2], zero], 1), torch.cat([eyes[:, 2:4], zero], 1)


@dataclass
class Evaluation:
    pixels: torch.Tensor  # (T, N, 2)
    jac: torch.Tensor | None = None  # (T, N, 2, p) w.r.t. the frame parameters
    jac_shape: torch.Tensor | None = None  # (T, N, 2, K) w.r.t. the shared identity shape


class LandmarkModel:
    """FLAME landmarks through a pinhole camera, with analytic derivatives."""

    def __init__(self, basis: LandmarkBasis, camera: PinholeCamera, layout: ParamLayout):
        self.basis = basis
        self.camera = camera
        self.layout = layout
        dtype, device = basis.template.dtype, basis.template.device
        self._eye3 = torch.eye(3, dtype=dtype, device=device)

    def canonical_points(self, shape: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Landmarks in canonical head space ``(T, N, 3)`` (no head rotation/translation)."""
        return self._canonical(shape, params)[0]

    def _joint_rotations(self, params: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Joint -> (rotation matrices, axis-angle) for the jaw and the eyes."""
        lay = self.layout
        eye_l, eye_r = lay.eye_rotvecs(params)
        rotvecs = {2: params[:, lay.jaw], 3: eye_l, 4: eye_r}
        return {j: (axis_angle_to_matrix(v), v) for j, v in rotvecs.items()}

    def _canonical(self, shape: torch.Tensor, params: torch.Tensor):
        b, lay = self.basis, self.layout
        psi = params[:, lay.expr]
        rots = self._joint_rotations(params)
        n_frames = params.shape[0]
        feat = params.new_zeros(n_frames, 0)
        if b.pose_joints:
            feat = torch.cat([(rots[j][0] - self._eye3).reshape(n_frames, 9) for j in b.pose_joints], 1)
        joints = b.j_template + torch.einsum("jck,k->jc", b.j_shapedirs, shape) + torch.einsum("jce,te->tjc", b.j_exprdirs, psi)
        y = (b.template + torch.einsum("nck,k->nc", b.shapedirs, shape)
             + torch.einsum("nce,te->tnc", b.exprdirs, psi) + torch.einsum("ncp,tp->tnc", b.posedirs, feat))
        slot_terms = []
        for s in b.slots:
            xs = (s.template + torch.einsum("nck,k->nc", s.shapedirs, shape)
                  + torch.einsum("nce,te->tnc", s.exprdirs, psi) + torch.einsum("ncp,tp->tnc", s.posedirs, feat))
            u = xs - s.weight[:, None] * joints[:, s.joint][:, None]
            delta = torch.einsum("tab,tnb->tna", rots[s.joint][0] - self._eye3, u)
            y = y.index_add(1, s.idx, delta)
            slot_terms.append(u)
        return y, rots, slot_terms

    def rigid(self, y: torch.Tensor, rotvec: torch.Tensor, trans: torch.Tensor, jac: bool = True):
        """Pixels of canonical points ``y (T, N, 3)`` under head pose; with the pose Jacobian ``(T, N, 2, 6)``.

        Also returns the camera-frame points and d(pixels)/d(point) for reuse.
        """
        head = axis_angle_to_matrix(rotvec)
        rotated = torch.einsum("tab,tnb->tna", head, y)
        cam_points = rotated + trans[:, None]
        pixels = self.camera.project(cam_points)
        if not jac:
            return pixels, None, head, None
        proj = self.camera.project_jacobian(cam_points)
        rot_jac = projected_rotate_jacobian(proj, rotated, head, right_jacobian(rotvec))
        return pixels, torch.cat([rot_jac, proj], dim=-1), head, proj

    def evaluate(self, shape: torch.Tensor, params: torch.Tensor, jac: bool = True, jac_shape: bool = False) -> Evaluation:
        """Pixels of every landmark in every frame, and optionally the Jacobians."""
        lay, b = self.layout, self.basis
        y, rots, slot_terms = self._canonical(shape, params)
        pixels, pose_jac, head, proj = self.rigid(y, params[:, lay.rot], params[:, lay.trans], jac or jac_shape)
        out = Evaluation(pixels)
        if not jac and not jac_shape:
            return out
        a = (proj.reshape(proj.shape[0], -1, 3) @ head).reshape(proj.shape)  # d pixels / d y
        a_slot = {s.joint: a[:, s.idx] @ (rots[s.joint][0] - self._eye3)[:, None] for s in b.slots}
        if jac:
            n_frames, n_points = params.shape[0], b.n_points
            full = params.new_empty(n_frames, n_points, 2, lay.size)
            # Expression: plain basis, plus what the rotated joints do to it. The slots' terms are
            # added along the landmark axis of contiguous tensors (index_add_; a slot's landmarks
            # are distinct), which is several times faster than adding into strided slices.
            expr_jac = torch.einsum("tnac,nce->tnae", a, b.exprdirs)
            joint_y = {j: params.new_zeros(n_frames, n_points, 3, 3) for j in (2, 3, 4)}
            if b.pose_joints:
                # d y / d (pose-corrective input), for the jaw/eye rotations.
                dfeat = b.posedirs.expand(n_frames, -1, -1, -1).clone()
            for s, u in zip(b.slots, slot_terms):
                r, v = rots[s.joint]
                expr_jac.index_add_(1, s.idx, torch.einsum("tnac,nce->tnae", a_slot[s.joint], s.exprdirs_rel))
                if b.pose_joints:
                    dfeat.index_add_(1, s.idx, torch.einsum("tcd,ndp->tncp", r - self._eye3, s.posedirs))
                joint_y[s.joint].index_add_(1, s.idx, rotate_jacobian(r, right_jacobian(v), u))
            full[..., lay.expr] = expr_jac
            for k, j in enumerate(b.pose_joints):
                r, v = rots[j]
                dvec = rotmat_derivatives(r, right_jacobian(v)).reshape(n_frames, 3, 9)  # (T, i, 9)
                joint_y[j] += torch.einsum("tncq,tiq->tnci", dfeat[..., 9 * k:9 * (k + 1)], dvec)
            full[..., lay.jaw] = a @ joint_y[2]
            eyes = lay.eyes
            full[..., eyes.start:eyes.start + 2] = (a @ joint_y[3])[..., :2]
            full[..., eyes.start + 2:eyes.stop] = (a @ joint_y[4])[..., :2]
            full[..., lay.rot.start:lay.trans.stop] = pose_jac
            out.jac = full
        if jac_shape:
            js = torch.einsum("tnac,nck->tnak", a, b.shapedirs)
            for s in b.slots:
                js.index_add_(1, s.idx, torch.einsum("tnac,nck->tnak", a_slot[s.joint], s.shapedirs_rel))
            out.jac_shape = js
        return out
