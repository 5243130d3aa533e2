"""The fitting objective as pure functions (like ``flame/lbs.py``): residuals, robust weights,
priors, smoothness weights and the Gauss-Newton normal equations of the data term.

Shapes: ``T`` frames, ``N`` landmarks, ``K`` contour points (fitted to the detected face outline),
``C`` contact pairs (upper/lower lip and eyelid points whose difference is also fitted),
``M = N + K + C`` residual points, ``p`` unknowns per frame. Residuals are
in millimetres at the face: pixels times ``mm_per_px`` (the head's depth over the focal length).
"""

from __future__ import annotations

import torch

from recon3d.fitting.config import FitConfig
from recon3d.fitting.landmark_model import ParamLayout


def catmull_rom_matrix(n_points: int, per_segment: int) -> torch.Tensor:
    """``((n_points - 1) * per_segment + 1, n_points)`` weights that sample the uniform Catmull-Rom
    spline through ``n_points`` control points ``per_segment`` times per segment (ends repeated).

    ``matrix @ points`` is a smooth curve through the points: a detector's outline is a few
    points on a curved jaw, whose chords cut inside it by up to several pixels.
    """
    t = torch.arange(per_segment, dtype=torch.float64) / per_segment
    # Weights of P[i-1], P[i], P[i+1], P[i+2] at t.
    w = 0.5 * torch.stack([-t + 2 * t**2 - t**3, 2 - 5 * t**2 + 3 * t**3, t + 4 * t**2 - 3 * t**3, -t**2 + t**3], 1)
    out = torch.zeros((n_points - 1) * per_segment + 1, n_points, dtype=torch.float64)
    for i in range(n_points - 1):
        for c, j in enumerate((i - 1, i, i + 1, i + 2)):
            out[i * per_segment:(i + 1) * per_segment, min(max(j, 0), n_points - 1)] += w[:, c]
    out[-1, -1] = 1.0
    return out


def smooth_outline(points: torch.Tensor, per_segment: int = 4) -> torch.Tensor:
    """A detected outline ``(T, L, 2)`` as the Catmull-Rom spline through it, sampled ``per_segment``
    times per segment (NaN where a point near it is missing)."""
    return catmull_rom_matrix(points.shape[1], per_segment).to(points) @ points


def curve_feet(points: torch.Tensor, curve: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The nearest point on a polyline to each point, the polyline's unit normal there (at a vertex,
    the bisector of its two segments' normals), and whether it lies within the polyline (not
    clamped to either end; False where the curve has NaNs).

    ``points (T, K, 2)``, ``curve (T, L, 2)`` -> ``feet (T, K, 2)``, ``normals (T, K, 2)``, ``inside (T, K)``.
    """
    start, seg = curve[:, :-1], curve[:, 1:] - curve[:, :-1]  # (T, S, 2)
    rel = points[:, :, None] - start[:, None]  # (T, K, S, 2)
    s = (rel * seg[:, None]).sum(-1) / (seg * seg).sum(-1).clamp_min(1e-12)[:, None]
    s = s.clamp(0.0, 1.0)
    dist = (rel - s[..., None] * seg[:, None]).norm(dim=-1)
    k = torch.nan_to_num(dist, nan=float("inf")).argmin(-1)  # (T, K)
    s_k = s.gather(2, k[..., None])[..., 0]

    def pick(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return x.gather(1, i[..., None].expand(-1, -1, 2))

    feet = pick(start, k) + s_k[..., None] * pick(seg, k)
    # Normals of the segments, and at the vertices the bisector of the two segments meeting there.
    seg_n = torch.stack([-seg[..., 1], seg[..., 0]], -1)
    seg_n = seg_n / seg_n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    vert_n = torch.cat([seg_n[:, :1], seg_n[:, :-1] + seg_n[:, 1:], seg_n[:, -1:]], 1)
    vert_n = vert_n / vert_n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    normals = torch.where((s_k <= 0.0)[..., None], pick(vert_n, k),
                          torch.where((s_k >= 1.0)[..., None], pick(vert_n, k + 1), pick(seg_n, k)))
    last = curve.shape[1] - 2
    inside = ~(((k == 0) & (s_k <= 0.0)) | ((k == last) & (s_k >= 1.0)))
    inside &= torch.isfinite(curve).all(-1).all(-1)[:, None]
    return torch.nan_to_num(feet), torch.nan_to_num(normals), inside


def outline_residuals(points: torch.Tensor, curve: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each point's offset from the outline along its normal ``(T, K, 2)``, the normal projection
    ``(T, K, 2, 2)`` that maps the point's Jacobian to the offset's (both zero where the point
    falls beyond the outline's ends), and where it does not (``inside (T, K)``)."""
    feet, normals, inside = curve_feet(points, curve)
    proj = normals[..., :, None] * normals[..., None, :] * inside[..., None, None]
    return (proj @ (points - feet)[..., None])[..., 0], proj, inside


