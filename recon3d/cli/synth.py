"""``recon3d synth``: synthetic talking-head videos with known FLAME truth."""

from __future__ import annotations

from pathlib import Path

import click

from recon3d.cli.common import flame_model_option, friendly_errors
from recon3d.synth.texture import LIGHTINGS


@click.command("synth")
@flame_model_option()
@click.option("--texture", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A FLAME-topology textured head (.obj with UVs, its .mtl and image), e.g. VOCA's texture_mesh.obj.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips", type=int, default=4, show_default=True, help="Clips to write (the first two neutral).")
@click.option("--seconds", type=float, default=3.0, show_default=True, help="Length of each clip.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--iod-px", type=float, default=250.0, show_default=True,
              help="Face size: outer-eye-corner distance in pixels (RAVDESS: ~230-250).")
@click.option("--actor", type=int, default=None, help="Actor number in the clip names (default: from the seed).")
@click.option("--background", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A photo to blur behind the head (default: plain grey).")
@click.option("--yaw-swing", "swing_deg", type=click.FloatRange(0, 90), default=None,
              help="Turn each head from one side to the other, yaw +-DEG over the clip (e.g. 55 for a near "
                   "profile); default: small head motion within +-15 deg.")
@click.option("--lighting", type=click.Choice(list(LIGHTINGS)), default="camera", show_default=True,
              help="camera: light from the camera, matte, H.264 crf 23 (the renders the fit was tuned on); side: "
                   "light from the upper left, a specular highlight, crf 32 (held-out image formation).")
@click.option("--closures", is_flag=True,
              help="Close the lips between some syllables, as the bilabials /p b m/ do (~80 ms at the template's "
                   "closed lips, with the jaw at rest): renders for judging lip closures. Off, the motion is as before.")
@friendly_errors
def synth(flame_model, texture, out_dir, clips, seconds, seed, iod_px, actor, background, swing_deg, lighting,
          closures) -> None:
    """Write talking-head videos whose 3D truth is known, named like RAVDESS clips.

    Each clip (1280x720, 29.97 fps, H.264 + AAC) comes with <name>.truth.npz: FLAME shape,
    expression, jaw/eye/neck/global pose, translation, camera and projected landmarks.
    build-dataset runs on the folder unchanged; benchmarks/video_accuracy.py compares its output
    with the truth. Speech comes from espeak-ng when installed (else the clips are silent).

    \b
    Example:
      recon3d synth --flame-model ~/flame/generic_model.pkl --texture texture_mesh.obj --out synth --clips 8
    """
    from recon3d.synth.video import synthesize

    videos = synthesize(out_dir, flame_model, texture, clips, seconds, seed, iod_px, actor, background,
                        swing_deg=swing_deg, lighting=lighting, closures=closures)
    click.echo(f"wrote {len(videos)} clips with truth files to {out_dir}")
