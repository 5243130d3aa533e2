"""Dense optical flow of the lower face between consecutive frames: what the pixels say the lips did.

Sparse landmarks see the lips' outline; the flow sees how their surface moves. While a clip is
tracked, :class:`MouthFlowTracker` crops a square around the mouth and chin (placed by the frame's
lip landmarks), and measures OpenCV's DIS optical flow from that crop in frame ``t`` to the same
pixels in frame ``t + 1``. The flow is kept on a regular grid over the crop (:class:`MouthFlow`), so
that the fit can read it wherever its surface samples project (:meth:`MouthFlow.sample`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon3d.errors import SetupError
from recon3d.landmarks.schemes import DLIB_OFFSET, LandmarkScheme

#: The crop is resized to this many pixels a side before the flow (DIS's medium preset at 160 px:
#: ~2 ms a frame pair on a core) and the flow kept on every FLOW_STRIDE-th pixel of it (every second pixel
#: measured the same on renders: 0.58 px mean error at the lips), 6.4 kB a frame in the landmark cache.
CROP_PX = 160
FLOW_STRIDE = 4
#: The crop's side in mouth widths (corner to corner); its centre sits this many mouth widths
#: below the lips' centre, so that the chin and the cheeks beside the mouth are in it.
CROP_MOUTH_WIDTHS = 2.2
CROP_DROP = 0.3
#: The flow is not kept within this many mouth widths of the mouth's opening (between the inner
#: lips, in either frame of a pair): the interior (teeth, tongue, the dark gap) moves on its own,
#: and the flow smooths it into the lips' inner edges.
OPENING_MARGIN = 0.08


@dataclass
class MouthFlow:
    """Flow ``(T, G, G, 2)`` pixels from frame ``t`` to ``t + 1`` at grid nodes ``origin[t] +
    step[t] * (column, row)`` (frame ``t``'s pixels; NaN where not measured: the last frame, and
    frames without a face)."""

    flow: np.ndarray  # (T, G, G, 2) float16
    origin: np.ndarray  # (T, 2) float32 pixels of node (0, 0)
    step: np.ndarray  # (T,) float32 pixels between nodes

    @property
    def measured(self) -> np.ndarray:
        """(T,) whether frame ``t`` has a flow to ``t + 1``."""
        return np.isfinite(self.step) & (self.step > 0)

    def window(self, start: int, stop: int | None) -> "MouthFlow":
        """Frames ``start`` to ``stop - 1`` (to the end with None)."""
        return MouthFlow(self.flow[start:stop], self.origin[start:stop], self.step[start:stop])

    def sample(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The flow at ``pixels (T, S, 2)`` (bilinear between nodes) and where it is known
        ``(T, S)`` (inside the grid, in a measured frame)."""
        n_frames, grid = self.flow.shape[0], self.flow.shape[1]
        step = np.where(self.measured, self.step, 1.0).astype(np.float64)
        g = (pixels - self.origin[:, None].astype(np.float64)) / step[:, None, None]
        inside = (g >= 0).all(-1) & (g <= grid - 1).all(-1) & self.measured[:, None]
        g = np.clip(np.nan_to_num(g), 0, grid - 1 - 1e-6)
        i0 = np.floor(g).astype(np.int64)
        f = g - i0
        t = np.arange(n_frames)[:, None]
        x0, y0 = i0[..., 0], i0[..., 1]

        def node(dy: int, dx: int) -> np.ndarray:
            return self.flow[t, y0 + dy, x0 + dx].astype(np.float64)

        fx, fy = f[..., :1], f[..., 1:]
        out = ((1 - fx) * (1 - fy) * node(0, 0) + fx * (1 - fy) * node(0, 1)
               + (1 - fx) * fy * node(1, 0) + fx * fy * node(1, 1))
        known = inside & np.isfinite(out).all(-1)
        return np.where(known[..., None], out, 0.0), known

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to cache with a clip's landmarks (keys ``mouth_flow*``)."""
        return {"mouth_flow": self.flow, "mouth_flow_origin": self.origin, "mouth_flow_step": self.step}

    @classmethod
    def from_arrays(cls, cached: dict) -> "MouthFlow | None":
        """The flow cached by :meth:`arrays`, or None when the cache has none."""
        if "mouth_flow" not in cached:
            return None
        return cls(cached["mouth_flow"], cached["mouth_flow_origin"], cached["mouth_flow_step"])


