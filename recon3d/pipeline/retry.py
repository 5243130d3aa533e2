"""What a rerun redoes: failed clips whose cause may have changed, planned clips that a finished
shard lacks (videos added since it was built), and clips whose video changed since their result
(or its cached landmarks) was made.

Every result records its video's size, modification time and sha256 (the clip attributes
``source_*``; cached landmarks likewise). A rerun compares each planned clip's file with that
record: by size and time first, hashing only where they differ, through a cache of the last
hashes seen (``work/sources.json``), so a touched but identical video is hashed once and kept, and
a rerun over unchanged videos reads no video.

A failure record (:func:`recon3d.pipeline.stages.record_failure`) keeps the source file's size and
sha256, the hash of the settings it ran with and the recon3d version; when any of them differs
now, the failure may not hold any more and the clip is retried (``--retry-failed`` retries every
failure). Redoing a clip of a finished shard unpacks the shard back into its clip files first;
when the clip can change its actor's identity (a neutral clip, or any clip of an actor fitted
without neutral clips), that identity and every fit that used it are redone too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d import __version__
from recon3d.atomic import write_json
from recon3d.io.fingerprint import sha256_of, stat_of
from recon3d.pipeline.plan import Plan, PlannedClip
from recon3d.pipeline.workspace import Workspace
from recon3d.shards.manifest import FAILURES, MANIFEST
from recon3d.shards.reader import ShardFile, clip_file_attrs
from recon3d.shards.writer import unpack_shard

SOURCE_CHANGED = "source changed"


@dataclass(frozen=True)
class Redo:
    clip: PlannedClip
    why: str


def failure_changes(failure: dict, path: str, attempt_hash: str) -> list[str]:
    """Why a recorded failure may no longer hold (empty: its source, settings and version are unchanged)."""
    why = []
    try:
        size = Path(path).stat().st_size
    except OSError:
        size = None
    if size != failure.get("source_size"):
        why.append("source file changed")
    elif size is not None and sha256_of(Path(path)) != failure.get("source_sha256"):
        why.append("source file changed")
    if failure.get("config_hash") != attempt_hash:
        why.append("settings changed")
    if failure.get("recon3d_version") != __version__:
        why.append(f"recon3d {failure.get('recon3d_version', '?')} -> {__version__}")
    return why


def recorded_sources(ws: Workspace, plan: Plan) -> dict[str, dict]:
    """What each planned clip's existing result was built from, ``{id: {"size", "mtime_ns",
    "sha256"}}``: from its finished shard, its clip file, else its cached landmarks (clips with no
    result yet are absent)."""
    out: dict[str, dict] = {}
    for shard, clips in plan.shards.items():
        work = ws.shard_work(shard)
        ids = {c.clip_id for c in clips}
        if ws.shard(shard).exists():
            with ShardFile(ws.shard(shard)) as f:
                out.update({c: _attrs_source(f.attrs(c)) for c in f.clip_ids() if c in ids})
        for clip in clips:
            if clip.clip_id in out:
                continue
            if work.clip(clip.clip_id).exists():
                out[clip.clip_id] = _attrs_source(clip_file_attrs(work.clip(clip.clip_id))[clip.clip_id])
            elif work.landmarks(clip.clip_id).exists():
                with np.load(work.landmarks(clip.clip_id)) as d:
                    out[clip.clip_id] = {"sha256": str(d["sha256"]),
                                         **{k: int(d[f"source_{k}"]) for k in ("size", "mtime_ns")
                                            if f"source_{k}" in d.files}}
    return out


def _attrs_source(attrs) -> dict:
    return {"size": int(attrs.source_size), "mtime_ns": int(attrs.source_mtime_ns), "sha256": attrs.source_sha256}


def changed_sources(ws: Workspace, plan: Plan) -> list[Redo]:
    """Clips whose video is not the one their result was built from (``source changed``), judged by
    size and time where they match the last hash seen, else by hashing; the hashes seen are kept
    in ``work/sources.json`` for the next run."""
    cache_path = ws.work / "sources.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    recorded = recorded_sources(ws, plan)
    seen, redo = {}, []
    for clip in plan.clips:
        record = recorded.get(clip.clip_id)
        if record is None:
            continue
        known = cache.get(clip.clip_id)
        known = known if known and known.get("path") == clip.path else record
        try:
            size, mtime_ns = stat_of(clip.path)
            same = known.get("sha256") and (size, mtime_ns) == (known.get("size"), known.get("mtime_ns"))
            sha = known["sha256"] if same else sha256_of(clip.path)
        except OSError:
            continue  # unreadable now: its landmarks stage says so when it runs again
        seen[clip.clip_id] = {"path": clip.path, "size": size, "mtime_ns": mtime_ns, "sha256": sha}
        if sha != record["sha256"]:
            redo.append(Redo(clip, SOURCE_CHANGED))
    write_json(cache_path, seen)
    return redo


def clips_to_redo(ws: Workspace, plan: Plan, attempt_hash: str, retry_all: bool = False) -> list[Redo]:
    """Failed clips to retry, planned clips missing from their finished shard, and clips whose video
    changed (:func:`changed_sources`). Failure records of clips no longer planned are dropped."""
    by_id = {c.clip_id: c for c in plan.clips}
    redo: dict[str, Redo] = {}
    for record in ws.failure_files():
        failure = json.loads(record.read_text())
        clip = by_id.get(failure["id"])
        if clip is None or clip.shard != failure.get("shard"):
            record.unlink()
            continue
        why = ["--retry-failed"] if retry_all else failure_changes(failure, clip.path, attempt_hash)
        if why:
            redo[clip.clip_id] = Redo(clip, ", ".join(why))
    for shard, clips in plan.shards.items():
        if not ws.shard(shard).exists():
            continue
        with ShardFile(ws.shard(shard)) as f:
            present = set(f.clip_ids())
        work = ws.shard_work(shard)
        for clip in clips:
            if clip.clip_id not in present and not work.failure(clip.clip_id).exists():
                redo.setdefault(clip.clip_id, Redo(clip, "new video"))
    for r in changed_sources(ws, plan):
        redo.setdefault(r.clip.clip_id, r)
    return sorted(redo.values(), key=lambda r: r.clip.clip_id)


def _changes_identity(ws: Workspace, clip: PlannedClip, prefer_emotion: str) -> bool:
    path = ws.shard_work(clip.shard).identity(clip.actor)
    if not path.exists():
        return False
    with np.load(path) as d:
        if str(d["source"]) == "given":
            return False
        from_preferred = bool(d["neutral"])
    return not from_preferred or (clip.labels or {}).get("emotion") == prefer_emotion


def remove_results(ws: Workspace, plan: Plan, clips: list[PlannedClip]) -> None:
    """Take the results of ``clips`` (videos gone; ``--prune``) out of the dataset: their finished
    shards are unpacked, their clip files, landmarks and failure records deleted, and the shards
    are assembled again without them by this run (a shard left with no planned clip is deleted).
    The actors' identities stay as they were fitted."""
    if not clips:
        return
    for name in (MANIFEST, FAILURES):
        (ws.root / name).unlink(missing_ok=True)
    for shard in sorted({c.shard for c in clips}):
        if ws.shard(shard).exists():
            unpack_shard(ws.shard(shard), ws.shard_work(shard).clip)
        if shard not in plan.shards:
            shutil.rmtree(ws.shard_work(shard).dir, ignore_errors=True)
    for clip in clips:
        work = ws.shard_work(clip.shard)
        work.clip(clip.clip_id).unlink(missing_ok=True)
        work.failure(clip.clip_id).unlink(missing_ok=True)
        for cached in (ws.work / "shards").glob(f"*/landmarks/{clip.clip_id}.npz"):
            cached.unlink()


