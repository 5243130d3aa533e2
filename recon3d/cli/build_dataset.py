"""``recon3d build-dataset``: videos -> fitted FLAME sequences in HDF5 shards."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from recon3d.cli.common import flame_model_option, friendly_errors


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
@click.option("--labels", type=click.Choice(["ravdess", "none"]), default=None,
              help="ravdess: parse labels from MM-VV-EE-II-SS-RR-AA names, reject other names. "
                   "none: accept any video, labels empty, one identity per video.")
@click.option("--qc", "qc_mode", type=click.Choice(["flag", "strict"]), default="flag", show_default=True,
              help="flag: keep clips beyond the QC thresholds, marked; strict: reject them as failures.")
@click.option("--landmarks", "landmark_backend", type=click.Choice(["mediapipe", "fan"]), default=None,
              help="Landmark backend (default mediapipe; fan needs face-alignment and its weights on disk).")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@friendly_errors
def build_dataset(video_dir: Path, flame_model: str, out_dir: Path, workers: int | None, force: bool,
                  config_path: Path | None, labels: str | None, qc_mode: str, landmark_backend: str | None,
                  progress: bool) -> None:
    """Fit FLAME to every video in VIDEO_DIR and write a 3D dataset to --out.

    VIDEO_DIR is the RAVDESS folder (Actor_01/..., or a flat folder of MM-VV-EE-II-SS-RR-AA.mp4).
    For each clip: PyAV decodes the frames and the audio (16 kHz mono), MediaPipe tracks 478
    landmarks, FLAME is fitted with one identity per actor (fitted on the actor's neutral clips),
    and the per-frame parameters, canonical meshes, landmarks, audio and labels are written to
    one HDF5 shard per actor. Format: docs/dataset-format.md.

    \b
    Safe to interrupt: rerun the same command and it continues where it stopped; results
    appear only when complete. A bad video fails alone: its reason goes to failures.jsonl and
    the manifest, the rest is built, and the exit status is 1.

    \b
    Example:
      recon3d build-dataset ~/data/RAVDESS --flame-model ~/flame/generic_model.pkl --out ~/data/3d-ravdess
    """
    from recon3d.pipeline.build import finalize, prepare, run_local, stage_summary
    from recon3d.pipeline.config import BuildConfig

    config = BuildConfig.load(config_path)
    if labels:
        config.labels = labels
    if landmark_backend:
        config.landmarks.backend = landmark_backend
    ctx, plan = prepare(video_dir, out_dir, flame_model, config, force)
    n_shards = len(plan.shards)
    click.echo(f"{len(plan.clips)} clips in {n_shards} shard(s) from {video_dir}"
               + (f"; {len(plan.rejected)} file(s) rejected by name" if plan.rejected else ""), err=True)
    workers = workers or os.cpu_count() or 1
    summary = run_local(ctx, plan, workers, strict_qc=qc_mode == "strict", progress=progress)
    manifest = finalize(out_dir)
    click.echo(stage_summary(summary.stages, summary.seconds), err=True)
    n_ok, failures = len(manifest["clips"]), manifest["failures"]
    click.echo(f"{n_ok} clips written to {out_dir / 'shards'}; {len(failures)} failed", err=True)
    for f in failures[:20]:
        click.echo(f"  FAILED {f['id']} [{f['stage']}]: {f['reason']}", err=True)
    if len(failures) > 20:
        click.echo(f"  ... and {len(failures) - 20} more in {out_dir / 'failures.jsonl'}", err=True)
    sys.exit(1 if failures else 0)
