"""Building a dataset: prepare the output folder, run shards, and merge the manifest."""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from recon3d import __version__
from recon3d.errors import Recon3dError
from recon3d.flame import resolve_flame_model_path
from recon3d.atomic import write_json
from recon3d.pipeline.config import BuildConfig
from recon3d.pipeline.plan import Plan, plan_build
from recon3d.pipeline.stages import BuildContext, sha256_of, sum_timings
from recon3d.pipeline.workspace import Workspace
from recon3d.shards.manifest import FAILURES, MANIFEST, shard_entries, write_manifest


class BuildError(Recon3dError, RuntimeError):
    """The build cannot start or finish as asked; the message says what to do."""


@dataclass
class BuildSummary:
    clips: int = 0
    failed: int = 0
    frames: int = 0
    seconds: float = 0.0
    stages: dict = field(default_factory=dict)


def prepare(video_dir: Path, out_dir: Path, flame_model: str | None, config: BuildConfig, force: bool) -> tuple[BuildContext, Plan]:
    """Check inputs, create the output folder (wiped with ``force``) and plan the clips.

    A folder built earlier with another configuration or model is refused rather than mixed.
    """
    video_dir, out_dir = Path(video_dir), Path(out_dir)
    model_path = resolve_flame_model_path(flame_model)
    if not model_path.exists():
        raise BuildError(f"FLAME model not found: {model_path}")
    if not video_dir.is_dir():
        raise BuildError(f"video folder not found: {video_dir}")
    ws = Workspace(out_dir)
    if force:
        for name in (MANIFEST, FAILURES):
            (out_dir / name).unlink(missing_ok=True)
        for sub in (ws.work, out_dir / "shards"):
            shutil.rmtree(sub, ignore_errors=True)
    identity = {"config_hash": config.digest(), "flame_model_sha256": sha256_of(model_path)}
    stamp = ws.work / "build.json"
    if stamp.exists():
        previous = json.loads(stamp.read_text())
        names = {"config_hash": "configuration", "flame_model_sha256": "FLAME model"}
        changed = [names[k] for k, v in identity.items() if previous.get(k) != v]
        if changed:
            raise BuildError(f"{out_dir} was built with a different {' and '.join(changed)}; "
                             "rerun with --force to rebuild it, or choose another --out")
    for leftover in ws.temporary_files():  # interrupted writes of an earlier run
        leftover.unlink(missing_ok=True)
    plan = plan_build(video_dir, config)
    if not plan.clips and not plan.rejected:
        raise BuildError(f"no .mp4 videos found under {video_dir}")
    write_json(stamp, {**identity, "config": config.to_dict(), "flame_model": str(model_path),
                       "video_dir": str(video_dir), "recon3d_version": __version__})
    write_json(ws.work / "plan.json", plan.to_dict())
    for rejected in plan.rejected:
        if not ws.rejected(rejected["id"]).exists():
            write_json(ws.rejected(rejected["id"]), rejected)
    return BuildContext(str(out_dir), str(model_path), config.to_dict()), plan


def load_plan(out_dir: Path) -> Plan:
    path = Workspace(out_dir).work / "plan.json"
    if not path.exists():
        raise BuildError(f"{out_dir}: no build plan (work/plan.json); run `recon3d build-dataset` first")
    return Plan.from_dict(json.loads(path.read_text()))


def clips_done(ws: Workspace, plan: Plan) -> tuple[int, int]:
    """(clips finished or failed, clips failed) judged from the files on disk."""
    counts = [ws.clip_counts(shard, [c.clip_id for c in clips]) for shard, clips in plan.shards.items()]
    return sum(d for d, _ in counts), sum(f for _, f in counts)


def watch_progress(ws: Workspace, plan: Plan, stop: threading.Event, desc: str = "clips") -> None:
    """Progress bar from the files on disk until ``stop`` is set (works for any executor)."""
    from tqdm import tqdm

    total = len(plan.clips)
    with tqdm(total=total, desc=desc, unit="clip", dynamic_ncols=True) as bar:
        stopped = False
        while not stopped:
            stopped = stop.wait(0.5)
            done, failed = clips_done(ws, plan)
            bar.n = done
            bar.set_postfix(failed=failed, refresh=False)
            bar.refresh()


