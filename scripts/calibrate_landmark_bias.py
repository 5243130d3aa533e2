"""Estimate the landmark sources' systematic offsets from synthetic renders with known truth.

Renders talking heads with `recon3d synth` (seeds that the accuracy benchmark does not use), runs
MediaPipe on them (and dlib's 68-point predictor where it is installed, unless --no-dlib), and solves, per landmark, the 3D displacement of FLAME's embedded point (in
the head's canonical frame) that best explains where MediaPipe puts it (linearised least squares
over all frames and head poses). Writes the model's own calibration,
recon3d/data/mediapipe_landmark_offsets.<model id>.npz (which ``landmark_offsets: default`` then
uses for that model), or --out. The jaw line is calibrated against each source's face outline:
MediaPipe's face oval (``contour_*`` keys) and dlib's jaw line (``dlib_contour_*``).

    python scripts/calibrate_landmark_bias.py [--flame-model PATH] [--seeds 101 102 103 104] [--iod-px 250 110] [--work DIR] [--no-dlib]
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
from recon3d.flame import (  # noqa: E402
    FlameLayer, load_fan68_embedding, load_flame_model, load_mediapipe_dlib_embedding, load_mediapipe_embedding)
from recon3d.landmarks import create_detector, track_video  # noqa: E402
from recon3d.landmarks.schemes import MEDIAPIPE, MEDIAPIPE_DLIB  # noqa: E402
from recon3d.synth.motion import head_rotation, posed_vertices  # noqa: E402
from recon3d.synth.video import complete_renders, load_truth, synthesize  # noqa: E402

TEXTURE = REPO.parent / "shared" / "assets" / "flame" / "texture_mesh.obj"


def observations(video: Path, layer: FlameLayer, embedding, contour, detector, outlines):
    """Per frame: Jacobians of pixels w.r.t. canonical point displacements, and detected - true
    pixels, for the embedded landmarks and then the jaw-line points against each of ``outlines``
    (detector ids; the residual is the normal distance from the true point to the outline, NaN
    beyond its ends)."""
    motion, camera, data = load_truth(video.with_name(video.stem + ".truth.npz"))
    track = track_video(video, detector)
    posed = posed_vertices(layer, motion).numpy()
    rot = head_rotation(motion)  # (T, 3, 3)
    cam_pts = torch.as_tensor(embedding.points(posed, layer.model.faces))  # (T, N, 3)
    jac = camera.project_jacobian(cam_pts).numpy() @ rot[:, None]  # (T, N, 2, 3)
    points = track.points.astype(np.float64)
    points[~track.valid] = np.nan
    true_px = camera.project(cam_pts).numpy()  # the embedded points of both sources, as rendered
    residual = points[:, embedding.source_ids] - true_px
    jaw_pts = torch.as_tensor(contour.points(posed, layer.model.faces))  # (T, K, 3)
    true_jaw = camera.project(jaw_pts)
    jacs, residuals = [jac], [residual]
    for outline in outlines:
        offset, normal_proj, inside = outline_residuals(true_jaw, smooth_outline(torch.as_tensor(points[:, list(outline)])))
        jacs.append(normal_proj.numpy() @ camera.project_jacobian(jaw_pts).numpy() @ rot[:, None])
        jaw_res = -offset.numpy()  # detected minus true, along the outline's normal
        jaw_res[~inside.numpy()] = np.nan
        residuals.append(jaw_res)
    iod = np.linalg.norm(data["landmarks"][:, 33] - data["landmarks"][:, 263], axis=-1)
    return np.concatenate(jacs, 1), np.concatenate(residuals, 1), iod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104])
    parser.add_argument("--iod-px", type=float, nargs="+", default=[250.0, 110.0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recon3d-calibration"))
    parser.add_argument("--out", type=Path, default=None, help="default: the model's own calibration file")
    parser.add_argument("--no-dlib", action="store_true", help="MediaPipe alone, even where dlib is installed")
    add_model_option(parser)
    args = parser.parse_args()
    from recon3d.landmarks.dlib_backend import dlib_missing

    with_dlib = not args.no_dlib and dlib_missing() is None
    model = load_flame_model(flame_model_path(args.flame_model))
    args.out = args.out or model_offsets_path(model)
    args.work = args.work / model_identity(model)  # renders depend on the model
    layer = FlameLayer(model, dtype=torch.float64)
    embedding = load_mediapipe_dlib_embedding(model) if with_dlib else load_mediapipe_embedding(model)
    contour = load_fan68_embedding(model).jaw_line()
    outlines = {"contour": MEDIAPIPE.face_contour, **({"dlib_contour": MEDIAPIPE_DLIB.face_contour} if with_dlib else {})}
    detector = create_detector("mediapipe", dlib=with_dlib)
    jacs, residuals, iods = [], [], []
    for seed in args.seeds:
        for iod in args.iod_px:
            folder = args.work / f"seed{seed}_iod{int(iod)}"
            videos = complete_renders(folder)
            if len(videos) < args.clips:
                videos = synthesize(folder, model.path, TEXTURE, args.clips, args.seconds, seed, iod, progress=False)
            for video in videos:
                j, r, i = observations(video, layer, embedding, contour, detector, list(outlines.values()))
                jacs.append(j)
                residuals.append(r)
                iods.append(i)
    jac, res, iod = np.concatenate(jacs), np.concatenate(residuals), np.concatenate(iods)
    n, k = len(embedding), len(contour)
    # The jaw-line points see only their outline's normal: a stronger ridge keeps the unseen
    # (tangential) part of their offsets near zero.
    offsets = np.concatenate([estimate_offsets(jac[:, :n], res[:, :n]),
                              estimate_offsets(jac[:, n:], res[:, n:], ridge=1e-2)])
    corrected = res - np.einsum("snai,ni->sna", jac, offsets)
    norm = lambda r: np.nanmean(np.linalg.norm(r, axis=-1) / iod[:, None])  # noqa: E731
    # What is left per point: its noise, as the rms per axis over the IOD.
    spread_xy = np.sqrt(np.nanmean((corrected / iod[:, None, None]) ** 2, axis=0))  # per image axis
    spread = np.sqrt(np.mean(spread_xy ** 2, axis=1))
    print(f"{len(res)} frames from seeds {args.seeds} at IOD {args.iod_px} px")
    dlib_points = embedding.source_ids >= MEDIAPIPE.n_points
    for name, points in (("MediaPipe", ~dlib_points), ("dlib", dlib_points)):
        if not points.any():
            continue
        lips = points & np.isin(embedding.source_ids, MEDIAPIPE_DLIB.lip_ids)
        print(f"{name} landmark error / IOD: before {norm(res[:, :n][:, points]):.4f}, after removing the offsets "
              f"{norm(corrected[:, :n][:, points]):.4f} (lips {norm(res[:, :n][:, lips]):.4f} -> "
              f"{norm(corrected[:, :n][:, lips]):.4f}); noise left (rms per axis / IOD): median "
              f"{np.median(spread[:n][points]):.4f}, lips {np.median(spread[:n][lips]):.4f} "
              f"(x {np.median(spread_xy[:n][lips, 0]):.4f}, y {np.median(spread_xy[:n][lips, 1]):.4f})")
    size = 1000 * np.linalg.norm(offsets, axis=1)
    by_outline = {}
    for i, name in enumerate(outlines):
        part = slice(n + i * k, n + (i + 1) * k)
        print(f"jaw line to the {name} outline / IOD: before {norm(res[:, part]):.4f}, after {norm(corrected[:, part]):.4f}; "
              f"offsets {np.round(size[part], 2).tolist()} mm")
        by_outline[f"{name}_offsets"] = offsets[part].astype(np.float32)
        by_outline[f"{name}_residual_iod"] = spread[part].astype(np.float32)
    print(f"offset size: median {np.median(size[:n]):.2f} mm, max {size[:n].max():.2f} mm")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, landmark_indices=embedding.source_ids, offsets=offsets[:n].astype(np.float32),
             contour_points=contour.source_ids, residual_iod=spread[:n].astype(np.float32),
             residual_iod_xy=spread_xy[:n].astype(np.float32), **by_outline,
             seeds=np.array(args.seeds), iod_px=np.array(args.iod_px), frames=len(res),
             created=str(dt.date.today()), recon3d_version=__version__, model=model.path.name,
             model_identity=model_identity(model),
             note="3D displacement (metres, FLAME canonical frame) of each embedded landmark (MediaPipe ids; "
                  "dlib's 68 points as 478 + their id) and of each jaw-line point (DECA's 68-point ids) fitted "
                  "to MediaPipe's face outline (contour_*) and to dlib's jaw line (dlib_contour_*), and "
                  "the residual left per point after it (rms per axis / inter-ocular distance); "
                  "see recon3d/fitting/landmark_bias.py")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