def mouth_box(lips: np.ndarray) -> tuple[float, float, float]:
    """Top-left corner and side ``(x0, y0, side)`` in pixels of the square crop around the lip
    points ``lips (L, 2)``."""
    width = float(np.ptp(lips[:, 0]))
    side = CROP_MOUTH_WIDTHS * max(width, 8.0)
    centre = lips.mean(0) + np.array([0.0, CROP_DROP * width])
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def opening_polygon(points: np.ndarray, lip_pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """The mouth's opening ``(2P, 2)`` pixels: the inner upper-lip points of ``lip_pairs`` from left
    to right, then the lower ones back (a thin sliver when the lips meet)."""
    upper = points[[u for u, _ in lip_pairs]]
    lower = points[[lo for _, lo in lip_pairs]]
    return np.concatenate([upper[np.argsort(upper[:, 0])], lower[np.argsort(-lower[:, 0])]])


def _opencv():
    try:
        import cv2
    except ImportError as exc:  # mediapipe brings opencv-contrib; a FAN-only install may not
        raise SetupError("the mouth flow (fitting.flow_weight > 0) needs OpenCV with DIS optical flow: "
                         "pip install opencv-contrib-python, or set fitting.flow_weight: 0") from exc
    return cv2


class MouthFlowTracker:
    """Measures :class:`MouthFlow` frame by frame during tracking (``update`` once per frame, in
    order; ``result`` at the end)."""

    def __init__(self, lip_ids: tuple[int, ...], lip_pairs: tuple[tuple[int, int], ...]):
        """``lip_ids`` place the crop; the inner-lip ``lip_pairs`` (upper, lower) outline the opening."""
        cv2 = _opencv()
        self._cv2 = cv2
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.lip_ids = np.asarray(lip_ids)
        self.lip_pairs = tuple(lip_pairs)
        self.reset()

    @classmethod
    def for_scheme(cls, scheme: LandmarkScheme) -> "MouthFlowTracker":
        """A tracker placed by the scheme's first source (MediaPipe's lips where dlib's are fused)."""
        return cls(tuple(i for i in scheme.lip_ids if i < DLIB_OFFSET),
                   tuple(p for p in scheme.lip_pairs if max(p) < DLIB_OFFSET))

    def reset(self) -> None:
        self._previous: tuple[np.ndarray, tuple[float, float, float], np.ndarray] | None = None
        self._seen = 0
        self._rows: list[tuple[np.ndarray, tuple[float, float], float] | None] = []

    def _crop(self, rgb: np.ndarray, box: tuple[float, float, float]) -> np.ndarray:
        """The grey crop of ``box`` resized to CROP_PX (an affine warp: sub-pixel placement, edges
        replicated). Pixel ``i``'s centre is at ``i + 0.5`` in frame and crop, as landmarks have it."""
        cv2 = self._cv2
        x0, y0, side = box
        scale = CROP_PX / side
        pad = int(np.ceil(0.05 * side)) + 2
        xa, ya = max(int(x0) - pad, 0), max(int(y0) - pad, 0)
        xb, yb = min(int(x0 + side) + pad, rgb.shape[1]), min(int(y0 + side) + pad, rgb.shape[0])
        if xb <= xa or yb <= ya:
            return np.zeros((CROP_PX, CROP_PX), np.uint8)
        grey = cv2.cvtColor(np.ascontiguousarray(rgb[ya:yb, xa:xb]), cv2.COLOR_RGB2GRAY)
        shift = 0.5 * scale - 0.5
        warp = np.array([[scale, 0.0, (xa - x0) * scale + shift], [0.0, scale, (ya - y0) * scale + shift]])
        flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        return cv2.warpAffine(grey, warp, (CROP_PX, CROP_PX), flags=flags, borderMode=cv2.BORDER_REPLICATE)

    def _opening_mask(self, openings: list[np.ndarray], box: tuple[float, float, float], margin_px: float) -> np.ndarray:
        """``(CROP_PX, CROP_PX)`` True within ``margin_px`` (frame pixels) of any of the ``openings``."""
        cv2 = self._cv2
        x0, y0, side = box
        scale = CROP_PX / side
        mask = np.zeros((CROP_PX, CROP_PX), np.uint8)
        for polygon in openings:
            cv2.fillPoly(mask, [np.round((polygon - (x0, y0)) * scale * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        radius = max(int(round(margin_px * scale)), 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return cv2.dilate(mask, kernel).astype(bool)

    def update(self, rgb: np.ndarray, points: np.ndarray | None) -> None:
        """Take the next frame and its landmarks (None without a face); completes the previous frame's row."""
        face = points is not None and np.isfinite(points[self.lip_ids]).all()
        opening = opening_polygon(points, self.lip_pairs) if face else None
        if self._seen:
            row = None
            if self._previous is not None:
                crop, (x0, y0, side), previous_opening = self._previous
                pixel = side / CROP_PX
                flow = self._dis.calc(crop, self._crop(rgb, (x0, y0, side)), None)
                width = float(np.ptp(previous_opening[:, 0]))
                openings = [previous_opening] + ([opening] if opening is not None else [])
                flow[self._opening_mask(openings, (x0, y0, side), OPENING_MARGIN * width)] = np.nan
                first = FLOW_STRIDE // 2
                nodes = flow[first::FLOW_STRIDE, first::FLOW_STRIDE] * pixel
                row = (nodes.astype(np.float16), (x0 + (first + 0.5) * pixel, y0 + (first + 0.5) * pixel),
                       FLOW_STRIDE * pixel)
            self._rows.append(row)
        self._seen += 1
        if not face:
            self._previous = None
            return
        box = mouth_box(points[self.lip_ids])
        self._previous = (self._crop(rgb, box), box, opening)

    def latest(self) -> MouthFlow | None:
        """The flow of the pair completed by the last ``update`` (one frame), or None where there is none."""
        row = self._rows[-1] if self._rows else None
        if row is None:
            return None
        flow, origin, step = row
        return MouthFlow(flow[None], np.array([origin], np.float32), np.array([step], np.float32))

    def result(self, n_frames: int) -> MouthFlow:
        """The flow of the ``n_frames`` frames seen (the last frame has none)."""
        grid = len(range(FLOW_STRIDE // 2, CROP_PX, FLOW_STRIDE))
        flow = np.full((n_frames, grid, grid, 2), np.nan, np.float16)
        origin = np.full((n_frames, 2), np.nan, np.float32)
        step = np.full(n_frames, np.nan, np.float32)
        for t, row in enumerate(self._rows[:n_frames]):
            if row is not None:
                flow[t], origin[t], step[t] = row
        return MouthFlow(flow, origin, step)
