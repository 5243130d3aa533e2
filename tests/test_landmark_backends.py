"""Landmark backends: real MediaPipe on a real RAVDESS clip, and FAN's clear failure without weights."""

from __future__ import annotations

import numpy as np
import pytest

from recon3d.landmarks import LandmarkBackendError, create_detector, track_video
from tests.conftest import RAVDESS_VIDEO, need


def test_mediapipe_tracks_every_frame_of_a_ravdess_clip():
    video = need(RAVDESS_VIDEO / "01-01-01-01-02-01-05.mp4")
    detector = create_detector("mediapipe")
    track = track_video(video, detector)
    detector.close()
    assert track.points.shape[1:] == (478, 2) and track.valid.all()
    assert abs(track.fps - 29.97) < 0.01 and track.rotation == 0 and (track.width, track.height) == (1280, 720)
    # The face sits in the frame and its eyes are above its mouth (image y grows downwards).
    assert np.all(track.points[..., 0] > 0) and np.all(track.points[..., 0] < 1280)
    assert np.all(track.points[:, 468, 1] < track.points[:, 13, 1])
    np.testing.assert_allclose(np.diff(track.times), 1001 / 30000, atol=1e-4)


def test_tracking_one_face_gives_the_points_of_looking_for_two():
    """The default (one face: MediaPipe's detector idles while it tracks) changes no landmark on a
    real clip with strong motion, against looking for a second face on every frame."""
    video = need(RAVDESS_VIDEO / "01-01-06-02-01-01-05.mp4")
    one = track_video(video, create_detector("mediapipe"), threads=1)
    two = track_video(video, create_detector("mediapipe", max_faces=2), threads=1)
    assert one.valid.all() and two.valid.all()
    np.testing.assert_array_equal(one.points, two.points)


def test_fan_backend_without_package_or_weights_says_what_to_do():
    with pytest.raises(LandmarkBackendError, match="face-alignment|weights not found"):
        create_detector("fan")


def test_unknown_backend_is_named():
    with pytest.raises(LandmarkBackendError, match="unknown landmark backend 'openface'"):
        create_detector("openface")


def test_with_two_faces_the_track_follows_one(tmp_path):
    """Two people side by side: the tracked face is the larger one first, then whichever continues it."""
    import cv2

    from recon3d.io.video import iter_frames, write_video

    big = [rgb for rgb, _ in iter_frames(need(RAVDESS_VIDEO / "01-01-04-01-01-01-05.mp4"))][:20]
    other = [rgb for rgb, _ in iter_frames(need(RAVDESS_VIDEO / "01-01-06-02-01-01-05.mp4"))][:20]
    frames = []
    for a, b in zip(big, other):
        canvas = np.full((720, 1600, 3), 255, np.uint8)
        canvas[:, :960] = a[:, 160:1120]
        small = cv2.resize(b[:, 320:960], (480, 540))
        canvas[90:630, 1060:1540] = small
        frames.append(canvas)
    path = tmp_path / "two_faces.mp4"
    write_video(path, frames, 29.97)
    track = track_video(path, create_detector("mediapipe", max_faces=2))
    assert track.valid.all()
    assert np.all(track.points[:, :, 0].max(axis=1) < 960)  # stays on the left face in every frame