def finalize(out_dir: Path) -> dict:
    """Merge shards into ``manifest.json`` and ``failures.jsonl`` (atomically); every shard must exist."""
    out_dir = Path(out_dir)
    ws = Workspace(out_dir)
    plan = load_plan(out_dir)
    stamp = json.loads((ws.work / "build.json").read_text())
    missing = [s for s in plan.shards if not ws.shard(s).exists()]
    if missing:
        raise BuildError(f"{len(missing)} shard(s) not finished yet ({', '.join(missing[:5])}"
                         f"{'...' if len(missing) > 5 else ''}); rerun the build command to complete them")
    failures = ws.failures()
    failed_ids = {f["id"] for f in failures}
    entries, actors = [], {}
    for shard in plan.shards:
        shard_clips, shard_actors = shard_entries(ws.shard(shard), shard)
        entries += shard_clips
        for actor in shard_actors:
            if actor not in actors:
                actors[actor] = {"shards": [], **_identity_report(ws, shard, actor, plan)}
            actors[actor]["shards"].append(shard)
    stale = sorted({c.clip_id for c in plan.clips} - {e["id"] for e in entries} - failed_ids)
    if stale:
        raise BuildError(f"{len(stale)} planned clip(s) are in no shard ({', '.join(stale[:5])}): "
                         "the video folder changed after those shards were built; rebuild with --force")
    manifest = write_manifest(out_dir, entries, failures, actors,
                              {k: stamp[k] for k in ("config", "config_hash", "flame_model", "flame_model_sha256",
                                                     "video_dir")})
    for leftover in (ws.work / "shards").glob("*/clips/*.h5"):  # now inside the shards
        leftover.unlink()
    return manifest


def _identity_report(ws: Workspace, shard: str, actor: str, plan: Plan) -> dict:
    """Identity provenance, and the mean expression over the actor's neutral clips (should be ~0)."""
    report: dict = {}
    path = ws.shard_work(shard).identity(actor)
    if path.exists():
        with np.load(path) as d:
            report.update(identity_source=str(d["source"]), identity_clips=[str(c) for c in d["clips"]],
                          identity_from_neutral=bool(d["neutral"]))
    exprs = []
    for clip in plan.clips:
        if clip.actor == actor and clip.labels and clip.labels.get("emotion") == "neutral" and ws.shard(clip.shard).exists():
            with h5py.File(ws.shard(clip.shard), "r") as f:
                if clip.clip_id in f["clips"]:
                    exprs.append(f["clips"][clip.clip_id]["flame"]["expression"][()])
    if exprs:
        frames = np.concatenate(exprs)
        mean = frames.mean(axis=0)
        report["neutral_mean_expression_norm"] = float(np.linalg.norm(mean))
        report["neutral_expression_rms_norm"] = float(np.sqrt((frames ** 2).sum(axis=1).mean()))
        report["neutral_mean_expression"] = [round(float(x), 4) for x in mean[:10]]
    return report


def stage_summary(timings: dict, wall: float) -> str:
    """Human summary: seconds and frames/s per stage."""
    frames = timings.get("frames", 0)
    lines = [f"{'stage':10s} {'seconds':>9s} {'frames/s':>9s}"]
    for stage in ("decode", "landmarks", "identity", "fit", "write", "assemble"):
        if stage in timings:
            s = timings[stage]
            rate = f"{frames / s:9.1f}" if s > 0 and stage not in ("identity", "assemble") else f"{'':9s}"
            lines.append(f"{stage:10s} {s:9.1f} {rate}")
    lines.append(f"{'wall':10s} {wall:9.1f} {frames / wall if wall else 0:9.1f}  ({frames} frames)")
    return "\n".join(lines)


def parallel_map(workers: int):
    """``map_clips`` for :func:`run_shard`: clips in ``workers`` joblib processes (in order)."""
    from joblib import Parallel, delayed

    def map_clips(func, items):
        if workers <= 1:
            return [func(i) for i in items]
        return Parallel(n_jobs=workers)(delayed(func)(i) for i in items)

    return map_clips


def run_local(ctx: BuildContext, plan: Plan, workers: int, strict_qc: bool = False, progress: bool = True) -> BuildSummary:
    """Run every unfinished shard with joblib: shards in parallel when there are enough of them,
    otherwise one shard at a time with its clips in parallel."""
    from joblib import Parallel, delayed

    from recon3d.pipeline.stages import run_shard

    ws = Workspace(ctx.out_dir)
    todo = {s: c for s, c in plan.shards.items() if not ws.shard(s).exists()}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_progress, args=(ws, plan, stop), daemon=True) if progress else None
    if watcher:
        watcher.start()
    started = time.perf_counter()
    results: list[dict] = []
    try:
        identity = plan.actor_clips()
        if workers > 1 and len(todo) >= workers:
            results = Parallel(n_jobs=workers)(delayed(run_shard)(ctx, s, c, identity, strict_qc) for s, c in todo.items())
        else:
            results = [run_shard(ctx, s, c, identity, strict_qc, parallel_map(workers)) for s, c in todo.items()]
    finally:
        stop.set()
        if watcher:
            watcher.join()
    stages = sum_timings(results)
    done, failed = clips_done(ws, plan)
    return BuildSummary(clips=done - failed, failed=failed, frames=int(stages.get("frames", 0)),
                        seconds=time.perf_counter() - started, stages=stages)
