"""Where a build keeps its files. Every intermediate file belongs to one shard's folder, so two
shard tasks (local workers or SLURM array tasks) never write the same file.

```
OUT_DIR/manifest.json, failures.jsonl, shards/<shard>.h5      results
OUT_DIR/work/build.json, plan.json                            the build's configuration and plan
OUT_DIR/work/build.lock                                       held by the running build (pipeline/lock.py)
OUT_DIR/work/rejected/<clip>.json                             clips refused while planning
OUT_DIR/work/shards/<shard>/landmarks|identity|clips|failures per-shard intermediate results
OUT_DIR/work/shards/<shard>/error.json                        why the shard's task failed, if it did
OUT_DIR/work/slurm/                                           SLURM submissions and logs
OUT_DIR/work/logs/native.log                                  MediaPipe's native start-up lines
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from recon3d.atomic import owner_alive
from recon3d.shards.schema import SHARDS_DIR, shard_path

if TYPE_CHECKING:
    from recon3d.pipeline.plan import Plan


class ShardWork:
    """The intermediate files of one shard."""

    def __init__(self, root: Path, shard: str):
        self.shard = shard
        self.dir = Path(root) / "work" / "shards" / shard

    def landmarks(self, clip_id: str) -> Path:
        return self.dir / "landmarks" / f"{clip_id}.npz"

    def chunks(self, clip_id: str) -> Path:
        """The parts of a long video tracked apart (:mod:`recon3d.pipeline.chunks`)."""
        return self.dir / "landmarks" / f"{clip_id}.chunks"

    def fit_parts(self, clip_id: str) -> Path:
        """The pieces of a long clip fitted apart (:mod:`recon3d.pipeline.chunks`)."""
        return self.dir / "fits" / f"{clip_id}.parts"

    def identity(self, actor: str) -> Path:
        return self.dir / "identity" / f"{actor}.npz"

    def clip(self, clip_id: str) -> Path:
        return self.dir / "clips" / f"{clip_id}.h5"

    def failure(self, clip_id: str) -> Path:
        return self.dir / "failures" / f"{clip_id}.json"

    @property
    def error(self) -> Path:
        return self.dir / "error.json"

    def clip_done(self, clip_id: str) -> bool:
        return self.clip(clip_id).exists() or self.failure(clip_id).exists()


class Workspace:
    """Paths of a build folder (``OUT_DIR``)."""

    def __init__(self, out_dir: str | Path):
        self.root = Path(out_dir)
        self.work = self.root / "work"

    def shard(self, name: str) -> Path:
        """The finished shard file (exists only when complete)."""
        return shard_path(self.root, name)

    def shard_work(self, name: str) -> ShardWork:
        return ShardWork(self.root, name)

    def clip_counts(self, shard: str, clip_ids: list[str]) -> tuple[int, int]:
        """(clips finished or failed, clips failed) of a shard, judged from the files on disk."""
        work = self.shard_work(shard)
        complete = self.shard(shard).exists()
        failed = sum(work.failure(c).exists() for c in clip_ids)
        done = len(clip_ids) if complete else sum(work.clip_done(c) for c in clip_ids)
        return done, failed

    @property
    def lock(self) -> Path:
        return self.work / "build.lock"

    def rejected(self, clip_id: str) -> Path:
        return self.work / "rejected" / f"{clip_id}.json"

    @property
    def slurm(self) -> Path:
        return self.work / "slurm"

    @property
    def native_log(self) -> Path:
        return self.work / "logs" / "native.log"

    def failure_files(self) -> list[Path]:
        """The failure records of the shards' clips (not the names rejected while planning)."""
        return sorted((self.work / "shards").glob("*/failures/*.json"))

    def failures(self) -> list[dict]:
        """Every recorded clip failure (rejected names and failed stages), sorted by clip id."""
        files = list((self.work / "rejected").glob("*.json")) + self.failure_files()
        return sorted((json.loads(p.read_text()) for p in files), key=lambda f: f["id"])

    def temporary_files(self) -> list[Path]:
        """Temporary files of writes in progress or interrupted (never results)."""
        return [p for base in (self.work, self.root / SHARDS_DIR) if base.exists() for p in base.rglob("*.tmp")]

    def leftover_files(self, tasks_may_run: bool | None) -> list[Path]:
        """The temporary files no live process is writing: their writer (named in the file, see
        :func:`~recon3d.atomic.temp_owner`) has ended on this host; or, when no task of the folder
        is queued (``tasks_may_run`` False, not unknown), those whose writer cannot be checked
        (another host, or a name from before writers were named)."""
        removable = (False, None) if tasks_may_run is False else (False,)  # where no task runs: unverifiable too
        return [p for p in self.temporary_files() if owner_alive(p) in removable]


def disk_status(out_dir: Path, plan: Plan) -> list[dict]:
    """Per shard, from the build folder alone: ``done``, ``failed`` (its task recorded an error) or
    ``not done``, with clip counts."""
    ws = Workspace(out_dir)
    rows = []
    for shard, clips in plan.shards.items():
        done, failed = ws.clip_counts(shard, [c.clip_id for c in clips])
        row = {"shard": shard, "clips": len(clips), "clips_done": done, "clips_failed": failed}
        work = ws.shard_work(shard)
        if ws.shard(shard).exists():
            row["status"] = "done"
        elif work.error.exists():
            row.update(status="failed", reason=json.loads(work.error.read_text())["reason"])
        else:
            row["status"] = "not done"
        rows.append(row)
    return rows


def count_clips(ws: Workspace, plan: Plan) -> tuple[int, int]:
    """(clips finished or failed, clips failed) judged from the files on disk."""
    counts = [ws.clip_counts(shard, [c.clip_id for c in clips]) for shard, clips in plan.shards.items()]
    return sum(d for d, _ in counts), sum(f for _, f in counts)
