"""Video frames and audio with PyAV: real frame rates, timestamps, rotation metadata, resampled audio.

The dataset's audio rate is the shard schema's (:data:`recon3d.shards.schema.AUDIO_RATE`); these
functions take the rate as an argument.
"""

from __future__ import annotations

import errno
import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from recon3d.errors import ClipError


class VideoError(ClipError):
    """A file that cannot be used as a video (or audio); the message says why."""

    def __init__(self, reason: str):
        super().__init__(reason, stage="landmarks")


@dataclass(frozen=True)
class VideoInfo:
    width: int  # after applying rotation metadata
    height: int
    fps: float  # the stream's average frame rate
    declared_frames: int  # frame count in the container (0 when unknown)
    rotation: int  # degrees counter-clockwise applied to decoded frames (0, 90, 180, 270)
    has_audio: bool


def _open(path: Path, kind: str = "video") -> av.container.InputContainer:
    """Open a media file; ``kind`` (video or audio) names what the caller expected in messages."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise VideoError(f"{path.name}: cannot be read (broken symbolic link to {os.readlink(path)})")
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise VideoError(f"{path}: file not found") from exc
    if size == 0:
        raise VideoError(f"{path.name}: zero-byte file")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path.name}: cannot be read (permission denied)")
    try:
        return av.open(str(path))
    except PermissionError as exc:
        raise VideoError(f"{path.name}: cannot be read (permission denied)") from exc
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path.name}: not a readable {kind} file ({exc})") from exc
    except OSError as exc:
        if exc.errno == errno.EACCES:
            raise VideoError(f"{path.name}: cannot be read (permission denied)") from exc
        raise VideoError(f"{path.name}: cannot be opened ({exc})") from exc


def _video_stream(container, path: Path):
    if not container.streams.video:
        kind = "an audio-only file" if container.streams.audio else "no media streams"
        raise VideoError(f"{Path(path).name}: has no video stream ({kind})")
    return container.streams.video[0]


def _rotation(frame_rotation: float | int | None) -> int:
    return int(round((frame_rotation or 0) / 90.0)) % 4 * 90


class VideoReader:
    """A video opened once: ``fps``, ``declared_frames`` and ``has_audio`` are known before decoding,
    ``rotation`` once the first frame is decoded."""

    def __init__(self, path: Path, threads: int = 0, audio_rate: int | None = None):
        """``threads``: decoding and colour-conversion threads (0: FFmpeg's choice, all cores; a
        build whose worker processes already fill the cores passes 1). ``audio_rate``: also decode
        the audio, in the same pass over the file, as mono at this rate (:attr:`audio` once
        :meth:`frames` is exhausted)."""
        self.path = Path(path)
        self.threads = int(threads)
        self.audio_rate = audio_rate
        self.audio: DecodedAudio | None = None
        self._container = _open(self.path)
        try:
            self._stream = _video_stream(self._container, self.path)
            rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
            if not rate:
                raise VideoError(f"{self.path.name}: video stream has no frame rate")
        except VideoError:
            self._container.close()
            raise
        if self.threads:
            self._stream.codec_context.thread_count = self.threads
        self.fps = float(Fraction(rate))
        self.declared_frames = int(self._stream.frames or 0)
        self.has_audio = bool(self._container.streams.audio)
        self.rotation = 0
        self._start = 0.0

    @property
    def duration(self) -> float:
        """The video's length in seconds as its container declares it (stream, else container,
        else declared frames over the rate; 0 when none is declared)."""
        stream, container = self._stream, self._container
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration:
            return container.duration / av.time_base
        return self.declared_frames / self.fps

    def seek(self, start: float) -> None:
        """Decode from the key frame at or before ``start`` seconds (call before :meth:`frames`,
        which then yields frames from there: the caller skips those before ``start``). A partial
        read is not checked against the declared frame count."""
        if start > 0:
            self._container.seek(int(start / self._stream.time_base), stream=self._stream, backward=True)
            self._start = start

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Upright RGB frames ``(H, W, 3) uint8`` with their presentation time in seconds.

        Raises :class:`VideoError` when decoding fails, or when the file ends before the number
        of frames the container declares (a truncated file).
        """
        name, count = self.path.name, 0
        reformatter = VideoReformatter()  # one colour converter for the whole clip, not one per frame
        try:
            for frame in self._decoded():
                rgb = reformatter.reformat(frame, format="rgb24", threads=self.threads).to_ndarray()
                self.rotation = _rotation(getattr(frame, "rotation", 0))
                if self.rotation:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=self.rotation // 90))
                t = float(frame.time) if frame.time is not None else count / self.fps
                count += 1
                yield rgb, t
        except av.error.FFmpegError as exc:
            raise VideoError(f"{name}: video data is corrupt or truncated after {count} frames ({exc})") from exc
        if self.declared_frames and not self._start and count < self.declared_frames - 1:
            raise VideoError(f"{name}: truncated file: decoded {count} of the {self.declared_frames} frames it declares")
        if count == 0:
            raise VideoError(f"{name}: video stream holds no decodable frame")

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """The video stream's frames; with ``audio_rate``, the audio is decoded from the same
        packets on the way (one read of the file instead of two: demuxing is most of an audio
        read's time) and left in :attr:`audio`."""
        audio_stream = self._container.streams.audio[0] if self.audio_rate and self._container.streams.audio else None
        if audio_stream is None:
            yield from self._container.decode(self._stream)
            if self.audio_rate:
                self.audio = DecodedAudio.silent(self.audio_rate)
            return
        collector = _AudioCollector(self.audio_rate)
        for packet in self._container.demux(self._stream, audio_stream):
            if packet.stream.index == self._stream.index:
                yield from packet.decode()
                continue
            try:
                for frame in packet.decode():
                    collector.add(frame)
            except av.error.FFmpegError as exc:
                raise VideoError(f"{self.path.name}: audio data is corrupt ({exc})") from exc
        self.audio = collector.finish()


