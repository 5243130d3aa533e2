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
    """d(R(theta) p)/d theta for points ``(..., N, 3)``: ``-R [p]x Jr``, shape ``(..., N, 3, 3)``."""
    return -(rotmat[..., None, :, :] @ skew(points) @ jr[..., None, :, :])


def rotmat_derivatives(rotmat: torch.Tensor, jr: torch.Tensor) -> torch.Tensor:
    """``dR/d theta_i = R [Jr e_i]x`` stacked as ``(..., 3 (i), 3, 3)``."""
    cols = jr.transpose(-1, -2)  # rows are Jr e_i
    return rotmat[..., None, :, :] @ skew(cols)
