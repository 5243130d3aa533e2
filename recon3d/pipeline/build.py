"""Building a dataset: prepare the output folder (check the setup, plan, decide what to redo) and
merge the finished shards into the manifest. Executors (:mod:`recon3d.pipeline.executors`) run
the shards in between."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from recon3d import __version__
from recon3d.atomic import write_json
from recon3d.errors import SetupError
from recon3d.flame import resolve_flame_model_path
from recon3d.io.fingerprint import sha256_of
from recon3d.io.ravdess import VIDEO_EXTENSIONS
from recon3d.pipeline.config import BuildConfig, changed_options, resolve_landmark_sources
from recon3d.pipeline.plan import Plan, PlannedClip, plan_build, resolve_labels
from recon3d.pipeline.retry import Redo, clips_to_redo, recorded_sources, remove_results, reopen
from recon3d.pipeline.slurm_jobs import tasks_may_run
from recon3d.pipeline.stages import BuildContext, check_setup
from recon3d.pipeline.workspace import Workspace
from recon3d.shards.manifest import FAILURES, MANIFEST, shard_entries, write_manifest
from recon3d.shards.reader import ShardFile
from recon3d.shards.schema import FLAME, SHARDS_DIR


class BuildError(SetupError):
    """The build cannot start or finish as asked; the message says what to do."""


def prepare(video_dir: Path, out_dir: Path, flame_model: str | None, config: BuildConfig, force: bool,
            retry_failed: bool = False, verbose: bool = False,
            setup_check: Callable[[BuildContext], None] = check_setup,
            prune: bool = False) -> tuple[BuildContext, Plan, list[Redo]]:
    """Check inputs and setup, create the output folder (wiped with ``force``), plan the clips and
    reopen what a rerun must redo (failures whose cause changed, or all with ``retry_failed``;
    videos added to a finished shard; videos changed since their clip was built). Clips whose
    video is gone stay (``Plan.missing``), or with ``prune`` are removed from the dataset.

    A folder built earlier with another configuration or model is refused rather than mixed. The
    model, fitter and detector are built once by ``setup_check`` (in this process, or in the
    processes that will run the clips: :meth:`~recon3d.pipeline.executors.Executor.check_setup`),
    so a bad setup stops the command before any clip is touched.
    """
    video_dir, out_dir = Path(video_dir), Path(out_dir)
    model_path = resolve_flame_model_path(flame_model)
    if not model_path.exists():
        raise BuildError(f"FLAME model not found: {model_path}")
    if not video_dir.is_dir():
        raise BuildError(f"video folder not found: {video_dir}")
    ws = Workspace(out_dir)
    config = resolve_landmark_sources(config)[0]  # what the stamp and the workers see: dlib on or off
    config = resolve_labels(config, video_dir)[0]  # and the labels' layout
    identity = build_identity(config, model_path)
    stamp = ws.work / "build.json"
    if stamp.exists() and not force:
        previous = json.loads(stamp.read_text())
        names = {"config_hash": "configuration", "flame_model_sha256": "FLAME model",
                 "landmark_offsets_sha256": "landmark-offsets calibration",
                 "landmark_embeddings_sha256": "landmark embedding files"}
        changed = [k for k, v in identity.items() if previous.get(k) != v]
        if changed:
            options = changed_options(previous.get("config", {}), config.to_dict()) if "config_hash" in changed else []
            detail = f" ({'; '.join(options)})" if options else ""
            raise BuildError(f"{out_dir} was built with a different {' and '.join(names[k] for k in changed)}{detail}; "
                             "rerun with --force to rebuild it, or choose another --out")
    ctx = BuildContext(str(out_dir), str(model_path), config.to_dict(), verbose)
    setup_check(ctx)
    may_run = tasks_may_run(ws)
    if force and may_run:  # queued or running; where SLURM cannot be asked, --force is the user's word
        raise BuildError(f"{out_dir}: SLURM tasks of this folder may still be queued or running (`recon3d status "
                         f"{out_dir}`), and --force would delete what they write; wait for them or scancel them first")
    gone = [] if force else sources_gone(ws)
    plan = plan_build(video_dir, config, kept=[] if prune else gone)
    plan.pruned = sorted(c.clip_id for c in gone) if prune else []
    if not plan.clips and not plan.rejected:
        raise BuildError(f"no videos ({' '.join(VIDEO_EXTENSIONS)}) found under {video_dir}")
    if force:
        for name in (MANIFEST, FAILURES):
            (out_dir / name).unlink(missing_ok=True)
        for sub in (ws.work / "shards", ws.work / "rejected", ws.slurm, out_dir / SHARDS_DIR):
            shutil.rmtree(sub, ignore_errors=True)
    for leftover in ws.leftover_files(may_run):  # interrupted writes, never one a live task makes
        leftover.unlink(missing_ok=True)
    write_json(stamp, {**identity, "config": config.to_dict(), "flame_model": str(model_path),
                       "video_dir": str(video_dir), "recon3d_version": __version__})
    write_json(ws.work / "plan.json", plan.to_dict())
    shutil.rmtree(ws.work / "rejected", ignore_errors=True)  # names are judged anew on every run
    for rejected in plan.rejected:
        write_json(ws.rejected(rejected["id"]), rejected)
    if prune:
        remove_results(ws, plan, gone)
    redo = clips_to_redo(ws, plan, ctx.attempt_hash, retry_failed)
    reopen(ws, plan, redo, config.identity.prefer_emotion)
    return ctx, plan, redo


def sources_gone(ws: Workspace) -> list[PlannedClip]:
    """Clips of the folder's last plan whose video no longer exists but whose result does (in a
    finished shard or a clip file): they stay in the dataset, marked ``source_missing``, unless
    the build is given ``--prune``."""
    path = ws.work / "plan.json"
    if not path.exists():
        return []
    previous = Plan.from_dict(json.loads(path.read_text()))
    gone = Plan([c for c in previous.clips if not os.path.lexists(c.path)])
    built = recorded_sources(ws, gone)
    return [c for c in gone.clips if c.clip_id in built]


def build_identity(config: BuildConfig, model_path: Path) -> dict[str, str | None]:
    """What a build's results depend on besides the videos: the configuration's hash and the sha256
    of the FLAME model, of the landmark-offsets file the fit will use (``default`` depends on the
    model) and of the landmark embedding files beside it (or named by their variables)."""
    from recon3d.fitting.landmark_bias import resolve_offsets_path
    from recon3d.flame import load_flame_model
    from recon3d.flame.embeddings import embedding_files_found

    model = load_flame_model(model_path, n_shape=1, n_expr=1)
    offsets = resolve_offsets_path(config.fitting.landmark_offsets, model)
    embeddings = "".join(f"{p.name}:{sha256_of(p)};" for p in embedding_files_found(model))
    return {"config_hash": config.digest(), "flame_model_sha256": sha256_of(model_path),
            "landmark_offsets_sha256": sha256_of(offsets) if offsets is not None else None,
            "landmark_embeddings_sha256": hashlib.sha256(embeddings.encode()).hexdigest()}


def load_plan(out_dir: Path) -> Plan:
    path = Workspace(out_dir).work / "plan.json"
    if not path.exists():
        raise BuildError(f"{out_dir}: no build plan (work/plan.json); run `recon3d build-dataset` first")
    return Plan.from_dict(json.loads(path.read_text()))


def build_context(out_dir: Path, verbose: bool = False) -> BuildContext:
    """The context of a prepared build folder (for ``build-shard`` and SLURM tasks)."""
    stamp = Workspace(out_dir).work / "build.json"
    if not stamp.exists():
        raise BuildError(f"{out_dir}: not a prepared build (no work/build.json); run `recon3d build-dataset` first")
    data = json.loads(stamp.read_text())
    return BuildContext(str(out_dir), data["flame_model"], data["config"], verbose)


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
    missing = set(plan.missing)
    planned_split = {c.clip_id: c.split for c in plan.clips}
    for entry in entries:
        entry["source_missing"] = entry["id"] in missing
        entry["split"] = planned_split.get(entry["id"], entry["split"])  # the latest plan's, without a refit
    stale = sorted({c.clip_id for c in plan.clips} - {e["id"] for e in entries} - failed_ids)
    if stale:
        raise BuildError(f"{len(stale)} planned clip(s) are in no shard ({', '.join(stale[:5])}): "
                         "the video folder changed after those shards were built; rebuild with --force")
    manifest = write_manifest(out_dir, entries, failures, actors,
                              {k: stamp[k] for k in ("config", "config_hash", "flame_model", "flame_model_sha256",
                                                     "video_dir")}, plan.split_method, plan.skipped,
                              plan.audio_only)
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
            with ShardFile(ws.shard(clip.shard)) as f:
                if clip.clip_id in f.clip_ids():
                    exprs.append(f.array(clip.clip_id, f"{FLAME}/expression"))
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
