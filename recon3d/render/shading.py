"""Shading fragments: vertex normals, Lambert lighting, back faces dark (a mouth cavity)."""

from __future__ import annotations

import numpy as np

from recon3d.render.rasterizer import Fragments


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` (faces wound counter-clockwise seen from outside)."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)


def interpolate(frags: Fragments, faces: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-vertex ``values (V, C)`` interpolated at every covered pixel ``(H, W, C)`` (0 elsewhere)."""
    out = np.zeros(frags.triangle.shape + (values.shape[1],), np.float32)
    m = frags.mask
    corner = values[faces[frags.triangle[m]]]  # (n, 3, C)
    out[m] = np.einsum("nk,nkc->nc", frags.bary[m], corner)
    return out


def lambert(frags: Fragments, faces: np.ndarray, normals: np.ndarray, base_color=(0.75, 0.72, 0.70),
            ambient: float = 0.25, cavity: float = 0.08) -> np.ndarray:
    """Grey-shaded image ``(H, W, 3)`` in [0, 1]; light from the camera; back faces dark."""
    n = interpolate(frags, faces, normals)
    facing = n[..., 2]  # camera looks along -z: surfaces facing it have +z normals
    light = np.clip(facing, 0.0, 1.0)
    shade = ambient + (1 - ambient) * light
    img = shade[..., None] * np.asarray(base_color, np.float32)
    img[frags.mask & (facing < 0)] = cavity
    img[~frags.mask] = 0.0
    return img
