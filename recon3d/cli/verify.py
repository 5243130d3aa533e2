"""``recon3d verify``: is a built dataset whole, and (``--sources``) still the result of its videos?"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from recon3d.cli.common import friendly_errors


@click.command("verify")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--sources", is_flag=True,
              help="Also re-hash every video against the sha256 the manifest recorded (reads every video).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: {problems: [...], shards, clips}.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@friendly_errors
def verify_cmd(out_dir: Path, sources: bool, as_json: bool, progress: bool) -> None:
    """Read every dataset of every shard in OUT_DIR and check the manifest against the shards.

    Every array is stored with HDF5's per-chunk checksum (Fletcher-32), so a flipped bit or a
    truncated copy is found here, not when a reader happens to touch it. Checked: each shard opens
    and is marked complete, every dataset reads back, every manifest clip is in exactly one shard
    with the manifest's frame count and actor, every actor's template is there; with --sources,
    each video still has the sha256 it was built from.

    \b
    Prints one line per problem and exits 1 if there is any (0: the dataset is whole). A damaged
    shard is rebuilt by deleting it and rerunning the build command; a changed video by rerunning
    the build command.

    \b
    Example:
      recon3d verify ~/data/3d-ravdess --sources
    """
    from recon3d.shards.verify import verify_dataset

    problems, counts = verify_dataset(out_dir, sources, progress and not as_json)
    if as_json:
        click.echo(json.dumps({"problems": problems, **counts}))
    else:
        for line in problems:
            click.echo(line)
        checked = f"{counts['shards']} shard(s), {counts['clips']} clip(s)" + (
            f", {counts['sources_checked']} video(s)" if sources else "")
        click.echo(f"{len(problems)} problem(s) in {checked}" if problems else f"verified {checked}: no problems",
                   err=True)
    sys.exit(1 if problems else 0)