def reopen(ws: Workspace, plan: Plan, redo: list[Redo], prefer_emotion: str) -> None:
    """Undo what the clips in ``redo`` depend on, so that the next run of their shards redoes them."""
    if not redo:
        return
    for name in (MANIFEST, FAILURES):  # the dataset is not complete any more
        (ws.root / name).unlink(missing_ok=True)
    actors = {r.clip.actor for r in redo if _changes_identity(ws, r.clip, prefer_emotion)}
    affected = {c.shard for c in plan.clips if c.actor in actors} | {r.clip.shard for r in redo}
    for shard in sorted(affected):
        if ws.shard(shard).exists():
            unpack_shard(ws.shard(shard), ws.shard_work(shard).clip)
    for shard in sorted(affected):
        work = ws.shard_work(shard)
        for actor in actors:
            work.identity(actor).unlink(missing_ok=True)
        for clip in plan.shards.get(shard, []):
            if clip.actor in actors:
                work.clip(clip.clip_id).unlink(missing_ok=True)
    for r in redo:  # its own results, and its landmarks wherever an identity fit cached them
        for shard in sorted(affected):
            ws.shard_work(shard).landmarks(r.clip.clip_id).unlink(missing_ok=True)
        work = ws.shard_work(r.clip.shard)
        work.clip(r.clip.clip_id).unlink(missing_ok=True)
        work.failure(r.clip.clip_id).unlink(missing_ok=True)