def probe(path: Path) -> VideoInfo:
    """Frame size, rate and rotation (from the first decoded frame)."""
    with VideoReader(path) as reader:
        rgb, _ = next(reader.frames())
        return VideoInfo(width=rgb.shape[1], height=rgb.shape[0], fps=reader.fps,
                         declared_frames=reader.declared_frames, rotation=reader.rotation, has_audio=reader.has_audio)


def iter_frames(path: Path) -> Iterator[tuple[np.ndarray, float]]:
    """Upright RGB frames with their times (see :meth:`VideoReader.frames`)."""
    with VideoReader(path) as reader:
        yield from reader.frames()


@dataclass(frozen=True)
class DecodedAudio:
    """A file's audio as mono float32 ``samples`` at ``rate``, the first one at ``first_time`` s;
    ``has_stream``: whether the file had an audio stream at all."""

    samples: np.ndarray
    first_time: float
    rate: int
    has_stream: bool

    @classmethod
    def silent(cls, rate: int) -> "DecodedAudio":
        return cls(np.zeros(0, np.float32), 0.0, rate, False)

    def window(self, start: float, n_samples: int) -> np.ndarray:
        """``n_samples`` covering ``[start, start + n_samples / rate)`` seconds; missing stretches
        (no stream, a late start, an early end) are zeros."""
        out = np.zeros(n_samples, dtype=np.float32)
        offset = int(round((self.first_time - start) * self.rate))
        src0, dst0 = max(0, -offset), max(0, offset)
        n = max(0, min(len(self.samples) - src0, n_samples - dst0))
        out[dst0:dst0 + n] = self.samples[src0:src0 + n]
        return out


class _AudioCollector:
    """Decoded audio frames resampled to mono float32 at ``rate``, gathered into a :class:`DecodedAudio`."""

    def __init__(self, rate: int):
        self.rate = rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        self._chunks: list[np.ndarray] = []
        self._first_time: float | None = None

    def add(self, frame: av.AudioFrame) -> None:
        if self._first_time is None and frame.time is not None:
            self._first_time = float(frame.time)
        self._chunks += [r.to_ndarray().reshape(-1) for r in self._resampler.resample(frame)]

    def finish(self) -> DecodedAudio:
        self._chunks += [r.to_ndarray().reshape(-1) for r in self._resampler.resample(None)]
        samples = np.concatenate(self._chunks).astype(np.float32) if self._chunks else np.zeros(0, np.float32)
        return DecodedAudio(samples, self._first_time or 0.0, self.rate, True)


