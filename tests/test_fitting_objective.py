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
                                 torch.tensor([[1.0, 1.0], [2.0, 2.0]], dtype=torch.float64), sigma_mm=2.0, huber_mm=4.0)
    assert torch.allclose(w, torch.tensor([[[0.5 / 4] * 2, [0.5 * 2 / 4 * 0.5] * 2]], dtype=torch.float64))
    assert torch.isclose(cost, torch.tensor(0.5 / 4 * 4.5 + 0.5 * 2 / 4 * 4 * 6, dtype=torch.float64))


def test_robust_weights_per_axis_weigh_each_coordinate():
    """A point weighted 4 along x and 1 along y: the normal equations weigh its x residual 4 times
    its y residual, and inside the Huber threshold the cost is exactly the weighted squares."""
    r = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    w, cost = obj.robust_weights(r, torch.ones(1, dtype=torch.float64), torch.tensor([[4.0, 1.0]], dtype=torch.float64),
                                 sigma_mm=1.0, huber_mm=10.0)
    assert torch.allclose(w, torch.tensor([[[4.0, 1.0]]], dtype=torch.float64))
    assert torch.isclose(cost, torch.tensor(0.5 * (4.0 * 1.0 + 1.0 * 4.0), dtype=torch.float64))


def test_weighted_system_equals_the_dense_normal_equations():
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(3, 5, 2, generator=gen, dtype=torch.float64)
    j = torch.randn(3, 5, 2, 4, generator=gen, dtype=torch.float64)
    w = torch.rand(3, 5, 2, generator=gen, dtype=torch.float64)  # per point and axis
    hess, grad, _ = obj.weighted_system(r, j, w)
    for t in range(3):
        jt = j[t].reshape(10, 4)
        wt = torch.diag(w[t].reshape(10))
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


def _arc(n: int = 15) -> torch.Tensor:
    """A frame's outline: a half circle of radius 10 about the origin, below it (T=1, L=n)."""
    a = torch.linspace(0.0, torch.pi, n, dtype=torch.float64)
    return torch.stack([-10 * torch.cos(a), -10 * torch.sin(a)], -1)[None]


def test_curve_feet_are_the_nearest_points_with_the_curve_normal_and_flag_the_ends():
    curve = _arc()
    points = torch.tensor([[[0.0, -12.0], [0.0, -7.0], [-14.0, 3.0], [3.0, 4.0]]], dtype=torch.float64)
    feet, normals, inside = obj.curve_feet(points, curve)
    # Below the middle: the foot is the curve's lowest point (a vertex), with a vertical normal.
    assert torch.allclose(feet[0, 0], torch.tensor([0.0, -10.0], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(normals[0, 0].abs(), torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-9)
    # From inside: a foot on a chord next to the lowest point, nearer than that point.
    assert abs(float(feet[0, 1, 0])) < 1.0 and float(feet[0, 1].norm()) > 9.9
    assert float((points[0, 1] - feet[0, 1]).norm()) < 3.0
    assert inside[0, :2].all()
    assert not inside[0, 2] and not inside[0, 3]  # beyond either end of the outline
    assert torch.allclose(feet[0, 2], curve[0, 0])
    curve_nan = curve.clone()
    curve_nan[0, 3] = float("nan")
    assert not obj.curve_feet(points, curve_nan)[2].any()  # an outline with a missing point is not used


def test_contour_residuals_are_the_distance_to_the_outline_with_its_gradient():
    gen = torch.Generator().manual_seed(3)
    n_lm, n_q = 2, 3
    curve = _arc(41)
    obs = torch.randn(1, n_lm, 2, generator=gen, dtype=torch.float64)
    x0 = torch.tensor([[[1.0, 2.0], [-0.5, 1.0], [0.0, -11.0], [4.0, -8.0]]], dtype=torch.float64)
    jac = torch.randn(1, 4, 2, n_q, generator=gen, dtype=torch.float64)

    def res(q: torch.Tensor):
        pixels = x0 + (jac @ q)[..., 0]
        return obj.residuals(pixels, obs, torch.tensor([0.5], dtype=torch.float64),
                             torch.zeros(0, 2, dtype=torch.long), jac, (curve,))

    q = torch.zeros(n_q, 1, dtype=torch.float64)
    r, j = res(q)
    assert r.shape == (1, 4, 2) and j.shape == (1, 4, 2, n_q)
    # Contour rows: 0.5 mm/px times the distance to the circle (to the chords, within 0.02 px).
    dist = 0.5 * (x0[0, 2:].norm(dim=-1) - 10.0).abs()
    assert torch.allclose(r[0, 2:].norm(dim=-1), dist, atol=0.01)
    # The Jacobian is that of the residual's normal component, to first order.
    eps = 1e-6
    for k in range(n_q):
        d = torch.zeros_like(q)
        d[k] = eps
        num = (res(q + d)[0] - res(q - d)[0]) / (2 * eps)
        assert torch.allclose(j[..., k], num, atol=1e-6)
