"""``python -m recon3d``: the recon3d command line."""

from recon3d.cli.main import cli

cli()
