"""End-to-end accuracy on video with known truth: synth -> build-dataset -> compare with the truth.

Renders talking heads with `recon3d synth` (seeds 1-3 by default; the landmark-bias calibration
uses other seeds) at RAVDESS's face size (inter-ocular ~250 px, or --iod-px), over a plain
background and over a photograph (--backgrounds), builds them with build-dataset exactly as real
videos (identity from the neutral clips, fitting) once per landmark-source choice (--sources:
MediaPipe alone, and MediaPipe with dlib's 68 points fused), and compares the shards' canonical
`vertices` with the truth per region: absolute error after a per-frame rigid alignment on the
face, motion error (each sequence minus its own identity template), lip jitter ratio, the lips'
per-axis motion gains (`lip_gain_x/y/z`: fitted / true motion, sideways, vertical, depth), the
reprojection error and the jaw-opening error (mean |fitted - true| jaw x-rotation, radians), and the
lip closures of issue 37 (truly closed frames the fit closes, truly open frames it closes by
mistake: recon3d.synth.accuracy.closure_counts; --closures renders add lip closures between
syllables, `recon3d synth --closures`, so the closed frames are enough to judge). The
real RAVDESS clips in ../shared/assets are built the same ways (their reprojection error). With
--yaw-swing the heads turn from one side to the other (yaw +-DEG over each clip; `recon3d synth
--yaw-swing`), one row per swing: ``--yaw-swing 12 35 55 70`` is issue 36's table. Rows
average all clips; a second table gives the spread over the seeds (standard deviation of the
per-seed means), and the JSON also holds every seed's means (``per_seed``).

    python benchmarks/video_accuracy.py [--seeds 1 2 3] [--iod-px 250] [--backgrounds plain photo]
        [--sources mediapipe mediapipe+dlib] [--offsets default] [--clips 3] [--yaw-swing 12 35 55 70]
        [--lighting camera side] [--closures]
        [--skip-real] [--work DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _common import add_model_option, add_overrides_option, column_means, column_sds, config_dir, flame_model_path, model_id, parse_overrides, print_json, print_table, REPO
from recon3d.synth.texture import LIGHTINGS

TEXTURE = REPO.parent / "shared" / "assets" / "flame" / "texture_mesh.obj"
RAVDESS = REPO.parent / "shared" / "assets" / "ravdess" / "video"
#: --backgrounds: the renders' background (plain grey, or a photograph behind the head).
BACKGROUNDS = {"plain": None, "photo": REPO.parent / "shared" / "assets" / "images" / "astronaut.png"}
#: --sources: landmarks.dlib of each landmark-source choice.
SOURCES = {"mediapipe": "off", "mediapipe+dlib": "on"}
KEYS = ["lip_mm", "face_mm", "lip_motion_mm", "face_motion_mm", "eye_motion_mm", "forehead_motion_mm",
        "lip_jitter_ratio", "lip_gain_x", "lip_gain_y", "lip_gain_z", "reprojection_iod", "jaw_error_rad"]


def build(videos: Path, prefix: Path, model: Path, offsets: str, sources: str, overrides: dict) -> Path:
    """Build ``videos`` into :func:`config_dir` of ``prefix`` (kept and reused by --work)."""
    from recon3d.pipeline.build import finalize, prepare
    from recon3d.pipeline.config import BuildConfig
    from recon3d.pipeline.executors import LocalExecutor

    config = BuildConfig.from_dict({"landmarks": {"dlib": SOURCES[sources]},
                                    "fitting": {**overrides, "landmark_offsets": offsets}})
    out = config_dir(prefix, config, model)
    ctx, plan, _ = prepare(videos, out, str(model), config, force=False)
    executor = LocalExecutor(workers=2)
    executor.submit(ctx, plan, strict_qc=False)
    executor.wait(ctx, plan, progress=False)
    finalize(out)
    return out


def clip_rows(dataset_dir: Path, videos: Path, layer, masks, embedding) -> list[dict]:
    import torch

    from recon3d.shards import open_dataset
    from recon3d.synth.accuracy import accuracy_row, closure_counts
    from recon3d.synth.motion import canonical_vertices, identity_template
    from recon3d.synth.video import load_truth

    ds = open_dataset(dataset_dir)
    rows = []
    for clip_id in ds.clip_ids():
        motion, _, data = load_truth(videos / f"{clip_id}.truth.npz")
        clip = ds.load_clip(clip_id)
        truth = canonical_vertices(layer, motion)
        with torch.no_grad():
            truth_template = identity_template(layer, motion.shape)
        row = accuracy_row(clip.vertices.astype(np.float64), clip.template.astype(np.float64), truth,
                           truth_template, masks)
        row["reprojection_iod"] = float(ds.info(clip_id)["qc"]["reprojection_iod_mean"])
        jaw = ds.shard(ds.info(clip_id)["shard"]).array(clip_id, "flame/jaw_pose")
        row["jaw_error_rad"] = float(np.abs(jaw[:, 0] - motion.jaw_pose[:, 0]).mean())
        row.update(closure_counts(clip.vertices.astype(np.float64), clip.template.astype(np.float64), truth,
                                  truth_template, embedding, layer.model.faces))
        rows.append(row)
    return rows


def closure_rates(clips: list[dict]) -> dict:
    """Issue 37's lip closures over ``clips``: the share of truly closed frames the fit closes
    (``closed_recall``) and of truly open frames it closes by mistake (``open_closed``), with the
    frame counts (NaN where there is no such frame)."""
    total = {k: sum(c[k] for c in clips) for k in ("closed_frames", "closed_fitted_closed", "open_frames",
                                                   "open_fitted_closed")}
    share = lambda a, b: total[a] / total[b] if total[b] else float("nan")  # noqa: E731
    return {"closed_frames": total["closed_frames"], "closed_recall": share("closed_fitted_closed", "closed_frames"),
            "open_frames": total["open_frames"], "open_closed": share("open_fitted_closed", "open_frames")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--iod-px", type=float, nargs="+", default=[250.0])
    parser.add_argument("--backgrounds", nargs="+", choices=list(BACKGROUNDS), default=list(BACKGROUNDS))
    parser.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES),
                        help="landmark sources to build with, side by side")
    parser.add_argument("--offsets", nargs="+", default=["default"],
                        help="fitting.landmark_offsets values to build with (default, none, or a path)")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--yaw-swing", type=float, nargs="+", default=[None],
                        help="heads swinging from one side to the other, yaw +-DEG (one row each); default: "
                             "small head motion within +-15 deg")
    parser.add_argument("--lighting", nargs="+", default=["camera"], choices=list(LIGHTINGS),
                        help="render lighting (recon3d synth --lighting), one row each: side is held-out image "
                             "formation (light from the upper left, a highlight, stronger H.264)")
    parser.add_argument("--closures", action="store_true",
                        help="renders with lip closures between syllables (recon3d synth --closures)")
    parser.add_argument("--skip-real", action="store_true", help="do not build the real RAVDESS clips")
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recon3d-video-accuracy"),
                        help="renders and builds are kept here and reused")
    add_overrides_option(parser, "of the build config", "expr_prior=3")
    add_model_option(parser)
    args = parser.parse_args()

    import torch

    from recon3d.flame import FlameLayer, load_flame_model, load_mediapipe_embedding
    from recon3d.flame.masks import find_masks, load_flame_masks
    from recon3d.shards import open_dataset
    from recon3d.synth.video import complete_renders, synthesize

    model_path = flame_model_path(args.flame_model)
    model = load_flame_model(model_path)
    overrides = parse_overrides(args.set)
    work = args.work / model_id(model_path)  # renders and builds depend on the model
    layer = FlameLayer(model, dtype=torch.float64)
    masks = load_flame_masks(find_masks(model_path=model.path), model.n_vertices)
    embedding = load_mediapipe_embedding(model)
    choices = [(offsets, sources) for offsets in args.offsets for sources in args.sources]
    rows, sd_rows, per_seed = [], [], []
    for iod, swing, lighting in ((i, w, li) for i in args.iod_px for w in args.yaw_swing for li in args.lighting):
        for background in args.backgrounds:
            per_choice: dict[tuple, list[dict]] = {c: [] for c in choices}
            seed_means: dict[tuple, list[dict]] = {c: [] for c in choices}
            for seed in args.seeds:
                folder = work / (f"seed{seed}_iod{int(iod)}" + ("" if background == "plain" else f"_{background}")
                                 + ("" if swing is None else f"_swing{swing:g}")
                                 + ("" if lighting == "camera" else f"_{lighting}")
                                 + ("_closures" if args.closures else ""))
                videos = folder / "videos"
                if len(complete_renders(videos)) < args.clips:
                    synthesize(videos, model_path, TEXTURE, args.clips, args.seconds, seed, iod,
                               background=BACKGROUNDS[background], progress=False, swing_deg=swing, lighting=lighting,
                               closures=args.closures)
                for offsets, sources in choices:  # side by side on the same renders
                    out = build(videos, folder / f"built_{Path(offsets).stem}_{sources}", model_path, offsets,
                                sources, overrides)
                    clips = clip_rows(out, videos, layer, masks, embedding)
                    per_choice[offsets, sources] += clips
                    seed_means[offsets, sources].append({**column_means(clips, KEYS), **closure_rates(clips)})
            for (offsets, sources), clip_results in per_choice.items():
                head = {"iod_px": iod, "yaw_swing_deg": swing or "", "lighting": lighting, "closures": args.closures,
                        "background": background, "landmark_offsets": offsets, "sources": sources}
                rows.append({**head, "clips": len(clip_results), **column_means(clip_results, KEYS),
                             **closure_rates(clip_results)})
                per_seed += [{**head, "seed": seed, **m} for seed, m in zip(args.seeds, seed_means[offsets, sources])]
                if len(args.seeds) > 1:
                    sd_rows.append({**head, "seeds": len(args.seeds), **column_sds(seed_means[offsets, sources], KEYS)})
    ravdess = {}
    for offsets, sources in [] if args.skip_real else choices:  # real clips: no truth, but the reprojection error tells
        out = build(RAVDESS, work / f"ravdess_{Path(offsets).stem}_{sources}", model_path, offsets, sources, overrides)
        ds = open_dataset(out)
        ravdess[f"{offsets} {sources}"] = float(np.mean([ds.info(c)["qc"]["reprojection_iod_mean"] for c in ds.clip_ids()]))
    print(f"video accuracy: seeds {args.seeds}, {args.clips} clips of {args.seconds} s each, model {model_id(model.path)}")
    print("errors in mm; *_motion: sequence minus its own identity template; lip_gain_*: fitted / true lip motion "
          "(x sideways, y vertical, z depth); reprojection: mean / inter-ocular distance")
    head = ["iod_px", "yaw_swing_deg", "lighting", "closures", "background", "landmark_offsets", "sources"]
    print_table(rows, head + ["clips"] + KEYS)
    print("lip closures (inner-lip gap against each template's): truly closed frames (within 0.5 mm) the fit closes "
          "(within 1 mm), and truly open ones (> 3 mm) it closes by mistake:")
    print_table(rows, head + ["closed_frames", "closed_recall", "open_frames", "open_closed"])
    if sd_rows:
        print("spread over the seeds (standard deviation of the per-seed means):")
        print_table(sd_rows, head + ["seeds"] + KEYS)
    print("real RAVDESS clips (../shared/assets/ravdess/video), reprojection error / IOD (each fit against the "
          "points it saw): " + ", ".join(f"{k} {v:.4f}" for k, v in ravdess.items()))
    print_json({"model": model_id(model.path), "rows": rows, "ravdess_reprojection_iod": ravdess,
                **({"sd_rows": sd_rows} if sd_rows else {}), "per_seed": per_seed})


if __name__ == "__main__":
    main()
