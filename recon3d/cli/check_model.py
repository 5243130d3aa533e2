"""``recon3d check-model``: load a FLAME model and its side files and say what was found."""

from __future__ import annotations

import json

import click

from recon3d.cli.common import flame_model_option, friendly_errors
from recon3d.flame import FlameModelError, load_fan68_embedding, load_flame_model, load_mediapipe_embedding
from recon3d.flame.masks import find_masks, load_flame_masks


@click.command("check-model")
@flame_model_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@friendly_errors
def check_model(flame_model: str, as_json: bool) -> None:
    """Check a FLAME model and the files recon3d needs beside it.

    Loads the model through the safe loader (no code in the pickle is run), then the MediaPipe
    landmark embedding (mediapipe_landmark_embedding.npz), DECA's 68-point embedding
    (landmark_embedding.npy, optional: needed by the fan landmark backend, by dlib's fused
    points and by fitting.contour_weight > 0) and FLAME_masks.pkl from the model's folder, and
    reports sizes, and the landmark sources a default build would fuse here (MediaPipe, and
    dlib where the [dlib] extra is installed). Exit status 2 with a message naming the file when
    something is missing or wrong.
    """
    model = load_flame_model(flame_model)
    report = {
        "model": str(model.path), "vertices": model.n_vertices, "faces": int(len(model.faces)),
        "shape_components": model.n_shape, "expression_components": model.n_expr,
        "pose_correctives": int(model.posedirs.shape[2]),
    }
    report["mediapipe_landmarks"] = len(load_mediapipe_embedding(model))
    try:
        load_fan68_embedding(model)
        report["fan68_embedding"] = True
    except FlameModelError as exc:
        report["fan68_embedding"] = f"absent ({exc})"
    masks = load_flame_masks(find_masks(model_path=model.path), model.n_vertices)
    report["mask_regions"] = sorted(masks)
    from recon3d.landmarks.dlib_backend import LICENCE_NOTE
    from recon3d.landmarks.registry import landmark_sources

    sources, note = landmark_sources("mediapipe", "auto")
    if "dlib" in sources and report["fan68_embedding"] is not True:
        note = "dlib is installed, but its points are placed on FLAME by landmark_embedding.npy, which is absent"
    report["landmark_sources"] = "+".join(sources) + (f" ({note})" if note else f" ({LICENCE_NOTE})")
    if as_json:
        click.echo(json.dumps(report))
        return
    for key, value in report.items():
        click.echo(f"{key:24s} {value}")
