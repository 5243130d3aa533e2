"""dlib's 68 points beside MediaPipe's: real dlib on real RAVDESS video, the fused fit, the build's
choice of sources (recorded, refused when it changes), and preview --landmarks."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import h5py
import numpy as np
import pytest

from recon3d.landmarks import create_detector, track_video
from recon3d.landmarks.schemes import DLIB_OFFSET, MEDIAPIPE_DLIB
from tests.cli import build, run_cli
from tests.conftest import HYBRID, RAVDESS_VIDEO, STAND_IN, need

dlib_backend = pytest.importorskip("recon3d.landmarks.dlib_backend")
if dlib_backend.dlib_missing():
    pytest.skip(f"dlib source not installed here: {dlib_backend.dlib_missing()}", allow_module_level=True)

#: Blocks ``import dlib`` in a subprocess, as on a machine without the [dlib] extra.
WITHOUT_DLIB = "import sys; sys.modules['dlib'] = None; from recon3d.cli.main import cli; cli()"


def test_dlib_points_follow_mediapipe_on_a_real_clip():
    """Real dlib, its box taken from MediaPipe's points: 68 sub-pixel points on the same face
    (mouth corners, chin and eye corners within a few % of the inter-ocular distance of
    MediaPipe's), every frame."""
    video = need(RAVDESS_VIDEO / "01-01-06-02-01-01-05.mp4")
    track = track_video(video, create_detector("mediapipe", dlib=True))
    assert track.points.shape[1:] == (546, 2) and track.valid.all()
    mp, dl = track.points[:, :DLIB_OFFSET], track.points[:, DLIB_OFFSET:]
    iod = np.linalg.norm(mp[:, 33] - mp[:, 263], axis=-1)
    for mp_id, dlib_id in ((61, 48), (291, 54), (152, 8), (33, 36), (263, 45)):
        gap = np.linalg.norm(mp[:, mp_id] - dl[:, dlib_id], axis=-1) / iod
        assert np.median(gap) < 0.06, (mp_id, dlib_id, np.median(gap))
    assert np.mean(dl != np.round(dl)) > 0.5  # the 2x crop gives sub-pixel points
    # Mouth opening: both detectors see the same motion.
    mp_open = np.linalg.norm(mp[:, 13] - mp[:, 14], axis=-1) / iod
    dl_open = np.linalg.norm(dl[:, 62] - dl[:, 66], axis=-1) / iod
    assert np.corrcoef(mp_open, dl_open)[0, 1] > 0.8


@pytest.mark.parametrize("model", [STAND_IN, HYBRID])
def test_calibration_files_hold_both_sources(model):
    """Each test model's calibration has dlib's fused points (offsets, per-axis noise) and both
    outlines' jaw-line offsets, and MediaPipe's entries beside them."""
    from recon3d.fitting.landmark_bias import resolve_offsets_path
    from recon3d.flame import load_flame_model

    path = resolve_offsets_path("default", load_flame_model(need(model), n_shape=1, n_expr=1))
    with np.load(path) as data:
        ids = data["landmark_indices"]
        assert set(DLIB_OFFSET + np.arange(48, 68)) <= set(ids.tolist()) and (ids < DLIB_OFFSET).sum() == 115
        assert data["residual_iod_xy"].shape == (len(ids), 2) and np.isfinite(data["residual_iod_xy"]).all()
        for key in ("contour_offsets", "dlib_contour_offsets", "dlib_contour_residual_iod"):
            assert np.isfinite(data[key]).all() and len(data[key]) == 5


def test_fused_fit_on_synthetic_landmarks(flame_model, flame_layer, masks):
    """On synthetic landmarks of both sources (1 px noise each, the true identity), the fused fit's
    lip motion stays within 0.1 mm of MediaPipe's alone (on such ideal points the second source
    has nothing to correct: benchmarks/fit_accuracy.py), and the fit uses dlib's jaw line."""
    from recon3d.fitting import FitConfig, FlameFitter, LandmarkSequence, PinholeCamera
    from recon3d.flame import load_fan68_embedding, load_mediapipe_dlib_embedding, load_mediapipe_embedding
    from recon3d.landmarks.schemes import MEDIAPIPE
    from recon3d.synth.accuracy import accuracy_row
    from recon3d.synth.motion import canonical_vertices, identity_template, place_in_front_of, project_landmarks, sample_motion

    mp_emb = load_mediapipe_embedding(flame_model)
    outline = load_fan68_embedding(flame_model)
    camera = PinholeCamera.from_fov(1280, 720, 40.0)
    motion = place_in_front_of(flame_layer, mp_emb, sample_motion(flame_layer, mp_emb, 60, 29.97, 5), camera, 250.0)
    truth = canonical_vertices(flame_layer, motion)
    errors = {}
    for name, emb, scheme in (("mediapipe", mp_emb, MEDIAPIPE),
                              ("both", load_mediapipe_dlib_embedding(flame_model), MEDIAPIPE_DLIB)):
        fitter = FlameFitter(flame_model, emb, FitConfig(contour_weight=1.0), scheme)
        clean = project_landmarks(flame_layer, emb, motion, camera, outline, scheme)
        points = clean + np.random.default_rng(1).normal(0.0, 1.0, clean.shape)
        seq = LandmarkSequence(points, np.ones(60, bool), 1280, 720, 29.97, scheme=scheme)
        result = fitter.fit(seq, shape=np.asarray(motion.shape))
        row = accuracy_row(result.vertices.astype(np.float64), identity_template(flame_layer, result.shape), truth,
                           identity_template(flame_layer, motion.shape), masks)
        errors[name] = row["lip_motion_mm"]
        if name == "both":
            assert list(fitter.scheme.face_contour) == list(range(DLIB_OFFSET, DLIB_OFFSET + 17))
            # the jaw line twice: against dlib's jaw line, and MediaPipe's oval where dlib is not trusted
            assert len(fitter.outlines) == 2 and fitter.point_w.shape == (len(emb) + 2 * 5 + len(fitter.pairs), 2)
    assert errors["both"] < errors["mediapipe"] + 0.1 and errors["both"] < 0.8, errors


def test_build_records_its_sources_and_refuses_another_choice(built, tmp_path):
    """The default build (dlib installed) fuses both sources: 546 points per frame in the shard,
    each clip's landmark_backend, the manifest and inspect say so; a rerun with --dlib off is
    refused, naming the option."""
    manifest = json.loads((built / "manifest.json").read_text())
    assert {c["landmark_sources"] for c in manifest["clips"]} == {"mediapipe+dlib"}
    with h5py.File(built / "shards" / "actor_05.h5", "r") as f:
        for clip in f["clips"].values():
            assert clip["landmarks"].shape[1] == 546 and clip.attrs["landmark_backend"] == "mediapipe+dlib"
    text = run_cli("inspect", str(built)).stdout
    assert "landmark sources: mediapipe+dlib 4" in text
    summary = json.loads(run_cli("inspect", str(built), "--json").stdout)
    assert summary["landmark_sources"] == {"mediapipe+dlib": 4}
    stamp = json.loads((built / "work" / "build.json").read_text())
    assert stamp["config"]["landmarks"]["dlib"] == "on"  # auto, as resolved here
    refused = build(need(RAVDESS_VIDEO), built, "--dlib", "off", check_exit=2)
    assert 'landmarks.dlib: "on" -> "off"' in refused.stderr and "--force" in refused.stderr


def test_without_dlib_auto_says_so_and_on_stops(tmp_path):
    """Where dlib cannot be imported, auto builds with MediaPipe alone and says so in one line;
    --dlib on stops before any clip with what to install (exit 2, nothing recorded)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "01-01-01-01-02-01-05.mp4").symlink_to(need(RAVDESS_VIDEO / "01-01-01-01-02-01-05.mp4"))
    common = ["build-dataset", str(videos), "--flame-model", str(need(STAND_IN)), "--no-progress", "--workers", "1"]
    on = subprocess.run([sys.executable, "-c", WITHOUT_DLIB, *common, "--out", str(tmp_path / "on"), "--dlib", "on"],
                        capture_output=True, text=True, timeout=300)
    assert on.returncode == 2 and "dlib is not installed" in on.stderr and "recon3d[dlib]" in on.stderr
    assert not (tmp_path / "on" / "manifest.json").exists()
    auto = subprocess.run([sys.executable, "-c", WITHOUT_DLIB, *common, "--out", str(tmp_path / "auto")],
                          capture_output=True, text=True, timeout=300)
    assert auto.returncode == 0, auto.stderr[-2000:]
    notes = [line for line in auto.stderr.splitlines() if line.startswith("landmarks: MediaPipe alone")]
    assert len(notes) == 1 and "recon3d[dlib]" in notes[0]
    manifest = json.loads((tmp_path / "auto" / "manifest.json").read_text())
    assert [c["landmark_sources"] for c in manifest["clips"]] == ["mediapipe"]


def test_preview_draws_both_detectors_points(built, tmp_path):
    """preview --landmarks draws the points the fit saw: dlib's in orange, MediaPipe's in cyan,
    over the source frame (left half); without the flag neither colour is there."""
    clip = "01-01-01-01-02-01-05"
    frames = {}
    for name, extra in (("plain", []), ("points", ["--landmarks"])):
        out = tmp_path / f"{name}.mp4"
        run_cli("preview", str(built), clip, "--out", str(out), "--scale", "0.5", *extra)
        with av.open(str(out)) as container:
            frames[name] = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    from recon3d.render.preview import SOURCE_COLOURS

    for colour in SOURCE_COLOURS.values():
        target = np.array(colour) * 255
        near = {k: (np.abs(f[:, : f.shape[1] // 2] - target).max(-1) < 40).sum() for k, f in frames.items()}
        assert near["points"] > 50 + 5 * near["plain"], near
