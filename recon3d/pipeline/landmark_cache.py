"""A clip's landmarks cache (``work/shards/<shard>/landmarks/<clip>.npz``), read whole or a range
of frames at a time.

The cache holds a row per frame of each tracked array (:data:`recon3d.pipeline.chunks.PER_FRAME`:
the points, their flags and scores, times, image change, mouth flow), the clip's 16 kHz audio and
its source's fingerprint; a long video's is hundreds of MB, so what needs only some of its frames
(a fit piece, the identity's chosen frames, the shot cuts, the QC's face size) reads only those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recon3d.io.npz_rows import NpzRows, Rows
from recon3d.landmarks.mouth_flow import MouthFlow
from recon3d.landmarks.schemes import FAN68, MEDIAPIPE, MEDIAPIPE_DLIB, LandmarkScheme
from recon3d.landmarks.shots import shot_starts
from recon3d.pipeline.chunks import PER_FRAME
from recon3d.pipeline.workspace import ShardWork

if TYPE_CHECKING:  # torch is imported by the processes that fit, not by the main process of a build
    from recon3d.fitting import LandmarkSequence

#: The scheme of landmarks cached by each detector (its ``name``).
SCHEMES_BY_DETECTOR = {"mediapipe": MEDIAPIPE, "fan": FAN68, "mediapipe+dlib": MEDIAPIPE_DLIB}


def scheme_of(cache: dict) -> LandmarkScheme:
    """The landmark scheme of a cache (its detector's, ``backend``)."""
    return SCHEMES_BY_DETECTOR[str(cache["backend"])]


def landmark_cache(work: ShardWork, clip_id: str) -> dict:
    """A clip's landmarks cache read on demand: each array a :class:`~recon3d.io.npz_rows.Rows`
    (read a range of frames at a time), each scalar its value."""
    rows = NpzRows(work.landmarks(clip_id))
    return {key: member if member.shape else rows.value(key) for key, member in rows.members.items()}


def load_landmarks(work: ShardWork, clip_id: str, flow: bool = True, frames: slice | np.ndarray | None = None) -> dict:
    """A clip's landmarks cache, without its mouth flow (a third of it) unless ``flow``. With
    ``frames`` (a slice, or frame indices) only those frames, and no audio; indices also leave out
    the mouth flow and the image change, which are measured between consecutive frames."""
    out = {}
    consecutive = frames is None or isinstance(frames, slice)
    for key, value in landmark_cache(work, clip_id).items():
        if key.startswith("mouth_flow") and not (flow and consecutive) or key == "image_change" and not consecutive:
            continue
        if not isinstance(value, Rows):
            out[key] = value
        elif frames is None:
            out[key] = value[:]
        elif key in PER_FRAME:
            out[key] = value[frames]
    return out


def sequence_of(cached: dict) -> LandmarkSequence:
    """The cached landmarks (:func:`load_landmarks`) as a sequence."""
    from recon3d.fitting import LandmarkSequence

    return LandmarkSequence(cached["points"], cached["valid"], int(cached["width"]), int(cached["height"]),
                            float(cached["fps"]), cached["score"], scheme_of(cached),
                            MouthFlow.from_arrays(cached), cached.get("image_change"))


def cached_shot_starts(cache: dict) -> np.ndarray:
    """:meth:`LandmarkSequence.shot_starts` of a :func:`landmark_cache`, reading the landmarks
    only where the picture spikes."""
    if "image_change" not in cache:
        return np.zeros(0, np.int64)
    corners = scheme_of(cache).outer_eye_corners
    return shot_starts(cache["points"], cache["valid"][:], cache["image_change"][:], corners)


def cached_inter_ocular_px(cache: dict, frames: int = 4096) -> np.ndarray:
    """:meth:`LandmarkSequence.inter_ocular_px` of a :func:`landmark_cache`, ``frames`` at a time."""
    from recon3d.fitting.sequence import inter_ocular_px

    corners = scheme_of(cache).outer_eye_corners
    valid = cache["valid"][:]
    return np.concatenate([np.zeros(0)] + [inter_ocular_px(block, valid[a:a + len(block)], corners)
                                           for a, block in cache["points"].blocks(frames)])
