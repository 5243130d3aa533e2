"""Long clips (issue 39): fitted in overlapping windows, equal to one piece; meshes written a block
at a time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recon3d.fitting import FlameFitter, LandmarkSequence
from recon3d.fitting.windows import temporal_windows
from recon3d.flame import load_flame_model, load_mediapipe_embedding
from recon3d.flame.masks import load_flame_masks
from recon3d.landmarks.base import track_video
from recon3d.landmarks.mouth_flow import MouthFlow, MouthFlowTracker
from recon3d.landmarks.registry import create_detector
from recon3d.landmarks.schemes import MEDIAPIPE
from recon3d.pipeline.config import BuildConfig
from tests.conftest import FLAME_DIR, HYBRID, RAVDESS_VIDEO, STAND_IN, need


@pytest.mark.parametrize("n_frames", [1, 150, 200, 201, 999])
def test_windows_keep_every_frame_once_with_context_on_both_sides(n_frames):
    windows = temporal_windows(n_frames, 200, 60)
    kept = [f for _, _, a, b in windows for f in range(a, b)]
    assert kept == list(range(n_frames))
    for fit_a, fit_b, keep_a, keep_b in windows:
        assert fit_b - fit_a <= 200
        assert keep_a - fit_a == min(60, keep_a) or len(windows) == 1
        assert fit_b - keep_b == min(60, n_frames - keep_b) or len(windows) == 1
    assert temporal_windows(n_frames, 0, 60) == [(0, n_frames, 0, n_frames)]


@pytest.fixture(scope="module")
def long_sequence() -> LandmarkSequence:
    """A real clip's landmarks and mouth flow, played forward and back to 600 frames (one shot)."""
    track = track_video(need(RAVDESS_VIDEO / "01-01-06-02-01-01-05.mp4"), create_detector("mediapipe"),
                        flow=MouthFlowTracker.for_scheme(MEDIAPIPE))
    n = len(track.valid)
    order = np.resize(np.r_[np.arange(n), np.arange(n)[::-1]], 600)
    flow = track.mouth_flow
    return LandmarkSequence(track.points[order], track.valid[order], track.width, track.height, track.fps,
                            track.score[order], MEDIAPIPE,
                            MouthFlow(flow.flow[order], flow.origin[order], flow.step[order]), track.image_change[order])


@pytest.mark.slow
@pytest.mark.parametrize("model_path", [STAND_IN, HYBRID], ids=["stand-in", "flame2023-open-hybrid"])
def test_a_windowed_fit_equals_one_piece_on_the_lips(long_sequence, model_path):
    """Windows of 200 frames overlapping by 60 on each side: the lips within 0.02 mm of the fit in
    one piece (issue 39's goal) on every frame; the meshes left to FitResult.mesh are those the
    fit would have given at once."""
    fit = BuildConfig().fitting
    model = load_flame_model(need(model_path), n_shape=fit.n_shape, n_expr=fit.n_expr)
    lips = load_flame_masks(need(FLAME_DIR / "FLAME_masks.pkl"), model.n_vertices)["lips"]
    embedding = load_mediapipe_embedding(model)
    whole = FlameFitter(model, embedding, replace(fit, window_frames=0))
    shape = whole.fit_identity([long_sequence])
    reference = whole.fit(long_sequence, shape)
    windowed = FlameFitter(model, embedding, replace(fit, window_frames=200, window_overlap=60))
    lazy = windowed.fit(long_sequence, shape, vertices=False)
    assert lazy.vertices is None and lazy.n_frames == 600 and len(lazy.shot_starts) == 0
    meshes = np.concatenate([block for _, block in lazy.mesh_chunks(97)])
    error_mm = np.linalg.norm(meshes[:, lips] - reference.vertices[:, lips], axis=-1).max() * 1000
    assert error_mm <= 0.02, error_mm
    at_once = windowed.fit(long_sequence, shape).vertices
    assert np.abs(meshes - at_once).max() < 1e-7  # float32 rounding (batches of another size) at most
    narrow = FlameFitter(model, embedding, replace(fit, window_frames=200, window_overlap=10))
    too_little = np.linalg.norm(narrow.fit(long_sequence, shape).vertices[:, lips] - reference.vertices[:, lips],
                                axis=-1).max() * 1000
    assert too_little > 0.1, too_little  # the overlap is what makes it equal
