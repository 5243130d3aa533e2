"""Training losses, in mm^2 so that their scale does not depend on the mesh units."""

from __future__ import annotations

import torch

from emoface_model.models import MM


def sequence_loss(pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor, velocity_weight: float):
    """Weighted vertex MSE + velocity (frame-difference) MSE, in mm^2."""
    err = (pred - gt) * MM
    w = weights[None, None, :, None]
    mse = (err.square() * w).sum() / (w.sum() * err.shape[0] * err.shape[1] * 3)
    vel = torch.zeros((), device=pred.device)
    if err.shape[1] > 1:
        d = err[:, 1:] - err[:, :-1]  # the velocity error is the difference of the errors
        vel = (d.square() * w).sum() / (w.sum() * d.shape[0] * d.shape[1] * 3)
    return mse + velocity_weight * vel, mse, vel
