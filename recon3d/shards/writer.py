"""Writing clips and shards (layout in docs/dataset-format.md).

Each fitted clip is first written to its own HDF5 file (``work/clips/<clip_id>.h5``) through an
atomic rename, so a killed build never leaves a half clip that looks done. A shard is assembled
from finished clip files into ``shards/<name>.h5`` the same way, and only then exists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Protocol

import h5py
import numpy as np

from recon3d import __version__
from recon3d.atomic import atomic_path
from recon3d.config_io import ConfigError
from recon3d.shards import schema as S
from recon3d.shards.schema import ClipAttrs


#: ``storage.compression`` values and the h5py filter each names.
COMPRESSIONS = {"none": None, "lzf": "lzf", "gzip": "gzip"}


@dataclass
class StorageConfig:
    """How arrays are stored: vertices as float32, chunked by frames, compressed or not.

    ``none`` (default): fitted float32 vertices compress poorly (LZF saves ~13 %) and LZF costs
    0.55 ms per frame to write and 0.14 to read (benchmarks.md, 2026-12-03)."""

    chunk_frames: int = 16
    compression: str = "none"  # none | lzf (~13 % smaller) | gzip (~20 % smaller, slow to write)

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"storage.compression: '{self.compression}' is not one of {', '.join(COMPRESSIONS)}")


class MeshSource(Protocol):
    """Vertices computed a part at a time (a :class:`~recon3d.fitting.FitResult`): a long clip's
    meshes are written without ever being held whole."""

    @property
    def n_frames(self) -> int: ...

    def mesh_chunks(self, frames: int) -> Iterator[tuple[int, np.ndarray]]: ...


@dataclass
class ClipRecord:
    """Everything stored for one clip (see docs/dataset-format.md for units)."""

    clip_id: str
    attrs: ClipAttrs  # actor, fps, labels, QC, provenance (n_frames is set from the vertices)
    times: np.ndarray | FrameRows  # (T,) s
    vertices: np.ndarray | MeshSource  # (T, V, 3) m, canonical head space
    audio: np.ndarray | FrameRows  # (N,) float32, 16 kHz
    landmarks: np.ndarray | FrameRows  # (T, 478, 2) px; (T, 546, 2) with dlib's 68 after MediaPipe's
    landmarks_valid: np.ndarray  # (T,) bool
    flame: dict[str, np.ndarray]  # expression, jaw_pose, eye_pose, global_pose, neck_pose, translation
    camera: dict[str, float]  # focal, cx, cy, width, height
    head_translation: np.ndarray  # (T, 3) camera-frame vertices = vertices @ R(global_pose)^T + this


class FrameRows(Protocol):
    """An array read a range of rows at a time (:class:`recon3d.io.npz_rows.Rows`): a long clip's
    landmarks and audio are copied into its file without ever being held whole."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int: ...

    def blocks(self, frames: int) -> Iterator[tuple[int, np.ndarray]]: ...


#: Bytes of a :class:`FrameRows` copied at a time (whole rows, at least one).
ROWS_BLOCK_BYTES = 16 << 20


