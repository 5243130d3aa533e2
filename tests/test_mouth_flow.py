"""The mouth's optical flow (issue 37): measured on real frames, read at any pixel, and fitted as
the frame-to-frame motion of surface samples, with exact normal equations."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from recon3d.fitting import flow_term
from recon3d.fitting.config import FitConfig
from recon3d.fitting.fitter import FlameFitter
from recon3d.fitting.normal_equations import second_difference_gram, solve_smoothed_blocks
from recon3d.landmarks import create_detector
from recon3d.landmarks.mouth_flow import MouthFlow, MouthFlowTracker
from recon3d.landmarks.schemes import MEDIAPIPE
from recon3d.synth.accuracy import accuracy_row
from recon3d.synth.motion import canonical_vertices, identity_template, posed_vertices
from tests.conftest import RAVDESS_VIDEO, need
from tests.test_fitting import CAMERA, _synthetic_clip

cv2 = pytest.importorskip("cv2", reason="OpenCV comes with mediapipe")


def _first_frame() -> np.ndarray:
    with av.open(str(need(RAVDESS_VIDEO / "01-01-01-01-02-01-05.mp4"))) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


@pytest.mark.parametrize("shift", [(0.6, -0.35), (1.7, -2.3)])
def test_the_flow_of_a_real_face_moved_by_a_known_shift_is_that_shift(shift):
    """DIS on the mouth crop, read back at the outer lip points, within 0.1 px of a known shift (0.25
    at any point); none kept at the mouth's opening."""
    frame = _first_frame()
    points = create_detector("mediapipe").detect(frame)[0][0]
    tracker = MouthFlowTracker.for_scheme(MEDIAPIPE)
    shift = np.array(shift)
    moved = cv2.warpAffine(frame, np.array([[1.0, 0, shift[0]], [0, 1.0, shift[1]]]), frame.shape[1::-1],
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    tracker.update(frame, points)
    tracker.update(moved, None)  # the second frame's landmarks are not needed for the first pair
    flow = tracker.result(2)
    assert flow.measured.tolist() == [True, False]
    outer, inner = [0, 17, 37, 267, 84, 314], [13, 14, 82, 87]  # outer lip line; the opening's edge
    measured, known = flow.sample(points[outer + inner][None].repeat(2, 0))
    assert known[0, :len(outer)].all() and not known[0, len(outer):].any() and not known[1].any()
    measured = measured[0, :len(outer)]
    assert np.abs(measured.mean(0) - shift).max() < 0.1
    assert np.abs(measured - shift).max() < 0.25


def test_flow_is_read_bilinearly_between_grid_nodes_and_nowhere_outside():
    grid = 5
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float64)
    field = np.stack([2 * xs + ys, -xs + 0.5 * ys], -1)  # linear in the node position
    flow = MouthFlow(field[None].astype(np.float16), np.array([[10.0, 20.0]], np.float32), np.array([3.0], np.float32))
    pixels = np.array([[[10.0 + 3 * 1.25, 20.0 + 3 * 2.5], [9.0, 20.0], [10.0 + 3 * 4, 20.0 + 3 * 4]]])
    measured, known = flow.sample(pixels)
    np.testing.assert_allclose(measured[0, 0], [2 * 1.25 + 2.5, -1.25 + 1.25], atol=1e-3)
    assert known.tolist() == [[True, False, True]]
    assert (measured[0, 1] == 0).all()


