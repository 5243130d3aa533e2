"""A second landmark source that knows when it is wrong: dlib's points weighed by the head's pose
and by their agreement with MediaPipe's (recon3d.fitting.source_trust), on synthetic landmarks
with known truth and on a real clip whose head turns to ~60 deg of yaw."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recon3d.fitting.source_trust import (
    SourceAgreement, agreement_weights, cosine_ramp, pose_gate, view_angles)
from recon3d.landmarks.schemes import DLIB_OFFSET, MEDIAPIPE_DLIB
from tests.cli import build, run_cli
from tests.conftest import ASSETS, HYBRID, STAND_IN, need

TURNED = ASSETS / "video" / "turned"


def test_cosine_ramp_is_continuous_and_monotone():
    x = np.linspace(0, 60, 601)
    w = cosine_ramp(x, 25.0, 40.0)
    assert (w[x <= 25] == 1).all() and (w[x >= 40] == 0).all()
    assert (np.diff(w) <= 0).all() and np.abs(np.diff(w)).max() < 0.02  # no jump anywhere
    assert pose_gate(np.array([10.0, 32.5, 50.0]), np.array([0.0, 0.0, 0.0]), (25, 40), (25, 40)).tolist() == \
        pytest.approx([1.0, 0.5, 0.0])


def test_view_angles_are_taken_from_the_ray_to_the_camera():
    """A face off the image's centre turned toward the camera reads 0; a head turned 50 deg reads 50."""
    trans = np.array([[0.0, 0.0, -1.0], [0.3, 0.0, -1.0], [0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    facing_camera = np.array([0.0, np.arctan2(-0.3, 1.0), 0.0])  # turned toward the camera
    rot = np.array([[0, 0, 0], facing_camera, [0, np.radians(50), 0], [np.radians(-30), 0, 0]], float)
    yaw, pitch = view_angles(rot, trans)
    assert yaw == pytest.approx([0, 0, 50, 0], abs=1e-6) and pitch == pytest.approx([0, 0, 0, 30], abs=1e-6)


@pytest.mark.parametrize("model_path", [STAND_IN, HYBRID])
def test_mediapipe_predicts_dlib_points_through_mouth_motion(model_path):
    """On exact projections of a talking head, MediaPipe's points predict dlib's within a
    fraction of a mm (median; 95 % within 1.5 mm, the mouth opening and widening included), so
    agreement weights stay near 1 (>= 0.8 at the 3 mm scale); a
    point moved 10 mm loses its weight, and a frame whose points all moved is dropped whole."""
    from recon3d.fitting import PinholeCamera
    from recon3d.flame import FlameLayer, load_flame_model, load_mediapipe_dlib_embedding
    from recon3d.synth.motion import head_rotation, place_in_front_of, posed_vertices, sample_motion
    import torch

    model = load_flame_model(need(model_path))
    layer = FlameLayer(model, dtype=torch.float64)
    emb = load_mediapipe_dlib_embedding(model)
    camera = PinholeCamera.from_fov(1280, 720, 40.0)
    motion = place_in_front_of(layer, emb, sample_motion(layer, emb, 40, 29.97, 3, emotion_scale=0.0), camera, 250.0)
    motion.shape = np.zeros_like(motion.shape)
    vertices = posed_vertices(layer, motion).numpy()
    points = np.full((40, DLIB_OFFSET + 68, 2), np.nan)
    points[:, emb.source_ids] = camera.project(torch.as_tensor(emb.points(vertices, model.faces))).numpy()
    mm_per_px = 1000.0 * -motion.translation[:, 2] / camera.focal
    agreement = SourceAgreement.for_model(model, emb)
    assert len(agreement) == 51  # dlib's inner points
    rotation = head_rotation(motion)
    d = agreement.disagreement_mm(points, mm_per_px, rotation, reference=np.ones(40, bool))  # constant offsets taken off
    assert np.median(d) < 0.3 and np.percentile(d, 95) < 1.5, (np.median(d), np.percentile(d, 95))
    moved = points.copy()
    moved[20:30, DLIB_OFFSET + 48] += 10.0 / mm_per_px[20:30, None]  # one mouth corner 10 mm off for a while
    moved[5, DLIB_OFFSET:] += 15.0 / mm_per_px[5]  # a whole frame 15 mm off
    point_w, frame_w = agreement_weights(agreement.disagreement_mm(moved, mm_per_px, rotation, np.ones(40, bool)), 3.0)
    corner = list(agreement.second_ids).index(DLIB_OFFSET + 48)
    others = np.delete(np.delete(point_w, [corner], 1), 5, 0)
    assert point_w[20:30, corner].max() < 0.1 and np.percentile(others, 5) > 0.8, point_w[20:30, corner].max()
    assert frame_w[5] < 0.05 and np.delete(frame_w, 5).min() > 0.6  # the lowest: a synthetic blink


def test_fused_fit_drops_dlib_where_it_is_wrong(flame_model, flame_layer, masks):
    """A head swinging +-60 deg on synthetic landmarks, dlib's points thrown onto the cheek where
    the head is turned past 40 deg (what its model does on real turned faces): the fused fit's
    lip motion stays within 2 % of MediaPipe's alone, and it counts the frames it used dlib in."""
    from recon3d.fitting import FitConfig, FlameFitter, LandmarkSequence, PinholeCamera
    from recon3d.flame import load_fan68_embedding, load_mediapipe_dlib_embedding, load_mediapipe_embedding
    from recon3d.landmarks.schemes import MEDIAPIPE
    from recon3d.synth.accuracy import accuracy_row
    from recon3d.synth.motion import (canonical_vertices, head_yaw, identity_template, place_in_front_of,
                                      project_landmarks, sample_motion)

    mp_emb = load_mediapipe_embedding(flame_model)
    outline = load_fan68_embedding(flame_model)
    camera = PinholeCamera.from_fov(1280, 720, 40.0)
    motion = place_in_front_of(flame_layer, mp_emb, sample_motion(flame_layer, mp_emb, 60, 29.97, 5, swing_deg=60.0),
                               camera, 250.0)
    truth = canonical_vertices(flame_layer, motion)
    turned = np.abs(np.degrees(head_yaw(motion))) > 40
    assert 10 < turned.sum() < 50
    errors, used = {}, None
    for name, emb, scheme in (("mediapipe", mp_emb, MEDIAPIPE),
                              ("both", load_mediapipe_dlib_embedding(flame_model), MEDIAPIPE_DLIB)):
        clean = project_landmarks(flame_layer, emb, motion, camera, outline, scheme)
        points = clean + np.random.default_rng(1).normal(0.0, 1.0, clean.shape)
        if name == "both":  # dlib's frontal arrangement slid 30 px toward the visible cheek
            side = np.sign(head_yaw(motion))[turned, None]
            points[turned, DLIB_OFFSET:, 0] -= 30.0 * side
        seq = LandmarkSequence(points, np.ones(60, bool), 1280, 720, 29.97, scheme=scheme)
        result = FlameFitter(flame_model, emb, FitConfig(contour_weight=1.0), scheme).fit(seq, np.asarray(motion.shape))
        errors[name] = accuracy_row(result.vertices.astype(np.float64), identity_template(flame_layer, result.shape),
                                    truth, identity_template(flame_layer, motion.shape), masks)["lip_motion_mm"]
        if name == "both":
            used = result.source_frames
            assert set(result.reprojection_px_by_source) == {"mediapipe", "dlib"}
    yaw = np.abs(np.degrees(head_yaw(motion)))  # dlib trusted fully below 20 deg, not at all past 30 (the defaults)
    assert used["mediapipe"] == 60 and (yaw < 20).sum() - 3 <= used["dlib"] <= (yaw < 30).sum() + 3, used
    assert errors["both"] <= 1.02 * errors["mediapipe"], errors


@pytest.fixture(scope="module")
def wojtek_builds(tmp_path_factory):
    """wojtek.mp4 (16 s, turning to ~60 deg of yaw) built with the defaults and with --dlib off."""
    videos = tmp_path_factory.mktemp("turned")
    (videos / "wojtek.mp4").symlink_to(need(TURNED / "wojtek.mp4"))
    out = {}
    for name, extra in (("default", ()), ("off", ("--dlib", "off"))):
        out[name] = videos.parent / f"built_{name}"
        build(videos, out[name], "--labels", "none", *extra, model=HYBRID)
    return out


def test_turned_head_passes_qc_with_the_default_sources(wojtek_builds):
    """The default build (dlib fused) of a real head turning to ~60 deg passes QC, its MediaPipe
    reprojection within 10 % of MediaPipe alone's; the manifest and inspect give each source's
    reprojection and the frames each source was used in (dlib not in all of them)."""
    fused = json.loads((wojtek_builds["default"] / "manifest.json").read_text())["clips"][0]
    alone = json.loads((wojtek_builds["off"] / "manifest.json").read_text())["clips"][0]
    assert fused["landmark_sources"] == "mediapipe+dlib" and fused["qc"]["pass"], fused["qc"]
    q, q0 = fused["qc"], alone["qc"]
    assert q["reprojection_iod_mean_mediapipe"] <= 1.1 * q0["reprojection_iod_mean_mediapipe"], (q, q0)
    assert q["reprojection_iod_p95_mediapipe"] <= 1.1 * q0["reprojection_iod_p95_mediapipe"], (q, q0)
    for key in ("reprojection_iod_mean_dlib", "reprojection_iod_p95_dlib"):
        assert np.isfinite(q[key])
    frames = fused["source_frames"]
    assert frames["mediapipe"] == fused["frames"] == 400 and 100 < frames["dlib"] < 400, frames
    assert alone["source_frames"] == {"mediapipe": 400}
    text = run_cli("inspect", str(wojtek_builds["default"])).stdout
    assert f"frames each source was used in: dlib {frames['dlib']}" in text and "reprojection_iod_p95_dlib" in text


def test_a_failing_source_is_named_by_its_flag():
    """QC thresholds apply per source: the flag says which source's points the fit missed."""
    from recon3d.fitting.camera import PinholeCamera
    from recon3d.fitting.sequence import FitResult, LandmarkSequence
    from recon3d.flame.embeddings import LandmarkEmbedding
    from recon3d.pipeline.config import QCConfig
    from recon3d.pipeline.qc import clip_qc

    t = 20
    points = np.zeros((t, DLIB_OFFSET + 68, 2))
    points[:, 33], points[:, 263] = [500, 300], [600, 300]  # IOD 100 px
    seq = LandmarkSequence(points, np.ones(t, bool), 1280, 720, 30.0, scheme=MEDIAPIPE_DLIB)
    zeros = np.zeros((t, 3))
    result = FitResult(shape=np.zeros(3), expression=np.zeros((t, 2)), jaw_pose=zeros, eye_pose=np.zeros((t, 6)),
                       global_pose=zeros, neck_pose=zeros, translation=zeros, head_translation=zeros,
                       camera=PinholeCamera(1000, 640, 360, 1280, 720), vertices=np.zeros((t, 3, 3), np.float32),
                       projected=np.zeros((t, 1, 2)), reprojection_px=np.full(t, 1.0),
                       reprojection_px_by_source={"mediapipe": np.full(t, 1.0), "dlib": np.full(t, 9.0)},
                       source_frames={"mediapipe": t, "dlib": t})
    emb = LandmarkEmbedding(np.zeros(1, np.int64), np.full((1, 3), 1 / 3), np.array([0]))
    qc = clip_qc(seq.inter_ocular_px(), seq.valid, seq.scheme, result, emb, np.array([[0, 1, 2]]), QCConfig())
    assert qc["flags"] == "reprojection_mean_dlib,reprojection_p95_dlib" and not qc["pass"]
    assert qc["reprojection_iod_mean_mediapipe"] == pytest.approx(0.01) and qc["frames_dlib"] == t


def test_a_second_source_fitted_alone_is_its_own_judge(flame_model, flame_layer):
    """dlib's points without MediaPipe's (benchmarks/mouth_agreement.py's ``dlib`` fit): nothing to
    gate them against, so they count fully, with their own jaw line only, and the fit is finite."""
    from recon3d.fitting import FitConfig, FlameFitter, LandmarkSequence, PinholeCamera
    from recon3d.flame import load_fan68_embedding, load_mediapipe_embedding
    from recon3d.flame.embeddings import DLIB_FITTED
    from recon3d.synth.motion import place_in_front_of, project_landmarks, sample_motion

    fan = load_fan68_embedding(flame_model)
    inner = fan.static.subset(DLIB_FITTED, DLIB_OFFSET)
    camera = PinholeCamera.from_fov(1280, 720, 40.0)
    mp_emb = load_mediapipe_embedding(flame_model)
    motion = place_in_front_of(flame_layer, mp_emb, sample_motion(flame_layer, mp_emb, 20, 29.97, 2), camera, 250.0)
    points = project_landmarks(flame_layer, inner, motion, camera, fan, MEDIAPIPE_DLIB)
    fitter = FlameFitter(flame_model, inner, FitConfig(contour_weight=1.0), MEDIAPIPE_DLIB)
    assert not fitter.second_rows.any() and len(fitter.outlines) == 1 and fitter.agreement is None
    seq = LandmarkSequence(points, np.ones(20, bool), 1280, 720, 29.97, scheme=MEDIAPIPE_DLIB)
    result = fitter.fit(seq, shape=np.asarray(motion.shape))
    assert np.isfinite(result.vertices).all() and np.nanmean(result.reprojection_px) < 2.0


def test_identity_frames_face_the_camera(flame_model, flame_layer):
    """On a head swinging +-55 deg the identity is fitted on the least turned of its closed-mouth,
    open-eyed frames, not on such frames spread over the swing."""
    from recon3d.fitting import FitConfig, FlameFitter, LandmarkSequence, PinholeCamera
    from recon3d.flame import load_mediapipe_embedding
    from recon3d.synth.motion import head_yaw, place_in_front_of, project_landmarks, sample_motion

    emb = load_mediapipe_embedding(flame_model)
    camera = PinholeCamera.from_fov(1280, 720, 40.0)
    motion = place_in_front_of(flame_layer, emb, sample_motion(flame_layer, emb, 120, 29.97, 4, emotion_scale=0.0,
                                                               swing_deg=55.0), camera, 250.0)
    seq = LandmarkSequence(project_landmarks(flame_layer, emb, motion, camera), np.ones(120, bool), 1280, 720, 29.97)
    yaw = np.abs(np.degrees(head_yaw(motion)))

    def picked(**config) -> np.ndarray:
        fitter = FlameFitter(flame_model, emb, FitConfig(**config))
        return np.concatenate(list(fitter._identity_frames([seq], [fitter._rigid_init(seq)]).values()))

    frontal, anywhere = picked(), picked(identity_max_view_deg=90.0)
    assert len(frontal) == len(anywhere) == 16 and yaw[frontal].mean() < yaw[anywhere].mean() - 2, \
        (yaw[frontal].mean(), yaw[anywhere].mean())
