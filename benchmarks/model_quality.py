"""EmoFace against the FaceFormer baseline: same data, same budget, held-out speakers.

Trains both models with the same configuration and number of epochs on the same shards and
reports LVE / EVE / FDD / MVE of each on the held-out split, next to the template-only
(no motion) baseline. By default the shards are a small synthetic dataset written through the
dataset writer (recon3d.synth.dataset: espeak-ng speech, mouth motion following the audio, one
expression per emotion and intensity; the last actor is held out); pass --shards for any built
dataset with a test split.

    python benchmarks/model_quality.py [--epochs 30] [--actors 4] [--clips 8] [--shards DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import flame_model_path, print_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, default=None, help="a built dataset (default: a synthetic one)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--clips", type=int, default=8, help="clips per actor (synthetic data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()

    import torch

    from emoface_model.config import TrainConfig
    from emoface_model.infer import evaluate_run
    from emoface_model.run import RunDir, load_model, load_regions
    from emoface_model.train import train
    from recon3d.synth.dataset import write_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if shards is None:
            shards = Path(tmp) / "shards"
            write_synthetic_dataset(shards, flame_model_path(), n_actors=args.actors, clips_per_actor=args.clips,
                                    seed=args.seed, test_actors=1)
        results = {}
        for name in ("emoface", "faceformer"):
            cfg = TrainConfig()
            cfg.model.model = name
            cfg.optim.epochs = args.epochs
            cfg.seed = args.seed
            run = Path(tmp) / name
            torch.manual_seed(args.seed)
            t0 = time.perf_counter()
            summary = train(shards, run, cfg, progress=False)
            seconds = time.perf_counter() - t0
            model, state = load_model(run)
            result = evaluate_run(model, state["actors"], shards, args.split, load_regions(RunDir(run)), progress=False)
            results[name] = {**result, "train_seconds": seconds, "steps": summary["steps"]}
    e, f = results["emoface"], results["faceformer"]
    print(f"model quality: {args.epochs} epochs each, split '{args.split}' "
          f"({e['overall']['sequences']} clips, {e['overall']['frames']} frames); LVE/EVE/FDD in m^2, MVE in m")
    print(f"{'':14s} {'LVE':>10s} {'EVE':>10s} {'FDD':>10s} {'MVE':>10s} {'train s':>8s}")
    for name, r in (("emoface", e["overall"]), ("faceformer", f["overall"]), ("template only", e["template_only"])):
        seconds = results.get(name, {}).get("train_seconds", float("nan"))
        print(f"{name:14s} {r['lve']:10.3e} {r['eve']:10.3e} {r['fdd']:10.3e} {r['mve']:10.3e} {seconds:8.0f}")
    print("per emotion, LVE (emoface / faceformer): " + ", ".join(
        f"{k} {e['per_emotion'][k]['lve']:.2e}/{f['per_emotion'][k]['lve']:.2e}" for k in e["per_emotion"]))
    row = lambda r: {k: r[k] for k in ("lve", "eve", "fdd", "mve")}  # noqa: E731
    print_json({"emoface": row(e["overall"]), "faceformer": row(f["overall"]), "template_only": row(e["template_only"]),
                "epochs": args.epochs, "split": args.split, "clips": e["overall"]["sequences"],
                "per_emotion": {k: {"emoface": row(e["per_emotion"][k]), "faceformer": row(f["per_emotion"][k])}
                                for k in e["per_emotion"]}})


if __name__ == "__main__":
    main()
