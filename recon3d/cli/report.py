"""``recon3d report``: one self-contained HTML page about a built dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from recon3d.cli.common import friendly_errors


@click.command("report")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML page to write (pictures embedded: open it from disk).")
@click.option("--flame-masks", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="FLAME_masks.pkl for the regions (default: beside the FLAME model the dataset was built with).")
@click.option("--max-clips", type=int, default=400, show_default=True,
              help="Clips read for the emotion classifier at most (larger datasets are sampled, and the page says so).")
@friendly_errors
def report_cmd(out_dir: Path, out_path: Path, flame_masks: Path | None, max_clips: int) -> None:
    """Write an HTML report of a built dataset: overview and failures, QC histograms and the worst
    clips drawn over their video, mean motion per emotion on the mesh, motion curves, and how well
    a simple held-out classifier tells the emotions apart (beside chance).

    \b
    Example:
      recon3d report ~/data/3d-ravdess --out ravdess-report.html
    """
    from recon3d.report.page import write_report

    report = write_report(out_dir, out_path, flame_masks, max_clips)
    sep = report.separability
    click.echo(f"wrote {out_path}" + (f" (emotion accuracy {100 * sep.accuracy:.1f} % held out by {sep.evaluation}, "
                                      f"chance {100 * sep.chance:.1f} %)" if sep else ""))
    if sep:
        click.echo(json.dumps(sep.to_json()), err=True)
