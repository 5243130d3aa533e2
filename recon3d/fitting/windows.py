"""Long shots fitted in overlapping temporal windows, so that the fit's memory does not grow with
the clip (its banded system alone takes ~0.2 MB a frame).

The smoothness prior and the mouth flow couple only neighbouring frames, so a frame far from a
window's ends is fitted as the whole shot would fit it: each window keeps its middle frames and
lends ``overlap`` frames on each side to its neighbours' context (docs/fitting.md has the measured
difference against one piece).
"""

from __future__ import annotations


def temporal_windows(n_frames: int, window: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(fit_start, fit_stop, keep_start, keep_stop)`` per window: frames fitted together, and the
    ones kept from them (consecutive, covering ``0..n_frames``). One window when ``window`` is 0 or
    the shot fits in it; a window keeps ``window - 2 * overlap`` frames (at least one)."""
    if not window or n_frames <= window:
        return [(0, n_frames, 0, n_frames)]
    keep = max(window - 2 * overlap, 1)
    out = []
    for start in range(0, n_frames, keep):
        stop = min(start + keep, n_frames)
        out.append((max(start - overlap, 0), min(stop + overlap, n_frames), start, stop))
    return out
