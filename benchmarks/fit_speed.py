"""Fitting speed: milliseconds per frame for a 120-frame clip on one core, by stage.

By default the clip's identity is fitted from the clip itself (the slowest case); with
--identity given it is fitted once beforehand and given to every timed fit, as build-dataset does
(one identity per actor, reused for all its clips). Median of --repeats runs after one warm-up.

    python benchmarks/fit_speed.py [--frames 120] [--repeats 5] [--identity clip|given]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import add_model_option, add_overrides_option, flame_model_path, model_id, one_core, parse_overrides, print_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--identity", choices=("clip", "given"), default="clip",
                        help="clip: fitted from the clip in every run; given: fitted once, as build-dataset does")
    add_overrides_option(parser, "recon3d.fitting.FitConfig", "expr_dims=0 n_expr=50")
    add_model_option(parser)
    args = parser.parse_args()
    one_core()

    import torch

    from recon3d.fitting import FitConfig, FlameFitter, LandmarkSequence, PinholeCamera
    from recon3d.flame import FlameLayer, load_fan68_embedding, load_flame_model, load_mediapipe_embedding
    from recon3d.synth.motion import place_in_front_of, project_landmarks, sample_motion

    model = load_flame_model(flame_model_path(args.flame_model))
    embedding = load_mediapipe_embedding(model)
    layer = FlameLayer(model, dtype=torch.float64)
    config = FitConfig.from_dict(parse_overrides(args.set))
    fitter = FlameFitter(model, embedding, config)
    camera = PinholeCamera.from_fov(1280, 720, config.fov_deg)
    motion = sample_motion(layer, embedding, args.frames, 29.97, seed=1)
    motion = place_in_front_of(layer, embedding, motion, camera, 250.0)
    points = project_landmarks(layer, embedding, motion, camera, load_fan68_embedding(model))  # with the face outline
    points += np.random.default_rng(0).normal(0.0, 1.0, points.shape)
    seq = LandmarkSequence(points, np.ones(args.frames, bool), 1280, 720, 29.97)

    shape = fitter.fit(seq).shape if args.identity == "given" else None  # also the warm-up
    totals, stages = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = fitter.fit(seq, shape)
        totals.append(time.perf_counter() - t0)
        stages.append(result.timings)
    ms = lambda s: 1000.0 * s / args.frames  # noqa: E731
    print(f"fit speed: {args.frames}-frame clip, identity {args.identity}, one core, median of {args.repeats} runs, "
          f"model {model_id(model.path)}")
    for stage in stages[0]:
        print(f"  {stage:9s} {ms(float(np.median([s[stage] for s in stages]))):6.2f} ms/frame")
    total = ms(float(np.median(totals)))
    print(f"  {'total':9s} {total:6.2f} ms/frame  ({1000.0 / total:.0f} frames/s)")
    print_json({"frames": args.frames, "ms_per_frame": round(total, 3), "model": model_id(model.path),
                "identity": args.identity})


if __name__ == "__main__":
    main()
