"""A long clip's caches read and written a block at a time (issue 39: memory bounded whatever the
length): the row reader and block writer against numpy's own .npz, the streamed audio against the
whole decoded track, and the QC's lip jitter computed a block of meshes at a time."""

from __future__ import annotations

import numpy as np
import pytest

from recon3d.io.npz_rows import NpzRows, write_npz_blocks
from tests.conftest import RAVDESS_VIDEO, need


@pytest.fixture()
def arrays() -> dict:
    rng = np.random.default_rng(0)
    return {"points": rng.normal(size=(1000, 546, 2)).astype(np.float32), "valid": rng.random(1000) > 0.3,
            "times": np.arange(1000) / 29.97, "fps": 29.97, "backend": "mediapipe+dlib", "width": 512}


def test_rows_of_an_npz_are_read_as_numpy_reads_them(tmp_path, arrays):
    path = tmp_path / "a.npz"
    np.savez(path, **arrays)
    archive = NpzRows(path)
    points = archive["points"]
    assert len(points) == 1000 and points.shape == (1000, 546, 2) and points.dtype == np.float32
    assert np.array_equal(points[10:20], arrays["points"][10:20])
    assert np.array_equal(points[995:2000], arrays["points"][995:])
    assert np.array_equal(points[[7, 3, 999, -1]], arrays["points"][[7, 3, 999, -1]])
    assert np.array_equal(np.concatenate([b for _, b in points.blocks(300)]), arrays["points"])
    assert archive.value("fps") == 29.97 and archive.value("backend") == "mediapipe+dlib"
    assert archive.value("width") == 512 and np.array_equal(archive.value("valid"), arrays["valid"])
    with pytest.raises(IndexError):
        points[[1000]]


def test_an_npz_written_in_blocks_is_the_npz_numpy_writes(tmp_path, arrays):
    path = tmp_path / "b.npz"
    points = arrays["points"]
    members = {**arrays, "points": (points.shape, np.float32, (points[a:a + 128] for a in range(0, 1000, 128)))}
    write_npz_blocks(path, members)
    with np.load(path) as data:
        assert set(data.files) == set(arrays)
        for key, value in arrays.items():
            assert np.array_equal(data[key], value), key
    assert np.array_equal(NpzRows(path)["points"][500:501], points[500:501])
    with pytest.raises(ValueError, match="got 128 rows of the 1000 declared"):
        write_npz_blocks(tmp_path / "c.npz", {"points": (points.shape, np.float32, [points[:128]])})


def test_a_compressed_npz_is_refused_with_its_reason(tmp_path, arrays):
    np.savez_compressed(tmp_path / "z.npz", **arrays)
    with pytest.raises(ValueError, match="compressed"):
        NpzRows(tmp_path / "z.npz")


def test_audio_read_a_block_at_a_time_is_the_whole_tracks_window():
    """The streamed reader cuts the same samples as the whole decoded track, for windows that start
    before the stream, inside it, and run past its end."""
    from recon3d.io.video import _AudioCollector, _open, audio_blocks

    path = need(RAVDESS_VIDEO / "01-01-06-02-01-01-05.mp4")
    with _open(path, "audio") as container:
        collector = _AudioCollector(16000)
        for frame in container.decode(container.streams.audio[0]):
            collector.add(frame)
        whole = collector.finish()
    for start, n in ((0.0, 48000), (0.7, 12345), (-0.3, 20000), (2.0, 10 ** 6)):
        blocks, has_stream = audio_blocks(path, start, n, 16000)
        streamed = np.concatenate(list(blocks))
        assert has_stream and len(streamed) == n
        assert np.array_equal(streamed, whole.window(start, n)), (start, n)


def test_lip_jitter_a_block_of_meshes_at_a_time_is_the_whole_clips():
    """QC's lip jitter over blocks of 256 meshes equals the same figure over all frames at once,
    leaving out the second differences that span a shot's start."""
    from recon3d.fitting.camera import PinholeCamera
    from recon3d.fitting.sequence import FitResult
    from recon3d.flame.embeddings import LandmarkEmbedding
    from recon3d.pipeline.qc import lip_jitter_mm

    t, rng = 700, np.random.default_rng(1)
    vertices = rng.normal(scale=0.01, size=(t, 4, 3)).astype(np.float32)
    zeros = np.zeros((t, 3))
    result = FitResult(shape=np.zeros(3), expression=np.zeros((t, 2)), jaw_pose=zeros, eye_pose=np.zeros((t, 6)),
                       global_pose=zeros, neck_pose=zeros, translation=zeros, head_translation=zeros,
                       camera=PinholeCamera(1000, 640, 360, 1280, 720), vertices=None,
                       projected=np.zeros((t, 1, 2)), reprojection_px=np.ones(t), shot_starts=[257, 400])
    result.mesh_of = lambda a, b: vertices[a:b]
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    lips = LandmarkEmbedding(np.array([0, 1, 1]), np.array([[1.0, 0, 0], [0.2, 0.3, 0.5], [0, 0, 1.0]]),
                             np.arange(3))
    pts = lips.points(vertices.astype(np.float64), faces)
    accel = np.linalg.norm(pts[2:] - 2 * pts[1:-1] + pts[:-2], axis=-1).mean(1)
    within = np.ones(t - 2, bool)
    within[[255, 256, 398, 399]] = False
    assert lip_jitter_mm(result, lips, faces) == pytest.approx(accel[within].mean() * 1000, rel=1e-12)
