"""Writing small test videos with PyAV (real encodes, no mocks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np

from recon3d.io.video import iter_frames, load_audio, probe, write_video
from recon3d.shards.schema import AUDIO_RATE, audio_samples


def write_no_face_video(path: Path, n_frames: int = 12) -> Path:
    """A short video of moving colour gradients: decodable, but no face in it."""
    yy, xx = np.mgrid[0:240, 0:320]

    def frames():
        for i in range(n_frames):
            img = np.stack([(xx + 5 * i) % 256, (yy * 2) % 256, np.full_like(xx, 90)], -1)
            yield img.astype(np.uint8)

    write_video(path, frames(), 25.0, np.zeros(audio_samples(n_frames, 25.0), np.float32), AUDIO_RATE)
    return path


def write_audio_only_mp4(path: Path, seconds: float = 1.0) -> Path:
    """An .mp4 with an AAC audio stream and no video stream."""
    sr = AUDIO_RATE
    write_aac(path, (0.2 * np.sin(np.arange(int(sr * seconds)) * 2 * np.pi * 220 / sr)).astype(np.float32))
    return path


def write_aac(path: Path, samples: np.ndarray) -> Path:
    """Mono float32 ``samples`` at 16 kHz as AAC, alone in the container ``path``'s extension names."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=AUDIO_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def remux(source: Path, path: Path, kinds: tuple[str, ...] = ("video", "audio")) -> Path:
    """The same packets of the streams of ``kinds`` in the container ``path``'s extension names
    (no re-encode)."""
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in kinds}
        for packet in src.demux(*[s for s in src.streams if s.index in streams]):
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    return path


def write_first_frames(source: Path, path: Path, n_frames: int) -> Path:
    """The first ``n_frames`` of a real video, re-encoded."""
    frames = []
    for rgb, _ in iter_frames(source):
        frames.append(rgb)
        if len(frames) == n_frames:
            break
    write_video(path, frames, 29.97)
    return path


def write_truncated(source: Path, path: Path, fraction: float = 0.5) -> Path:
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return path


def copy(source: Path, path: Path) -> Path:
    shutil.copyfile(source, path)
    return path


def write_tone_wav(path: Path, seconds: float = 1.0, rate: int = 22050) -> Path:
    """A mono 16-bit wav of a 220 Hz tone."""
    import wave

    samples = (0.3 * np.sin(np.arange(int(rate * seconds)) * 2 * np.pi * 220 / rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def write_resized(source: Path, path: Path, width: int, n_frames: int) -> Path:
    """The first ``n_frames`` of a real video scaled to ``width`` (aspect kept), with its audio, in
    the container ``path``'s extension names (e.g. CREMA-D's 480-px .flv)."""
    import cv2

    fps = probe(source).fps
    frames = []
    for rgb, _ in iter_frames(source):
        h = int(round(rgb.shape[0] * width / rgb.shape[1]))
        frames.append(cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA))
        if len(frames) == n_frames:
            break
    audio = load_audio(source, AUDIO_RATE)[:audio_samples(n_frames, fps)]
    write_video(path, frames, fps, audio, AUDIO_RATE)
    return path


def split_audio(source: Path, video: Path, audio: Path) -> tuple[Path, Path]:
    """``source``'s video packets alone into ``video`` (no audio stream) and its audio, as AAC,
    into ``audio`` (e.g. MEAD's .m4a beside its videos)."""
    video.parent.mkdir(parents=True, exist_ok=True)
    audio.parent.mkdir(parents=True, exist_ok=True)
    remux(source, video, kinds=("video",))
    write_aac(audio, load_audio(source, AUDIO_RATE))
    return video, audio


def zoomed(rgb: np.ndarray, zoom: float, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The frame as a second camera would see it: a crop ``1 / zoom`` of its size, its centre moved
    by ``shift`` (fractions of the frame), scaled back to the frame's size."""
    import cv2

    h, w = rgb.shape[:2]
    cw, ch = int(w / zoom), int(h / zoom)
    x0, y0 = int(w / 2 + shift[0] * w - cw / 2), int(h / 2 + shift[1] * h - ch / 2)
    return cv2.resize(rgb[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)


def write_spliced(first: Path, second: Path, out: Path, zoom: float = 1.6,
                  shift: tuple[float, float] = (0.08, -0.1)) -> tuple[Path, Path, Path]:
    """Two real clips joined by a cut, the second seen by another camera (:func:`zoomed`), into
    ``out``; and each part alone, encoded the same way, beside it (``*_first.mp4``,
    ``*_second.mp4``). Returns (first part, second part, the splice)."""
    fps = probe(first).fps
    parts = [[rgb for rgb, _ in iter_frames(first)], [zoomed(rgb, zoom, shift) for rgb, _ in iter_frames(second)]]
    audio = [load_audio(p, AUDIO_RATE)[:audio_samples(len(f), fps)] for p, f in zip((first, second), parts)]
    paths = [out.with_name(f"{out.stem}_first.mp4"), out.with_name(f"{out.stem}_second.mp4"), out]
    for path, frames, samples in zip(paths, parts + [parts[0] + parts[1]], audio + [np.concatenate(audio)]):
        write_video(path, frames, fps, samples, AUDIO_RATE, crf=18)
    return paths[0], paths[1], paths[2]
