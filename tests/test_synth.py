"""recon3d synth: playable videos whose truth matches what MediaPipe sees, and build-dataset on them."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest

from recon3d.landmarks import create_detector
from recon3d.synth.video import load_truth
from tests.conftest import FLAME_DIR, HYBRID, STAND_IN, need

pytestmark = pytest.mark.slow
#: Documented tolerances for short synthetic clips built end to end (docs/fitting.md).
MOTION_TOLERANCE_MM = {"lip_motion_mm": 2.0, "face_motion_mm": 1.5}
ABSOLUTE_FACE_TOLERANCE_MM = 4.0


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "videos"
    subprocess.run([sys.executable, "-m", "recon3d", "synth", "--flame-model", str(need(STAND_IN)), "--texture",
                    str(need(FLAME_DIR / "texture_mesh.obj")), "--out", str(out), "--clips", "2", "--seconds", "1.2",
                    "--seed", "11"], check=True, capture_output=True)
    return out


def test_synth_writes_playable_clips_with_truth(synth_dir):
    videos = sorted(synth_dir.glob("*.mp4"))
    assert [v.stem for v in videos] == ["01-01-01-01-01-01-12", "01-01-01-01-02-01-12"]  # RAVDESS names
    for video in videos:
        with av.open(str(video)) as c:
            assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio
            stream = c.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
            assert abs(float(stream.average_rate) - 29.97) < 0.01
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        motion, camera, data = load_truth(video.with_name(video.stem + ".truth.npz"))
        assert len(frames) == motion.n_frames == len(data["landmarks"])
        # MediaPipe on a synthesised frame lands near the truth's projected landmarks.
        detector = create_detector("mediapipe", max_faces=1)
        points = detector.detect(frames[len(frames) // 2])[0][0]
        truth = data["landmarks"][len(frames) // 2]
        ids = np.flatnonzero(np.isfinite(truth[:, 0]))
        iod = np.linalg.norm(truth[33] - truth[263])
        assert np.linalg.norm(points[ids] - truth[ids], axis=1).mean() < 0.05 * iod
        assert 200 < iod < 300


def test_build_dataset_on_synthetic_clips_recovers_the_truth(synth_dir, tmp_path):
    import torch

    from recon3d.flame import FlameLayer, load_flame_model
    from recon3d.flame.masks import load_flame_masks
    from recon3d.shards import open_dataset
    from recon3d.synth.accuracy import accuracy_row
    from recon3d.synth.motion import canonical_vertices, identity_template

    out = tmp_path / "built"
    subprocess.run([sys.executable, "-m", "recon3d", "build-dataset", str(synth_dir), "--flame-model", str(STAND_IN),
                    "--out", str(out), "--no-progress", "--workers", "2"], check=True, capture_output=True)
    layer = FlameLayer(load_flame_model(STAND_IN), dtype=torch.float64)
    masks = load_flame_masks(FLAME_DIR / "FLAME_masks.pkl")
    ds = open_dataset(out)
    assert sorted(ds.clip_ids()) == sorted(v.stem for v in synth_dir.glob("*.mp4"))
    for clip_id in ds.clip_ids():
        motion, _, _ = load_truth(synth_dir / f"{clip_id}.truth.npz")
        clip = ds.load_clip(clip_id)
        row = accuracy_row(clip.vertices.astype(np.float64), clip.template.astype(np.float64),
                           canonical_vertices(layer, motion), identity_template(layer, motion.shape), masks)
        for key, limit in MOTION_TOLERANCE_MM.items():
            assert row[key] < limit, (clip_id, row)
        assert row["face_mm"] < ABSOLUTE_FACE_TOLERANCE_MM, (clip_id, row)


def test_held_out_lighting_renders_the_same_truth_under_other_light(tmp_path):
    """--lighting side (light from the upper left, a highlight, stronger H.264) renders the same
    motion differently, and MediaPipe still finds the face where the truth puts it."""
    frames = {}
    for lighting in ("camera", "side"):
        out = tmp_path / lighting
        subprocess.run([sys.executable, "-m", "recon3d", "synth", "--flame-model", str(need(STAND_IN)), "--texture",
                        str(need(FLAME_DIR / "texture_mesh.obj")), "--out", str(out), "--clips", "1", "--seconds", "1.0",
                        "--seed", "11", "--lighting", lighting], check=True, capture_output=True)
        video = next(out.glob("*.mp4"))
        with av.open(str(video)) as c:
            frames[lighting] = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
        _, _, data = load_truth(video.with_name(video.stem + ".truth.npz"))
    truth = data["landmarks"][0]
    ids = np.flatnonzero(np.isfinite(truth[:, 0]))
    face = np.zeros(frames["camera"].shape[:2], bool)
    lo, hi = truth[ids].min(0).astype(int), truth[ids].max(0).astype(int)
    face[lo[1]:hi[1], lo[0]:hi[0]] = True
    assert np.abs(frames["side"] - frames["camera"])[face].mean() > 10  # another image of the same face
    points = create_detector("mediapipe", max_faces=1).detect(frames["side"].astype(np.uint8))[0][0]
    iod = np.linalg.norm(truth[33] - truth[263])
    assert np.linalg.norm(points[ids] - truth[ids], axis=1).mean() < 0.05 * iod


@pytest.mark.parametrize("model_path", [STAND_IN, HYBRID], ids=["stand-in", "hybrid"])
def test_closures_close_the_lips_between_syllables_and_change_nothing_else(model_path):
    """synth --closures: in the troughs between syllables the inner lips meet as on the template
    (issue 37's closed frames), a few times a second; away from the closures the motion is the same."""
    import torch

    from recon3d.flame import FlameLayer, load_flame_model, load_mediapipe_embedding
    from recon3d.synth.accuracy import CLOSED_MM, OPEN_MM, lip_gap_mm
    from recon3d.synth.dataset import labelled_motion
    from recon3d.synth.motion import canonical_vertices, identity_template
    from recon3d.synth.speech import speech_audio

    model = load_flame_model(need(model_path))
    layer = FlameLayer(model, dtype=torch.float64)
    embedding = load_mediapipe_embedding(model)
    audio = speech_audio(np.random.default_rng(3), 4.0)
    shape = np.random.default_rng(4).standard_normal(layer.n_shape)
    gaps = {}
    for closures in (False, True):
        motion = labelled_motion(layer, embedding, shape, 5, 2, audio, 29.97, 21, closures=closures)
        vertices = canonical_vertices(layer, motion)
        gaps[closures] = (lip_gap_mm(vertices, embedding, model.faces)
                          - lip_gap_mm(identity_template(layer, shape), embedding, model.faces))
        if not closures:
            plain = motion
    changed = np.abs(motion.expression - plain.expression).max(1) > 0
    closed = np.abs(gaps[True]) <= CLOSED_MM
    assert (closed & changed).sum() >= 6 and (gaps[False][changed] > OPEN_MM).any()  # open lips were closed
    assert np.abs(gaps[True][motion.jaw_pose[:, 0] == 0]).max() < 0.05  # fully closed: the template's gap
    assert np.array_equal(gaps[True][~changed], gaps[False][~changed])
    assert changed.mean() < 0.5


def test_a_small_face_is_flagged_and_counted(tmp_path):
    """Issue 39: a face below SMALL_FACE_IOD_PX between the outer eye corners (a render at 85 px)
    is built, flagged small_face by QC and counted in the build's last lines."""
    from tests.cli import build

    videos = tmp_path / "videos"
    subprocess.run([sys.executable, "-m", "recon3d", "synth", "--flame-model", str(need(STAND_IN)), "--texture",
                    str(need(FLAME_DIR / "texture_mesh.obj")), "--out", str(videos), "--clips", "1", "--seconds", "1.0",
                    "--seed", "11", "--iod-px", "85"], check=True, capture_output=True)
    out = tmp_path / "out"
    proc = build(videos, out, "--workers", "1")
    clip = json.loads((out / "manifest.json").read_text())["clips"][0]
    assert 75 < clip["qc"]["inter_ocular_px"] < 95 and "small_face" in clip["qc"]["flags"]
    assert "1 clip(s) with faces smaller than 100 px between the outer eye corners" in proc.stderr
