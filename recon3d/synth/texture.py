"""A textured head for synthetic videos, and rendering it.

``texture_mesh.obj`` (VOCA's textured FLAME-topology head) has FLAME's vertices and face order
with UVs per triangle corner, but it is a different person from the model's template and sits
elsewhere in space. :func:`load_textured_head` maps its vertices onto FLAME's (through the shared
face order) and fits the model's identity to it once: a rigid alignment, then the identity
coefficients by ridge least squares, alternated. Rendering the model with that identity keeps
the eyes, brows and lips of the texture where the geometry puts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d.errors import SetupError
from recon3d.flame.model_file import FlameModelData
from recon3d.io.mesh import read_obj
from recon3d.render.rasterizer import project_pinhole, rasterize
from recon3d.render.shading import interpolate, vertex_normals
from recon3d.synth.accuracy import rigid_align


class TextureError(SetupError):
    """A texture mesh that does not match the FLAME model."""


@dataclass(frozen=True)
class Lighting:
    """How a render is lit and encoded: a directional light ``direction`` (camera frame, toward the
    light; (0, 0, 1) is from the camera), ``ambient`` light, a Blinn-Phong highlight of
    ``specular`` strength and ``shininess``, and the H.264 quality ``crf`` (higher: stronger
    compression)."""

    direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    ambient: float = 0.45
    specular: float = 0.0
    shininess: float = 20.0
    crf: int = 23


#: ``recon3d synth --lighting``: ``camera`` (the renders the fit was tuned on: light from the
#: camera, matte, crf 23) and ``side`` (held out: light from the upper left, dimmer ambient, a
#: specular highlight, crf 32), which a term fitted to the first renders' image formation must survive.
LIGHTINGS = {"camera": Lighting(),
             "side": Lighting(direction=(-0.55, 0.45, 0.70), ambient=0.3, specular=0.35, shininess=24.0, crf=32)}


@dataclass
class TexturedHead:
    uv: np.ndarray  # (F, 3, 2) per-corner texture coordinates
    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    shape: np.ndarray  # (K,) FLAME identity fitted to the textured head
    fit_rms_mm: float  # distance left between FLAME(shape) and the textured head


def _texture_image(obj: Path, mtl: Path | None) -> np.ndarray:
    import cv2

    candidates = []
    if mtl is not None and mtl.exists():
        for line in mtl.read_text().splitlines():
            p = line.split()
            if p and p[0] == "map_Kd":
                candidates.append(mtl.parent / p[-1])
    candidates.append(obj.with_suffix(".png"))
    for path in candidates:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            return image[..., ::-1].astype(np.float32) / 255.0
    raise TextureError(f"{obj}: no texture image found (map_Kd in the .mtl, or {obj.with_suffix('.png').name})")


def load_textured_head(obj_path: str | Path, model: FlameModelData, prior: float = 1e-2, iters: int = 3) -> TexturedHead:
    """Read a FLAME-topology textured OBJ and fit the model's identity to its geometry."""
    obj_path = Path(obj_path)
    if not obj_path.exists():
        raise TextureError(f"{obj_path}: file not found")
    obj = read_obj(obj_path)
    if obj.faces.shape != model.faces.shape or (obj.face_uv < 0).any():
        raise TextureError(f"{obj_path}: needs {len(model.faces)} triangles with UVs in FLAME's face order "
                           f"(has {len(obj.faces)})")
    flame_of = np.full(len(obj.vertices), -1)
    for k in range(3):
        flame_of[obj.faces[:, k]] = model.faces[:, k]
    if (flame_of < 0).any() or len(np.unique(flame_of)) != model.n_vertices:
        raise TextureError(f"{obj_path}: its triangles do not map one-to-one onto the model's vertices")
    target = np.zeros((model.n_vertices, 3))
    target[flame_of] = obj.vertices
    dirs = model.shapedirs.reshape(-1, model.n_shape)
    shape = np.zeros(model.n_shape)
    ids = np.arange(model.n_vertices)
    for _ in range(iters):
        current = model.v_template + model.shapedirs @ shape
        aligned = rigid_align(target[None], current[None], ids)[0]  # the textured head in FLAME's frame
        residual = (aligned - model.v_template).reshape(-1)
        shape = np.linalg.solve(dirs.T @ dirs + prior * np.eye(model.n_shape), dirs.T @ residual)
    fitted = model.v_template + model.shapedirs @ shape
    rms = float(np.sqrt(((fitted - aligned) ** 2).sum(-1).mean()) * 1000)
    return TexturedHead(uv=obj.uv[obj.face_uv], image=_texture_image(obj_path, obj.mtllib), shape=shape, fit_rms_mm=rms)


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear colour lookup at texture coordinates ``uv (..., 2)`` (v up)."""
    h, w = image.shape[:2]
    x = np.clip(uv[..., 0], 0, 1) * (w - 1)
    y = (1 - np.clip(uv[..., 1], 0, 1)) * (h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def render_textured(vertices: np.ndarray, faces: np.ndarray, head: TexturedHead, focal: float, cx: float, cy: float,
                    background: np.ndarray, lighting: Lighting = LIGHTINGS["camera"], cavity: float = 0.06) -> np.ndarray:
    """Camera-frame ``vertices (V, 3)`` rendered over ``background (H, W, 3)`` (float [0, 1]):
    perspective-correct texture under ``lighting`` (Lambert, plus its highlight), back faces dark
    (the mouth)."""
    h, w = background.shape[:2]
    frags = rasterize(project_pinhole(vertices, focal, cx, cy), faces, h, w)
    out = background.copy()
    m = frags.mask
    if not m.any():
        return out
    tri = frags.triangle[m]
    uv = np.einsum("nk,nkc->nc", frags.bary[m], head.uv[tri])
    normals = interpolate(frags, faces, vertex_normals(vertices, faces))[m]
    normals = normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-9)
    to_light = np.asarray(lighting.direction, np.float64)
    to_light = to_light / np.linalg.norm(to_light)
    light = lighting.ambient + (1 - lighting.ambient) * np.clip(normals @ to_light, 0, 1)
    colour = sample_texture(head.image, uv) * light[:, None]
    if lighting.specular > 0:
        to_eye = -interpolate(frags, faces, vertices.astype(np.float32))[m]
        half = to_eye / np.linalg.norm(to_eye, axis=1, keepdims=True).clip(1e-9) + to_light
        half /= np.linalg.norm(half, axis=1, keepdims=True).clip(1e-9)
        colour = colour + lighting.specular * np.clip((normals * half).sum(1), 0, 1)[:, None] ** lighting.shininess
    colour[normals[:, 2] < 0] = cavity
    out[m] = np.clip(colour, 0.0, 1.0)
    return out
