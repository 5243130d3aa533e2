"""Long videos: memory and speed of `recon3d build-dataset` on one long talking-head video against
the same frames cut into 10-s clips, with the same workers (issue 39).

A real clip (RAVDESS by default), scaled to ``--width`` pixels wide (512: HDTF's size), is played
forward and back (one continuous shot, no cut at the joins) to each of ``--minutes``, and the
longest is also cut into 10-s clips. Each folder is built with ``--labels none`` (one identity per
video) as a user would, timed, with the peak resident memory of every process below the command
sampled while it runs (the largest is reported: a worker's) and the CPU time of all of them
(``busy``: CPU seconds over wall seconds times workers). ``--one-piece`` also builds the long
videos in one piece, as builds did before parts and windows (``landmarks.chunk_seconds: 0``,
``fitting.window_frames: 0``). ``--cut-minutes`` cuts only that many minutes into 10-s clips for
the per-frame baseline (a 10-s clip's cost per frame does not depend on how many there are), so
that an hour-long video need not be built twice.

    python benchmarks/long_video.py [--minutes 2 10] [--workers 2] [--width 512] [--one-piece]
                                    [--cut-minutes M] [--source CLIP] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from _common import REPO, add_model_option, flame_model_path, print_json
from build_scale import build

DEFAULT_SOURCE = REPO.parent / "shared" / "assets" / "ravdess" / "video" / "01-01-06-02-01-01-05.mp4"
SHORT_SECONDS = 10.0


def source_frames(path: Path, width: int) -> tuple[list[np.ndarray], np.ndarray, float]:
    """The clip's frames scaled to ``width`` (even sizes), its 16 kHz audio and frame rate."""
    import cv2

    from recon3d.io.video import iter_frames, load_audio, probe
    from recon3d.shards.schema import AUDIO_RATE

    frames = []
    for rgb, _ in iter_frames(path):
        h = int(round(rgb.shape[0] * width / rgb.shape[1])) // 2 * 2
        frames.append(cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA))
    return frames, load_audio(path, AUDIO_RATE), probe(path).fps


def ping_pong(n: int, length: int) -> np.ndarray:
    """Frame indices forward and back over ``n`` frames, ``length`` of them."""
    return np.resize(np.r_[np.arange(n), np.arange(n)[::-1]], length)


def write_clip(path: Path, frames: list[np.ndarray], audio: np.ndarray, fps: float, order: np.ndarray) -> None:
    """The frames in ``order`` with the audio following them (each frame's own samples)."""
    from recon3d.io.video import write_video
    from recon3d.shards.schema import AUDIO_RATE

    per_frame = AUDIO_RATE / fps
    samples = np.concatenate([audio[int(i * per_frame):int((i + 1) * per_frame)] for i in order])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, (frames[i] for i in order), fps, samples.astype(np.float32), AUDIO_RATE)


def figures(result: dict, workers: int) -> dict:
    frames = result["frames"]
    return {"frames": frames, "wall_s": round(result["wall"], 1), "frames_per_s": round(frames / result["wall"], 1),
            "ms_per_frame": round(1000 * result["wall"] / frames, 2), "peak_rss_mb": round(result["peak_mb"]),
            "busy": round(result["cpu"] / (result["wall"] * workers), 2),
            "stage_s": {k: round(v, 1) for k, v in result["stages"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 10.0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--one-piece", action="store_true", help="also build the long videos fitted in one piece")
    parser.add_argument("--cut-minutes", type=float, default=None,
                        help="minutes cut into 10-s clips for the baseline (default: the longest video's)")
    parser.add_argument("--work", type=Path, default=None)
    add_model_option(parser)
    args = parser.parse_args()
    model = flame_model_path(args.flame_model)
    work = args.work or Path(tempfile.mkdtemp(prefix="recon3d-long-video-"))
    frames, audio, fps = source_frames(args.source, args.width)
    minutes = sorted(args.minutes)
    longest = int(round((args.cut_minutes or minutes[-1]) * 60 * fps))
    rows = {}
    short = int(round(SHORT_SECONDS * fps))
    cut = work / "cut"
    if not cut.exists():
        order = ping_pong(len(frames), longest)
        for k, start in enumerate(range(0, longest, short)):
            write_clip(cut / f"part{k:03d}.mp4", frames, audio, fps, order[start:start + short])
    print(f"{SHORT_SECONDS:.0f}-s clips ({longest} frames): building with {args.workers} workers", flush=True)
    rows["10s_clips"] = figures(build(cut, work / "out_cut", model, args.workers, "local", 1), args.workers)
    one_piece = work / "one_piece.yaml"
    one_piece.write_text("landmarks:\n  chunk_seconds: 0\nfitting:\n  window_frames: 0\n")
    for m in minutes:
        folder = work / f"long_{m:g}min"
        if not folder.exists():
            write_clip(folder / f"talk_{m:g}min.mp4", frames, audio, fps, ping_pong(len(frames), int(round(m * 60 * fps))))
        print(f"one {m:g}-minute video: building with {args.workers} workers", flush=True)
        rows[f"{m:g}min"] = figures(build(folder, work / f"out_{m:g}min", model, args.workers, "local", 1), args.workers)
        if args.one_piece:
            rows[f"{m:g}min_one_piece"] = figures(build(folder, work / f"out_{m:g}min_one_piece", model, args.workers,
                                                        "local", 1, config=one_piece), args.workers)
    base = rows["10s_clips"]["ms_per_frame"]
    print(f"\n{'':22s} {'frames':>7s} {'wall s':>8s} {'frames/s':>9s} {'ms/frame':>9s} {'vs 10-s':>8s} "
          f"{'peak MB':>8s} {'busy':>5s}")
    for name, r in rows.items():
        print(f"{name:22s} {r['frames']:7d} {r['wall_s']:8.1f} {r['frames_per_s']:9.1f} {r['ms_per_frame']:9.2f} "
              f"{r['ms_per_frame'] / base:8.2f} {r['peak_rss_mb']:8d} {r['busy']:5.2f}")
        r["ratio_to_10s_clips"] = round(r["ms_per_frame"] / base, 3)
    print_json({"benchmark": "long_video", "workers": args.workers, "width": args.width, "source": args.source.name,
                "cut_minutes": args.cut_minutes or minutes[-1],
                "model": Path(model).name, "rows": rows,
                "goals": {"peak_rss_mb_per_worker": 1500, "ratio_to_10s_clips": 1.1}})


if __name__ == "__main__":
    main()
