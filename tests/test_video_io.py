"""PyAV decoding: rotation metadata, real timestamps and rates, 16 kHz mono audio, and failures."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from recon3d.io.video import VideoError, VideoReader, iter_frames, probe, read_audio, write_video
from tests import media
from tests.conftest import RAVDESS_VIDEO, need


def test_rotation_metadata_is_applied(tmp_path):
    img = np.zeros((32, 64, 3), np.uint8)
    img[:8, :8] = (255, 0, 0)  # a red block in the top-left corner of the stored frame
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (32, 64, 90)
    frame, _ = next(iter_frames(path))
    assert frame.shape == (64, 32, 3)
    red = np.argwhere(frame[..., 0] > 200).mean(axis=0)
    assert red[0] > 48 and red[1] < 16  # rotated counter-clockwise: now bottom-left


def test_ravdess_audio_is_16k_mono_and_aligned():
    video = need(RAVDESS_VIDEO / "01-01-04-01-01-01-05.mp4")
    info = probe(video)
    times = np.array([t for _, t in iter_frames(video)])
    assert abs(info.fps - 30000 / 1001) < 1e-9 and times[0] == 0.0
    n = int(round(len(times) / info.fps * 16000))
    audio, has_stream = read_audio(video, times[0], n, 16000)
    assert has_stream and audio.dtype == np.float32 and audio.shape == (n,)
    assert np.abs(audio).max() > 0.01  # speech is there
    silent, _ = read_audio(need(RAVDESS_VIDEO / "02-01-06-01-01-01-05.mp4"), 0.0, n, 16000)
    assert np.all(silent == 0)


@pytest.mark.parametrize("name", ["01-01-04-01-01-01-05.mp4", "02-01-06-01-01-01-05.mp4"])
def test_audio_decoded_with_the_frames_equals_a_separate_read(name, tmp_path):
    """The build decodes audio in the video's pass; it must be the same samples as read_audio's,
    for speech, for a video-only file's silent track, and for a file with no audio stream."""
    video = need(RAVDESS_VIDEO / name)
    silent_stream = tmp_path / "no_audio.mp4"
    write_video(silent_stream, (rgb for rgb, _ in iter_frames(video)), 30000 / 1001)
    for path in (video, silent_stream):
        with VideoReader(path, threads=1, audio_rate=16000) as reader:
            times = [t for _, t in reader.frames()]
        n = int(round(len(times) / reader.fps * 16000))
        separate, has_stream = read_audio(path, times[0], n, 16000)
        assert reader.audio.has_stream == has_stream == (path == video)
        assert np.array_equal(reader.audio.window(times[0], n), separate)
        late = reader.audio.window(times[0] + 0.5, n)  # a later start: the same samples, shifted
        assert np.array_equal(late[:n - 8000], separate[8000:])


def test_audio_round_trip_and_offsets(tmp_path):
    sr = 16000
    tone = (0.3 * np.sin(np.arange(sr) * 2 * np.pi * 300 / sr)).astype(np.float32)
    path = tmp_path / "tone.mp4"
    write_video(path, (np.zeros((16, 16, 3), np.uint8) for _ in range(25)), 25.0, tone, sr)
    audio, _ = read_audio(path, 0.0, sr, sr)
    assert np.corrcoef(audio[2000:14000], tone[2000:14000])[0, 1] > 0.9
    late, _ = read_audio(path, 0.5, sr, sr)  # starting half a second in: the tail is zero padding
    assert np.all(late[9000:] == 0) and np.abs(late[:7000]).max() > 0.1


def test_unusable_files_raise_clear_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="zero-byte file"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(VideoError, match="not a readable video"):
        probe(tmp_path / "text.mp4")
    with pytest.raises(VideoError, match="no video stream"):
        probe(media.write_audio_only_mp4(tmp_path / "audio.mp4"))
    truncated = media.write_truncated(need(RAVDESS_VIDEO / "01-01-04-01-01-01-05.mp4"), tmp_path / "cut.mp4", 0.5)
    with pytest.raises(VideoError, match="truncated|corrupt"):
        for _ in iter_frames(truncated):
            pass


def test_every_container_pyav_reads_is_found_and_built(tmp_path):
    """CREMA-D's .flv, film's .mov and .mkv, in any case: found, decoded, built with audio."""
    import json

    from tests.cli import build

    videos = tmp_path / "videos"
    videos.mkdir()
    source = need(RAVDESS_VIDEO / "01-01-06-01-01-01-05.mp4")
    names = ["1001_DFA_ANG_XX.flv", "interview.MOV", "film.mkv"]
    for name in names:
        media.remux(source, videos / name)
    out = tmp_path / "out"
    build(videos, out, "--labels", "none", "--workers", "2")
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(c["id"] for c in manifest["clips"]) == sorted(n.rsplit(".", 1)[0] for n in names)
    assert not manifest["failures"]
    frames = {c["frames"] for c in manifest["clips"]}
    assert len(frames) == 1 and all(c["has_speech_audio"] for c in manifest["clips"])  # the same take in each
