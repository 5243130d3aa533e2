"""``recon3d export``: a built dataset in the formats other trainers read."""

from __future__ import annotations

import json
from pathlib import Path

import click

from recon3d.cli.common import friendly_errors


@click.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--format", "fmt", required=True, type=click.Choice(["vocaset", "flame-npz"]),
              help="vocaset: templates.pkl, vertices_npy/, wav/ and split lists, as FaceFormer / CodeTalker / "
                   "SelfTalk read VOCASET. flame-npz: one .npz of FLAME parameters, camera and labels per clip.")
@click.option("--out", "export_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (created).")
@click.option("--progress/--no-progress", default=True)
@friendly_errors
def export_cmd(out_dir: Path, fmt: str, export_dir: Path, progress: bool) -> None:
    """Write a built dataset (OUT_DIR of build-dataset) in another trainer's format.

    \b
    The vocaset layout (docs/dataset-format.md#export): sequences are named
    Actor_<id>_<emotion>-<intensity>-<clip id>-<NN> and every frame is written twice, because
    the VOCASET loaders take every other frame of its 60-fps meshes; README.txt in the export
    gives the trainers' --train_subjects / --val_subjects / --test_subjects.

    \b
    Examples:
      recon3d export ~/data/3d-ravdess --format vocaset --out ~/FaceFormer/vocaset
      recon3d export ~/data/3d-ravdess --format flame-npz --out ~/data/3d-ravdess-flame
    """
    from tqdm import tqdm

    from recon3d.exporters.community import export

    def bar(items):
        return tqdm(items, desc=f"export {fmt}", unit="clip", disable=not progress)

    summary = export(out_dir, fmt, export_dir, bar)
    click.echo(json.dumps(summary))