def _put(group: h5py.Group, name: str, data: np.ndarray | FrameRows, dtype=None, **options) -> h5py.Dataset:
    """A dataset with HDF5's per-chunk Fletcher-32 checksum: a corrupt chunk raises on read
    instead of returning wrong numbers (every dataset of a shard is written so). ``data`` whole,
    or :class:`FrameRows` copied a block at a time; stored as ``dtype`` (default: its own)."""
    if not hasattr(data, "blocks"):
        return group.create_dataset(name, data=np.asarray(data, dtype), fletcher32=True, **options)
    dataset = group.create_dataset(name, shape=data.shape, dtype=dtype or data.dtype, fletcher32=True, **options)
    row_bytes = np.dtype(data.dtype).itemsize * int(np.prod(data.shape[1:], dtype=np.int64))
    for start, block in data.blocks(max(1, ROWS_BLOCK_BYTES // row_bytes)):
        dataset[start:start + len(block)] = block
    return dataset


#: Frames of a :class:`MeshSource` computed and written at a time.
MESH_BLOCK_FRAMES = 256


def _write_vertices(group: h5py.Group, vertices: np.ndarray | MeshSource, storage: StorageConfig, comp: dict) -> int:
    """The clip's ``vertices`` dataset, written at once or a block at a time; returns its frames."""
    n_frames = vertices.shape[0] if isinstance(vertices, np.ndarray) else vertices.n_frames
    chunk = max(1, min(storage.chunk_frames, n_frames))
    if isinstance(vertices, np.ndarray):
        _put(group, S.VERTICES, vertices.astype(np.float32), chunks=(chunk,) + vertices.shape[1:], **comp)
        return n_frames
    dataset = None
    for start, block in vertices.mesh_chunks(MESH_BLOCK_FRAMES):
        if dataset is None:
            dataset = group.create_dataset(S.VERTICES, shape=(n_frames,) + block.shape[1:], dtype=np.float32,
                                           chunks=(chunk,) + block.shape[1:], fletcher32=True, **comp)
        dataset[start:start + len(block)] = block
    return n_frames


def _write_clip_group(group: h5py.Group, rec: ClipRecord, storage: StorageConfig) -> None:
    codec = COMPRESSIONS[storage.compression]
    comp = dict(compression=codec, shuffle=codec is not None)
    n_frames = _write_vertices(group, rec.vertices, storage, comp)
    audio = rec.audio
    _put(group, S.AUDIO, audio, np.float32, chunks=(max(1, min(S.AUDIO_RATE, len(audio))),) if len(audio) else None,
         **comp)
    group[S.AUDIO].attrs["sample_rate"] = S.AUDIO_RATE
    _put(group, S.TIMES, rec.times, np.float64)
    _put(group, S.LANDMARKS, rec.landmarks, np.float32, **comp)
    _put(group, S.LANDMARKS_VALID, rec.landmarks_valid, bool)
    flame = group.create_group(S.FLAME)
    for name, array in rec.flame.items():
        _put(flame, name, np.asarray(array, np.float32))
    camera = group.create_group(S.CAMERA)
    for name, value in rec.camera.items():
        camera.attrs[name] = value
    camera.attrs["model"] = S.CAMERA_MODEL
    _put(camera, S.CAMERA_TRANSLATION, np.asarray(rec.head_translation, np.float32))
    replace(rec.attrs, n_frames=int(n_frames)).write(group.attrs)


def write_clip_file(path: Path, rec: ClipRecord, storage: StorageConfig) -> None:
    """Atomically write one clip as ``/clips/<clip_id>`` in its own file."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format_version"] = S.FORMAT_VERSION
            _write_clip_group(f.create_group(S.CLIPS).create_group(rec.clip_id), rec, storage)


def _write_meta(out: h5py.File, name: str, n_clips: int, actors: dict[str, dict[str, np.ndarray]],
                faces: np.ndarray) -> None:
    out.attrs["format_version"] = S.FORMAT_VERSION
    out.attrs["recon3d_version"] = __version__
    out.attrs["shard"] = name
    group = out.create_group(S.ACTORS)
    for actor, arrays in actors.items():
        a = group.create_group(actor)
        for key, value in arrays.items():
            _put(a, key, value)
    _put(out.create_group(S.MESH), S.FACES, np.asarray(faces, np.int32))
    out.attrs["n_clips"] = n_clips
    out.attrs["complete"] = True


def write_shard(path: Path, records: list[ClipRecord], actors: dict[str, dict[str, np.ndarray]], name: str,
                faces: np.ndarray, storage: StorageConfig) -> None:
    """Atomically write a shard straight from clip records (importers; the build assembles clip files)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            clips = out.create_group(S.CLIPS)
            for rec in records:
                _write_clip_group(clips.create_group(rec.clip_id), rec, storage)
            _write_meta(out, name, len(records), actors, faces)


def assemble_shard(path: Path, clip_files: list[Path], actors: dict[str, dict[str, np.ndarray]], name: str,
                   faces: np.ndarray) -> None:
    """Atomically write a shard from finished clip files, per-actor ``shape`` and ``template``, and
    the mesh's triangles (``/mesh/faces``).

    Chunks are copied as stored (no recompression). The shard's ``complete`` attribute and its
    existence under its final name both mean every listed clip is inside.
    """
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            clips = out.create_group(S.CLIPS)
            for clip_file in clip_files:
                with h5py.File(clip_file, "r") as src:
                    for clip_id in src[S.CLIPS]:
                        src.copy(src[S.CLIPS][clip_id], clips, name=clip_id)
            _write_meta(out, name, len(clips), actors, faces)


def write_dataset(out_dir: Path, records: list[ClipRecord], actors: dict[str, dict[str, np.ndarray]],
                  faces: np.ndarray, build: dict, storage: StorageConfig | None = None) -> dict:
    """A complete dataset from clip records: one shard per actor (``actor_<name>``) and the manifest.

    Each record's ``attrs`` carry its labels and ``split``. Used by importers (VOCASET), synthetic
    datasets and tests.
    """
    from recon3d.shards.manifest import shard_entries, write_manifest

    storage = storage or StorageConfig()
    out_dir = Path(out_dir)
    by_actor: dict[str, list[ClipRecord]] = {}
    for rec in records:
        by_actor.setdefault(rec.attrs.actor, []).append(rec)
    entries, actor_info = [], {}
    for actor, recs in sorted(by_actor.items()):
        name = f"actor_{actor}"
        path = S.shard_path(out_dir, name)
        write_shard(path, recs, {actor: actors[actor]}, name, faces, storage)
        entries += shard_entries(path, name)[0]
        actor_info[actor] = {"shards": [name]}
    return write_manifest(out_dir, entries, [], actor_info, build)


def unpack_shard(path: Path, clip_path) -> list[str]:
    """Undo :func:`assemble_shard`: write each clip of a finished shard back to its own clip file
    (``clip_path(clip_id)``, atomically), then delete the shard. Returns the clip ids.

    Used when a rerun must add or redo clips of a finished shard; killed midway, the shard is
    either still whole or gone with every clip in its own file.
    """
    with h5py.File(path, "r") as src:
        ids = list(src[S.CLIPS])
        for clip_id in ids:
            with atomic_path(clip_path(clip_id)) as tmp:
                with h5py.File(tmp, "w") as out:
                    out.attrs["format_version"] = S.FORMAT_VERSION
                    src.copy(src[S.CLIPS][clip_id], out.create_group(S.CLIPS), name=clip_id)
    Path(path).unlink()
    return ids
