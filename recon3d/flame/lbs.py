"""FLAME's forward pass as pure, batched, differentiable torch functions.

Blendshapes (identity + expression), pose-corrective blendshapes, joint regression and linear blend
skinning over a kinematic tree. Joint regression is linear, so callers pass the regressor already
applied to the template and to the blendshape bases (``j_template``, ``j_shapedirs``, ...): the
joints then never need the full mesh, and a subset of vertices can be posed by slicing the
per-vertex arrays (the fast path used in fitting).
"""

from __future__ import annotations

import torch


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Offsets ``(B, V, 3)`` of the blendshape basis ``dirs (V, 3, K)`` weighted by ``coeffs (B, K)``."""
    return torch.einsum("bk,vck->bvc", coeffs, dirs)


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices ``(..., 3, 3)`` with ``skew(a) @ b = a x b``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula for axis-angle vectors ``(..., 3)``: rotation matrices ``(..., 3, 3)``.

    ``R = I + a K + b K^2`` with ``K = [rotvec]x``, ``a = sin(t) / t``, ``b = (1 - cos(t)) / t^2``;
    below ``t = 1e-4`` their Taylor series (exact to rounding there), so values and gradients stay
    finite at zero rotation.
    """
    angle2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]
    small = angle2 < 1e-8
    angle = torch.where(small, torch.ones_like(angle2), angle2).sqrt()
    a = torch.where(small, 1.0 - angle2 / 6.0, torch.sin(angle) / angle)
    b = torch.where(small, 0.5 - angle2 / 24.0, (1.0 - torch.cos(angle)) / (angle * angle))
    k = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * k + b * (k @ k)


def pose_feature(rotmats: torch.Tensor) -> torch.Tensor:
    """The pose-corrective input ``(B, 9 * (J - 1))``: ``(R_j - I)`` of every non-root joint, row-major."""
    eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
    return (rotmats[:, 1:] - eye).reshape(rotmats.shape[0], -1)


def pose_offsets(rotmats: torch.Tensor, posedirs: torch.Tensor) -> torch.Tensor:
    """Pose-corrective offsets ``(B, V, 3)`` from ``posedirs (V, 3, P)``."""
    return torch.einsum("bp,vcp->bvc", pose_feature(rotmats), posedirs)


def rigid_transforms(rotmats: torch.Tensor, joints: torch.Tensor, parents: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """World transforms of a kinematic tree.

    ``rotmats (B, J, 3, 3)`` are local joint rotations, ``joints (B, J, 3)`` rest joint locations,
    ``parents[j] < j`` with ``parents[0] = -1``. Returns the posed joint locations ``(B, J, 3)`` and
    the transforms ``(B, J, 4, 4)`` that map rest-pose points to posed points for each joint.
    """
    batch, n_joints = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.zeros(batch, n_joints, 4, 4, dtype=joints.dtype, device=joints.device)
    local[..., :3, :3] = rotmats
    local[..., :3, 3] = rel
    local[..., 3, 3] = 1.0
    chain = [local[:, 0]]
    for j in range(1, n_joints):
        chain.append(chain[parents[j]] @ local[:, j])
    world = torch.stack(chain, dim=1)
    posed_joints = world[..., :3, 3].clone()
    # Remove the rest location so each transform acts on rest-pose points directly.
    offset = torch.einsum("bjrc,bjc->bjr", world[..., :3, :3], joints)
    transforms = world.clone()
    transforms[..., :3, 3] = world[..., :3, 3] - offset
    return posed_joints, transforms


def skin(points: torch.Tensor, transforms: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning of ``points (B, V, 3)`` with ``weights (V, J)`` and ``transforms (B, J, 4, 4)``.

    The blended ``3 x 4`` transform of every vertex is one matrix product over the joints, laid out
    ``(B, 3, 4, V)`` so that applying it is a few products along contiguous rows of vertices (a
    batched 3x3 product per vertex is several times slower on the CPU, and a ``(B, V, 3, 4)``
    layout strides through memory). Returns a ``(B, V, 3)`` view of a ``(B, 3, V)`` tensor."""
    batch, n_vertices = points.shape[:2]
    n_joints = weights.shape[1]
    top = transforms[:, :, :3, :].permute(0, 2, 3, 1).reshape(-1, n_joints)  # (B * 12, J)
    blended = (top @ weights.T).view(batch, 3, 4, n_vertices)
    p = points.transpose(1, 2)  # (B, 3, V)
    out = (blended[:, :, 3] + blended[:, :, 0] * p[:, 0:1] + blended[:, :, 1] * p[:, 1:2]
           + blended[:, :, 2] * p[:, 2:3])
    return out.transpose(1, 2)


def lbs(
    shape: torch.Tensor,
    expression: torch.Tensor,
    full_pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    exprdirs: torch.Tensor,
    posedirs: torch.Tensor,
    j_template: torch.Tensor,
    j_shapedirs: torch.Tensor,
    j_exprdirs: torch.Tensor,
    parents: list[int],
    weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FLAME forward pass: vertices ``(B, V, 3)`` and posed joints ``(B, J, 3)``.

    ``full_pose (B, J, 3)`` is axis-angle per joint (FLAME: global, neck, jaw, left eye, right eye).
    Per-vertex inputs (``v_template, shapedirs, exprdirs, posedirs, weights``) may be any subset of
    the mesh's vertices; joints come from the pre-regressed ``j_*`` arrays.
    """
    v_shaped = v_template + blend_shapes(shape, shapedirs) + blend_shapes(expression, exprdirs)
    rest_joints = j_template + blend_shapes(shape, j_shapedirs) + blend_shapes(expression, j_exprdirs)
    rotmats = axis_angle_to_matrix(full_pose)
    v_posed = v_shaped + pose_offsets(rotmats, posedirs)
    posed_joints, transforms = rigid_transforms(rotmats, rest_joints, parents)
    return skin(v_posed, transforms, weights), posed_joints
