"""The pinhole camera used in fitting.

Camera frame = FLAME's frame (x right, y up, the camera looks along -z), so a head with zero
rotation faces the camera and its translation has negative z (distance in front of the camera).
The focal length is fixed (from a field of view) rather than estimated: from 2D landmarks alone,
focal length, head size and distance trade off against each other, and a fixed focal keeps the
perspective effects of head turns in the model instead of in the shape.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class PinholeCamera:
    focal: float  # pixels
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float) -> "PinholeCamera":
        """Principal point at the image centre, horizontal field of view ``fov_deg``."""
        focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
        return cls(focal=focal, cx=width / 2, cy=height / 2, width=width, height=height)

    def to_dict(self) -> dict:
        return asdict(self)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates ``(..., 2)`` of camera-frame points ``(..., 3)``."""
        depth = -points[..., 2]
        u = self.cx + self.focal * points[..., 0] / depth
        v = self.cy - self.focal * points[..., 1] / depth
        return torch.stack([u, v], dim=-1)

    def project_jacobian(self, points: torch.Tensor) -> torch.Tensor:
        """d(pixels)/d(point) ``(..., 2, 3)``."""
        x, y, z = points.unbind(-1)
        depth = -z
        f_d = self.focal / depth
        zero = torch.zeros_like(x)
        row_u = torch.stack([f_d, zero, f_d * x / depth], dim=-1)
        row_v = torch.stack([zero, -f_d, -f_d * y / depth], dim=-1)
        return torch.stack([row_u, row_v], dim=-2)
