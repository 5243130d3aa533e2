"""Writing clips and shards (layout in docs/dataset-format.md).

Each fitted clip is first written to its own HDF5 file (``work/clips/<clip_id>.h5``) through an
atomic rename, so a killed build never leaves a half clip that looks done. A shard is assembled
from finished clip files into ``shards/<name>.h5`` the same way, and only then exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from recon3d import __version__
from recon3d.atomic import atomic_path

FORMAT_VERSION = 1
AUDIO_CHUNK = 16000


@dataclass
class StorageConfig:
    """How arrays are stored: vertices as float32, chunked by frames, compressed."""

    chunk_frames: int = 16
    compression: str = "lzf"  # lzf: fast to read; gzip: ~10 % smaller, slower


@dataclass
class ClipRecord:
    """Everything stored for one clip (see docs/dataset-format.md for units)."""

    clip_id: str
    actor: str
    fps: float
    times: np.ndarray  # (T,) s
    vertices: np.ndarray  # (T, V, 3) m, canonical head space
    audio: np.ndarray  # (N,) float32, 16 kHz
    landmarks: np.ndarray  # (T, 478, 2) px
    landmarks_valid: np.ndarray  # (T,) bool
    flame: dict[str, np.ndarray]  # expression, jaw_pose, eye_pose, global_pose, neck_pose, translation
    camera: dict[str, float]  # focal, cx, cy, width, height
    head_translation: np.ndarray  # (T, 3) camera-frame vertices = vertices @ R(global_pose)^T + this
    attrs: dict = field(default_factory=dict)  # labels, QC, provenance


def _write_clip_group(group: h5py.Group, rec: ClipRecord, storage: StorageConfig) -> None:
    n_frames = rec.vertices.shape[0]
    chunk = max(1, min(storage.chunk_frames, n_frames))
    comp = dict(compression=storage.compression, shuffle=True)
    group.create_dataset("vertices", data=rec.vertices.astype(np.float32), chunks=(chunk,) + rec.vertices.shape[1:], **comp)
    audio = rec.audio.astype(np.float32)
    group.create_dataset("audio", data=audio, chunks=(max(1, min(AUDIO_CHUNK, len(audio))),) if len(audio) else None, **comp)
    group["audio"].attrs["sample_rate"] = 16000
    group.create_dataset("times", data=rec.times.astype(np.float64))
    group.create_dataset("landmarks", data=rec.landmarks.astype(np.float32), **comp)
    group.create_dataset("landmarks_valid", data=rec.landmarks_valid.astype(bool))
    flame = group.create_group("flame")
    for name, array in rec.flame.items():
        flame.create_dataset(name, data=np.asarray(array, np.float32))
    camera = group.create_group("camera")
    for name, value in rec.camera.items():
        camera.attrs[name] = value
    camera.attrs["model"] = "pinhole, camera looks along -z, y up; pixels u = cx + focal*x/(-z), v = cy - focal*y/(-z)"
    camera.create_dataset("translation", data=np.asarray(rec.head_translation, np.float32))
    group.attrs["actor"] = rec.actor
    group.attrs["fps"] = float(rec.fps)
    group.attrs["n_frames"] = int(n_frames)
    for key, value in rec.attrs.items():
        group.attrs[key] = "" if value is None else value


def write_clip_file(path: Path, rec: ClipRecord, storage: StorageConfig) -> None:
    """Atomically write one clip as ``/clips/<clip_id>`` in its own file."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format_version"] = FORMAT_VERSION
            _write_clip_group(f.create_group("clips").create_group(rec.clip_id), rec, storage)


def _write_meta(out: h5py.File, name: str, n_clips: int, actors: dict[str, dict[str, np.ndarray]],
                faces: np.ndarray) -> None:
    out.attrs["format_version"] = FORMAT_VERSION
    out.attrs["recon3d_version"] = __version__
    out.attrs["shard"] = name
    group = out.create_group("actors")
    for actor, arrays in actors.items():
        a = group.create_group(actor)
        for key, value in arrays.items():
            a.create_dataset(key, data=value)
    out.create_group("mesh").create_dataset("faces", data=np.asarray(faces, np.int32))
    out.attrs["n_clips"] = n_clips
    out.attrs["complete"] = True


def write_shard(path: Path, records: list[ClipRecord], actors: dict[str, dict[str, np.ndarray]], name: str,
                faces: np.ndarray, storage: StorageConfig) -> None:
    """Atomically write a shard straight from clip records (importers; the build assembles clip files)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            clips = out.create_group("clips")
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
            clips = out.create_group("clips")
            for clip_file in clip_files:
                with h5py.File(clip_file, "r") as src:
                    for clip_id in src["clips"]:
                        src.copy(src["clips"][clip_id], clips, name=clip_id)
            _write_meta(out, name, len(clips), actors, faces)


def write_dataset(out_dir: Path, records: list[ClipRecord], actors: dict[str, dict[str, np.ndarray]],
                  faces: np.ndarray, build: dict, storage: StorageConfig | None = None) -> dict:
    """A complete dataset from clip records: one shard per actor (``actor_<name>``) and the manifest.

    Each record's ``attrs`` carry its labels and ``split``. Used by importers (VOCASET) and tests.
    """
    from recon3d.shards.manifest import shard_entries, write_manifest

    storage = storage or StorageConfig()
    out_dir = Path(out_dir)
    by_actor: dict[str, list[ClipRecord]] = {}
    for rec in records:
        by_actor.setdefault(rec.actor, []).append(rec)
    entries, actor_info = [], {}
    for actor, recs in sorted(by_actor.items()):
        name = f"actor_{actor}"
        path = out_dir / "shards" / f"{name}.h5"
        write_shard(path, recs, {actor: actors[actor]}, name, faces, storage)
        entries += shard_entries(path, name)[0]
        actor_info[actor] = {"shards": [name]}
    return write_manifest(out_dir, entries, [], actor_info, build)
