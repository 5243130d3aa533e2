"""The fitting objective's pure functions and the Levenberg-Marquardt loop, tested directly."""

from __future__ import annotations

import torch

from recon3d.fitting import objective as obj
from recon3d.fitting.lm import damped, levenberg_marquardt


def test_huber_weights_are_one_inside_and_fall_as_one_over_the_error_beyond():
    err = torch.tensor([0.0, 1.0, 4.0, 8.0, 40.0], dtype=torch.float64)
    w = obj.huber_weights(err, 4.0)
    assert torch.equal(w[:3], torch.ones(3, dtype=torch.float64))
    assert torch.allclose(w[3:], torch.tensor([0.5, 0.1], dtype=torch.float64))
    rho = obj.huber_rho(err, 4.0)
    assert torch.allclose(rho[:3], 0.5 * err[:3] ** 2)
    assert torch.allclose(rho[3:], 4.0 * (err[3:] - 2.0))  # linear beyond delta, continuous at it


def test_robust_weights_scale_with_frame_point_weights_and_noise():
    r = torch.tensor([[[3.0, 0.0], [0.0, 8.0]]], dtype=torch.float64)  # one frame, two points: inlier, outlier
    w, cost = obj.robust_weights(r, torch.tensor([0.5], dtype=torch.float64),
                                 torch.tensor([1.0, 2.0], dtype=torch.float64), sigma_mm=2.0, huber_mm=4.0)
    assert torch.allclose(w, torch.tensor([[0.5 / 4, 0.5 * 2 / 4 * 0.5]], dtype=torch.float64))
    assert torch.isclose(cost, torch.tensor(0.5 / 4 * 4.5 + 0.5 * 2 / 4 * 4 * 6, dtype=torch.float64))


def test_weighted_system_equals_the_dense_normal_equations():
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(3, 5, 2, generator=gen, dtype=torch.float64)
    j = torch.randn(3, 5, 2, 4, generator=gen, dtype=torch.float64)
    w = torch.rand(3, 5, generator=gen, dtype=torch.float64)
    hess, grad, _ = obj.weighted_system(r, j, w)
    for t in range(3):
        jt = j[t].reshape(10, 4)
        wt = torch.diag(w[t].repeat_interleave(2))
        assert torch.allclose(hess[t], jt.T @ wt @ jt, atol=1e-5)  # accumulated in float32
        assert torch.allclose(grad[t], jt.T @ wt @ r[t].reshape(10))


def test_levenberg_marquardt_rejects_steps_that_raise_the_cost():
    """A solver that proposes an overshooting step until damped enough: rejected steps are undone,
    the damping grows, and only a step that lowers the cost is kept."""
    x = torch.tensor([3.0], dtype=torch.float64)
    tried: list[tuple[float, float]] = []

    def cost():
        return (x - 1.0).square().sum()

    def linearize():
        def solve(damping: float):
            step = -(x - 1.0) * (100.0 if damping < 1e-2 else 1.0 / (1.0 + damping))
            tried.append((damping, float(step)))
            return [step]
        return solve

    kept = levenberg_marquardt(1, [x], cost, linearize)
    assert kept == 1 and [round(d, 6) for d, _ in tried] == [1e-4, 1e-3, 1e-2]
    assert 0.99 < float(x) < 1.1  # the accepted step, from the undone start point 3.0


def test_levenberg_marquardt_gives_up_after_max_tries_and_keeps_the_start():
    x = torch.tensor([2.0], dtype=torch.float64)
    kept = levenberg_marquardt(3, [x], lambda: x.square().sum(), lambda: (lambda d: [torch.ones_like(x)]),
                               max_tries=4)
    assert kept == 0 and float(x) == 2.0


def test_damping_scales_the_diagonal_and_keeps_empty_unknowns_solvable():
    h = torch.tensor([[4.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    d = damped(h, 0.5)
    assert torch.allclose(d, torch.tensor([[6.0, 1.0], [1.0, 1e-9]], dtype=torch.float64), atol=1e-12)


def test_prior_cost_and_gradient_agree():
    from recon3d.fitting.config import FitConfig
    from recon3d.fitting.landmark_model import ParamLayout

    layout = ParamLayout(6)
    like = torch.zeros(1, dtype=torch.float64)
    leak = torch.nn.functional.normalize(torch.arange(1.0, 7.0, dtype=torch.float64), dim=0)
    hess = obj.prior_hessian(obj.prior_diagonal(FitConfig(), layout, like), leak, 20.0, layout)
    params = torch.randn(4, layout.size, dtype=torch.float64, requires_grad=True)
    cost = obj.prior_cost(params, hess)
    (grad,) = torch.autograd.grad(cost, params)
    assert torch.allclose(grad, params.detach() @ hess)
