"""Estimate MediaPipe's systematic landmark offsets from synthetic renders with known truth.

Renders talking heads with `recon3d synth` (seeds that the accuracy benchmark does not use), runs
MediaPipe on them, and solves, per landmark, the 3D displacement of FLAME's embedded point (in
the head's canonical frame) that best explains where MediaPipe puts it (linearised least squares
over all frames and head poses). Writes the model's own calibration,
recon3d/data/mediapipe_landmark_offsets.<model id>.npz (which ``landmark_offsets: default`` then
uses for that model), or --out.

    python scripts/calibrate_landmark_bias.py [--flame-model PATH] [--seeds 101 102 103 104] [--iod-px 250 110] [--work DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import add_model_option, flame_model_path  # noqa: E402

from recon3d import __version__  # noqa: E402
from recon3d.fitting.landmark_bias import estimate_offsets, model_identity, model_offsets_path  # noqa: E402
from recon3d.flame import FlameLayer, load_flame_model, load_mediapipe_embedding  # noqa: E402
from recon3d.flame.lbs import axis_angle_to_matrix  # noqa: E402
from recon3d.landmarks import create_detector, track_video  # noqa: E402
from recon3d.landmarks.schemes import MEDIAPIPE  # noqa: E402
from recon3d.synth.motion import posed_vertices  # noqa: E402
from recon3d.synth.video import load_truth, synthesize  # noqa: E402

TEXTURE = REPO.parent / "shared" / "assets" / "flame" / "texture_mesh.obj"


def observations(video: Path, layer: FlameLayer, embedding, detector):
    """Per frame: Jacobians of pixels w.r.t. canonical point displacements, and detected - true pixels."""
    motion, camera, data = load_truth(video.with_name(video.stem + ".truth.npz"))
    track = track_video(video, detector)
    cam_pts = embedding.points(posed_vertices(layer, motion).numpy(), layer.model.faces)  # (T, N, 3)
    rot = (axis_angle_to_matrix(torch.as_tensor(motion.global_pose))
           @ axis_angle_to_matrix(torch.as_tensor(motion.neck_pose))).numpy()  # head rotation (T, 3, 3)
    proj = camera.project_jacobian(torch.as_tensor(cam_pts)).numpy()  # (T, N, 2, 3)
    jac = proj @ rot[:, None]
    detected = track.points[:, embedding.source_ids].astype(np.float64)
    detected[~track.valid] = np.nan
    residual = detected - data["landmarks"][:, embedding.source_ids]
    iod = np.linalg.norm(data["landmarks"][:, 33] - data["landmarks"][:, 263], axis=-1)
    return jac, residual, iod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104])
    parser.add_argument("--iod-px", type=float, nargs="+", default=[250.0, 110.0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recon3d-calibration"))
    parser.add_argument("--out", type=Path, default=None, help="default: the model's own calibration file")
    add_model_option(parser)
    args = parser.parse_args()
    model = load_flame_model(flame_model_path(args.flame_model))
    args.out = args.out or model_offsets_path(model)
    args.work = args.work / model_identity(model)  # renders depend on the model
    layer = FlameLayer(model, dtype=torch.float64)
    embedding = load_mediapipe_embedding(model)
    detector = create_detector("mediapipe")
    jacs, residuals, iods = [], [], []
    for seed in args.seeds:
        for iod in args.iod_px:
            folder = args.work / f"seed{seed}_iod{int(iod)}"
            videos = sorted(folder.glob("*.mp4"))
            if len(videos) < args.clips:
                videos = synthesize(folder, model.path, TEXTURE, args.clips, args.seconds, seed, iod, progress=False)
            for video in videos:
                j, r, i = observations(video, layer, embedding, detector)
                jacs.append(j)
                residuals.append(r)
                iods.append(i)
    jac, res, iod = np.concatenate(jacs), np.concatenate(residuals), np.concatenate(iods)
    offsets = estimate_offsets(jac, res)
    corrected = res - np.einsum("snai,ni->sna", jac, offsets)
    norm = lambda r: np.nanmean(np.linalg.norm(r, axis=-1) / iod[:, None])  # noqa: E731
    lips = np.isin(embedding.source_ids, MEDIAPIPE.lip_ids)
    print(f"{len(res)} frames from seeds {args.seeds} at IOD {args.iod_px} px")
    print(f"landmark error / IOD: before {norm(res):.4f}, after removing the offsets {norm(corrected):.4f} "
          f"(lips {norm(res[:, lips]):.4f} -> {norm(corrected[:, lips]):.4f})")
    print(f"offset size: median {1000 * np.median(np.linalg.norm(offsets, axis=1)):.2f} mm, "
          f"max {1000 * np.linalg.norm(offsets, axis=1).max():.2f} mm")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, landmark_indices=embedding.source_ids, offsets=offsets.astype(np.float32),
             seeds=np.array(args.seeds), iod_px=np.array(args.iod_px), frames=len(res),
             created=str(dt.date.today()), recon3d_version=__version__, model=model.path.name,
             model_identity=model_identity(model),
             note="3D displacement (metres, FLAME canonical frame) of each embedded MediaPipe point; "
                  "see recon3d/fitting/landmark_bias.py")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
