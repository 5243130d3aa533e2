"""Rotation math for Gauss-Newton: axis-angle maps and their exact derivatives (pure torch)."""

from __future__ import annotations

import torch

from recon3d.flame.lbs import skew


def right_jacobian(rotvec: torch.Tensor) -> torch.Tensor:
    """Right Jacobian of SO(3) ``(..., 3, 3)``: ``R(theta + d) = R(theta) exp(Jr(theta) d)`` to first order."""
    angle2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]
    angle = angle2.sqrt()
    small = angle2 < 1e-8
    safe = torch.where(small, torch.ones_like(angle), angle)
    a = torch.where(small, 0.5 - angle2 / 24.0, (1 - torch.cos(safe)) / safe**2)
    b = torch.where(small, 1.0 / 6.0 - angle2 / 120.0, (safe - torch.sin(safe)) / safe**3)
    k = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye - a * k + b * (k @ k)


def rotate_jacobian(rotmat: torch.Tensor, jr: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """d(R(theta) p)/d theta for points ``(..., N, 3)``: ``-R [p]x Jr``, shape ``(..., N, 3, 3)``.

    Computed as ``-[R p]x (R Jr)`` (``R [p]x R^T = [R p]x``): one product per rotation with all its
    points stacked, rather than two 3x3 products per point (~4x faster on the CPU)."""
    n_points = points.shape[-2]
    batch = torch.broadcast_shapes(rotmat.shape[:-2], points.shape[:-2])
    rotated = skew(points @ rotmat.transpose(-1, -2)).reshape(*batch, 3 * n_points, 3)
    return -(rotated @ (rotmat @ jr)).reshape(*batch, n_points, 3, 3)


def projected_rotate_jacobian(proj: torch.Tensor, rotated: torch.Tensor, rotmat: torch.Tensor,
                              jr: torch.Tensor) -> torch.Tensor:
    """d(f(R(theta) p))/d theta ``(T, N, 2, 3)`` for a projection with Jacobian ``proj (T, N, 2, 3)``
    at the rotated points ``rotated = R p (T, N, 3)``: ``proj`` times :func:`rotate_jacobian`.

    Row k of ``proj (-[R p]x)`` is ``(R p) x proj_k``, so this is one product per rotation instead
    of two 3x3 products per point."""
    rows = torch.linalg.cross(rotated[:, :, None].expand_as(proj), proj)
    return (rows.reshape(rows.shape[0], -1, 3) @ (rotmat @ jr)).reshape(proj.shape)


def rotmat_derivatives(rotmat: torch.Tensor, jr: torch.Tensor) -> torch.Tensor:
    """``dR/d theta_i = R [Jr e_i]x`` stacked as ``(..., 3 (i), 3, 3)``."""
    cols = jr.transpose(-1, -2)  # rows are Jr e_i
    return rotmat[..., None, :, :] @ skew(cols)
