"""build-dataset on real RAVDESS clips: real decoding, real MediaPipe, real HDF5, a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon3d.io.ravdess import parse_ravdess_name
from recon3d.io.video import iter_frames, probe
from recon3d.pipeline.config import BuildConfig
from recon3d.shards import WindowDataset, open_dataset
from tests import media
from tests.cli import build, run_cli
from tests.conftest import HYBRID, RAVDESS_VIDEO, STAND_IN, need

pytestmark = pytest.mark.slow


def test_build_matches_the_source_videos(built):
    manifest = json.loads((built / "manifest.json").read_text())
    videos = sorted(need(RAVDESS_VIDEO).glob("01-*.mp4"))  # the audio-video files; the video-only twin is skipped
    assert sorted(c["id"] for c in manifest["clips"]) == [v.stem for v in videos]
    assert manifest["failures"] == [] and (built / "failures.jsonl").read_text() == ""
    assert [(s["id"], s["reason"], s["twin"]) for s in manifest["skipped"]] == [
        ("02-01-06-01-01-01-05", "video-only twin", "01-01-06-01-01-01-05")]
    threshold = BuildConfig().qc.max_reprojection_iod
    with h5py.File(built / "shards" / "actor_05.h5", "r") as f:
        assert f.attrs["complete"] and f.attrs["n_clips"] == 4
        assert f["actors/05/template"].shape == (5023, 3) and f["mesh/faces"].shape == (9976, 3)
        for video in videos:
            g = f["clips"][video.stem]
            n_decoded = sum(1 for _ in iter_frames(video))
            fps = probe(video).fps
            assert g["vertices"].shape == (n_decoded, 5023, 3)
            points = 546 if g.attrs["landmark_backend"] == "mediapipe+dlib" else 478  # dlib's 68 after MediaPipe's
            assert g["landmarks"].shape == (n_decoded, points, 2) and g["landmarks_valid"][()].all()
            assert g["audio"].attrs["sample_rate"] == 16000
            assert len(g["audio"]) == round(n_decoded / fps * 16000)
            assert g["flame/expression"].shape[0] == n_decoded and g["flame/jaw_pose"].shape == (n_decoded, 3)
            labels = parse_ravdess_name(video.stem)
            assert g.attrs["emotion"] == labels.emotion and g.attrs["emotion_id"] == labels.emotion_id
            assert g.attrs["intensity"] == labels.intensity and g.attrs["actor"] == "05"
            assert g.attrs["statement"] == labels.statement and g.attrs["modality"] == labels.modality
            assert g.attrs["qc_reprojection_iod_mean"] < threshold
            assert len(g.attrs["source_sha256"]) == 64 and g.attrs["fitting_config_hash"]
            assert g.attrs["has_speech_audio"] and g.attrs["vocal_channel"] == 1
            # Canonical head space: the head is not rotated or moved in `vertices`.
            assert abs(float(g["vertices"][0].mean(axis=0)[2])) < 0.05
    assert "neutral_mean_expression_norm" in manifest["actors"]["05"]


def test_reader_and_window_dataset(built):
    ds = open_dataset(built)
    assert len(ds) == 4 and set(ds.clip_ids("train")) | set(ds.clip_ids("test")) == set(ds.clip_ids())
    clip = ds.load_clip("01-01-04-01-01-01-05", start=10, n_frames=30)
    assert clip.vertices.shape == (30, 5023, 3) and len(clip.audio) == round(30 * 16000 / clip.fps)
    windows = WindowDataset(ds, split="train", window_frames=40, seed=1)
    item = windows[0]
    assert item["offsets"].shape == (40, 5023, 3) and item["audio"].shape[0] == round(40 * 16000 / item["fps"])
    assert 0 <= item["emotion"] < 8 and item["intensity"] in (0, 1)
    whole = WindowDataset(ds, split="train")[1]
    assert whole["offsets"].shape[0] == ds.info(whole["clip_id"])["frames"]


def test_inspect_and_preview(built, tmp_path):
    out = run_cli("inspect", str(built), "--json").stdout
    summary = json.loads(out)
    assert summary["clips"] == 4 and summary["emotions"]["fearful"] == 2 and summary["failures"] == 0
    assert summary["skipped"] == 1 and summary["skipped_by_reason"] == {"video-only twin": 1}
    human = run_cli("inspect", str(built)).stdout
    assert "clips 4" in human and "skipped: 1 (video-only twin 1)" in human
    video = tmp_path / "preview.mp4"
    run_cli("preview", str(built), "01-01-01-01-02-01-05", "--out", str(video), "--scale", "0.25")
    import av

    with av.open(str(video)) as c:
        assert c.streams.video and c.streams.audio
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == open_dataset(built).info("01-01-01-01-02-01-05")["frames"]


def test_rerun_skips_finished_work(built):
    before = (built / "shards" / "actor_05.h5").stat().st_mtime_ns
    proc = build(need(RAVDESS_VIDEO), built)
    assert (built / "shards" / "actor_05.h5").stat().st_mtime_ns == before
    assert "4 clips written" in proc.stderr and "skipped: 1 (video-only twin 1)" in proc.stderr


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _children(pid: int) -> set[int]:
    return {int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "worker-killed"])
def test_a_polite_signal_stops_the_build_in_seconds_in_one_line_and_the_rerun_resumes(tmp_path, built, sig):
    """Ctrl-C and SIGTERM to the build, or a worker process killed (as the kernel's OOM killer would)."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "recon3d", "build-dataset", str(need(RAVDESS_VIDEO)), "--flame-model",
            str(STAND_IN), "--out", str(out), "--no-progress", "--workers", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "work").glob("shards/*/landmarks/*.npz")):
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 2, "the worker processes were not running"
    sent = time.time()
    if sig == signal.SIGKILL:
        os.kill(max(w for w in workers if b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()), sig)
    else:  # to the build command alone (a terminal's Ctrl-C reaches the workers too: they ignore it)
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    stopped_in = time.time() - sent
    why, code = ("a worker process died (killed, or out of memory)", 1) if sig == signal.SIGKILL else ("interrupted", 130)
    assert proc.returncode == code and stopped_in < 10, (proc.returncode, stopped_in, stderr[-2000:])
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("labels:", "landmarks:", "5 clips",
                                                                                           "4 clips"))]
    assert lines == [f"{why}: the build in {out} stopped; rerun the same command to continue where it stopped"], \
        stderr[-2000:]
    time.sleep(0.5)
    running = [w for w in workers if _state(w) not in (None, "Z")]  # a zombie has ended (init reaps it, or not here)
    assert not running, "a worker process outlived the build"
    assert not (out / "manifest.json").exists()
    build(need(RAVDESS_VIDEO), out)
    ds, ref = open_dataset(out), open_dataset(built)
    assert sorted(ds.clip_ids()) == sorted(ref.clip_ids())
    for clip_id in ref.clip_ids():
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)
    assert not list(out.rglob("*.tmp"))