def residuals(pixels: torch.Tensor, obs: torch.Tensor, mm_per_px: torch.Tensor, pairs: torch.Tensor,
              jac: torch.Tensor | None = None, curves: tuple[torch.Tensor, ...] = ()
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Residuals ``(T, M, 2)`` in mm (landmarks, contour points, then contact-pair differences) and
    their Jacobian ``(T, M, 2, q)`` when ``jac (T, N + K, 2, q)`` is given.

    ``pixels (T, N + K, 2)``: the ``N`` landmarks observed in ``obs (T, N, 2)``, then the contour
    points, an equal share fitted to each observed outline of ``curves`` (each ``(T, L, 2)``) by
    their distance to it along its normal (a contour point may slide along the outline; zero where
    it falls beyond its ends); ``mm_per_px (T,)``; ``pairs (C, 2)`` indices into the landmarks.
    """
    scale = mm_per_px[:, None, None]
    n = obs.shape[1]
    r = (pixels[:, :n] - obs) * scale
    parts, projs = [r], []
    k = (pixels.shape[1] - n) // max(len(curves), 1)
    for i, curve in enumerate(curves):
        offset, proj, _ = outline_residuals(pixels[:, n + i * k:n + (i + 1) * k], curve)
        parts.append(offset * scale)
        projs.append(proj)
    a, b = pairs[:, 0], pairs[:, 1]
    r = torch.cat(parts + [r[:, a] - r[:, b]], dim=1)
    if jac is None:
        return r, None
    j = jac * scale[..., None]
    jparts = [j[:, :n]] + [proj @ j[:, n + i * k:n + (i + 1) * k] for i, proj in enumerate(projs)]
    return r, torch.cat(jparts + [j[:, a] - j[:, b]], dim=1)


def huber_weights(err: torch.Tensor, delta: float) -> torch.Tensor:
    """IRLS weights of the Huber loss for residual norms ``err``: 1 inside ``delta``, ``delta / err`` beyond."""
    return torch.where(err <= delta, torch.ones_like(err), delta / err.clamp_min(1e-12))


def huber_rho(err: torch.Tensor, delta: float) -> torch.Tensor:
    """The Huber loss of residual norms: ``err^2 / 2`` inside ``delta``, linear beyond (continuous)."""
    return torch.where(err <= delta, 0.5 * err * err, delta * (err - 0.5 * delta))


def robust_weights(r: torch.Tensor, frame_w: torch.Tensor, point_w: torch.Tensor, sigma_mm: float,
                   huber_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point, per-axis weights ``(T, M, 2)`` for the normal equations and the robust data cost
    (a scalar).

    ``r (T, M, 2)``; ``frame_w (T,)`` (0 for frames without a face), or ``(T, M)`` per frame and
    point (a second source's trust: :mod:`recon3d.fitting.source_trust`); ``point_w (M, 2)``: each
    point's weight along the image's x and y (a detector may err more in one than in the other);
    the noise ``sigma_mm`` scales everything by ``1 / sigma^2``. The Huber threshold applies to the
    unweighted distance; the cost weighs it by the point's weights averaged as its residual lies
    (exactly the weighted squares where the loss is quadratic).
    """
    err = r.norm(dim=-1)
    per_point = frame_w[..., None] if frame_w.dim() == 2 else frame_w[:, None, None]
    base = per_point * point_w[None] / sigma_mm ** 2
    r2 = r * r
    effective = (r2 * base).sum(-1) / r2.sum(-1).clamp_min(1e-30)
    return base * huber_weights(err, huber_mm)[..., None], (effective * huber_rho(err, huber_mm)).sum()


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
    ``j (T, M, 2, q)`` and weights per axis ``w (T, M, 2)``.

    Also returns the flattened residuals ``(T, 2M)``, ``W J (T, 2M, q)`` and the weights per row
    ``(T, 2M)`` for reuse. The Hessian only steers the steps (the gradient, in the fit's own
    precision, sets the solution), so it is accumulated in float32: half the memory traffic of
    the largest product.
    """
    n_frames = r.shape[0]
    jf = j.reshape(n_frames, -1, j.shape[-1])
    w2 = w.reshape(n_frames, -1)
    jw = jf * w2[..., None]
    rf = r.reshape(n_frames, -1)
    hess = (jw.float().transpose(1, 2) @ jf.float()).to(jf.dtype)
    grad = (jw.transpose(1, 2) @ rf[..., None])[..., 0]
    return hess, grad, (rf, jw, w2)