def test_the_banded_solve_with_consecutive_frame_coupling_equals_a_dense_solve():
    rng = np.random.default_rng(3)
    for n_frames in (2, 3, 7):
        p = 4
        a = rng.normal(size=(n_frames, p, p))
        blocks = a @ a.transpose(0, 2, 1) + 3 * np.eye(p)
        coupling = 0.3 * rng.normal(size=(n_frames - 1, p, p))
        smooth, rhs = rng.uniform(size=p), rng.normal(size=(n_frames, p))
        dense = np.zeros((n_frames * p, n_frames * p))
        for t in range(n_frames):
            dense[t * p:(t + 1) * p, t * p:(t + 1) * p] = blocks[t]
        for t in range(n_frames - 1):
            dense[t * p:(t + 1) * p, (t + 1) * p:(t + 2) * p] = coupling[t]
            dense[(t + 1) * p:(t + 2) * p, t * p:(t + 1) * p] = coupling[t].T
        c0, c1, c2 = second_difference_gram(n_frames)
        gram = np.diag(c0) + np.diag(c1, 1) + np.diag(c1, -1) + np.diag(c2, 2) + np.diag(c2, -2)
        dense += np.kron(gram, np.diag(smooth))
        got = solve_smoothed_blocks(*(torch.as_tensor(x) for x in (blocks, rhs, smooth, coupling)))
        np.testing.assert_allclose(got.numpy().ravel(), np.linalg.solve(dense, rhs.ravel()), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("vertical", [1.0, 0.3, 0.0])
def test_flow_normal_equations_are_the_gauss_newton_system_of_the_cost(vertical):
    rng = np.random.default_rng(5)
    n_frames, n_samples, p = 4, 6, 3
    jac = torch.as_tensor(rng.normal(size=(n_frames, n_samples, 2, p)))
    base = torch.as_tensor(rng.normal(size=(n_frames, n_samples, 2)))
    flow = torch.as_tensor(rng.normal(scale=0.1, size=(n_frames, n_samples, 2)))
    scale = torch.full((n_frames,), 0.4, dtype=torch.float64)
    known = torch.as_tensor(rng.uniform(size=(n_frames - 1, n_samples)))
    x = torch.zeros(n_frames, p, dtype=torch.float64, requires_grad=True)

    def cost(x):  # linear pixels in x: the Gauss-Newton system is exact
        pixels = base + torch.einsum("tsap,tp->tsa", jac, x)
        return flow_term.flow_weights(flow_term.flow_residuals(pixels, flow, scale), known, 2.0, 0.4, 1e9, vertical)[1]

    r = flow_term.flow_residuals(base, flow, scale)
    w, _ = flow_term.flow_weights(r, known, 2.0, 0.4, 1e9, vertical)
    diag, coupling, grad = flow_term.flow_system(r, jac, w, scale)
    hess = torch.autograd.functional.hessian(cost, x.detach()).reshape(n_frames * p, n_frames * p)
    g = torch.autograd.grad(cost(x), x)[0]
    np.testing.assert_allclose(grad.numpy(), g.numpy(), rtol=1e-10)
    for t in range(n_frames):
        np.testing.assert_allclose(diag[t].numpy(), hess[t * p:(t + 1) * p, t * p:(t + 1) * p].numpy(), rtol=1e-10)
    for t in range(n_frames - 1):
        np.testing.assert_allclose(coupling[t].numpy(), hess[t * p:(t + 1) * p, (t + 1) * p:(t + 2) * p].numpy(),
                                   rtol=1e-10, atol=1e-12)


def test_mouth_samples_cover_the_lips_chin_and_cheeks_but_not_the_mouth_interior(flame_model, mp_embedding):
    fitter = FlameFitter(flame_model, mp_embedding, FitConfig(flow_weight=1.0))
    points, normals = fitter.flow_surface
    assert len(points) == flow_term.N_SAMPLES
    assert (normals[:, 2] >= flow_term.MIN_FRONT_COS).all()  # front-facing skin only
    lips = mp_embedding.points(flame_model.v_template, flame_model.faces)[
        [list(mp_embedding.source_ids).index(i) for i in (61, 291, 0, 17)]]
    left, right, top, bottom = lips
    assert points[:, 0].min() < min(left[0], right[0]) and points[:, 0].max() > max(left[0], right[0])  # cheeks
    assert points[:, 1].min() < bottom[1] - 0.01 and points[:, 1].max() > top[1]  # the chin, above the lip


def _true_flow(flame_layer, motion, grid: int = 60) -> MouthFlow:
    """The exact image motion of the posed mesh from each frame to the next, on a grid around the mouth."""
    from scipy.interpolate import griddata

    verts = posed_vertices(flame_layer, motion).numpy()
    px = CAMERA.project(torch.as_tensor(verts)).numpy()
    normals = np.stack([np.cross(*(v[f[:, 1:]] - v[f[:, :1]]).transpose(1, 0, 2)) for v, f in
                        ((v, flame_layer.model.faces) for v in verts)])
    n_frames = len(verts)
    flows = np.full((n_frames, grid, grid, 2), np.nan, np.float16)
    origin = np.zeros((n_frames, 2), np.float32)
    step = np.full(n_frames, np.nan, np.float32)
    for t in range(n_frames - 1):
        front = np.unique(flame_layer.model.faces[normals[t][:, 2] > 0])  # faces turned toward the camera
        centre = px[t, front].mean(0)
        origin[t], step[t] = centre - 150, 300 / (grid - 1)
        nodes = origin[t] + step[t] * np.stack(np.meshgrid(np.arange(grid), np.arange(grid)), -1)
        flows[t] = griddata(px[t, front], px[t + 1, front] - px[t, front], nodes.reshape(-1, 2),
                            method="linear").reshape(grid, grid, 2)
    return MouthFlow(flows, origin, step)


def test_an_exact_flow_in_the_fit_brings_the_lip_motion_closer_to_the_truth(flame_model, flame_layer, mp_embedding,
                                                                          masks):
    """Noisy landmarks (1.5 px), the identity given, with and without the exact flow at the build's
    weight: the flow must bring the lips' frame-to-frame motion (each vertex's mean over the clip
    removed: what a flow can see) at least 20 % closer to the truth, and its sideways gain closer to 1."""
    lips = masks["lips"]
    dynamic, gain_x = {}, {}
    for weight in (0.0, 10.0):
        fitter = FlameFitter(flame_model, mp_embedding, FitConfig(flow_weight=weight))
        motion, seq = _synthetic_clip(flame_layer, mp_embedding, fitter, n_frames=30, noise=1.5, seed=10)
        seq.flow = _true_flow(flame_layer, motion)
        result = fitter.fit(seq, shape=motion.shape[:fitter.config.n_shape])
        assert (result.flow_residual_px is None) == (weight == 0)
        truth = canonical_vertices(flame_layer, motion)
        template = identity_template(flame_layer, motion.shape)
        err = (result.vertices.astype(np.float64) - truth)[:, lips]
        dynamic[weight] = np.linalg.norm(err - err.mean(0), axis=-1).mean() * 1000
        gain_x[weight] = accuracy_row(result.vertices.astype(np.float64), template, truth, template, masks)["lip_gain_x"]
    assert dynamic[10.0] < 0.8 * dynamic[0.0], dynamic
    assert abs(1 - gain_x[10.0]) < abs(1 - gain_x[0.0]), gain_x


def test_a_build_measures_the_flow_fits_it_and_records_its_residual(built):
    """The README build (defaults: the flow on): every clip's landmark cache holds the flow, and its
    QC the pixel term's residual, well under MediaPipe's frame-to-frame lip error (1-2 px)."""
    from recon3d.shards import open_dataset

    ds = open_dataset(built)
    try:
        for clip_id in ds.clip_ids():
            qc = ds.info(clip_id)["qc"]
            assert 0.0 < qc["flow_residual_px_mean"] < 0.6, (clip_id, qc)
            cache = next(built.glob(f"work/shards/*/landmarks/{clip_id}.npz"))
            with np.load(cache) as data:
                flow = MouthFlow.from_arrays({k: data[k] for k in data.files})
            assert flow.measured[:-1].mean() > 0.95 and not flow.measured[-1]
    finally:
        ds.close()


def test_preview_appearance_draws_the_flow_against_the_fit(built, tmp_path):
    """preview --appearance draws the flow's and the fit's arrows over the source (left half);
    without the flag neither colour is there."""
    import av

    from recon3d.render.preview import FLOW_COLOURS
    from tests.cli import run_cli

    clip, frames = "01-01-01-01-02-01-05", {}
    for name, extra in (("plain", []), ("flow", ["--appearance"])):
        out = tmp_path / f"{name}.mp4"
        run_cli("preview", str(built), clip, "--out", str(out), "--scale", "0.75", *extra)
        with av.open(str(out)) as container:
            decoded = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
            frames[name] = decoded[len(decoded) // 2]  # mid-sentence: the lips move
    for colour in FLOW_COLOURS.values():
        target = np.array(colour) * 255
        near = {k: (np.abs(f[:, : f.shape[1] // 2] - target).max(-1) < 60).sum() for k, f in frames.items()}
        assert near["flow"] > 30 + 5 * near["plain"], near