def test_killed_build_resumes_complete(tmp_path, built):
    """SIGKILL the build midway, rerun the same command, get every clip exactly once."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "recon3d", "build-dataset", str(need(RAVDESS_VIDEO)), "--flame-model",
            str(STAND_IN), "--out", str(out), "--no-progress", "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "work").glob("shards/*/landmarks/*.npz"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the build finished before it could be killed"
    build(need(RAVDESS_VIDEO), out)
    ds, ref = open_dataset(out), open_dataset(built)
    assert sorted(ds.clip_ids()) == sorted(ref.clip_ids())
    with h5py.File(out / "shards" / "actor_05.h5", "r") as f:
        assert sorted(f["clips"]) == sorted(ref.clip_ids())
    for clip_id in ref.clip_ids():
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)
    assert not list(out.rglob("*.tmp"))


def test_bad_inputs_fail_alone_with_reasons(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    good = sorted(need(RAVDESS_VIDEO).glob("01-*.mp4"))[:2]
    for g in good:
        media.copy(g, videos / g.name)
    (videos / "01-01-03-01-01-01-07.mp4").write_bytes(b"")
    media.write_truncated(good[0], videos / "01-01-03-01-01-02-07.mp4", 0.4)
    (videos / "01-01-03-01-02-01-07.mp4").write_text("these are notes, not a video\n")
    media.write_no_face_video(videos / "01-01-03-01-02-02-07.mp4")
    media.write_audio_only_mp4(videos / "01-01-03-02-02-01-07.mp4")  # named audio-video, holds no video
    media.write_audio_only_mp4(videos / "03-01-03-01-01-01-07.mp4")  # named audio-only: skipped, not failed
    (videos / "01-01-03-02-01-01-07.mp4").symlink_to(tmp_path / "gone.mp4")  # unreadable: dangling link
    media.copy(good[0], videos / "interview_take3.mp4")
    media.write_first_frames(good[0], videos / "01-01-03-02-01-02-07.mp4", 3)
    out = tmp_path / "out"
    proc = build(videos, out, "--workers", "2", check_exit=1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(c["id"] for c in manifest["clips"]) == sorted(g.stem for g in good)
    reasons = {f["id"]: f["reason"] for f in manifest["failures"]}
    lines = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {f["id"]: f["reason"] for f in lines} == reasons
    expected = {
        "01-01-03-01-01-01-07": "zero-byte file",
        "01-01-03-01-01-02-07": "truncated|corrupt",
        "01-01-03-01-02-01-07": "not a readable video",
        "01-01-03-01-02-02-07": "no face detected",
        "01-01-03-02-02-01-07": "no video stream",
        "01-01-03-02-01-01-07": "not found|cannot be read",
        "interview_take3": "not a RAVDESS name",
        "01-01-03-02-01-02-07": "fewer than the minimum 5",
    }
    import re

    for clip_id, pattern in expected.items():
        assert clip_id in reasons, f"{clip_id} not recorded as failed: {reasons}"
        assert re.search(pattern, reasons[clip_id]), (clip_id, reasons[clip_id])
    assert "03-01-03-01-01-01-07" not in reasons
    assert [(s["id"], s["reason"]) for s in manifest["skipped"]] == [("03-01-03-01-01-01-07", "audio-only")]
    assert "FAILED" in proc.stderr


def test_labels_none_accepts_any_name(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    media.write_first_frames(sorted(need(RAVDESS_VIDEO).glob("*.mp4"))[0], videos / "my talk.mp4", 12)
    out = tmp_path / "out"
    build(videos, out, "--labels", "none", "--workers", "1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["id"] for c in manifest["clips"]] == ["my talk"] and manifest["clips"][0]["labels"] is None


def test_changed_config_is_refused_without_force(built, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("fitting:\n  smooth_expr: 3.0\n")
    proc = build(need(RAVDESS_VIDEO), built, "--config", str(cfg), check_exit=2)
    assert "different configuration" in proc.stderr and "--force" in proc.stderr
    assert "fitting.smooth_expr: 20.0 -> 3.0" in proc.stderr  # the message names what changed


def test_compression_is_a_storage_choice_that_changes_no_value(built, tmp_path):
    """Vertices are stored uncompressed by default; LZF stores the same values, and a build made with
    it goes on with the default setting without being refused or redone."""
    cfg = tmp_path / "lzf.yaml"
    cfg.write_text("storage:\n  compression: lzf\n")
    out = tmp_path / "out"
    build(need(RAVDESS_VIDEO), out, "--config", str(cfg), "--workers", "2")
    ds, ref = open_dataset(out), open_dataset(built)
    clip_id = ref.clip_ids()[0]
    with h5py.File(built / "shards" / "actor_05.h5") as a, h5py.File(out / "shards" / "actor_05.h5") as b:
        assert a[f"clips/{clip_id}/vertices"].compression is None
        assert b[f"clips/{clip_id}/vertices"].compression == "lzf"
    for clip_id in ref.clip_ids():  # as another build of the same clips (float32 rounding of the fit)
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)
    before = (out / "shards" / "actor_05.h5").stat().st_mtime_ns
    proc = build(need(RAVDESS_VIDEO), out)
    assert (out / "shards" / "actor_05.h5").stat().st_mtime_ns == before and "4 clips written" in proc.stderr


def test_split_shards_give_the_same_dataset(built, tmp_path):
    """An actor split over several shards (e.g. for SLURM) shares one identity: same meshes."""
    cfg = tmp_path / "split.yaml"
    cfg.write_text("shards:\n  max_clips_per_shard: 3\n")
    out = tmp_path / "out"
    build(need(RAVDESS_VIDEO), out, "--config", str(cfg), "--workers", "2")
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted({c["shard"] for c in manifest["clips"]}) == ["actor_05_00", "actor_05_01"]
    assert manifest["actors"]["05"]["shards"] == ["actor_05_00", "actor_05_01"]
    ds, ref = open_dataset(out), open_dataset(built)
    for clip_id in ref.clip_ids():
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)


def test_the_readme_clips_build_within_qc_with_the_flame2023_open_hybrid(tmp_path):
    """The second test model (real FLAME 2023 Open template, identity and articulation) builds the
    same clips, every one within the QC thresholds."""
    out = tmp_path / "out"
    build(need(RAVDESS_VIDEO), out, "--workers", "2", model=need(HYBRID))
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["clips"]) == 4 and not manifest["failures"]
    qc = BuildConfig().qc
    for clip in manifest["clips"]:
        assert clip["qc"]["reprojection_iod_mean"] < qc.max_reprojection_iod, clip
        assert clip["qc"]["reprojection_iod_p95"] < qc.max_reprojection_p95_iod, clip
        assert clip["qc"]["pass"], clip
    assert manifest["build"]["flame_model"].endswith("flame2023_open_hybrid.pkl")


def test_the_jaw_line_option_builds_real_clips_within_qc(built, tmp_path):
    """`fitting.contour_weight` on real MediaPipe output: the README clips build within QC, and the
    faces move by under 2 mm on average (measured 0.8 mm: the actor's identity takes up the jaw line)."""
    from recon3d.flame import load_flame_model
    from recon3d.flame.masks import find_masks, load_flame_masks

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("fitting:\n  contour_weight: 1.0\n")
    out = tmp_path / "out"
    build(need(RAVDESS_VIDEO), out, "--config", str(cfg), "--workers", "2")
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["clips"]) == 4 and not manifest["failures"]
    assert all(c["qc"]["pass"] for c in manifest["clips"])
    model = load_flame_model(STAND_IN, n_shape=1, n_expr=1)
    masks = load_flame_masks(find_masks(model_path=model.path), model.n_vertices)
    ds, ref = open_dataset(out), open_dataset(built)
    for clip_id in ref.clip_ids():
        moved = np.linalg.norm(ds.load_clip(clip_id).vertices - ref.load_clip(clip_id).vertices, axis=-1).mean(0)
        assert 0.0 < moved[masks["face"]].mean() < 0.002, clip_id  # metres
