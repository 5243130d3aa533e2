"""Each landmark source's error against the truth by head yaw, on renders whose head swings far.

Renders talking heads with `recon3d synth --yaw-swing` (calibration seeds, which the accuracy
benchmark does not use), tracks them with MediaPipe and dlib's 68-point predictor, and compares
each source's embedded points with where FLAME's embedded points truly project, per bin of the
true |yaw| (and of |pitch|): the mean error over the inter-ocular distance of the frontal face
(the render's ``iod_px``), for the lips and for all points of each source, and the disagreement
between the sources (:func:`recon3d.fitting.source_trust.disagreement_mm`, the statistic the fit
weighs dlib's points by). This is what sets ``fitting.dlib_yaw_deg``: where dlib's error rises
past MediaPipe's.

    python scripts/source_error_by_yaw.py [--flame-model PATH] [--seeds 101 102] [--swing 70] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import add_model_option, flame_model_path, model_id, print_json, print_table  # noqa: E402

from recon3d.fitting.source_trust import SourceAgreement  # noqa: E402
from recon3d.flame import FlameLayer, load_flame_model, load_mediapipe_dlib_embedding  # noqa: E402
from recon3d.landmarks import create_detector, track_video  # noqa: E402
from recon3d.landmarks.schemes import DLIB_OFFSET, MEDIAPIPE_DLIB  # noqa: E402
from recon3d.synth.motion import head_rotation, posed_vertices  # noqa: E402
from recon3d.synth.video import complete_renders, load_truth, synthesize  # noqa: E402

TEXTURE = REPO.parent / "shared" / "assets" / "flame" / "texture_mesh.obj"
BINS = (0, 10, 20, 30, 40, 50, 60, 90)


def tracked(video: Path, detector) -> np.ndarray:
    """Both sources' points ``(T, 546, 2)`` (NaN where no face), cached beside the video."""
    cache = video.with_suffix(".points.npy")
    if cache.exists():
        return np.load(cache)
    track = track_video(video, detector)
    points = track.points.astype(np.float64)
    points[~track.valid] = np.nan
    np.save(cache, points)
    return points


def frame_errors(video: Path, layer: FlameLayer, embedding, detector, agreement: SourceAgreement) -> dict:
    """Per frame: true |yaw| and |pitch| (degrees), each source's mean error / IOD on its lips and
    on all its points, and the sources' disagreement (mm)."""
    motion, camera, data = load_truth(video.with_name(video.stem + ".truth.npz"))
    points = tracked(video, detector)
    posed = torch.as_tensor(posed_vertices(layer, motion).numpy())
    true_px = camera.project(torch.as_tensor(embedding.points(posed.numpy(), layer.model.faces))).numpy()
    err = np.linalg.norm(points[:, embedding.source_ids] - true_px, axis=-1) / float(data["iod_px"])
    rot = head_rotation(motion)
    ids = embedding.source_ids
    dlib = ids >= DLIB_OFFSET
    iris = (ids >= 468) & (ids < 478)
    lips = np.isin(ids, MEDIAPIPE_DLIB.lip_ids)
    depth = -float(np.median(motion.translation[:, 2]))
    mm_per_px = 1000.0 * depth / camera.focal
    return {
        "yaw": np.degrees(np.abs(np.arctan2(rot[:, 0, 2], rot[:, 2, 2]))),
        "pitch": np.degrees(np.abs(np.arctan2(-rot[:, 1, 2], rot[:, 2, 2]))),
        "mediapipe_lips": np.nanmean(err[:, lips & ~dlib], 1), "dlib_lips": np.nanmean(err[:, lips & dlib], 1),
        "mediapipe_all": np.nanmean(err[:, ~dlib & ~iris], 1), "dlib_all": np.nanmean(err[:, dlib], 1),
        "disagreement_mm": agreement.disagreement_mm(points, np.full(len(points), mm_per_px)).mean(1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    parser.add_argument("--swing", type=float, default=70.0, help="yaw swing of the renders, +-degrees")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recon3d-source-yaw"))
    add_model_option(parser)
    args = parser.parse_args()
    model_path = flame_model_path(args.flame_model)
    model = load_flame_model(model_path)
    layer = FlameLayer(model, dtype=torch.float64)
    embedding = load_mediapipe_dlib_embedding(model)
    agreement = SourceAgreement.for_model(model, embedding)
    detector = create_detector("mediapipe", dlib=True)
    frames: dict[str, list] = {}
    for seed in args.seeds:
        folder = args.work / model_id(model_path) / f"seed{seed}_swing{int(args.swing)}"
        videos = complete_renders(folder)
        if len(videos) < args.clips:
            videos = synthesize(folder, model_path, TEXTURE, args.clips, args.seconds, seed, 250.0, progress=False,
                                swing_deg=args.swing)
        for video in videos:
            for k, v in frame_errors(video, layer, embedding, detector, agreement).items():
                frames.setdefault(k, []).append(v)
    f = {k: np.concatenate(v) for k, v in frames.items()}
    keys = ["mediapipe_lips", "dlib_lips", "mediapipe_all", "dlib_all", "disagreement_mm"]
    rows = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        sel = (f["yaw"] >= lo) & (f["yaw"] < hi)
        if sel.any():
            rows.append({"yaw_deg": f"{lo}-{hi}", "frames": int(sel.sum()),
                         **{k: float(np.nanmean(f[k][sel])) for k in keys},
                         "disagreement_p90_mm": float(np.nanpercentile(f["disagreement_mm"][sel], 90))})
    print(f"landmark error / frontal IOD by true |yaw|: model {model_id(model_path)}, seeds {args.seeds}, "
          f"swing +-{args.swing} deg, {len(f['yaw'])} frames; disagreement: dlib's points against MediaPipe's "
          "prediction of them, mm at the face")
    print_table(rows, ["yaw_deg", "frames"] + keys + ["disagreement_p90_mm"])
    print_json({"model": model_id(model_path), "seeds": args.seeds, "swing_deg": args.swing, "rows": rows})


if __name__ == "__main__":
    main()
