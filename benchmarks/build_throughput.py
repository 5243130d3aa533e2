"""build-dataset throughput on a RAVDESS clip, by stage, in one process.

Runs the build's own stage functions on one clip (warm: models loaded once, then timed):
decode alone, landmarks alone, decode + landmarks together (with every landmark source the build
runs: MediaPipe, and dlib's 68 points where the build fuses them), then the full clip (decode,
landmarks, the mouth flow, audio, identity fitted on this clip, fitting, QC, writing, shard assembly). Peak memory
is measured in a fresh child process building a 10-s clip (three RAVDESS clips joined).

    python benchmarks/build_throughput.py [--video PATH] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, flame_model_path, one_core, print_json

RAVDESS = REPO.parent / "shared" / "assets" / "ravdess" / "video"


def build_one(video: Path, out: Path, model: Path):
    """Every stage of one clip, as build-dataset runs them; returns (stage seconds, frames, shard path)."""
    from recon3d.pipeline.build import prepare
    from recon3d.pipeline.config import BuildConfig
    from recon3d.pipeline.schedule import run_schedule
    from recon3d.pipeline.stages import sum_timings
    from recon3d.pipeline.workspace import Workspace

    folder = out.parent / f"{out.name}_videos"  # this clip alone: identity fitted on it, as for a one-clip actor
    folder.mkdir(parents=True, exist_ok=True)
    (folder / video.name).unlink(missing_ok=True)
    (folder / video.name).symlink_to(video.resolve())
    ctx, plan, _ = prepare(folder, out, str(model), BuildConfig(), force=True)
    clips = plan.clips
    started = time.perf_counter()
    timings = sum_timings(run_schedule(ctx, plan, [clips[0].shard], strict_qc=False, workers=1))
    timings["wall"] = time.perf_counter() - started
    return timings, Workspace(out).shard(clips[0].shard)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry over the
    parent's memory across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(video: Path, model: Path) -> None:
    """Build ``video`` in this fresh process and print its peak RSS in MB."""
    one_core()
    with tempfile.TemporaryDirectory() as tmp:
        build_one(video, Path(tmp) / "out", model)
    print(peak_rss_mb())


def ten_second_clip(folder: Path) -> Path:
    from recon3d.io.video import iter_frames, probe, read_audio, write_video
    from recon3d.shards.schema import AUDIO_RATE, audio_samples

    sources = sorted(RAVDESS.glob("01-*.mp4"))[:3]
    frames, audio = [], []
    for src in sources:
        clip = [rgb for rgb, _ in iter_frames(src)]
        frames += clip
        audio.append(read_audio(src, 0.0, audio_samples(len(clip), probe(src).fps), AUDIO_RATE)[0])
    path = folder / "01-01-01-01-01-01-05.mp4"
    write_video(path, frames, 29.97, np.concatenate(audio), AUDIO_RATE)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=RAVDESS / "01-01-04-01-01-01-05.mp4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = flame_model_path()
    if args.child:
        child(args.child, model)
        return
    one_core()
    from recon3d.io.video import iter_frames
    from recon3d.landmarks import create_detector, track_video
    from recon3d.pipeline.config import BuildConfig, resolve_landmark_sources

    video = args.video
    frames = [rgb for rgb, _ in iter_frames(video)]
    n = len(frames)
    config = resolve_landmark_sources(BuildConfig())[0]  # the sources the build runs here
    with_dlib = config.landmarks.dlib == "on"
    detector = create_detector(max_faces=config.landmarks.max_faces, dlib=with_dlib)
    track_video(video, detector)  # warm-up

    def best(func) -> float:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            func()
            times.append(time.perf_counter() - t0)
        return min(times)

    decode_s = best(lambda: sum(1 for _ in iter_frames(video)))

    def landmarks_only():
        detector.reset()
        for rgb in frames:
            detector.detect(rgb)

    landmarks_s = best(landmarks_only)
    track_s = best(lambda: track_video(video, detector))
    detector.close()

    with tempfile.TemporaryDirectory() as tmp:
        build_one(video, Path(tmp) / "warm", model)  # loads the models once, as a worker does
        runs = [build_one(video, Path(tmp) / f"run{i}", model) for i in range(args.repeats)]
        timings, shard = min(runs, key=lambda r: r[0]["wall"])
        bytes_per_frame = shard.stat().st_size / n
    stages = {k: timings.get(k, 0.0) for k in ("decode", "landmarks", "mouth_flow", "identity", "fit", "write", "assemble")}
    end_to_end = n / timings["wall"]

    with tempfile.TemporaryDirectory() as tmp:
        long_clip = ten_second_clip(Path(tmp))
        out = subprocess.run([sys.executable, __file__, "--child", str(long_clip)], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).parent).stdout
        peak_mb = float(out.strip().splitlines()[-1])

    sources = "mediapipe+dlib" if with_dlib else "mediapipe"
    print(f"build throughput on {video.name}: {n} frames at {frames[0].shape[1]}x{frames[0].shape[0]}, one process, "
          f"best of {args.repeats}; landmark sources {sources} (as the build)")
    print(f"  decode alone            {n / decode_s:7.1f} frames/s")
    print(f"  landmarks alone         {n / landmarks_s:7.1f} frames/s")
    print(f"  decode + landmarks      {n / track_s:7.1f} frames/s")
    print("  end to end, by stage:")
    for k, v in stages.items():
        print(f"    {k:10s} {1000 * v / n:6.2f} ms/frame")
    print(f"  end to end              {end_to_end:7.1f} frames/s "
          f"({100 * end_to_end / (n / track_s):.0f} % of decode + landmarks)")
    print(f"  on disk                 {bytes_per_frame / 1024:7.1f} KiB/frame")
    print(f"  peak memory, 10-s clip  {peak_mb:7.0f} MB")
    print_json({
        "landmark_sources": sources, "end_to_end_fps": round(end_to_end, 2), "decode_landmarks_fps": round(n / track_s, 2),
        "decode_fps": round(n / decode_s, 2), "landmarks_fps": round(n / landmarks_s, 2),
        "fit_fps": round(n / stages["fit"], 2), "mouth_flow_ms_per_frame": round(1000 * stages["mouth_flow"] / n, 2),
        "write_fps": round(n / (stages["write"] + stages["assemble"]), 2),
        "bytes_per_frame": round(bytes_per_frame, 1), "peak_rss_mb": round(peak_mb, 1),
    })


if __name__ == "__main__":
    main()
