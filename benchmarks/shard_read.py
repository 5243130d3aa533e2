"""What the shards' checksums cost training's data loading: the same random windows read as
training reads them (`emoface_model.data.ClipData.window`: vertices, the frame before, audio),
from a built dataset's shards as written (every dataset with HDF5's Fletcher-32 checksum) and from
a copy of them without the checksum filter, alternating A B A B in one process; then training
steps (`recon3d train --max-steps`, the default configuration) on each, alternating, the seconds
per step from metrics.csv (the first two steps left out).

    python benchmarks/shard_read.py [--dataset OUT_DIR] [--rounds 9] [--windows 200] [--window-frames 60]
                                    [--train-steps 30] [--train-runs 3]

Without --dataset the README's clips are built first (stand-in model, about a minute).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, flame_model_path, print_json


def without_checksums(src: Path, dst: Path) -> None:
    """A copy of a dataset whose shards hold the same datasets (chunks, compression, attributes)
    with no Fletcher-32 filter."""
    import h5py

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("work", "shards"))
    (dst / "shards").mkdir()
    for shard in sorted((src / "shards").glob("*.h5")):
        with h5py.File(shard, "r") as a, h5py.File(dst / "shards" / shard.name, "w") as b:
            def copy(name: str, obj) -> None:
                if isinstance(obj, h5py.Group):
                    b.require_group(name).attrs.update(obj.attrs)
                    return
                out = b.create_dataset(name, data=obj[()], chunks=obj.chunks, compression=obj.compression,
                                       shuffle=obj.shuffle, fletcher32=False)
                out.attrs.update(obj.attrs)

            b.attrs.update(a.attrs)
            a.visititems(copy)


def read_windows(root: Path, plan: list[tuple[str, int]], length: int) -> float:
    """Seconds to read ``plan``'s windows as training does, from a freshly opened dataset."""
    from emoface_model.data import ClipData
    from recon3d.shards import open_dataset

    ds = open_dataset(root)
    data = ClipData(ds, sorted({c for c, _ in plan}), sorted({str(e["actor"]) for e in ds.clips()}))
    entries = {e["id"]: e for e in data.entries}
    t0 = time.perf_counter()
    for clip_id, start in plan:
        data.window(entries[clip_id], start, length)
    seconds = time.perf_counter() - t0
    ds.close()
    return seconds


def seconds_per_step(root: Path, run: Path, steps: int) -> float:
    """Training seconds per step on ``root`` (steps 3..N of a fresh run, from its metrics.csv)."""
    import csv

    shutil.rmtree(run, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "recon3d", "train", str(root), "--out", str(run), "--max-steps", str(steps),
                    "--no-progress"], check=True, capture_output=True)
    with open(run / "metrics.csv", newline="") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f) if r["split"] == "train"]
    return (seconds[-1] - seconds[1]) / (len(seconds) - 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None, help="a built dataset (default: build the README clips)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--windows", type=int, default=200, help="random windows per round")
    parser.add_argument("--window-frames", type=int, default=60)
    parser.add_argument("--train-steps", type=int, default=30, help="steps per training run (0: no training runs)")
    parser.add_argument("--train-runs", type=int, default=3, help="training runs on each copy, alternating")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recon3d-shard-read-"))
    dataset = args.dataset
    if dataset is None:
        dataset = work / "built"
        subprocess.run([sys.executable, "-m", "recon3d", "build-dataset", str(REPO.parent / "shared" / "assets" /
                        "ravdess" / "video"), "--flame-model", str(flame_model_path()), "--out", str(dataset),
                        "--no-progress"], check=True, capture_output=True)
    plain = work / "plain"
    without_checksums(dataset, plain)

    from recon3d.shards import open_dataset

    clips = [(e["id"], int(e["frames"])) for e in open_dataset(dataset).clips()]
    rng = np.random.default_rng(0)
    times = {"checksummed": [], "plain": []}
    for _ in range(args.rounds):
        picks = [clips[i] for i in rng.integers(0, len(clips), args.windows)]
        plan = [(c, int(rng.integers(0, max(1, n - args.window_frames)))) for c, n in picks]
        for key, root in (("checksummed", dataset), ("plain", plain)):
            times[key].append(read_windows(root, plan, args.window_frames))
    ratios = [a / b for a, b in zip(times["checksummed"], times["plain"])]
    per = {k: 1000 * statistics.median(v) / args.windows for k, v in times.items()}
    print(f"shard read: {args.rounds} rounds of {args.windows} random {args.window_frames}-frame windows "
          f"(vertices, the frame before, audio) from {len(clips)} clips")
    for key in times:
        print(f"  {key:12s} {per[key]:7.3f} ms/window (median; rounds {min(times[key]):.3f}-{max(times[key]):.3f} s)")
    print(f"  checksummed / plain, round by round: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
    steps = {"checksummed": [], "plain": []}
    for _ in range(args.train_runs if args.train_steps > 2 else 0):
        for key, root in (("checksummed", dataset), ("plain", plain)):
            steps[key].append(seconds_per_step(root, work / f"run_{key}", args.train_steps))
    step_ratios = [a / b for a, b in zip(steps["checksummed"], steps["plain"])]
    if step_ratios:
        for key in steps:
            print(f"  training, {key:12s} {', '.join(f'{s:.3f}' for s in steps[key])} s per step")
        print(f"  training checksummed / plain, run by run: {', '.join(f'{r:.3f}' for r in step_ratios)} "
              f"(median {statistics.median(step_ratios):.3f})")
    print_json({"windows": args.windows, "rounds": args.rounds, "ms_per_window_checksummed": round(per["checksummed"], 4),
                "ms_per_window_plain": round(per["plain"], 4), "ratio": round(statistics.median(ratios), 4),
                "ratio_min": round(min(ratios), 4), "ratio_max": round(max(ratios), 4),
                "train_s_per_step_checksummed": [round(s, 4) for s in steps["checksummed"]],
                "train_s_per_step_plain": [round(s, 4) for s in steps["plain"]],
                "train_step_ratio": round(statistics.median(step_ratios), 4) if step_ratios else None})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
