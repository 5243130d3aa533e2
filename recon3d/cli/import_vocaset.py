"""``recon3d import-vocaset``: VOCASET into recon3d's shard format."""

from __future__ import annotations

from pathlib import Path

import click

from recon3d.cli.common import flame_model_option, friendly_errors


@click.command("import-vocaset")
@click.argument("vocaset_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write (manifest.json, shards/).")
@click.option("--faces-from", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A FLAME-topology mesh (.ply/.obj) for the triangles (default: FLAME_sample.ply in VOCASET_DIR, "
                   "else the --flame-model's).")
@flame_model_option(required=False)
@friendly_errors
def import_vocaset_cmd(vocaset_dir: Path, out_dir: Path, faces_from: Path | None, flame_model: str | None) -> None:
    """Convert VOCASET (data_verts.npy, raw_audio_fixed.pkl, templates.pkl, subj_seq_to_idx.pkl)
    into shards the animator trains on: 60 fps meshes taken at 30 fps, audio at 16 kHz, emotion
    neutral, VOCA's subject split (8 train, 2 val, 2 test). Get VOCASET at https://voca.is.tue.mpg.de/.
    """
    from recon3d.importers.vocaset import VocasetError, check_layout, import_vocaset

    check_layout(vocaset_dir)
    faces = None
    if faces_from is None and not any(vocaset_dir.rglob("FLAME_sample.ply")):
        if not flame_model:
            raise VocasetError(f"{vocaset_dir}: no FLAME_sample.ply here; pass --faces-from MESH or --flame-model PATH")
        from recon3d.flame import load_flame_model

        faces = load_flame_model(flame_model, n_shape=1, n_expr=1).faces
    manifest = import_vocaset(vocaset_dir, out_dir, faces=faces, faces_from=faces_from)
    click.echo(f"{len(manifest['clips'])} sequences written to {out_dir} (splits {manifest['splits']})")
