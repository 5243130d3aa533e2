"""What a rerun redoes: failed clips whose cause may have changed, and planned clips that a finished
shard lacks (videos added since it was built).

A failure record (:func:`recon3d.pipeline.stages.record_failure`) keeps the source file's size and
sha256, the hash of the settings it ran with and the recon3d version; when any of them differs
now, the failure may not hold any more and the clip is retried (``--retry-failed`` retries every
failure). Redoing a clip of a finished shard unpacks the shard back into its clip files first;
when the clip can change its actor's identity (a neutral clip, or any clip of an actor fitted
without neutral clips), that identity and every fit that used it are redone too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d import __version__
from recon3d.pipeline.plan import Plan, PlannedClip
from recon3d.pipeline.stages import sha256_of
from recon3d.pipeline.workspace import Workspace
from recon3d.shards.manifest import FAILURES, MANIFEST
from recon3d.shards.reader import ShardFile
from recon3d.shards.writer import unpack_shard


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


def clips_to_redo(ws: Workspace, plan: Plan, attempt_hash: str, retry_all: bool = False) -> list[Redo]:
    """Failed clips to retry, and planned clips missing from their finished shard. Failure records
    of clips no longer planned are dropped."""
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
