"""Levenberg-Marquardt on caller-supplied normal equations, and Marquardt damping."""

from __future__ import annotations

from typing import Callable

import torch

Solve = Callable[[float], list[torch.Tensor]]


def damped(hess: torch.Tensor, damping: float) -> torch.Tensor:
    """Marquardt damping of (batched) Hessians ``(..., p, p)``: ``H + damping * diag(H)``, plus a tiny
    ridge so that unknowns without data (frames without a face) stay solvable."""
    diag = torch.diagonal(hess, dim1=-2, dim2=-1)
    return hess + torch.diag_embed(damping * diag + 1e-9)


def levenberg_marquardt(n_iters: int, state: list[torch.Tensor], cost_fn: Callable[[], torch.Tensor],
                        linearize: Callable[[], Solve], tolerance: float = 5e-3, max_tries: int = 6) -> int:
    """Minimise ``cost_fn()`` over the tensors in ``state`` (updated in place); returns the steps kept.

    ``linearize()`` builds the normal equations at the current state and returns
    ``solve(damping) -> one step per state tensor``. A step is kept only if it does not raise the
    cost (and the cost stays finite); a rejected step is undone and the damping raised tenfold, up
    to ``max_tries`` times per iteration (then the fit stops where it is). Accepted steps lower the
    damping threefold. Stops after ``n_iters`` or once a step lowers the cost by less than
    ``tolerance`` of it.
    """
    damping, cost, kept = 1e-4, cost_fn(), 0
    for _ in range(n_iters):
        solve = linearize()
        for _ in range(max_tries):
            steps = solve(damping)
            old = [t.clone() for t in state]
            for t, d in zip(state, steps):
                t.add_(d)
            new_cost = cost_fn()
            if torch.isfinite(new_cost) and new_cost <= cost:
                converged = cost - new_cost <= tolerance * cost
                cost, damping, kept = new_cost, max(damping / 3.0, 1e-7), kept + 1
                break
            for t, o in zip(state, old):
                t.copy_(o)
            damping *= 10.0
        else:
            return kept
        if converged:
            return kept
    return kept
