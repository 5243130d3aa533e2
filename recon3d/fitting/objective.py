"""The fitting objective as pure functions (like ``flame/lbs.py``): residuals, robust weights,
priors, smoothness weights and the Gauss-Newton normal equations of the data term.

Shapes: ``T`` frames, ``N`` landmarks, ``C`` contact pairs (upper/lower lip and eyelid points whose
difference is also fitted), ``M = N + C`` residual points, ``p`` unknowns per frame. Residuals are
in millimetres at the face: pixels times ``mm_per_px`` (the head's depth over the focal length).
"""

from __future__ import annotations

import torch

from recon3d.fitting.config import FitConfig
from recon3d.fitting.landmark_model import ParamLayout


def residuals(pixels: torch.Tensor, obs: torch.Tensor, mm_per_px: torch.Tensor, pairs: torch.Tensor,
              jac: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Residuals ``(T, M, 2)`` in mm (landmarks, then contact-pair differences) and their Jacobian
    ``(T, M, 2, q)`` when ``jac (T, N, 2, q)`` is given.

    ``pixels, obs (T, N, 2)``; ``mm_per_px (T,)``; ``pairs (C, 2)`` indices into the landmarks.
    """
    scale = mm_per_px[:, None, None]
    r = (pixels - obs) * scale
    a, b = pairs[:, 0], pairs[:, 1]
    r = torch.cat([r, r[:, a] - r[:, b]], dim=1)
    if jac is None:
        return r, None
    j = jac * scale[..., None]
    return r, torch.cat([j, j[:, a] - j[:, b]], dim=1)


def huber_weights(err: torch.Tensor, delta: float) -> torch.Tensor:
    """IRLS weights of the Huber loss for residual norms ``err``: 1 inside ``delta``, ``delta / err`` beyond."""
    return torch.where(err <= delta, torch.ones_like(err), delta / err.clamp_min(1e-12))


def huber_rho(err: torch.Tensor, delta: float) -> torch.Tensor:
    """The Huber loss of residual norms: ``err^2 / 2`` inside ``delta``, linear beyond (continuous)."""
    return torch.where(err <= delta, 0.5 * err * err, delta * (err - 0.5 * delta))


def robust_weights(r: torch.Tensor, frame_w: torch.Tensor, point_w: torch.Tensor, sigma_mm: float,
                   huber_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point weights ``(T, M)`` for the normal equations and the robust data cost (a scalar).

    ``r (T, M, 2)``; ``frame_w (T,)`` (0 for frames without a face); ``point_w (M,)``; the noise
    ``sigma_mm`` scales everything by ``1 / sigma^2``.
    """
    err = r.norm(dim=-1)
    base = frame_w[:, None] * point_w[None] / sigma_mm ** 2
    return base * huber_weights(err, huber_mm), (base * huber_rho(err, huber_mm)).sum()


def prior_hessian(prior_diag: torch.Tensor, leak_dir: torch.Tensor, leak_prior: float,
                  layout: ParamLayout) -> torch.Tensor:
    """``(p, p)`` Hessian of the per-frame priors: the diagonal plus the jaw-leak direction's penalty
    in the expression block."""
    hess = torch.diag(prior_diag)
    hess[layout.expr, layout.expr] += leak_prior * torch.outer(leak_dir, leak_dir)
    return hess


def prior_cost(params: torch.Tensor, prior_hess: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum_t params_t^T H params_t`` for ``params (T, p)``."""
    return 0.5 * ((params @ prior_hess) * params).sum()


def prior_diagonal(config: FitConfig, layout: ParamLayout, like: torch.Tensor) -> torch.Tensor:
    """Inverse variances ``(p,)`` of the per-frame unknowns (zero for head pose)."""
    d = torch.zeros(layout.size, dtype=like.dtype, device=like.device)
    d[layout.expr] = config.expr_prior
    d[layout.jaw] = torch.tensor([config.jaw_open_prior, config.jaw_side_prior, config.jaw_side_prior],
                                 dtype=like.dtype, device=like.device)
    d[layout.eyes] = config.eye_prior
    return d


def smooth_weights(config: FitConfig, layout: ParamLayout, fps: float, like: torch.Tensor) -> torch.Tensor:
    """Second-difference weights ``(p,)``, rescaled from 30 fps so they penalise the same acceleration."""
    w = torch.zeros(layout.size, dtype=like.dtype, device=like.device)
    w[layout.expr], w[layout.jaw], w[layout.eyes] = config.smooth_expr, config.smooth_jaw, config.smooth_eyes
    w[layout.rot], w[layout.trans] = config.smooth_rot, config.smooth_trans
    return w * (fps / 30.0) ** 4


def weighted_system(r: torch.Tensor, j: torch.Tensor, w: torch.Tensor):
    """``J^T W J (T, q, q)`` and ``J^T W r (T, q)`` for residuals ``r (T, M, 2)``, Jacobian
    ``j (T, M, 2, q)`` and weights ``w (T, M)``.

    Also returns the flattened residuals ``(T, 2M)``, ``W J (T, 2M, q)`` and the weights per row
    ``(T, 2M)`` for reuse. The Hessian only steers the steps (the float64 gradient sets the
    solution), so it is accumulated in float32: half the memory traffic of the largest product.
    """
    n_frames = r.shape[0]
    jf = j.reshape(n_frames, -1, j.shape[-1])
    w2 = w.repeat_interleave(2, dim=1)
    jw = jf * w2[..., None]
    rf = r.reshape(n_frames, -1)
    hess = (jw.float().transpose(1, 2) @ jf.float()).double()
    grad = (jw.transpose(1, 2) @ rf[..., None])[..., 0]
    return hess, grad, (rf, jw, w2)
