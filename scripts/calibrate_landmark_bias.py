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
from recon3d.fitting.objective import outline_residuals, smooth_outline  # noqa: E402
from recon3d.flame import FlameLayer, load_fan68_embedding, load_flame_model, load_mediapipe_embedding  # noqa: E402
from recon3d.landmarks import create_detector, track_video  # noqa: E402
from recon3d.landmarks.schemes import MEDIAPIPE  # noqa: E402
from recon3d.synth.motion import head_rotation, posed_vertices  # noqa: E402
from recon3d.synth.video import load_truth, synthesize  # noqa: E402

TEXTURE = REPO.parent / "shared" / "assets" / "flame" / "texture_mesh.obj"


def observations(video: Path, layer: FlameLayer, embedding, contour, detector):
    """Per frame: Jacobians of pixels w.r.t. canonical point displacements, and detected - true
    pixels, for the embedded landmarks and then the jaw-line points (whose residual is the normal
    distance from the true point to MediaPipe's face outline, NaN beyond its ends)."""
    motion, camera, data = load_truth(video.with_name(video.stem + ".truth.npz"))
    track = track_video(video, detector)
    posed = posed_vertices(layer, motion).numpy()
    rot = head_rotation(motion)  # (T, 3, 3)
    cam_pts = torch.as_tensor(embedding.points(posed, layer.model.faces))  # (T, N, 3)
    jac = camera.project_jacobian(cam_pts).numpy() @ rot[:, None]  # (T, N, 2, 3)
    points = track.points.astype(np.float64)
    points[~track.valid] = np.nan
    residual = points[:, embedding.source_ids] - data["landmarks"][:, embedding.source_ids]
    jaw_pts = torch.as_tensor(contour.points(posed, layer.model.faces))  # (T, K, 3)
    true_px = camera.project(jaw_pts)
    offset, normal_proj, inside = outline_residuals(true_px, smooth_outline(torch.as_tensor(points[:, list(MEDIAPIPE.face_contour)])))
    jaw_jac = normal_proj.numpy() @ camera.project_jacobian(jaw_pts).numpy() @ rot[:, None]
    jaw_res = -offset.numpy()  # detected minus true, along the outline's normal
    jaw_res[~inside.numpy()] = np.nan
    iod = np.linalg.norm(data["landmarks"][:, 33] - data["landmarks"][:, 263], axis=-1)
    return np.concatenate([jac, jaw_jac], 1), np.concatenate([residual, jaw_res], 1), iod


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
    contour = load_fan68_embedding(model).jaw_line()
    detector = create_detector("mediapipe")
    jacs, residuals, iods = [], [], []
    for seed in args.seeds:
        for iod in args.iod_px:
            folder = args.work / f"seed{seed}_iod{int(iod)}"
            videos = sorted(folder.glob("*.mp4"))
            if len(videos) < args.clips:
                videos = synthesize(folder, model.path, TEXTURE, args.clips, args.seconds, seed, iod, progress=False)
            for video in videos:
                j, r, i = observations(video, layer, embedding, contour, detector)
                jacs.append(j)
                residuals.append(r)
                iods.append(i)
    jac, res, iod = np.concatenate(jacs), np.concatenate(residuals), np.concatenate(iods)
    n = len(embedding)
    # The jaw-line points see only their outline's normal: a stronger ridge keeps the unseen
    # (tangential) part of their offsets near zero.
    offsets = np.concatenate([estimate_offsets(jac[:, :n], res[:, :n]),
                              estimate_offsets(jac[:, n:], res[:, n:], ridge=1e-2)])
    corrected = res - np.einsum("snai,ni->sna", jac, offsets)
    norm = lambda r: np.nanmean(np.linalg.norm(r, axis=-1) / iod[:, None])  # noqa: E731
    # What is left per point: its noise, as the rms per axis over the IOD.
    spread = np.sqrt(np.nanmean((corrected / iod[:, None, None]) ** 2, axis=(0, 2)))
    lips = np.isin(embedding.source_ids, MEDIAPIPE.lip_ids)
    print(f"{len(res)} frames from seeds {args.seeds} at IOD {args.iod_px} px")
    print(f"landmark error / IOD: before {norm(res[:, :n]):.4f}, after removing the offsets {norm(corrected[:, :n]):.4f} "
          f"(lips {norm(res[:, :n][:, lips]):.4f} -> {norm(corrected[:, :n][:, lips]):.4f})")
    print(f"jaw line to MediaPipe's outline / IOD: before {norm(res[:, n:]):.4f}, after {norm(corrected[:, n:]):.4f}")
    print(f"noise left per landmark (rms per axis / IOD): median {np.median(spread[:n]):.4f}, "
          f"{spread[:n].min():.4f}-{spread[:n].max():.4f}")
    size = 1000 * np.linalg.norm(offsets, axis=1)
    print(f"offset size: median {np.median(size[:n]):.2f} mm, max {size[:n].max():.2f} mm; "
          f"jaw line {np.round(size[n:], 2).tolist()} mm")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, landmark_indices=embedding.source_ids, offsets=offsets[:n].astype(np.float32),
             contour_points=contour.source_ids, contour_offsets=offsets[n:].astype(np.float32),
             residual_iod=spread[:n].astype(np.float32), contour_residual_iod=spread[n:].astype(np.float32),
             seeds=np.array(args.seeds), iod_px=np.array(args.iod_px), frames=len(res),
             created=str(dt.date.today()), recon3d_version=__version__, model=model.path.name,
             model_identity=model_identity(model),
             note="3D displacement (metres, FLAME canonical frame) of each embedded MediaPipe point and "
                  "of each jaw-line point (DECA's 68-point ids) fitted to MediaPipe's face outline, and "
                  "the residual left per point after it (rms per axis / inter-ocular distance); "
                  "see recon3d/fitting/landmark_bias.py")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
