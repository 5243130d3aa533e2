"""Long clips (issue 39): fitted in overlapping windows, equal to one piece; meshes written a block
at a time."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

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


def _one_take(root: Path, take: str = "01-01-06-02-01-01-05.mp4") -> Path:
    """A folder holding one real take (by default ~3.7 s), ``talk.mp4``."""
    from tests import media

    videos = root / "videos"
    videos.mkdir()
    media.copy(need(RAVDESS_VIDEO / take), videos / "talk.mp4")
    return videos


def _parts_config(path: Path, chunk_seconds: float, window_frames: int, window_overlap: int) -> Path:
    """A build configuration that tracks in parts and fits in windows of the given sizes (MediaPipe only)."""
    path.write_text(f"landmarks:\n  chunk_seconds: {chunk_seconds}\n  dlib: 'off'\n"
                    f"fitting:\n  window_frames: {window_frames}\n  window_overlap: {window_overlap}\n")
    return path


@pytest.mark.slow
def test_a_long_video_is_tracked_and_fitted_in_parts_and_joined_as_one_piece(tmp_path):
    """A real take built in parts on two workers (tracked in 1-s parts, fitted in 60-frame windows
    overlapping by 20, each a task) against the take tracked and fitted whole: the same frames,
    times and audio; the landmarks within 0.2 % of the eye-corner distance and the fitted lips
    within 0.2 mm (a part starts its track afresh 1 s early, and MediaPipe's points keep a little
    of their history: 0.05-0.13 % from the third part on, a tenth of its own frame-to-frame lip
    noise); no seam: the lips move no more at a part's first frame than anywhere in the whole
    take's fit; the pieces fitted by the workers and joined are the fitter's own windowed fit of
    the same landmarks; the parts' files are removed."""
    from recon3d.shards import open_dataset
    from recon3d.shards import schema as S
    from tests.cli import build

    videos = _one_take(tmp_path)
    parts_config = _parts_config(tmp_path / "parts.yaml", 1.0, 60, 20)
    whole_config = tmp_path / "whole.yaml"
    whole_config.write_text("landmarks:\n  chunk_seconds: 0\n  dlib: 'off'\nfitting:\n  window_frames: 0\n")
    outs = {}
    for name, config, workers in (("parts", parts_config, "2"), ("whole", whole_config, "1")):
        outs[name] = tmp_path / name
        build(videos, outs[name], "--labels", "none", "--workers", workers, "--config", str(config))
    assert not list((outs["parts"] / "work").rglob("*.chunks")) and not list((outs["parts"] / "work").rglob("*.parts"))
    data = {}
    for name, out in outs.items():
        ds = open_dataset(out)
        try:
            data[name] = {key: ds.array("talk", key) for key in (S.TIMES, S.LANDMARKS, S.VERTICES, S.AUDIO)}
            assert ds.info("talk")["qc"]["pass"], ds.info("talk")["qc"]
        finally:
            ds.close()
    parts, whole = data["parts"], data["whole"]
    assert np.array_equal(parts[S.TIMES], whole[S.TIMES]) and np.array_equal(parts[S.AUDIO], whole[S.AUDIO])
    a, b = MEDIAPIPE.outer_eye_corners
    iod = np.linalg.norm(whole[S.LANDMARKS][:, a] - whole[S.LANDMARKS][:, b], axis=-1)
    moved = np.linalg.norm(parts[S.LANDMARKS] - whole[S.LANDMARKS], axis=-1).mean(1) / iod
    assert moved.max() < 0.002, moved.max()
    model = load_flame_model(need(STAND_IN))
    lips = load_flame_masks(need(FLAME_DIR / "FLAME_masks.pkl"), model.n_vertices)["lips"]
    lip_mm = np.linalg.norm(parts[S.VERTICES][:, lips] - whole[S.VERTICES][:, lips], axis=-1).max() * 1000
    assert lip_mm < 0.2, lip_mm
    accel = {name: np.linalg.norm(np.diff(d[S.VERTICES][:, lips], 2, axis=0), axis=-1).mean(1) for name, d in data.items()}
    fps = 1 / np.median(np.diff(whole[S.TIMES]))
    starts = [int(round(k * fps)) for k in (1, 2, 3)]  # the parts' first frames
    at_joins = max(accel["parts"][s - 2:s + 1].max() for s in starts)
    assert at_joins <= accel["whole"].max(), (at_joins, accel["whole"].max())

    from recon3d.pipeline.landmark_cache import load_landmarks, sequence_of
    from recon3d.pipeline.workspace import Workspace

    work = Workspace(outs["parts"]).shard_work(next((outs["parts"] / "work" / "shards").iterdir()).name)
    with np.load(work.identity("talk")) as identity:
        shape = identity["shape"]
    fit = replace(BuildConfig().fitting, window_frames=60, window_overlap=20)
    fitter = FlameFitter(model, load_mediapipe_embedding(model), fit)
    in_process = fitter.fit(sequence_of(load_landmarks(work, "talk")), shape).vertices
    assert np.abs(in_process - parts[S.VERTICES]).max() < 1e-7


