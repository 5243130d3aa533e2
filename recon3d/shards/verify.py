"""``recon3d verify``: every byte of a dataset read back, the manifest checked against its shards,
and (optionally) the videos against what the manifest recorded of them.

Each finding is one line naming the file and what is wrong; an empty list means the dataset is
whole. Every dataset of a shard carries HDF5's per-chunk Fletcher-32 checksum
(:mod:`recon3d.shards.writer`), so reading it all finds a flipped bit anywhere in the arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from recon3d.io.fingerprint import sha256_of
from recon3d.shards import schema as S
from recon3d.shards.manifest import MANIFEST
from recon3d.shards.reader import DatasetError
from recon3d.shards.schema import ClipAttrs


def _read_all(path: Path, f: h5py.File) -> list[str]:
    """Read every dataset of an open shard; one problem per dataset that cannot be read."""
    problems: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            try:
                obj[()]
            except OSError as exc:
                problems.append(f"{path}: {name}: cannot be read ({exc}): damaged data")

    f.visititems(visit)
    return problems


def _shard_problems(path: Path, entries: dict[str, dict], seen: dict[str, str]) -> list[str]:
    """A shard's own problems, and those of its clips against their manifest ``entries``; records
    the clips found in ``seen`` (clip id -> shard)."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return [f"{path}: cannot be opened ({exc}): truncated or damaged"]
    problems = []
    with f:
        if not f.attrs.get(S.COMPLETE, False):
            problems.append(f"{path}: not marked complete")
        try:
            problems += _read_all(path, f)
            clips = f[S.CLIPS]
            for clip_id in clips:
                if clip_id in seen:
                    problems.append(f"{path}: clip {clip_id} is also in shard {seen[clip_id]}")
                seen[clip_id] = path.stem
                problems += _clip_problems(path, clip_id, clips[clip_id], entries.get(clip_id))
            if int(f.attrs.get(S.N_CLIPS, -1)) != len(clips):
                problems.append(f"{path}: n_clips says {f.attrs.get(S.N_CLIPS)}, the shard holds {len(clips)}")
            for actor in {str(e["actor"]) for e in entries.values() if e["shard"] == path.stem}:
                if actor not in f[S.ACTORS]:
                    problems.append(f"{path}: no /actors/{actor} (its clips' template and shape)")
        except (KeyError, TypeError, RuntimeError, OSError) as exc:  # the file's structure itself is damaged
            problems.append(f"{path}: its structure cannot be read ({exc}): damaged")
    return problems


def _clip_problems(path: Path, clip_id: str, group: h5py.Group, entry: dict | None) -> list[str]:
    where = f"{path}: clip {clip_id}"
    if entry is None:
        return [f"{where}: not in {MANIFEST}"]
    problems = []
    attrs = ClipAttrs.read(group.attrs)
    frames = group[S.VERTICES].shape[0]
    if entry["shard"] != path.stem:
        problems.append(f"{where}: {MANIFEST} puts it in shard {entry['shard']}")
    if int(entry["frames"]) != frames or attrs.n_frames != frames:
        problems.append(f"{where}: {frames} frames of vertices, {MANIFEST} says {entry['frames']}, "
                        f"the clip's n_frames {attrs.n_frames}")
    if str(entry["actor"]) != attrs.actor:
        problems.append(f"{where}: actor {attrs.actor}, {MANIFEST} says {entry['actor']}")
    return problems


def _source_problems(entry: dict) -> list[str]:
    source = entry.get("source") or {}
    path = source.get("path")
    if not path or not source.get("sha256"):
        return [f"clip {entry['id']}: {MANIFEST} records no source hash (built before recon3d recorded them)"]
    try:
        sha = sha256_of(path)
    except OSError as exc:
        return [f"clip {entry['id']}: source missing: {path} ({exc.strerror or exc})"]
    if sha != source["sha256"]:
        return [f"clip {entry['id']}: source changed: {path} is not the video it was built from (rerun the build "
                "to rebuild it)"]
    return []


def verify_dataset(root: str | Path, sources: bool = False, progress: bool = False) -> tuple[list[str], dict]:
    """``(problems, counts)`` of the dataset in ``root``: every shard read whole, the manifest
    against the shards (each clip in exactly one shard, frame counts, actors), and with
    ``sources`` each video re-hashed against the manifest."""
    from tqdm import tqdm

    root = Path(root)
    if not (root / MANIFEST).exists():
        raise DatasetError(f"{root}: no {MANIFEST}: not a finished recon3d build (run or finish "
                           "`recon3d build-dataset`)")
    manifest = json.loads((root / MANIFEST).read_text())
    entries = {e["id"]: e for e in manifest["clips"]}
    files = sorted((root / S.SHARDS_DIR).glob("*.h5"))
    problems, seen = [], {}
    for path in tqdm(files, desc="verify shards", unit="shard", disable=not progress):
        problems += _shard_problems(path, entries, seen)
    present = {p.stem for p in files}
    for shard in sorted({e["shard"] for e in entries.values()} - present):
        problems.append(f"{S.shard_path(root, shard)}: named in {MANIFEST}, not found")
    for clip_id, entry in entries.items():
        if clip_id not in seen and entry["shard"] in present:
            problems.append(f"clip {clip_id}: in {MANIFEST}, not in shard {entry['shard']}")
    if sources:
        for entry in tqdm(list(entries.values()), desc="verify sources", unit="video", disable=not progress):
            problems += _source_problems(entry)
    return problems, {"shards": len(files), "clips": len(seen), "sources_checked": len(entries) if sources else 0}
