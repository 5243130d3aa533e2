"""``recon3d inspect`` and ``recon3d preview``: look at a built dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from recon3d.cli.common import friendly_errors


@click.command("inspect")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@friendly_errors
def inspect_dataset(out_dir: Path, as_json: bool) -> None:
    """Summarise a built dataset: clips, frames, hours, emotions, actors, QC, failures.

    OUT_DIR is the --out folder of `recon3d build-dataset` (it needs manifest.json).
    """
    from recon3d.pipeline.summary import dataset_summary, format_summary
    from recon3d.shards.reader import open_dataset

    summary = dataset_summary(open_dataset(out_dir).manifest)
    click.echo(json.dumps(summary) if as_json else format_summary(summary))


@click.command("preview")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("clip_id")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The mp4 to write (H.264 video + AAC audio).")
@click.option("--scale", type=float, default=0.5, show_default=True, help="Render at this fraction of the video size.")
@click.option("--video", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The source video, if it moved since the build (default: the path recorded in the shard).")
@friendly_errors
def preview(out_dir: Path, clip_id: str, out_path: Path, scale: float, video: Path | None) -> None:
    """Render a clip's fitted mesh over its video frames and beside them, with its audio.

    Headless (a numpy rasteriser: no display, no GL). About 0.1-0.2 s per frame at --scale 0.5.

    \b
    Example:
      recon3d preview ~/data/3d-ravdess 01-01-03-02-01-01-12 --out happy.mp4
    """
    from recon3d.render.preview import render_clip_preview

    n = render_clip_preview(out_dir, clip_id, out_path, scale=scale, video=video)
    click.echo(f"wrote {out_path} ({n} frames)")
