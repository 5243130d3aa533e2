"""``recon3d inspect`` and ``recon3d preview``: look at a built dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from recon3d.cli.common import friendly_errors


@click.command("inspect")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@click.option("--max-clips", type=int, default=200, show_default=True,
              help="Clips read for the emotion-separability figure at most (larger datasets are sampled).")
@friendly_errors
def inspect_dataset(out_dir: Path, as_json: bool, max_clips: int) -> None:
    """Summarise a built dataset: clips, frames, hours, emotions, actors, QC, failures, and how well
    a held-out classifier tells its emotions apart (emotion_accuracy beside emotion_chance).

    OUT_DIR is the --out folder of `recon3d build-dataset` (it needs manifest.json). `recon3d report`
    draws all of it.
    """
    from recon3d.pipeline.summary import dataset_summary, format_summary
    from recon3d.report.emotion import dataset_separability
    from recon3d.report.page import load_masks
    from recon3d.shards.reader import open_dataset

    ds = open_dataset(out_dir)
    summary = dataset_summary(ds.manifest)
    masks = load_masks(ds, None)
    result = dataset_separability(ds, masks, max_clips) if masks is not None else None
    summary.update(result.to_json() if result else {"emotion_accuracy": None, "emotion_chance": None,
                                                    "emotion_eval": None, "emotion_clips": 0})
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(format_summary(summary))
    if result:
        click.echo(f"emotion separability: {100 * result.accuracy:.1f} % held out by {result.evaluation} "
                   f"({result.clips} clips, {len(result.emotions)} emotions; chance {100 * result.chance:.1f} %)")
    else:
        click.echo("emotion separability: not measurable here (needs labels, FLAME_masks.pkl, and two actors or "
                   "takes with two emotions)")


@click.command("preview")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("clip_id")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The mp4 to write (H.264 video + AAC audio).")
@click.option("--scale", type=float, default=0.5, show_default=True, help="Render at this fraction of the video size.")
@click.option("--video", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The source video, if it moved since the build (default: the path recorded in the shard).")
@click.option("--landmarks", is_flag=True,
              help="Draw the detected points over the frames, each source in its colour (MediaPipe cyan, "
                   "dlib orange): what the fit saw.")
@click.option("--appearance", is_flag=True,
              help="Draw what the fit's pixel term compared: the mouth's optical flow (green) against the fit's "
                   "motion of its surface samples around the mouth (magenta) from the frame before, as magnified "
                   "arrows, and how far apart they are (the flow is measured again on the source frames).")
@friendly_errors
def preview(out_dir: Path, clip_id: str, out_path: Path, scale: float, video: Path | None, landmarks: bool,
            appearance: bool) -> None:
    """Render a clip's fitted mesh over its video frames and beside them, with its audio.

    Headless (a numpy rasteriser: no display, no GL). About 0.1-0.2 s per frame at --scale 0.5.

    \b
    Example:
      recon3d preview ~/data/3d-ravdess 01-01-03-02-01-01-12 --out happy.mp4
      recon3d preview ~/data/3d-ravdess 01-01-03-02-01-01-12 --out happy-points.mp4 --landmarks
      recon3d preview ~/data/3d-ravdess 01-01-03-02-01-01-12 --out happy-flow.mp4 --appearance --scale 1
    """
    from recon3d.render.preview import render_clip_preview

    n = render_clip_preview(out_dir, clip_id, out_path, scale=scale, video=video, landmarks=landmarks,
                            appearance=appearance)
    click.echo(f"wrote {out_path} ({n} frames)")
