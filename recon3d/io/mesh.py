"""Reading and writing triangle meshes: PLY (ASCII or binary) and OBJ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d.errors import SetupError

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


class MeshError(SetupError):
    """A file that is not a readable mesh."""


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(V, 3)`` and triangles ``(F, 3)`` of a .ply or .obj file."""
    path = Path(path)
    if not path.exists():
        raise MeshError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return _read_ply(path)
    if suffix == ".obj":
        obj = read_obj(path)
        return obj.vertices, obj.faces
    raise MeshError(f"{path}: unsupported mesh format '{suffix}' (use .ply or .obj)")


@dataclass
class ObjMesh:
    """An OBJ file's triangles (polygons fanned), with texture coordinates where it has them."""

    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) vertex indices
    uv: np.ndarray  # (T, 2) texture coordinates
    face_uv: np.ndarray  # (F, 3) indices into ``uv``; -1 where a corner has none
    mtllib: Path | None  # the material file it names, beside the OBJ


def read_obj(path: str | Path) -> ObjMesh:
    """Parse an OBJ file (``v``, ``vt``, ``f`` and ``mtllib`` lines; others are ignored)."""
    path = Path(path)
    verts, uv, faces, face_uv, mtl = [], [], [], [], None
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            uv.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            corners = [c.split("/") for c in parts[1:]]
            idx = [int(c[0]) - 1 for c in corners]
            tex = [int(c[1]) - 1 if len(c) > 1 and c[1] else -1 for c in corners]
            for k in range(1, len(idx) - 1):
                faces.append([idx[0], idx[k], idx[k + 1]])
                face_uv.append([tex[0], tex[k], tex[k + 1]])
        elif parts[0] == "mtllib" and len(parts) > 1:
            mtl = path.parent / parts[1]
    if not verts:
        raise MeshError(f"{path}: no vertices in this OBJ file")
    return ObjMesh(np.asarray(verts, np.float64), np.asarray(faces, np.int64).reshape(-1, 3),
                   np.asarray(uv, np.float64).reshape(-1, 2), np.asarray(face_uv, np.int64).reshape(-1, 3), mtl)


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise MeshError(f"{path}: not a PLY file")
        fmt, elements = None, []
        while True:
            line = f.readline()
            if not line:
                raise MeshError(f"{path}: PLY header without end_header")
            words = line.decode("ascii", errors="replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append([words[1], int(words[2]), []])
            elif words[0] == "property":
                elements[-1][2].append(words[1:])
            elif words[0] == "end_header":
                break
        verts = faces = None
        if fmt == "ascii":
            text = f.read().decode("ascii", errors="replace").split("\n")
            pos = 0
            for name, count, props in elements:
                rows = [r.split() for r in text[pos:pos + count]]
                pos += count
                if name == "vertex":
                    verts = np.array([[float(x) for x in r[:3]] for r in rows])
                elif name == "face":
                    faces = np.array([[int(x) for x in r[1:4]] for r in rows])
        elif fmt == "binary_little_endian":
            for name, count, props in elements:
                if props and props[0][0] == "list":
                    count_t, item_t = _PLY_TYPES[props[0][1]], _PLY_TYPES[props[0][2]]
                    raw = np.frombuffer(f.read(count * (np.dtype(count_t).itemsize + 3 * np.dtype(item_t).itemsize)),
                                        dtype=np.dtype([("n", "<" + count_t), ("v", "<" + item_t, 3)]))
                    if name == "face":
                        faces = raw["v"].astype(np.int64)
                else:
                    dtype = np.dtype([(p[1], "<" + _PLY_TYPES[p[0]]) for p in props])
                    data = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
                    if name == "vertex":
                        verts = np.stack([data["x"], data["y"], data["z"]], 1).astype(np.float64)
        else:
            raise MeshError(f"{path}: unsupported PLY format '{fmt}'")
    if verts is None:
        raise MeshError(f"{path}: no vertex element")
    return verts, (faces if faces is not None else np.zeros((0, 3), np.int64))


def write_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    Path(path).write_text("\n".join(lines) + "\n")


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY (float32 vertices, int32 triangles)."""
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\nproperty float x\n"
              f"property float y\nproperty float z\nelement face {len(faces)}\n"
              "property list uchar int vertex_indices\nend_header\n").encode()
    tri = np.zeros(len(faces), dtype=np.dtype([("n", "u1"), ("v", "<i4", 3)]))
    tri["n"], tri["v"] = 3, faces
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.asarray(vertices, "<f4").tobytes())
        f.write(tri.tobytes())