def read_audio(path: Path, start: float, n_samples: int, sample_rate: int) -> tuple[np.ndarray, bool]:
    """Mono float32 audio at ``sample_rate`` covering ``[start, start + n_samples / rate)`` seconds.

    Missing stretches (no audio stream, a late start, an early end) are zeros. Returns the samples
    and whether the file had an audio stream at all.
    """
    blocks, has_stream = audio_blocks(path, start, n_samples, sample_rate)
    return np.concatenate([np.zeros(0, np.float32), *blocks]), has_stream


def audio_blocks(path: Path, start: float, n_samples: int, sample_rate: int) -> tuple[Iterator[np.ndarray], bool]:
    """:func:`read_audio`'s samples as they are decoded, a block at a time (a long video's audio
    is never held whole), and whether the file has an audio stream."""
    with _open(path, "audio") as container:
        has_stream = bool(container.streams.audio)
    return (_audio_window(path, start, n_samples, sample_rate) if has_stream
            else iter([np.zeros(n_samples, np.float32)])), has_stream


def _audio_window(path: Path, start: float, n_samples: int, rate: int) -> Iterator[np.ndarray]:
    """The samples of ``[start, start + n_samples / rate)`` as :meth:`DecodedAudio.window` cuts them
    from the whole decoded stream, yielded as they are decoded."""
    left, skip = n_samples, None
    with _open(path, "audio") as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        first_time = None
        try:
            for frame in itertools.chain(container.decode(container.streams.audio[0]), [None]):  # None: flush
                if frame is not None and first_time is None and frame.time is not None:
                    first_time = float(frame.time)
                for chunk in resampler.resample(frame):
                    samples = chunk.to_ndarray().reshape(-1).astype(np.float32)
                    if skip is None:  # where the stream's first sample falls in the window
                        offset = int(round(((first_time or 0.0) - start) * rate))
                        skip = max(0, -offset)
                        lead = min(max(0, offset), left)
                        if lead:
                            yield np.zeros(lead, np.float32)
                            left -= lead
                    cut = min(skip, len(samples))
                    samples, skip = samples[cut:], skip - cut
                    if left and len(samples):
                        yield samples[:left]
                        left -= min(left, len(samples))
        except av.error.FFmpegError as exc:
            raise VideoError(f"{Path(path).name}: audio data is corrupt ({exc})") from exc
    if left:
        yield np.zeros(left, np.float32)


def write_video(path: Path, frames, fps: float, audio: np.ndarray | None = None, sample_rate: int | None = None,
                crf: int = 23) -> int:
    """Encode RGB frames ``(H, W, 3) uint8`` as H.264 (+ AAC audio when given) into an mp4.

    Frame sizes are cropped to even numbers (yuv420p). Returns the number of frames written.
    """
    if audio is not None and not sample_rate:
        raise TypeError("write_video: audio needs its sample_rate")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(path), "w") as container:
        stream = None
        rate = Fraction(fps).limit_denominator(1001)
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for rgb in frames:
            h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
            if stream is None:
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
        if astream is not None and audio is not None and len(audio):
            samples = np.asarray(audio, np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = 0
            for packet in astream.encode(frame):
                container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
    return n


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """All of a file's first audio stream as mono float32 at ``sample_rate`` (any input rate/format).

    Raises :class:`VideoError` for a file without audio or with no samples.
    """
    path = Path(path)
    with _open(path, "audio") as container:
        if not container.streams.audio:
            raise VideoError(f"{path.name}: has no audio stream (is it an audio file?)")
        collector = _AudioCollector(sample_rate)
        try:
            for frame in container.decode(container.streams.audio[0]):
                collector.add(frame)
            audio = collector.finish().samples
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path.name}: audio data is corrupt ({exc})") from exc
    if audio.size == 0:
        raise VideoError(f"{path.name}: the audio stream holds no samples")
    return audio
