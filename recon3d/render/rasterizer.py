"""A small vectorised z-buffer triangle rasteriser in numpy: headless, no GL, no display.

``rasterize`` turns triangles in screen space (pixel x, pixel y, depth) into per-pixel fragments:
the visible triangle, perspective-correct barycentric coordinates and depth. Shading and texturing
are done on the fragments (see :mod:`recon3d.render.shading`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Fragments:
    triangle: np.ndarray  # (H, W) int32, -1 where no triangle covers the pixel centre
    bary: np.ndarray  # (H, W, 3) float32 perspective-correct barycentrics of the visible triangle
    depth: np.ndarray  # (H, W) float32, inf where empty

    @property
    def mask(self) -> np.ndarray:
        return self.triangle >= 0


def project_pinhole(points: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """Camera-frame points ``(N, 3)`` (looking along -z) to ``(x_px, y_px, depth)``."""
    depth = -points[:, 2]
    safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
    return np.stack([cx + focal * points[:, 0] / safe, cy - focal * points[:, 1] / safe, depth], axis=1)


def rasterize(screen: np.ndarray, faces: np.ndarray, height: int, width: int) -> Fragments:
    """Rasterise triangles ``faces (F, 3)`` over screen-space vertices ``screen (V, 3)``.

    A pixel is covered when its centre is inside a triangle; the nearest (smallest depth) wins.
    Triangles with any vertex at or behind the camera are skipped.
    """
    tri = screen[faces]  # (F, 3, 3)
    xy, z = tri[:, :, :2], tri[:, :, 2]
    lo = np.floor(xy.min(axis=1) - 0.5).astype(np.int64)
    hi = np.ceil(xy.max(axis=1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    (x0, y0), (x1, y1), (x2, y2) = xy[:, 0].T, xy[:, 1].T, xy[:, 2].T
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    keep = np.flatnonzero((z > 1e-6).all(axis=1) & (hi >= lo).all(axis=1) & (np.abs(area) > 1e-12))
    empty = Fragments(np.full((height, width), -1, np.int32), np.zeros((height, width, 3), np.float32),
                      np.full((height, width), np.inf, np.float32))
    if keep.size == 0:
        return empty
    bw = hi[keep, 0] - lo[keep, 0] + 1
    bh = hi[keep, 1] - lo[keep, 1] + 1
    counts = bw * bh
    owner = np.repeat(np.arange(keep.size), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    px = lo[keep, 0][owner] + local % bw[owner]
    py = lo[keep, 1][owner] + local // bw[owner]
    t = keep[owner]
    cxp, cyp = px + 0.5, py + 0.5
    inv_area = 1.0 / area[t]
    w0 = ((x1[t] - cxp) * (y2[t] - cyp) - (x2[t] - cxp) * (y1[t] - cyp)) * inv_area
    w1 = ((x2[t] - cxp) * (y0[t] - cyp) - (x0[t] - cxp) * (y2[t] - cyp)) * inv_area
    w2 = 1.0 - w0 - w1
    inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
    px, py, t, w0, w1, w2 = px[inside], py[inside], t[inside], w0[inside], w1[inside], w2[inside]
    # Perspective-correct interpolation: weights over depth, renormalised.
    p0, p1, p2 = w0 / z[t, 0], w1 / z[t, 1], w2 / z[t, 2]
    inv_depth = p0 + p1 + p2
    depth = 1.0 / inv_depth
    pixel = py * width + px
    order = np.lexsort((depth, pixel))
    pixel_sorted = pixel[order]
    first = order[np.r_[True, pixel_sorted[1:] != pixel_sorted[:-1]]]
    out = empty
    flat_tri, flat_depth = out.triangle.reshape(-1), out.depth.reshape(-1)
    flat_bary = out.bary.reshape(-1, 3)
    flat_tri[pixel[first]] = t[first]
    flat_depth[pixel[first]] = depth[first]
    flat_bary[pixel[first]] = np.stack([p0[first], p1[first], p2[first]], 1) / inv_depth[first, None]
    return out
