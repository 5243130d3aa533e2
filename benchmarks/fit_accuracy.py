"""Fitting accuracy against known truth (synthetic landmark sequences from the whole FLAME model).

For each seed: a 120-frame talking-head sequence drawn from all of the model's identity and
expression components (recon3d.synth.motion), projected through a pinhole camera into a 1280x720
image at RAVDESS's face size, with Gaussian landmark noise of 0, 1 and 2 px. Each landmark source
of --sources is simulated: MediaPipe's points alone, or with dlib's 68 (their own noise draw);
the face outline (MediaPipe's face oval, or dlib's jaw line when fused) gets the head's silhouette
(DECA's yaw-dependent contour, resampled). Each source choice is fitted with the jaw line against
that outline and without it (--jaw-line: contour_weight values), side by side on the same
sequences, and the jaw-opening error of each is reported. The identity is fitted as build-dataset does
(--protocol actor: from a neutral-emotion sequence of the same person), from the clip itself
(--protocol clip), from a perfectly still neutral sequence (--protocol still: the same head motion
with no expression and the jaw at rest, the best any neutral recording could give), or not at all
(--protocol truth: the true identity is given, which bounds what a better identity could bring).
Reports per region (FLAME_masks.pkl) the absolute error after a per-frame rigid alignment, the
motion error (each sequence minus its own identity template) and the lip jitter ratio; rows
average the seeds, a second table gives their spread (standard deviation over the seeds), and the
JSON also holds every seed's figures (``per_seed``).

    python benchmarks/fit_accuracy.py [--seeds 1 2 3] [--protocol actor|clip|still|truth]
        [--sources mediapipe mediapipe+dlib] [--jaw-line 1.0 0] [--yaw-swing DEG]

With --yaw-swing the heads (the clip and the neutral one) turn from one side to the other, yaw
+-DEG, as in ``video_accuracy.py --yaw-swing``: what the fit gives on turned heads when the points
are where they truly project (every point, the far side's too), a bound for any weighting of the
detectors' points.

The seeds differ from those the fitting defaults were tuned on (11-14).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import add_model_option, add_overrides_option, column_means, column_sds, flame_model_path, model_id, one_core, parse_overrides, print_json, print_table

NOISE_PX = (0.0, 1.0, 2.0)
KEYS = ["lip_mm", "eye_mm", "forehead_mm", "face_mm", "lip_motion_mm", "eye_motion_mm", "forehead_motion_mm",
        "face_motion_mm", "lip_jitter_ratio"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--protocol", choices=["actor", "clip", "still", "truth"], default="actor",
                        help="the identity: fitted on a neutral sequence (as build-dataset), on the clip, on a "
                             "still neutral sequence (no expression), or the true one")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--yaw-swing", type=float, default=None, help="heads swinging +-DEG of yaw")
    parser.add_argument("--iod-px", type=float, default=250.0, help="face size: outer-eye-corner distance in pixels")
    add_overrides_option(parser, "recon3d.fitting.FitConfig", "expr_dims=0 n_expr=50")
    parser.add_argument("--sources", nargs="+", choices=["mediapipe", "mediapipe+dlib"],
                        default=["mediapipe", "mediapipe+dlib"], help="landmark sources simulated and fitted")
    parser.add_argument("--jaw-line", type=float, nargs="+", default=[1.0, 0.0], metavar="WEIGHT",
                        help="contour_weight values: the jaw line against the face outline (0: without)")
    add_model_option(parser)
    args = parser.parse_args()
    one_core()

    import torch

    from recon3d.fitting import FitConfig, FlameFitter, LandmarkSequence, PinholeCamera
    from recon3d.flame import (FlameLayer, load_fan68_embedding, load_flame_model, load_mediapipe_dlib_embedding,
                               load_mediapipe_embedding)
    from recon3d.landmarks.schemes import MEDIAPIPE, MEDIAPIPE_DLIB
    from recon3d.flame.masks import find_masks, load_flame_masks
    from recon3d.synth.accuracy import accuracy_row
    from recon3d.synth.motion import (canonical_vertices, identity_template, place_in_front_of,
                                      project_landmarks, sample_motion, without_expression)

    model = load_flame_model(flame_model_path(args.flame_model))
    layer = FlameLayer(model, dtype=torch.float64)
    embedding = load_mediapipe_embedding(model)  # the synthetic heads are placed by MediaPipe's points
    outline = load_fan68_embedding(model)  # the face's silhouette in the synthetic detections
    masks = load_flame_masks(find_masks(model_path=model.path), model.n_vertices)
    overrides = parse_overrides(args.set)
    sources = {"mediapipe": (embedding, MEDIAPIPE), "mediapipe+dlib": (load_mediapipe_dlib_embedding(model), MEDIAPIPE_DLIB)}
    choices = [(s, w) for s in args.sources for w in args.jaw_line]
    fitters = {(s, w): FlameFitter(model, sources[s][0], FitConfig.from_dict({**overrides, "contour_weight": w}),
                                   sources[s][1]) for s, w in choices}
    camera = PinholeCamera.from_fov(1280, 720, FitConfig().fov_deg)
    fps = 29.97

    def landmarks(motion, noise: float, seed: int, source: str) -> LandmarkSequence:
        emb, scheme = sources[source]
        clean = project_landmarks(layer, emb, motion, camera, outline, scheme)
        noisy = clean + np.random.default_rng(seed).normal(0.0, noise, clean.shape)
        return LandmarkSequence(noisy, np.ones(motion.n_frames, bool), 1280, 720, fps, scheme=scheme)

    per_noise: dict[tuple, list[dict]] = {(c, n): [] for c in choices for n in NOISE_PX}
    jaw_errors: dict[tuple, list[float]] = {(c, n): [] for c in choices for n in NOISE_PX}
    started = time.perf_counter()
    for seed in args.seeds:
        motion = place_in_front_of(layer, embedding, sample_motion(layer, embedding, args.frames, fps, seed,
                                                                   swing_deg=args.yaw_swing), camera, args.iod_px)
        truth = canonical_vertices(layer, motion)
        truth_template = identity_template(layer, motion.shape)
        neutral = sample_motion(layer, embedding, args.frames, fps, seed + 1000, emotion_scale=0.0,
                                swing_deg=args.yaw_swing)
        neutral.shape = motion.shape.copy()
        if args.protocol == "still":
            neutral = without_expression(neutral)
        neutral = place_in_front_of(layer, embedding, neutral, camera, args.iod_px)
        for (source, weight), fitter in fitters.items():
            for noise in NOISE_PX:
                seq = landmarks(motion, noise, seed, source)
                shape = np.asarray(motion.shape, np.float64) if args.protocol == "truth" else None
                if args.protocol in ("actor", "still"):
                    shape = fitter.fit_identity([landmarks(neutral, noise, seed + 1000, source)], neutral=True)
                result = fitter.fit(seq, shape=shape)
                row = accuracy_row(result.vertices.astype(np.float64), identity_template(layer, result.shape),
                                   truth, truth_template, masks)
                per_noise[(source, weight), noise].append(row)
                jaw_errors[(source, weight), noise].append(float(np.abs(result.jaw_pose[:, 0] - motion.jaw_pose[:, 0]).mean()))
    def head(choice: tuple, noise: float) -> dict:
        return {"sources": choice[0], "jaw_line": choice[1], "noise_px": noise}

    keys = KEYS + ["jaw_error_rad"]
    for (choice, noise), rows_ in per_noise.items():
        for row, jaw in zip(rows_, jaw_errors[choice, noise]):
            row["jaw_error_rad"] = jaw
    rows = [{**head(c, n), **column_means(per_noise[c, n], keys)} for c in choices for n in NOISE_PX]
    print(f"fit accuracy: {len(args.seeds)} seeds x {args.frames} frames, identity protocol '{args.protocol}', "
          f"IOD {args.iod_px:.0f} px, model {model_id(model.path)} ({time.perf_counter() - started:.0f} s)")
    print("errors in mm; *_motion: sequence minus its own identity template; jitter: fitted/true lip 2nd difference; "
          "jaw_error_rad: mean |fit - true| jaw opening; jaw_line: contour_weight (0: without the jaw line)")
    columns = ["sources", "jaw_line", "noise_px"] + keys
    print_table(rows, columns)
    spread = {}
    if len(args.seeds) > 1:
        spread = {"sd_rows": [{**head(c, n), **column_sds(per_noise[c, n], keys)} for c in choices for n in NOISE_PX]}
        print("spread over the seeds (standard deviation of the per-seed figures):")
        print_table(spread["sd_rows"], columns)
    per_seed = [{**head(c, n), "seed": seed, **row} for c in choices for n in NOISE_PX
                for seed, row in zip(args.seeds, per_noise[c, n])]
    jaw = {f"{c[0]} jaw_line {c[1]:g}": {f"{n:g}": round(float(np.mean(jaw_errors[c, n])), 5) for n in NOISE_PX}
           for c in choices}
    print("jaw opening error (rad): " + "; ".join(f"{k}: " + ", ".join(f"{n} px {v:.4f}" for n, v in d.items())
                                                for k, d in jaw.items()))
    print_json({"model": model_id(model.path), "protocol": args.protocol, "rows": rows, "jaw_error_rad": jaw,
                **spread, "per_seed": per_seed})


if __name__ == "__main__":
    main()
