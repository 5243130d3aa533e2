"""How much of the emotion the truth holds the rebuilt 3D data keeps: the report's emotion classifier
(recon3d.report.emotion) on `recon3d synth` clips built with build-dataset, beside the same
classifier on the truth's meshes, held out by actor; and on the real Actor 05 takes in
../shared/assets/ravdess (video/ and extra/), held out by take.

Synthetic set: ``--actors`` actors (seeds 1..N; every synthetic actor wears the same textured head,
so "held out by actor" holds out that seed's motion, not a new face), ``--clips`` clips each (two
neutral, then one clip per other emotion), RAVDESS's face size.

    python benchmarks/emotion_fidelity.py [--actors 4] [--clips 9] [--seconds 2.5] [--work DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from _common import REPO, config_dir, flame_model_path, print_json

TEXTURE = REPO.parent / "shared" / "assets" / "flame" / "texture_mesh.obj"
RAVDESS = REPO.parent / "shared" / "assets" / "ravdess"


def build(videos: Path, prefix: Path, model: Path) -> Path:
    """``videos`` built with the default configuration into :func:`config_dir` of ``prefix`` (reused by --work)."""
    out = config_dir(prefix)
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "recon3d", "build-dataset", str(videos), "--flame-model", str(model),
                        "--out", str(out), "--no-progress", "--force"], check=False, capture_output=True, text=True)
    if not (out / "manifest.json").exists():
        raise SystemExit(f"the build of {videos} did not finish; see {out}/work")
    return out


def truth_features(videos: Path, layer, masks):
    """The classifier's features on the truth's canonical meshes (each clip minus its true template)."""
    import torch

    from recon3d.report.emotion import motion_features, region_vertices
    from recon3d.synth.motion import canonical_vertices, identity_template
    from recon3d.synth.video import load_truth

    vids = region_vertices(masks)
    feats, emotions, actors, takes = [], [], [], []
    for truth in sorted(videos.rglob("*.truth.npz")):
        motion, _, data = load_truth(truth)
        vertices = canonical_vertices(layer, motion)[::2][:, vids]
        with torch.no_grad():
            template = identity_template(layer, motion.shape)[vids]
        feats.append(motion_features(vertices - template[None]))
        parts = truth.name.split(".")[0].split("-")
        emotions.append(int(parts[2]))
        takes.append((int(parts[4]), int(parts[5])))
        actors.append(parts[6])
    return np.stack(feats), emotions, actors, takes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--clips", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recon3d-emotion-fidelity"))
    args = parser.parse_args()

    import torch

    from recon3d.flame import FlameLayer, load_flame_model
    from recon3d.flame.masks import find_masks, load_flame_masks
    from recon3d.report.emotion import dataset_features, evaluate
    from recon3d.shards import open_dataset
    from recon3d.synth.video import complete_renders, synthesize

    model_path = flame_model_path()
    model = load_flame_model(model_path)
    layer = FlameLayer(model, dtype=torch.float64)
    masks = load_flame_masks(find_masks(model_path=model.path), model.n_vertices)
    videos = args.work / "synth"
    for seed in range(1, args.actors + 1):
        folder = videos / f"Actor_{seed:02d}"
        if len(complete_renders(folder)) < args.clips:
            synthesize(folder, model_path, TEXTURE, args.clips, args.seconds, seed, 250.0, actor=seed, progress=False)
    fitted = evaluate(*dataset_features(open_dataset(build(videos, args.work / "synth_built", model_path)), masks)[:4])
    truth = evaluate(*truth_features(videos, layer, masks))

    real_videos = args.work / "actor05"
    real_videos.mkdir(parents=True, exist_ok=True)
    for clip in sorted((RAVDESS / "video").glob("*.mp4")) + sorted((RAVDESS / "extra").rglob("*.mp4")):
        if not (real_videos / clip.name).exists():
            (real_videos / clip.name).symlink_to(clip.resolve())
    real = evaluate(*dataset_features(open_dataset(build(real_videos, args.work / "actor05_built", model_path)),
                                      masks)[:4])

    print(f"emotion fidelity: {args.actors} synthetic actors x {args.clips} clips, model {model.path.name}")
    for name, r in (("synthetic, fitted data", fitted), ("synthetic, truth meshes", truth), ("real Actor 05", real)):
        print(f"  {name:26s} accuracy {100 * r.accuracy:5.1f} %  chance {100 * r.chance:4.1f} %  held out by "
              f"{r.evaluation} ({r.clips} clips, {len(r.emotions)} emotions)")
        print("    confusion (rows true: " + ", ".join(r.emotions) + "):\n" +
              "\n".join("      " + " ".join(f"{v:3d}" for v in row) for row in r.confusion))
    print_json({"fitted_accuracy": round(fitted.accuracy, 4), "truth_accuracy": round(truth.accuracy, 4),
                "chance": round(fitted.chance, 4), "fitted_eval": fitted.evaluation, "clips": fitted.clips,
                "real_actor05_accuracy": round(real.accuracy, 4), "real_actor05_chance": round(real.chance, 4),
                "real_actor05_eval": real.evaluation, "real_actor05_clips": real.clips,
                "model": model.path.name})


if __name__ == "__main__":
    main()
