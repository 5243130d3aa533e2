"""Training step time with a pretrained speech encoder: fine-tuned (its convolutional feature
extractor frozen, as FaceFormer) against frozen with its features cached per clip, beside the
log-mel encoder; and the share of a step spent building the batch (data loading).

The encoder is wav2vec 2.0 base's architecture (12 layers, 768 wide, 95 M parameters) with random
weights, written with save_pretrained and loaded from that folder as a downloaded model would be
(speed does not depend on the weights). The animator is EmoFace with the default configuration
(batches of 8 windows of 60 frames) on a synthetic 3D dataset of the FLAME topology. Each mode
trains in a fresh process; the step time is the median over the steps after the first epoch
(the frozen mode's first epoch also fills the cache: its total is reported too).

    python benchmarks/speech_encoder_steps.py [--steps 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import flame_model_path, print_json

MODES = ("mel", "fine_tune", "frozen")


def prepare(folder: Path) -> None:
    import torch
    import transformers

    from recon3d.synth.dataset import write_synthetic_dataset

    torch.manual_seed(0)
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config()).save_pretrained(folder / "wav2vec2-base-random")
    write_synthetic_dataset(folder / "shards", flame_model_path(), n_actors=1, clips_per_actor=4, seconds=4.0,
                            test_actors=0, prefer_espeak=False, emotions=(1, 3, 4, 6), seed=0)


def measure(folder: Path, mode: str, steps: int, threads: int) -> dict:
    import torch

    from emoface_model.config import TrainConfig
    from emoface_model.data import ClipData, collate, epoch_batches
    from emoface_model.train import train
    from recon3d.shards import open_dataset

    torch.set_num_threads(threads)
    cfg = TrainConfig()
    cfg.best_on = "none"
    cfg.data.windows_per_clip = 16  # 8 steps an epoch: few epoch-end checkpoints among the timed steps
    if mode != "mel":
        cfg.model.audio_encoder, cfg.model.audio_encoder_mode = "wav2vec2", mode
        cfg.model.audio_encoder_path = str(folder / "wav2vec2-base-random")
    run = folder / f"run_{mode}"
    t0 = time.perf_counter()
    train(folder / "shards", run, cfg, progress=False, max_steps=steps)
    wall = time.perf_counter() - t0
    with open(run / "metrics.csv", newline="") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f) if r["split"] == "train"]
    ds = open_dataset(folder / "shards")
    data = ClipData(ds, ds.clip_ids(), ["01"])
    d = cfg.data
    per_epoch = len(epoch_batches(data, 0, cfg.seed, d.window_frames, d.batch_size, d.windows_per_clip))
    step_times = np.diff(seconds)[per_epoch:]
    t1 = time.perf_counter()
    n = 0
    for epoch in range(3):
        for items in epoch_batches(data, epoch, cfg.seed, d.window_frames, d.batch_size, d.windows_per_clip):
            collate([data.window(*item) for item in items])
            n += 1
    data_s = (time.perf_counter() - t1) / n
    step_s = float(np.median(step_times))
    return {"step_s": step_s, "first_epoch_s": seconds[per_epoch - 1], "steps": len(seconds), "wall_s": wall,
            "data_s": data_s, "data_share": data_s / step_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16, help="training steps per mode (8 per epoch here)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1], args.steps, args.threads)))
        return
    with tempfile.TemporaryDirectory(prefix="recon3d-speech-") as tmp:
        prepare(Path(tmp))
        results = {}
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--child", tmp, mode, "--steps", str(args.steps),
                                  "--threads", str(args.threads)], capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).parent).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
    print(f"training steps, EmoFace default config (8 windows x 60 frames), CPU, {args.threads} threads; "
          "encoder: wav2vec 2.0 base architecture, random weights")
    print(f"{'encoder':22s} {'step s':>8s} {'1st epoch s':>12s} {'data s/step':>12s} {'data share':>11s}")
    names = {"mel": "log-mel (default)", "fine_tune": "wav2vec2 fine_tune", "frozen": "wav2vec2 frozen+cache"}
    for mode, r in results.items():
        print(f"{names[mode]:22s} {r['step_s']:8.2f} {r['first_epoch_s']:12.1f} {r['data_s']:12.3f} "
              f"{100 * r['data_share']:10.1f}%")
    print_json({f"{mode}_{k}": round(v, 4) for mode, r in results.items() for k, v in r.items()
                if k in ("step_s", "first_epoch_s", "data_share")}
               | {"fine_tune_over_frozen": round(results["fine_tune"]["step_s"] / results["frozen"]["step_s"], 2)})


if __name__ == "__main__":
    main()
