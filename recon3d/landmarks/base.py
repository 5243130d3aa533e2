"""The landmark-detector interface and per-clip tracking (the backends by name:
:mod:`recon3d.landmarks.registry`).

A detector sees one RGB frame at a time (in order, so it may track) and returns every face it
finds as ``(points (P, 2) pixels, score)``. :func:`track_video` keeps, frame by frame, the face
that continues the track (nearest to the previous face), and records frames without a face.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from recon3d.errors import SetupError
from recon3d.io.video import DecodedAudio, VideoReader
from recon3d.landmarks.mouth_flow import MouthFlow, MouthFlowTracker
from recon3d.landmarks.schemes import LandmarkScheme
from recon3d.landmarks.shots import image_change, image_spike, thumbnail


class LandmarkBackendError(SetupError):
    """A landmark backend that cannot run here (missing package or weights)."""


class LandmarkDetector(Protocol):
    name: str
    n_points: int
    scheme: LandmarkScheme

    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """All faces in the frame: ``(points (n_points, 2) pixels, score)``."""

    def reset(self) -> None:
        """Forget the track (call between clips)."""

    def close(self) -> None:
        """Release resources."""


@dataclass
class LandmarkTrack:
    """Landmarks of one clip: ``points (T, P, 2)`` pixels (NaN where no face), ``valid (T,)``."""

    points: np.ndarray
    valid: np.ndarray
    score: np.ndarray
    times: np.ndarray  # (T,) presentation time of each frame, seconds
    width: int
    height: int
    fps: float  # the stream's average frame rate
    rotation: int  # rotation metadata applied to the frames (degrees)
    detect_seconds: float = 0.0  # time spent in the detector (the rest of tracking is decoding)
    audio: DecodedAudio | None = None  # the file's audio, when track_video was asked for it
    mouth_flow: MouthFlow | None = None  # the lower face's optical flow, when track_video was asked for it
    flow_seconds: float = 0.0  # time spent measuring it
    image_change: np.ndarray | None = None  # (T,) grey change from the frame before (recon3d.landmarks.shots)


def _choose(faces: list[tuple[np.ndarray, float]], previous: np.ndarray | None) -> tuple[np.ndarray, float] | None:
    if not faces:
        return None
    if previous is None or len(faces) == 1:
        # First face of the track: the largest one.
        return max(faces, key=lambda f: np.ptp(f[0], axis=0).prod())
    centre = previous.mean(axis=0)
    return min(faces, key=lambda f: np.linalg.norm(f[0].mean(axis=0) - centre))


def track_video(path: Path, detector: LandmarkDetector, on_frame: Callable[[int], None] | None = None,
                threads: int = 0, audio_rate: int | None = None, flow: MouthFlowTracker | None = None,
                span: tuple[float, float, float] | None = None) -> LandmarkTrack:
    """Decode ``path`` (with ``threads`` decoding threads, 0: FFmpeg's choice) and detect landmarks
    frame by frame, following one face; with ``audio_rate``, the audio is decoded in the same pass
    (``track.audio``); with ``flow``, the mouth's optical flow is measured too (``track.mouth_flow``).
    Each frame's image change is kept (``track.image_change``); where it spikes, as at a shot cut,
    the face is detected afresh (:func:`recon3d.landmarks.shots.image_spike`).

    ``span = (start, stop, lead)`` seconds tracks only the frames from ``start`` to before ``stop``
    (a part of a long video, :mod:`recon3d.pipeline.chunks`): tracking starts afresh ``lead``
    seconds earlier, so that the track and the image change have settled by ``start``, and the
    first frame from ``stop`` on completes the last frame's flow (no audio is decoded)."""
    detector.reset()
    if flow is not None:
        flow.reset()
    flow_seconds = 0.0
    points, valid, score, times, changes = [], [], [], [], []
    previous = previous_thumb = None
    height = width = 0
    detect_seconds = 0.0
    reader = VideoReader(path, threads, audio_rate)
    first, past = 0, False
    if span is not None:
        start, stop, lead = span
        reader.seek(max(start - lead, 0.0))
        slack = 0.25 / reader.fps  # frame times on the chunk grid belong to the later chunk
        start, stop = start - slack, stop - slack
        first = None
    for i, (rgb, t) in enumerate(_closing(reader)):
        if span is not None:
            if t < start - lead:  # before the lead: decoded from the key frame on, not tracked
                continue
            if first is None and t >= start:
                first = len(points)
            past = t >= stop  # the next part's first frame: tracked to complete this part's last flow
        height, width = rgb.shape[:2]
        thumb = thumbnail(rgb)
        changes.append(image_change(previous_thumb, thumb))
        previous_thumb = thumb
        t0 = time.perf_counter()
        if len(changes) > 1 and image_spike(changes[-1], changes[-2]):  # a cut: start the track afresh
            detector.reset()
            previous = None
        faces = detector.detect(rgb)
        detect_seconds += time.perf_counter() - t0
        chosen = _choose(faces, previous)
        if chosen is None:
            points.append(np.full((detector.n_points, 2), np.nan, np.float32))
            valid.append(False)
            score.append(0.0)
        else:
            previous = chosen[0]
            points.append(chosen[0].astype(np.float32))
            valid.append(True)
            score.append(float(chosen[1]))
        if flow is not None:
            t0 = time.perf_counter()
            flow.update(rgb, None if chosen is None else chosen[0])
            flow_seconds += time.perf_counter() - t0
        times.append(t)
        if past:
            break
        if on_frame:
            on_frame(i)
    n = len(points)
    keep = slice(n if first is None else first, n - past)
    return LandmarkTrack(points=np.stack(points)[keep] if n else np.zeros((0, detector.n_points, 2), np.float32),
                         valid=np.array(valid, bool)[keep], score=np.array(score, np.float32)[keep],
                         times=np.array(times, np.float64)[keep], width=width, height=height, fps=reader.fps,
                         rotation=reader.rotation, detect_seconds=detect_seconds, audio=reader.audio,
                         mouth_flow=None if flow is None else flow.result(n).window(keep.start, keep.stop),
                         flow_seconds=flow_seconds, image_change=np.array(changes, np.float32)[keep])


def _closing(reader: VideoReader):
    with reader:
        yield from reader.frames()
