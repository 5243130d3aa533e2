"""Solving the Gauss-Newton normal equations of a clip.

Two structures occur:

* a clip with temporal smoothness: per-frame dense blocks coupled to the two neighbouring frames on
  each side by second differences. In frame-major order the matrix is banded (half-bandwidth
  ``2p``) and is solved exactly with LAPACK's banded Cholesky;
* identity fitting: independent frames that share the identity shape (an arrowhead matrix), solved
  by eliminating the frames (Schur complement).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch


def second_difference_gram(n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diagonals ``(c0, c1, c2)`` of ``D^T D`` for the second-difference operator ``D`` over ``n_frames``."""
    c0, c1, c2 = np.zeros(n_frames), np.zeros(max(n_frames - 1, 0)), np.zeros(max(n_frames - 2, 0))
    for k in range(n_frames - 2):
        c0[k:k + 3] += (1.0, 4.0, 1.0)
        c1[k:k + 2] += (-2.0, -2.0)
        c2[k] += 1.0
    return c0, c1, c2


def apply_second_difference_gram(x: torch.Tensor) -> torch.Tensor:
    """``D^T D x`` along the first (time) axis of ``x (T, p)``."""
    if x.shape[0] < 3:
        return torch.zeros_like(x)
    d = x[:-2] - 2 * x[1:-1] + x[2:]
    out = torch.zeros_like(x)
    out[:-2] += d
    out[1:-1] -= 2 * d
    out[2:] += d
    return out


def second_difference_cost(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum_t sum_i w_i (x[t-1,i] - 2 x[t,i] + x[t+1,i])^2``."""
    if x.shape[0] < 3:
        return x.new_zeros(())
    d = x[:-2] - 2 * x[1:-1] + x[2:]
    return 0.5 * (weights * d * d).sum()


def solve_smoothed_blocks(blocks: torch.Tensor, rhs: torch.Tensor, smooth: torch.Tensor,
                          coupling: torch.Tensor | None = None) -> torch.Tensor:
    """Solve ``(blockdiag(blocks) + D^T D (x) diag(smooth) + C) x = rhs`` for ``x (T, p)``, where
    ``C`` holds ``coupling (T - 1, p, p)`` between each frame (rows) and the next (columns), and
    its transpose below the diagonal (terms that compare consecutive frames: the mouth flow).

    The matrix must be symmetric positive definite. The
    banded Cholesky runs in ``rhs``'s precision (float32: ~40 % faster than float64), and again in
    float64 should float32 find the system not positive definite.
    """
    if rhs.dtype == torch.float32:
        try:
            return _solve_banded(blocks, rhs, smooth, coupling, np.float32)
        except np.linalg.LinAlgError:
            pass
    return _solve_banded(blocks, rhs, smooth, coupling, np.float64)


def _solve_banded(blocks: torch.Tensor, rhs: torch.Tensor, smooth: torch.Tensor, coupling: torch.Tensor | None,
                  dtype: type) -> torch.Tensor:
    n_frames, p, _ = blocks.shape
    n = n_frames * p
    kd = min(2 * p, n - 1)
    h = blocks.detach().cpu().numpy()
    lam = smooth.detach().cpu().double().numpy()
    # LAPACK's upper band storage: entry (i, j), i <= j, at ab[kd + i - j, j]. Column b of every
    # frame's block holds rows 0..b of it (kd >= p - 1 always: n >= p), one slice per column.
    ab = np.zeros((kd + 1, n), dtype)
    by_frame = ab.reshape(kd + 1, n_frames, p)
    for b in range(p):
        by_frame[kd - b:, :, b] = h[:, :b + 1, b].T
    c0, c1, c2 = second_difference_gram(n_frames)
    ab[kd, :] += (c0[:, None] * lam[None, :]).reshape(-1)
    if n_frames >= 2 and p <= kd:
        ab[kd - p, p:] += (c1[:, None] * lam[None, :]).reshape(-1)
    if n_frames >= 3 and 2 * p <= kd:
        ab[kd - 2 * p, 2 * p:] += (c2[:, None] * lam[None, :]).reshape(-1)
    if coupling is not None and n_frames >= 2:
        # Entry (a, b) of the block between frames t and t + 1 sits at ab[kd - p + a - b, (t + 1) p + b].
        c = coupling.detach().cpu().numpy()
        for b in range(p):
            by_frame[kd - p - b:kd - b, 1:, b] += c[:, :, b].T
    # The Cholesky fill-in between distant frames decays into denormal numbers, which x86 handles
    # ~100x slower; flushing them to zero changes nothing numerically.
    flushed = torch.set_flush_denormal(True)
    try:
        x = scipy.linalg.solveh_banded(ab, rhs.detach().cpu().numpy().reshape(-1).astype(dtype), check_finite=False)
    finally:
        if flushed:
            torch.set_flush_denormal(False)
    return torch.as_tensor(x.reshape(n_frames, p), dtype=rhs.dtype, device=rhs.device)


def solve_arrowhead(blocks: torch.Tensor, coupling: torch.Tensor, shared: torch.Tensor,
                    rhs_frames: torch.Tensor, rhs_shared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``[[H_t, B_t], [B_t^T, C]] [x_t; s] = [r_t; r_s]`` with ``H (T,p,p)``, ``B (T,p,K)``, ``C (K,K)``."""
    chol = torch.linalg.cholesky(blocks)
    hinv_b = torch.cholesky_solve(coupling, chol)
    hinv_r = torch.cholesky_solve(rhs_frames[..., None], chol)[..., 0]
    schur = shared - torch.einsum("tpk,tpl->kl", coupling, hinv_b)
    rhs = rhs_shared - torch.einsum("tpk,tp->k", coupling, hinv_r)
    x_shared = torch.linalg.solve(schur, rhs)
    x_frames = hinv_r - torch.einsum("tpk,k->tp", hinv_b, x_shared)
    return x_frames, x_shared
