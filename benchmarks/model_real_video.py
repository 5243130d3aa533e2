"""EmoFace and the baseline on real video: the ten takes of RAVDESS actor 05 in ../shared/assets
(video/ and extra/), built with build-dataset, split within the actor by take (statement,
repetition: the (2, 2) takes are held out), several seeds; and one held-out take rendered side by
side (fitted truth | EmoFace | baseline, with its audio) with `recon3d compare`.

Tiny: one speaker, seven training clips (one of them video-only, silent) and three test clips of
two emotions. It shows whether the models learn this speaker's real motion at all, not how they
rank on a benchmark.

    python benchmarks/model_real_video.py [--seeds 0 1 2] [--epochs 60] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from _common import REPO, add_model_option, config_dir, flame_model_path, model_id, print_json
from model_quality import METRICS, aggregate, table, train_and_evaluate

RAVDESS = REPO.parent / "shared" / "assets" / "ravdess"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recon3d-real-video"))
    parser.add_argument("--render", default="01-01-06-02-02-02-05", help="the held-out take to render")
    add_model_option(parser)
    args = parser.parse_args()
    model = flame_model_path(args.flame_model)
    work = config_dir(args.work / model_id(model) / "build")  # a changed default builds and trains anew
    videos = work / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for clip in sorted((RAVDESS / "video").glob("*.mp4")) + sorted((RAVDESS / "extra").rglob("*.mp4")):
        if not (videos / clip.name).exists():
            (videos / clip.name).symlink_to(clip.resolve())
    dataset = work / "built"
    if not (dataset / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "recon3d", "build-dataset", str(videos), "--flame-model", str(model),
                        "--out", str(dataset), "--no-progress"], check=True)
    manifest = json.loads((dataset / "manifest.json").read_text())
    splits = {s: [c["id"] for c in manifest["clips"] if c["split"] == s] for s in ("train", "val", "test")}
    runs = {name: [train_and_evaluate(dataset, work / f"{name}_s{s}", name, s, args.epochs, {}, "test")
                   for s in args.seeds] for name in ("emoface", "faceformer")}
    rows = [(name, aggregate(r), f"{r[0]['steps']} steps, {np.mean([x['train_seconds'] for x in r]):.0f} s")
            for name, r in runs.items()]
    template = {m: runs["emoface"][0]["template_only"][m] for m in METRICS}
    rows.append(("template only", template, ""))
    print(f"real video: actor 05, split by {manifest['split_method']}: train {len(splits['train'])}, "
          f"test {len(splits['test'])} ({', '.join(splits['test'])}); {len(args.seeds)} seeds, {args.epochs} epochs")
    table(rows)
    video = work / f"compare_{args.render}.mp4"
    command = [sys.executable, "-m", "recon3d", "compare", str(dataset), args.render,
               str(work / f"emoface_s{args.seeds[0]}"), str(work / f"faceformer_s{args.seeds[0]}"),
               "--names", "EmoFace,FaceFormer", "--out", str(video)]
    subprocess.run(command, check=True, capture_output=True)
    print(f"side by side: {video}")
    print_json({"rows": [{"model": n, **r} for n, r, _ in rows[:2]] + [{"model": "template", **template}],
                "seeds": len(args.seeds), "epochs": args.epochs, "train_clips": len(splits["train"]),
                "test_clips": splits["test"], "split": manifest["split_method"], "video": str(video)})


if __name__ == "__main__":
    main()
