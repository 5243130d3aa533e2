"""``recon3d``: build 3D face datasets from emotional speech videos, and animate faces from speech."""

from __future__ import annotations

import click

from recon3d import __version__
from recon3d.cli.animator import animate_cmd, compare_cmd, evaluate_cmd, train_cmd
from recon3d.cli.build_dataset import build_dataset, build_shard, finalize_cmd, status
from recon3d.cli.check_model import check_model
from recon3d.cli.export import export_cmd
from recon3d.cli.import_vocaset import import_vocaset_cmd
from recon3d.cli.inspect_preview import inspect_dataset, preview
from recon3d.cli.report import report_cmd
from recon3d.cli.slurm_script import slurm_script
from recon3d.cli.synth import synth
from recon3d.cli.verify import verify_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="recon3d")
def cli() -> None:
    """recon3d: emotional speech videos -> FLAME 3D datasets -> EmoFace animation.

    \b
    Typical session:
      recon3d check-model --flame-model ~/flame/generic_model.pkl
      recon3d build-dataset ~/data/RAVDESS --flame-model ~/flame/generic_model.pkl --out ~/data/3d-ravdess
      recon3d inspect ~/data/3d-ravdess
      recon3d verify ~/data/3d-ravdess --sources
      recon3d report ~/data/3d-ravdess --out report.html
      recon3d preview ~/data/3d-ravdess 01-01-03-02-01-01-12 --out happy.mp4
      recon3d train ~/data/3d-ravdess --out runs/emoface
      recon3d evaluate runs/emoface --split test
      recon3d animate runs/emoface speech.wav --emotion happy --intensity strong --out happy
    Every command has its own --help.
    """


cli.add_command(check_model)
cli.add_command(build_dataset)
cli.add_command(build_shard)
cli.add_command(status)
cli.add_command(finalize_cmd)
cli.add_command(inspect_dataset)
cli.add_command(verify_cmd)
cli.add_command(preview)
cli.add_command(report_cmd)
cli.add_command(slurm_script)
cli.add_command(train_cmd)
cli.add_command(evaluate_cmd)
cli.add_command(animate_cmd)
cli.add_command(compare_cmd)
cli.add_command(import_vocaset_cmd)
cli.add_command(export_cmd)
cli.add_command(synth)


if __name__ == "__main__":
    cli()
