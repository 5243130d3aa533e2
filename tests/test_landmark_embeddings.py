"""Embedded landmarks land on the regions they name."""

from __future__ import annotations

import numpy as np
import torch

from recon3d.flame import load_fan68_embedding

MP_LIPS = {0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
           267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415}
MP_BROWS = {46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336}


def _points_in_mask(embedding, model, ids, mask):
    """Fraction of the given landmarks whose triangle has a majority of vertices in ``mask``."""
    sel = np.isin(embedding.source_ids, list(ids))
    tri = model.faces[embedding.face_idx[sel]]
    inside = np.isin(tri, mask).sum(axis=1) >= 2
    return inside.mean(), sel.sum()


def test_mediapipe_lip_and_brow_points_are_on_their_regions(flame_model, mp_embedding, masks):
    frac, n = _points_in_mask(mp_embedding, flame_model, MP_LIPS, masks["lips"])
    assert n == 40 and frac == 1.0
    frac, n = _points_in_mask(mp_embedding, flame_model, MP_BROWS, np.union1d(masks["forehead"], masks["eye_region"]))
    assert n == 20 and frac == 1.0


def test_lip_points_lie_within_the_lips_extent(flame_model, mp_embedding, masks):
    pts = mp_embedding.points(flame_model.v_template, flame_model.faces)
    lips = pts[np.isin(mp_embedding.source_ids, list(MP_LIPS))]
    box = flame_model.v_template[masks["lips"]]
    assert np.all(lips >= box.min(0) - 1e-4) and np.all(lips <= box.max(0) + 1e-4)


def test_iris_points_sit_on_the_correct_eyeballs(flame_model, mp_embedding, masks):
    for ids, mask, side in (((468, 469, 470, 471, 472), "right_eyeball", -1), ((473, 474, 475, 476, 477), "left_eyeball", 1)):
        frac, n = _points_in_mask(mp_embedding, flame_model, ids, masks[mask])
        assert n == 5 and frac == 1.0
        pts = mp_embedding.points(flame_model.v_template, flame_model.faces)
        order = [int(np.flatnonzero(mp_embedding.source_ids == i)[0]) for i in ids]
        centre, px, py, nx, ny = pts[order]
        assert np.sign(centre[0]) == side
        # MediaPipe's contour order: +x, +y (up), -x, -y around the centre; about the iris radius away.
        assert px[0] > centre[0] and py[1] > centre[1] and nx[0] < centre[0] and ny[1] < centre[1]
        assert 4.5e-3 < np.linalg.norm(px - centre) < 7e-3


def test_fan68_contour_follows_head_yaw(flame_model, flame_layer):
    fan = load_fan68_embedding(flame_model)
    assert fan.contour_row(np.array(0.0)) == 0
    assert fan.contour_row(np.radians(-20)) == 20
    assert fan.contour_row(np.radians(20)) == 59

    def near_side_normal_z(yaw: float) -> float:
        out = flame_layer(global_pose=torch.tensor([[0.0, yaw, 0.0]], dtype=torch.float64)).vertices[0].numpy()
        emb = fan.for_yaw(yaw)
        tri = flame_model.faces[emb.face_idx[:17]]
        n = np.cross(out[tri[:, 1]] - out[tri[:, 0]], out[tri[:, 2]] - out[tri[:, 0]])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        # Turning toward +x shows the subject's right cheek (contour points 0-4) to the camera.
        return n[:5, 2].mean() if yaw > 0 else n[12:, 2].mean()

    # The near side's contour moves onto the visible cheek (normals toward the camera).
    assert near_side_normal_z(0.35) > 0.5 and near_side_normal_z(-0.35) > 0.5
    assert len(fan.for_yaw(0.1)) == 68


def test_jaw_line_is_the_frontal_contours_chin_and_lower_jaw(flame_model):
    jaw = load_fan68_embedding(flame_model).jaw_line()
    assert jaw.source_ids.tolist() == [6, 7, 8, 9, 10]
    p = jaw.points(flame_model.v_template, flame_model.faces)
    assert abs(p[2, 0]) < 0.003 and p[2, 1] == p[:, 1].min()  # the chin: on the midline, lowest
    np.testing.assert_allclose(p[:2, 0], -p[3:, 0][::-1], atol=0.004)  # mirror images in x
    assert np.all(np.diff(p[:, 0]) > 0)  # from the subject's right (-x) to the left


def test_synthetic_face_outline_passes_through_the_jaw_line_when_frontal(flame_model, flame_layer, mp_embedding):
    from recon3d.fitting.camera import PinholeCamera
    from recon3d.fitting.objective import curve_feet, smooth_outline
    from recon3d.landmarks.schemes import MEDIAPIPE
    from recon3d.synth.motion import place_in_front_of, posed_vertices, project_landmarks, sample_motion

    camera = PinholeCamera.from_fov(1280, 720, 40.0)
    fan = load_fan68_embedding(flame_model)
    motion = sample_motion(flame_layer, mp_embedding, 10, 30.0, 4)
    motion.global_pose[:] = 0.0
    motion.neck_pose[:] = 0.0
    motion = place_in_front_of(flame_layer, mp_embedding, motion, camera, iod_px=250)
    outline = project_landmarks(flame_layer, mp_embedding, motion, camera, fan)[:, list(MEDIAPIPE.face_contour)]
    jaw = fan.jaw_line()
    jaw_px = camera.project(torch.as_tensor(jaw.points(posed_vertices(flame_layer, motion).numpy(), flame_model.faces)))
    feet, _, inside = curve_feet(jaw_px, smooth_outline(torch.as_tensor(outline)))
    assert inside.all()
    # Within the spline's interpolation error between outline points ~25 px apart (the chords
    # alone would cut up to 4.6 px inside).
    assert float((feet - jaw_px).norm(dim=-1).max()) < 1.5
    # Evenly spaced along the outline, so not at the jaw line's own points.
    steps = np.linalg.norm(np.diff(outline, axis=1), axis=-1)
    assert steps.std() / steps.mean() < 0.03