@pytest.fixture(scope="module")
def parts_video(tmp_path_factory):
    """A real take (~3.7 s) and a build of it in parts of 0.5 s and fit pieces of 30 frames,
    uninterrupted: the reference a resumed build must equal."""
    from tests.cli import build

    root = tmp_path_factory.mktemp("parts_video")
    videos, config = _one_take(root), _parts_config(root / "parts.yaml", 0.5, 30, 10)
    build(videos, root / "reference", "--labels", "none", "--workers", "2", "--config", str(config))
    return videos, config, root / "reference"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["*.chunks", "*.parts"], ids=["tracking-parts", "fit-pieces"])
def test_a_build_killed_midway_through_a_long_videos_parts_resumes_to_the_same_clip(parts_video, tmp_path, stage):
    """SIGKILL once the first of a long video's landmark parts (or fit pieces) is on disk and the
    clip is not finished; the same command again finishes it from the parts it finds: the same
    landmarks and audio as the uninterrupted build, the same meshes within 1e-6 m (they differed
    by a float32 rounding), no part or temporary file left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from recon3d.shards import open_dataset
    from recon3d.shards import schema as S
    from tests.cli import build

    videos, config, reference = parts_video
    out = tmp_path / "out"
    args = [sys.executable, "-m", "recon3d", "build-dataset", str(videos), "--flame-model", str(need(STAND_IN)),
            "--out", str(out), "--no-progress", "--labels", "none", "--workers", "2", "--config", str(config)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    work = out / "work" / "shards"
    deadline = time.time() + 300
    while time.time() < deadline and not list(work.glob(f"*/*/{stage}/0000.npz")) and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(work.glob(f"*/*/{stage}/0000.npz")), "no part was written before the kill"
    assert not list(work.glob("*/clips/talk.h5")), "the clip was finished before it could be killed"
    build(videos, out, "--labels", "none", "--workers", "2", "--config", str(config))
    assert not list(work.rglob("*.chunks")) and not list(work.rglob("*.parts")) and not list(out.rglob("*.tmp"))
    resumed, ref = open_dataset(out), open_dataset(reference)
    try:
        for key in (S.TIMES, S.LANDMARKS, S.AUDIO):
            assert np.array_equal(resumed.array("talk", key), ref.array("talk", key)), key
        np.testing.assert_allclose(resumed.array("talk", S.VERTICES), ref.array("talk", S.VERTICES), atol=1e-6)
    finally:
        resumed.close()
        ref.close()


@pytest.mark.slow
def test_a_last_part_past_the_videos_frames_is_empty_not_a_failure(tmp_path):
    """A container may declare more than its frames last (this take: 3.270 s, its last frame at
    3.237 s), so the last of its quarter-second parts holds no frame: the clip is built with every
    frame, as tracked whole (it failed as "shorter than its container declares")."""
    from recon3d.shards import open_dataset
    from recon3d.shards import schema as S
    from tests.cli import build

    videos = _one_take(tmp_path, "01-01-04-01-01-01-05.mp4")
    build(videos, tmp_path / "out", "--labels", "none", "--config", str(_parts_config(tmp_path / "p.yaml", 0.25, 0, 60)))
    ds = open_dataset(tmp_path / "out")
    try:
        times = ds.array("talk", S.TIMES)
    finally:
        ds.close()
    assert len(times) == 98 and times[-1] == pytest.approx(3.2366, abs=1e-3)
