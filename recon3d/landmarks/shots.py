"""Shot cuts: where a video jumps to another shot, so that nothing temporal joins the two.

Film and interview footage is edited: at a cut the picture changes at once and the face (if still
there) jumps to another place, size or view. A cut is declared between frames ``t - 1`` and ``t``
only where both happen at ``t`` and at neither neighbour (:func:`shot_starts`):

- the image change (mean absolute difference of small thumbnails, :func:`thumbnail`) is at
  least :data:`MIN_IMAGE_CHANGE` grey levels and :data:`SPIKE_RATIO` times that of frames ``t - 1``
  and ``t + 1``: fast motion changes the picture over several frames, a cut in one;
- the landmarks move by at least :data:`MIN_JUMP_IOD` of the face's eye-corner distance (median
  over points) and :data:`SPIKE_RATIO` times their motion into ``t - 1`` and out of ``t``; or a face
  is found or lost at ``t``.

A flash changes the picture but not the landmarks; a fast head turn moves both, but over several
frames. Measured on the shared real clips (15: RAVDESS, MEAD, two far-turned heads): the image
change's spike ratio stays at or below 1.9 and the landmarks' at or below 3.1 (a fast head turn),
where a cut from one RAVDESS take to another seen 1.6x zoomed gives ~100 and 61. While tracking,
:func:`image_spike` resets the detector at an image spike, so that the face after a cut is
detected afresh rather than tracked from the previous shot's place.
"""

from __future__ import annotations

import numpy as np

#: Thumbnail size (columns, rows) the image change is measured on.
THUMB = (32, 18)
MIN_IMAGE_CHANGE = 3.0  # grey levels (0-255), mean over the thumbnail
MIN_JUMP_IOD = 0.05
SPIKE_RATIO = 4.0
#: Floors of the neighbours' change in the spike ratios (compression noise, landmark jitter).
IMAGE_FLOOR = 0.5
JUMP_FLOOR = 0.01


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A ``(rows, columns)`` float32 thumbnail of an RGB frame: block means of the green channel
    (the nearest to luminance) of every 8th pixel; ~0.05 ms for a 1280x720 frame."""
    grey = rgb[::8, ::8, 1].astype(np.float32)
    cols, rows = THUMB
    bh, bw = max(grey.shape[0] // rows, 1), max(grey.shape[1] // cols, 1)
    grey = grey[:bh * rows, :bw * cols]
    if grey.shape != (bh * rows, bw * cols):  # a frame smaller than 4x the thumbnail: no blocks
        return np.resize(grey, (rows, cols))
    return grey.reshape(rows, bh, cols, bw).mean((1, 3))


def image_change(previous: np.ndarray | None, current: np.ndarray) -> float:
    """Mean absolute grey difference of two thumbnails (0 for the first frame)."""
    return 0.0 if previous is None else float(np.abs(current - previous).mean())


def image_spike(change: float, previous_change: float) -> bool:
    """Whether a frame's image change (against the frame before) is a cut's, judged causally (on
    the frame before only): where tracking should start afresh."""
    return change >= MIN_IMAGE_CHANGE and change >= SPIKE_RATIO * max(previous_change, IMAGE_FLOOR)


def _spikes(x: np.ndarray, floor: float) -> np.ndarray:
    """(T,) ``x[t]`` over the largest of its neighbours ``x[t - 1]``, ``x[t + 1]`` and ``floor``."""
    before = np.r_[floor, x[:-1]]
    after = np.r_[x[1:], floor]
    return x / np.maximum(np.maximum(before, after), floor)


def landmark_jumps(points: np.ndarray, valid: np.ndarray, eye_corners: tuple[int, int],
                   frames: np.ndarray | None = None) -> np.ndarray:
    """(T,) median landmark motion from frame ``t - 1`` to ``t`` over the face's outer-eye-corner
    distance at ``t`` (0 where either frame has no face, and for the first frame); only at
    ``frames`` (0 elsewhere) when given."""
    n = len(valid)
    at = np.arange(1, n) if frames is None else np.unique(np.clip(frames, 1, max(n - 1, 1)))
    at = at[at < n]
    out = np.zeros(n)
    if not len(at):
        return out
    now, before = np.asarray(points[at], np.float64), np.asarray(points[at - 1], np.float64)
    a, b = eye_corners
    iod = np.linalg.norm(now[:, a] - now[:, b], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        motion = np.nanmedian(np.linalg.norm(now - before, axis=-1), axis=1) / iod
    out[at] = np.where(valid[at] & valid[at - 1] & np.isfinite(motion), motion, 0.0)
    return out


def shot_starts(points: np.ndarray, valid: np.ndarray, change: np.ndarray, eye_corners: tuple[int, int]) -> np.ndarray:
    """Frames (ascending, > 0) where a new shot starts (see the module's text). A shot without any
    face joins the shot before it (the first shot, the one after it): its frames are interpolated
    there, as any frames without a face are."""
    valid = np.asarray(valid, bool)
    change = np.asarray(change, np.float64)
    if len(change) != len(valid) or len(valid) < 2:
        return np.zeros(0, np.int64)
    image = (change >= MIN_IMAGE_CHANGE) & (_spikes(change, IMAGE_FLOOR) >= SPIKE_RATIO)
    candidates = np.flatnonzero(image)  # the landmarks' jumps are needed only there and beside
    jumps = landmark_jumps(points, valid, eye_corners, np.r_[candidates - 1, candidates, candidates + 1])
    moved = (jumps >= MIN_JUMP_IOD) & (_spikes(jumps, JUMP_FLOOR) >= SPIKE_RATIO)
    found_or_lost = np.r_[False, valid[1:] != valid[:-1]]
    starts = np.flatnonzero(image & (moved | found_or_lost))
    starts = starts[starts > 0]
    bounds = np.r_[starts, len(valid)]
    keep = [s for s, stop in zip(starts, bounds[1:]) if valid[s:stop].any()]
    if keep and not valid[:keep[0]].any():  # the first shot has no face: it joins the next one
        keep = keep[1:]
    return np.asarray(keep, np.int64)


def shot_ranges(n_frames: int, starts: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the shots of a clip of ``n_frames`` frames."""
    bounds = [0, *[int(s) for s in starts], n_frames]
    return list(zip(bounds[:-1], bounds[1:]))
