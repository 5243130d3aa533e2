"""``recon3d build-dataset`` (local or SLURM), ``build-shard``, ``status`` and ``finalize``."""

from __future__ import annotations

import json
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import click

from recon3d.cli.common import flame_model_option, friendly_errors
from recon3d.io.labels import LABEL_CHOICES
from recon3d.io.ravdess import MODALITY_CHOICES
from recon3d.landmarks.schemes import DLIB_CHOICES


def _parse_pairs(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--slurm-additional")
        out[key.strip()] = value.strip()
    return out


def _report(out_dir: Path, manifest: dict, outcome=None) -> None:
    from recon3d.pipeline.build import stage_summary

    if outcome is not None:
        click.echo(stage_summary(outcome.stages, outcome.seconds), err=True)
    from recon3d.pipeline.summary import (format_skipped, format_small_faces, format_speech_splits, skipped_counts,
                                          small_faces, speech_by_split)

    failures = manifest["failures"]
    click.echo(f"{len(manifest['clips'])} clips written to {out_dir / 'shards'}; {len(failures)} failed; "
               f"{format_skipped(skipped_counts(manifest))}", err=True)
    click.echo("\n".join(format_speech_splits(speech_by_split(manifest["clips"]))), err=True)
    small = format_small_faces(small_faces(manifest["clips"]))
    if small:
        click.echo(small, err=True)
    for f in failures[:20]:
        click.echo(f"  FAILED {f['id']} [{f['stage']}]: {f['reason']}", err=True)
    if len(failures) > 20:
        click.echo(f"  ... and {len(failures) - 20} more in {out_dir / 'failures.jsonl'}", err=True)
    internal = sum(bool(f.get("internal")) for f in failures)
    if internal:
        click.echo(f"{internal} clip(s) failed with an internal error: a recon3d bug. Please report it with the "
                   f"'detail' traceback from {out_dir / 'failures.jsonl'}", err=True)
    if failures:
        click.echo(f"a rerun retries failed clips whose video, settings or recon3d version changed "
                   f"(--retry-failed: all); `recon3d status {out_dir}` lists them", err=True)


@click.command("build-dataset")
@click.argument("video_dir", type=click.Path(file_okay=False, path_type=Path))
@flame_model_option()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: manifest.json, failures.jsonl, shards/*.h5 (and work/ while building).")
@click.option("--workers", type=int, default=None, show_default="all cores",
              help="Local worker processes (joblib).")
@click.option("--force", is_flag=True, help="Delete earlier results in --out and rebuild everything.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML build config; pipelines/ravdess.yaml documents every key (its values are the defaults).")
@click.option("--labels", type=click.Choice(LABEL_CHOICES), default=None,
              help="Where labels (actor, emotion, intensity, ...) come from; videos not in that layout are rejected "
                   "by name. ravdess: MM-VV-EE-II-SS-RR-AA names. mead: MEAD as downloaded, "
                   "MXXX/video/VIEW/EMOTION/level_N/NNN.mp4 (audio from the video, or MXXX/audio/.../NNN.m4a). "
                   "crema-d: AAAA_SSS_EEE_LL names (e.g. 1001_DFA_ANG_XX.flv). none: any video, no labels, one "
                   "identity per video. Default (auto, or the config's `labels`): the layout that names most of "
                   "the videos, said in the first line.")
@click.option("--views", default=None,
              help="MEAD's cameras to build: a comma-separated list of front, down, top, left_30, left_60, right_30, "
                   "right_60, or all (default front, or the config's `views`); the others are skipped.")
@click.option("--modality", type=click.Choice(MODALITY_CHOICES), default=None,
              help="Which files of a RAVDESS recording to build (default auto, or the config's `modality`). "
                   "auto: one per recording: the audio-video file (01-...); its video-only twin (02-..., the same "
                   "recording with the audio zeroed) is skipped, and built only where the tree lacks the "
                   "audio-video file. audio-video: 01- files only. all: every video file, twins too. "
                   "Audio-only .wav files are counted and never built.")
@click.option("--qc", "qc_mode", type=click.Choice(["flag", "strict"]), default="flag", show_default=True,
              help="flag: keep clips beyond the QC thresholds, marked; strict: reject them as failures.")
@click.option("--landmarks", "landmark_backend", type=click.Choice(["mediapipe", "fan"]), default=None,
              help="Landmark backend (default mediapipe; fan needs face-alignment and its weights on disk).")
@click.option("--dlib", "dlib", type=click.Choice(DLIB_CHOICES), default=None,
              help="dlib's 68 points (51 inner points and the jaw line) fused into the fit beside MediaPipe's points (default auto, "
                   "or the config's landmarks.dlib): auto where the [dlib] extra is installed (else MediaPipe alone, "
                   "said in one line), on (required), off. dlib's model was trained on iBUG 300-W: non-commercial "
                   "use only.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where fitting builds its normal equations (default cpu; cuda where a GPU exists). Decoding and "
                   "the landmark detectors run on the CPU either way, and they are 80 % of a build's work here "
                   "(fitting ~1.3 ms/frame on a core), so a GPU can buy little; benchmarks/gpu_check.py measures it "
                   "(not yet run on a GPU).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: joblib workers here; slurm: one array task per shard via submitit.")
@click.option("--partition", default=None, help="[slurm] partition (default: the cluster's default).")
@click.option("--time", "time_min", type=int, default=60, show_default=True, help="[slurm] minutes per task.")
@click.option("--mem-gb", type=float, default=8.0, show_default=True, help="[slurm] memory per task.")
@click.option("--cpus-per-task", type=int, default=4, show_default=True,
              help="[slurm] CPUs per task; the shard's clips run in that many processes.")
@click.option("--array-parallelism", type=int, default=32, show_default=True,
              help="[slurm] array tasks running at once.")
@click.option("--slurm-additional", multiple=True, metavar="KEY=VALUE",
              help="[slurm] any other sbatch option, e.g. --slurm-additional account=lab --slurm-additional qos=low.")
@click.option("--no-wait", is_flag=True,
              help="[slurm] return the job id at once; a dependent job merges the manifest at the end.")
@click.option("--plan-only", is_flag=True,
              help="Prepare --out and plan the shards, then stop (for submitting build-shard by hand).")
@click.option("--retry-failed", is_flag=True,
              help="Retry every failed clip. Without it a rerun retries only failures whose cause may have "
                   "changed: the video file, the settings or the recon3d version.")
@click.option("--prune", is_flag=True,
              help="Remove from the dataset the clips whose video is gone from VIDEO_DIR. Without it they stay, "
                   "marked source_missing (inspect counts them).")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@click.option("--verbose", is_flag=True,
              help="Let MediaPipe's native start-up lines through to stderr (else: OUT/work/logs/native.log).")
@friendly_errors
def build_dataset(video_dir: Path, flame_model: str, out_dir: Path, workers: int | None, force: bool,
                  config_path: Path | None, labels: str | None, views: str | None, modality: str | None, qc_mode: str, landmark_backend: str | None,
                  dlib: str | None, device: str | None, executor: str, partition: str | None, time_min: int, mem_gb: float, cpus_per_task: int,
                  array_parallelism: int, slurm_additional: tuple[str, ...], no_wait: bool, plan_only: bool,
                  retry_failed: bool, prune: bool, progress: bool, verbose: bool) -> None:
    """Fit FLAME to every video in VIDEO_DIR and write a 3D dataset to --out.

    VIDEO_DIR is the RAVDESS folder: the archives as they unpack (Video_Speech_Actor_XX.zip,
    Video_Song_Actor_XX.zip, ... each to Actor_XX/, at any depth, audio-only .wav files among
    them), or a flat folder of MM-VV-EE-II-SS-RR-AA.mp4. Each recording is built once: a
    video-only twin (02-...) of an audio-video file (01-...) is skipped, not failed (--modality).
    Or MEAD as downloaded (MXXX/video/VIEW/EMOTION/level_N/NNN.mp4, --views), or CREMA-D's
    AAAA_SSS_EEE_LL.flv, or any videos (--labels none): the first line says which layout was
    detected.
    For each clip: PyAV decodes the frames and the audio (16 kHz mono), MediaPipe tracks 478
    landmarks (and dlib's 68-point predictor its 68, where installed: --dlib), FLAME is fitted with one identity per actor (fitted on the actor's neutral clips),
    and the per-frame parameters, canonical meshes, landmarks, audio and labels are written to
    one HDF5 shard per actor. Format: docs/dataset-format.md.

    \b
    Safe to interrupt: rerun the same command and it continues where it stopped; results
    appear only when complete. A bad video fails alone: its reason goes to failures.jsonl and
    the manifest, the rest is built, and the exit status is 1. A rerun retries a failed clip
    when its video, the settings or recon3d changed (--retry-failed: all of them), and builds
    videos added since. A bad setup (model, device, config, detector) stops the command before
    any clip, with exit status 2.

    \b
    One build at a time per --out folder: a second one started there refuses at once, naming
    the running one (host and pid); a killed build leaves no lock behind.

    \b
    On a SLURM cluster (--executor slurm, docs/slurm.md): one array task per shard; rerunning
    the command submits only shards that are missing or failed. `recon3d status OUT_DIR` shows
    each shard; the manifest is merged when all are done.

    \b
    Examples:
      recon3d build-dataset ~/data/RAVDESS --flame-model ~/flame/generic_model.pkl --out ~/data/3d-ravdess
      recon3d build-dataset ~/data/RAVDESS --out ~/data/3d-ravdess --executor slurm --partition cpu --no-wait
    """
    from recon3d.pipeline.config import BuildConfig
    from recon3d.pipeline.disk import check_writable, full_disk_message, quiet_full_disk_noise
    from recon3d.pipeline.executors import executor_for
    from recon3d.pipeline.lock import build_lock
    from recon3d.pipeline.slurm import SlurmOptions

    config = BuildConfig.load(config_path)
    if labels:
        config.labels = labels
    if views:
        config.views = views
    if modality:
        config.modality = modality
    if landmark_backend:
        config.landmarks.backend = landmark_backend
    if dlib:
        config.landmarks.dlib = dlib
    if device:
        config.fitting.device = device
    options = SlurmOptions(partition, time_min, mem_gb, cpus_per_task, array_parallelism, _parse_pairs(slurm_additional))
    runner = executor_for(executor, workers, options, finalize_job=no_wait)
    runner.check()
    check_writable(out_dir)
    quiet_full_disk_noise()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a polite kill stops the build as Ctrl-C does
    stopped = None
    try:
        with build_lock(out_dir), full_disk_message(out_dir, lambda: _clips_done(out_dir)):
            try:
                _build(runner, video_dir, flame_model, out_dir, config, force, retry_failed, prune, verbose,
                       plan_only, qc_mode == "strict", executor, no_wait, progress)
            except KeyboardInterrupt:
                stopped = "interrupted", 130
            except BrokenProcessPool:
                stopped = "a worker process died (killed, or out of memory)", 1
            finally:
                runner.close(now=stopped is not None)  # the worker processes, at once if the build stopped
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stopped:
        click.echo(f"{stopped[0]}: the build in {out_dir} stopped; rerun the same command to continue where it "
                   "stopped", err=True)
        sys.exit(stopped[1])


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _clips_done(out_dir: Path) -> tuple[int, int]:
    """(clips finished or failed, clips planned) from the folder alone."""
    from recon3d.pipeline.build import BuildError, load_plan
    from recon3d.pipeline.workspace import disk_status

    try:
        rows = disk_status(out_dir, load_plan(out_dir))
    except BuildError:
        return 0, 0
    return sum(r["clips_done"] for r in rows), sum(r["clips"] for r in rows)


def _build(runner, video_dir: Path, flame_model: str, out_dir: Path, config, force: bool, retry_failed: bool,
           prune: bool, verbose: bool, plan_only: bool, strict_qc: bool, executor: str, no_wait: bool,
           progress: bool) -> None:
    """build-dataset's work, with the folder's build lock held."""
    from collections import Counter

    from recon3d.pipeline.build import finalize, prepare
    from recon3d.pipeline.summary import format_skipped

    from recon3d.landmarks.dlib_backend import LICENCE_NOTE
    from recon3d.pipeline.config import resolve_landmark_sources
    from recon3d.pipeline.plan import resolve_labels

    config, note = resolve_landmark_sources(config)
    config, labels_note = resolve_labels(config, video_dir) if video_dir.is_dir() else (config, "")
    runner.start()
    ctx, plan, redo = prepare(video_dir, out_dir, flame_model, config, force, retry_failed, verbose,
                              runner.check_setup, prune)
    click.echo(labels_note, err=True)
    if note:  # after the setup check: a bad setup stays one line
        click.echo(note, err=True)
    elif config.landmarks.dlib == "on":
        click.echo(f"landmarks: MediaPipe and dlib's 68 points fused ({LICENCE_NOTE})", err=True)
    click.echo(f"{len(plan.clips)} clips in {len(plan.shards)} shard(s) from {video_dir}, split by {plan.split_method}"
               + (f"; {len(plan.rejected)} file(s) rejected by name" if plan.rejected else "")
               + f"; {format_skipped(plan.skipped_by_reason())}"
               + (f"; source missing: {len(plan.missing)} (kept; --prune removes them)" if plan.missing else "")
               + (f"; pruned {len(plan.pruned)} clip(s) whose video is gone" if plan.pruned else ""), err=True)
    for r in redo:
        click.echo(f"  redo {r.clip.clip_id}: {r.why}", err=True)
    if redo:
        why = Counter(reason for r in redo for reason in r.why.split(", "))
        click.echo(f"rebuilding {len(redo)} clip(s): {', '.join(f'{k} {v}' for k, v in sorted(why.items()))}", err=True)
    if plan_only:
        for i, (shard, clips) in enumerate(plan.shards.items()):
            click.echo(f"{i}\t{shard}\t{len(clips)} clips")
        return
    record = runner.submit(ctx, plan, strict_qc)
    if executor == "slurm":
        if record["tasks"]:
            click.echo(f"submitted array job {record['array_job']}: {len(record['tasks'])} task(s) "
                       f"({', '.join(record['tasks'])})", err=True)
        if record["skipped_active"]:
            click.echo(f"still queued or running, not resubmitted: {', '.join(record['skipped_active'])}", err=True)
        if no_wait:
            if "finalize_job" in record:
                click.echo(f"finalize job {record['finalize_job']} merges the manifest when they end", err=True)
            click.echo(record.get("array_job", ""))
            click.echo(f"follow with: recon3d status {out_dir}", err=True)
            return
    outcome = runner.wait(ctx, plan, progress)
    if outcome.unfinished:
        for r in outcome.unfinished:
            click.echo(f"  shard {r['shard']}: {r['status']} {r.get('reason', '')} {r.get('log_stderr', '')}", err=True)
        raise click.ClickException(f"{len(outcome.unfinished)} shard(s) did not finish; rerun the same command "
                                   "to resubmit only those")
    manifest = finalize(out_dir)
    _report(out_dir, manifest, outcome if executor == "local" else None)
    sys.exit(1 if manifest["failures"] else 0)


@click.command("build-shard")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--index", type=int, default=None, help="Shard number (0-based, as `--plan-only` lists them).")
@click.option("--shard", "name", default=None, help="Shard name instead of --index.")
@click.option("--workers", type=int, default=None, show_default="$SLURM_CPUS_PER_TASK or 1",
              help="Processes for the shard's clips.")
@click.option("--qc", "qc_mode", type=click.Choice(["flag", "strict"]), default="flag", show_default=True)
@click.option("--verbose", is_flag=True, help="Let MediaPipe's native start-up lines through to stderr.")
@friendly_errors
def build_shard(out_dir: Path, index: int | None, name: str | None, workers: int | None, qc_mode: str,
                verbose: bool) -> None:
    """Build one shard of a planned build (what an array task of pipelines/slurm/build-array.sbatch runs).

    Plan first with `recon3d build-dataset ... --plan-only`; merge with `recon3d finalize`.
    Idempotent: a rerun continues the shard's unfinished work.
    """
    from recon3d.pipeline.build import build_context, load_plan
    from recon3d.pipeline.schedule import run_schedule

    plan = load_plan(out_dir)
    shards = list(plan.shards)
    if (index is None) == (name is None):
        raise click.UsageError("give exactly one of --index and --shard")
    if name is None:
        if not 0 <= index < len(shards):
            raise click.BadParameter(f"the plan has shards 0..{len(shards) - 1}", param_hint="--index")
        name = shards[index]
    if name not in plan.shards:
        raise click.BadParameter(f"no shard '{name}' in the plan", param_hint="--shard")
    workers = workers or int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))
    # One decoding thread per process where the processes fill the CPUs (a SLURM task's, or several workers).
    ctx = replace(build_context(out_dir, verbose), decode_threads=1 if workers > 1 or "SLURM_JOB_ID" in os.environ else 0)
    run_schedule(ctx, plan, [name], qc_mode == "strict", workers)
    click.echo(f"shard {name} done")


@click.command("status")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: one object per shard (with its failed clips under 'failures').")
@friendly_errors
def status(out_dir: Path, as_json: bool) -> None:
    """Per shard: done / pending / running / failed (with the reason and the log path), and every
    failed clip with its reason and age.

    Read from OUT_DIR and, for SLURM builds, from the cluster (sacct through submitit).
    """
    from recon3d.pipeline.build import load_plan
    from recon3d.pipeline.executors import executor_for
    from recon3d.pipeline.summary import failure_rows, format_failures
    from recon3d.pipeline.workspace import Workspace

    ws = Workspace(out_dir)
    plan = load_plan(out_dir)
    rows = executor_for("slurm" if (ws.slurm / "jobs.json").exists() else "local").status(out_dir, plan)
    failures = failure_rows(ws.failures())
    if as_json:
        for r in rows:
            r["failures"] = [f for f in failures if f.get("shard") == r["shard"]]
        click.echo(json.dumps(rows))
        return
    for r in rows:
        line = f"{r['shard']:16s} {r['status']:14s} clips {r['clips_done']}/{r['clips']} done, {r['clips_failed']} failed"
        if r.get("job_id"):
            line += f"  job {r['job_id']} ({r['slurm_state']})"
        click.echo(line)
        if r["status"] == "failed":
            click.echo(f"  reason: {r['reason']}" + (f"\n  log: {r['log_stderr']}" if r.get("log_stderr") else ""))
    if failures:
        click.echo(format_failures(failures))
    final = (out_dir / "manifest.json").exists()
    click.echo("manifest: " + ("merged" if final else "not merged yet (recon3d finalize OUT_DIR when all shards are done)"))


@click.command("finalize")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@friendly_errors
def finalize_cmd(out_dir: Path) -> None:
    """Merge finished shards into manifest.json and failures.jsonl (atomically).

    Needed after `build-dataset --executor slurm --no-wait` (its dependent job does it too) or
    after running build-shard by hand. Fails, naming them, while shards are missing.
    """
    from recon3d.pipeline.build import finalize

    manifest = finalize(out_dir)
    _report(out_dir, manifest)
    sys.exit(1 if manifest["failures"] else 0)
