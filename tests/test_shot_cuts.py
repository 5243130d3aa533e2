"""Shot cuts (issue 39): two real clips spliced, the second seen by another camera, are found
apart and fitted without smoothing across the join; real clips without cuts have none."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from recon3d.fitting import FlameFitter, LandmarkSequence
from recon3d.flame import load_flame_model, load_mediapipe_embedding
from recon3d.flame.lbs import axis_angle_to_matrix
from recon3d.landmarks.base import track_video
from recon3d.landmarks.mouth_flow import MouthFlowTracker
from recon3d.landmarks.registry import create_detector
from recon3d.landmarks.schemes import MEDIAPIPE
from recon3d.landmarks.shots import shot_starts
from recon3d.pipeline.config import BuildConfig
from recon3d.shards import open_dataset
from recon3d.shards.reader import window_in_one_shot
from tests import media
from tests.cli import build
from tests.conftest import ASSETS, HYBRID, RAVDESS_VIDEO, STAND_IN, need

pytestmark = pytest.mark.slow
FIRST, SECOND = "01-01-01-01-02-01-05.mp4", "01-01-04-01-01-01-05.mp4"


@pytest.fixture(scope="module")
def spliced(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(first clip, second clip zoomed, the two joined by a cut), encoded alike."""
    out = tmp_path_factory.mktemp("cuts") / "spliced.mp4"
    return media.write_spliced(need(RAVDESS_VIDEO / FIRST), need(RAVDESS_VIDEO / SECOND), out)


def _sequence(path: Path, detector, flow: bool) -> LandmarkSequence:
    track = track_video(path, detector, flow=MouthFlowTracker.for_scheme(MEDIAPIPE) if flow else None)
    return LandmarkSequence(track.points, track.valid, track.width, track.height, track.fps, track.score, MEDIAPIPE,
                            track.mouth_flow, track.image_change)


def test_the_cut_is_found_at_the_splice_and_none_in_real_clips(spliced):
    detector = create_detector("mediapipe")
    first, _, joined = spliced
    n_first = len(track_video(first, detector).valid)
    assert list(_sequence(joined, detector, False).shot_starts()) == [n_first]
    clips = sorted(need(RAVDESS_VIDEO).glob("*.mp4")) + sorted((ASSETS / "video").glob("*/*.mp4"))
    assert len(clips) >= 5
    for clip in clips:  # talking, a far head turn, fast motion: one shot each
        assert len(_sequence(clip, detector, False).shot_starts()) == 0, clip.name


def test_a_flash_is_no_cut_and_a_shot_without_a_face_joins_the_one_before():
    n = 30
    points = np.zeros((n, 478, 2))
    points[:, :, 0] = np.linspace(0, 100, 478)  # a face 100 px wide between the eye corners
    points[:, 263, 0], points[:, 33, 0] = 0.0, 100.0
    valid = np.ones(n, bool)
    change = np.full(n, 0.4)
    change[10] = 40.0  # a flash: the picture changes, the face does not move
    assert len(shot_starts(points, valid, change, MEDIAPIPE.outer_eye_corners)) == 0
    points[20:] += 50.0  # a cut at 20: the face jumps half its width
    change[20] = 40.0
    assert list(shot_starts(points, valid, change, MEDIAPIPE.outer_eye_corners)) == [20]
    valid[20:25] = False  # ... to a shot without a face until the next cut, at 25
    change[25] = 40.0
    assert list(shot_starts(points, valid, change, MEDIAPIPE.outer_eye_corners)) == [25]


def _posed(result) -> np.ndarray:
    rotation = axis_angle_to_matrix(torch.as_tensor(result.global_pose)).numpy()
    return np.einsum("tvc,tdc->tvd", result.vertices.astype(np.float64), rotation) + result.head_translation[:, None]


@pytest.mark.parametrize("model_path", [STAND_IN, HYBRID], ids=["stand-in", "flame2023-open-hybrid"])
def test_nothing_is_smoothed_across_the_cut(spliced, model_path):
    """Fitted with one identity, the spliced clip's frames next to the cut differ from each clip
    fitted alone no more than frames far from it do, in the head's own space and as the camera sees
    it; fitted in one piece (shot_cuts off), the join is pulled together."""
    fit = BuildConfig().fitting
    model = load_flame_model(need(model_path), n_shape=fit.n_shape, n_expr=fit.n_expr)
    detector = create_detector("mediapipe")
    first, second, joined = (_sequence(p, detector, fit.flow_weight > 0) for p in spliced)
    n = first.n_frames
    near = np.r_[n - 3:n + 3]
    far = np.r_[10:n - 10, n + 10:joined.n_frames - 10]
    join_mm = {}
    for cuts in (True, False):
        fitter = FlameFitter(model, load_mediapipe_embedding(model), replace(fit, shot_cuts=cuts))
        shape = fitter.fit_identity([first, second])
        alone = [fitter.fit(s, shape) for s in (first, second)]
        together = fitter.fit(joined, shape)
        assert list(together.shot_starts) == ([n] if cuts else [])
        for space, of in (("head", lambda r: r.vertices.astype(np.float64)), ("camera", _posed)):
            diff = np.linalg.norm(of(together) - np.concatenate([of(r) for r in alone]), axis=-1).mean(1) * 1000
            join_mm[cuts, space] = (diff[near].max(), diff[far].max())
    for space in ("head", "camera"):
        near_mm, far_mm = join_mm[True, space]
        assert near_mm <= far_mm, (space, join_mm)
        near_mm, far_mm = join_mm[False, space]
        assert near_mm > 3 * far_mm, (space, join_mm)  # what the cut detection prevents


def test_a_spliced_video_builds_in_two_shots(spliced, tmp_path):
    first, _, joined = spliced
    videos = tmp_path / "videos"
    videos.mkdir()
    media.copy(joined, videos / "interview.mp4")
    out = tmp_path / "out"
    build(videos, out, "--labels", "none", "--workers", "1")
    ds = open_dataset(out)
    try:
        qc = ds.info("interview")["qc"]
    finally:
        ds.close()
    n_first = len(track_video(first, create_detector("mediapipe")).valid)
    assert qc["shots"] == 2 and qc["shot_starts"] == str(n_first), qc
    assert "lip_jitter" not in qc["flags"]


def test_training_windows_stay_within_one_shot():
    rng = np.random.default_rng(0)
    starts = {window_in_one_shot(100, 30, [40, 45], rng) for _ in range(3000)}
    assert starts == {(s, 30) for s in [*range(0, 11), *range(45, 71)]}  # every window that crosses no cut
    assert window_in_one_shot(50, 45, [10], rng) == (10, 40)  # no shot long enough: the longest whole
    again, plain = np.random.default_rng(1), np.random.default_rng(1)  # without cuts: as before cuts existed
    assert [window_in_one_shot(100, 30, [], again) for _ in range(20)] == [
        (int(plain.integers(0, 71)), 30) for _ in range(20)]
