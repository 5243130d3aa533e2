"""Build rate at scale: a RAVDESS-shaped tree of 24 actors built with every core, beside the
machine's limit (decode + every landmark source alone on every core at once) measured in the same run.

The tree: the real audio-visual clips in ../shared/assets/ravdess (``video/`` and ``extra/``, all
of actor 05), hard-linked under RAVDESS names for actors 01-24 (``--clips-per-actor`` each, the
neutral take first so that every actor's identity is fitted from it, as in a real build). The
same run also builds that tree **as RAVDESS is distributed**: in the archives' layout
(``Video_Speech_Actor_XX/Actor_XX/``), each audio-video file beside its video-only twin (``02-...``,
a hard link here) and the audio-only archive's ``.wav`` files beside them; the build skips twins
and audio-only files by name, so the distributed tree should cost the audio-video tree's wall
time (``--pairs`` alternating builds of each; the ratio's goal: at most 1.10). The build is the
``recon3d build-dataset`` command (``--workers`` = the cores; ``--executor slurm``:
one array task per shard on the cluster, ``--array-parallelism`` at once; ``--build-code DIR``:
another checkout's, to compare versions). The limit runs ``--workers`` processes that only decode
and track landmarks on the same clips (no fitting, no writing), before and after the build
(averaged: the machine's speed drifts), with the build's landmark sources (``--limit-sources``:
MediaPipe, with dlib's 68 points where the build fuses them) and MediaPipe setting
(``--limit-max-faces``: the build default, 1; give an older checkout's build its own, and further
values to measure them beside it). Reports the wall rate, the limit, their ratio, time per
stage summed over workers, idle core time, peak memory per worker and the projection to RAVDESS's
270,000 audio-video frames (also with the idle start-up and tail counted once), for speech and
song and for speech only, from the audio-video tree and from the distributed one.

    python benchmarks/build_scale.py [--actors 24] [--clips-per-actor 9] [--workers N] [--pairs 2]
                                     [--executor local|slurm] [--array-parallelism 2] [--work DIR]
                                     [--build-code OLD_CHECKOUT] [--limit-max-faces 1 [2]]
                                     [--limit-sources mediapipe|mediapipe+dlib]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _common import REPO, flame_model_path, print_json
from recon3d.pipeline.config import BuildConfig, resolve_landmark_sources

RAVDESS = REPO.parent / "shared" / "assets" / "ravdess"
RAVDESS_AV_FRAMES = 270_000  # the audio-visual set, speech and song (2,452 clips)
RAVDESS_AV_CLIPS, RAVDESS_SPEECH_CLIPS = 2452, 1440  # audio-video files: all, and speech only
#: Speech only, at the set's mean clip length (the per-file lengths of the song takes are not here).
RAVDESS_SPEECH_FRAMES = round(RAVDESS_AV_FRAMES * RAVDESS_SPEECH_CLIPS / RAVDESS_AV_CLIPS)
PROJECTION_GOAL_MIN = 20.0  # the whole RAVDESS as distributed, speech and song (issue 30)


def source_clips() -> list[Path]:
    """The real audio-visual clips of actor 05, the neutral one first."""
    clips = sorted(p for p in (RAVDESS / "video").glob("01-*.mp4")) + sorted((RAVDESS / "extra").rglob("01-*.mp4"))
    if not clips:
        raise SystemExit(f"no RAVDESS clips under {RAVDESS}")
    return sorted(clips, key=lambda p: (p.stem.split("-")[2] != "01", p.stem))


def _link(src: Path, dst: Path) -> None:
    """A hard link (a copy across file systems)."""
    if not dst.exists():
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def layout_tree(root: Path, actors: int, per_actor: int, distributed: bool = False) -> list[Path]:
    """``root/Actor_XX/<name with actor XX>.mp4`` hard links; ``distributed``: as RAVDESS's archives
    unpack, ``root/Video_Speech_Actor_XX/Actor_XX/`` with every file's video-only twin (``02-...``)
    and ``root/Audio_Speech_Actors_01-24/Actor_XX/03-....wav``. Returns the audio-video files."""
    sources = source_clips()[:per_actor]
    out = []
    for actor in range(1, actors + 1):
        name = f"Actor_{actor:02d}"
        folder = root / f"Video_Speech_{name}" / name if distributed else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for src in sources:
            stem = f"{src.stem[:-2]}{actor:02d}"
            _link(src, folder / f"{stem}.mp4")
            out.append(folder / f"{stem}.mp4")
            if distributed:
                _link(src, folder / f"02{stem[2:]}.mp4")
                audio = root / "Audio_Speech_Actors_01-24" / name
                audio.mkdir(parents=True, exist_ok=True)
                _write_wav(audio / f"03{stem[2:]}.wav")
    return out


def _write_wav(path: Path, seconds: float = 3.0, rate: int = 48000) -> None:
    """A silent 16-bit mono wav the size of a RAVDESS audio-only file (never decoded by the build)."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(2 * int(rate * seconds)))


def _limit_worker(videos: list[str], max_faces: int, dlib: bool, start: mp.Barrier, result: mp.Queue) -> None:
    import torch

    from recon3d.landmarks import create_detector, track_video

    torch.set_num_threads(1)
    quiet = os.open(os.devnull, os.O_WRONLY)  # MediaPipe's native start-up lines
    os.dup2(quiet, 2)
    detector = create_detector(max_faces=max_faces, dlib=dlib)
    track_video(Path(videos[0]), detector, threads=1)  # warm-up: models loaded before the clock starts
    start.wait()
    t0 = time.perf_counter()
    # One decoding thread per process, as a build whose workers fill the cores decodes (with
    # FFmpeg's default of one thread per core the processes only contend: slower here).
    frames = sum(len(track_video(Path(v), detector, threads=1).valid) for v in videos)
    result.put((frames, time.perf_counter() - t0))


def machine_limit(videos: list[Path], workers: int, max_faces: int, dlib: bool) -> tuple[int, float]:
    """(frames, seconds) of decode + landmarks alone in ``workers`` processes at once, MediaPipe
    tracking up to ``max_faces`` faces (and, with ``dlib``, dlib's 68 points: every source the
    build runs)."""
    ctx = mp.get_context("spawn")
    start, result = ctx.Barrier(workers + 1), ctx.Queue()
    parts = [[str(v) for v in videos[i::workers]] for i in range(workers)]
    procs = [ctx.Process(target=_limit_worker, args=(p, max_faces, dlib, start, result)) for p in parts]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    outs = [result.get() for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return sum(f for f, _ in outs), wall


class TreeMonitor:
    """Peak resident memory and CPU time of each process below this one, sampled while running."""

    def __init__(self, period: float = 0.2):
        import psutil

        self.me = psutil.Process()
        self.period, self.peak, self.cpu = period, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for p in self.me.children(recursive=True):
                try:
                    rss, cpu = p.memory_info().rss, p.cpu_times()
                except Exception:  # noqa: BLE001 - a process that just ended
                    continue
                self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)
                self.cpu[p.pid] = cpu.user + cpu.system

    def __enter__(self) -> "TreeMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


STAGES = ("decode", "landmarks", "identity", "fit", "write", "assemble")


def stage_table(stderr: str) -> dict:
    """Seconds per stage from build-dataset's summary table (``stage seconds frames/s``)."""
    out = {}
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in STAGES:
            out[parts[0]] = float(parts[1])
    return out


def slurm_task_results(out: Path) -> list[dict]:
    """What each array task of the build returned (its stage timings, CPU seconds, peak memory)."""
    import json

    import submitit

    logs = out / "work" / "slurm" / "logs"
    results = []
    for record in json.loads((out / "work" / "slurm" / "jobs.json").read_text()):
        for job_id in record.get("tasks", {}).values():
            try:
                results.append(submitit.SlurmJob(folder=logs, job_id=job_id).result())
            except Exception:  # noqa: BLE001 - a task that did not complete reports nothing
                pass
    return results


def build(tree: Path, out: Path, model: Path, workers: int, executor: str, parallelism: int,
          code: Path | None = None, force: bool = True, config: Path | None = None) -> dict:
    """``recon3d build-dataset`` as a user runs it, timed, with the memory and CPU of every process
    below it; ``code``: run another checkout's recon3d instead of the installed one; ``config``: a
    ``--config`` file."""
    import json
    import subprocess
    import sys

    args = [sys.executable, "-m", "recon3d", "build-dataset", str(tree.resolve()), "--flame-model", str(model.resolve()),
            "--out", str(out.resolve()), "--no-progress", "--workers", str(workers)] + (["--force"] if force else [])
    if config:
        args += ["--config", str(config.resolve())]
    if executor == "slurm":
        args += ["--executor", "slurm", "--cpus-per-task", "1", "--mem-gb", "3", "--time", "60",
                 "--array-parallelism", str(parallelism)]
    # ``python -m`` puts the working directory first on sys.path: run from the other checkout, so
    # that its recon3d is imported and not the one of the repository the benchmark runs in.
    env = dict(os.environ, PYTHONPATH=str(code.resolve())) if code else None
    with TreeMonitor() as monitor:
        t0 = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=code.resolve() if code else None)
        wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"build failed:\n{proc.stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    stages, cpu, peak_mb = stage_table(proc.stderr), sum(monitor.cpu.values()), max(monitor.peak.values(), default=0) / 2 ** 20
    if executor == "slurm":  # tasks run under slurmd: they report their own figures
        from recon3d.pipeline.stages import sum_timings

        tasks = sum_timings(slurm_task_results(out))
        stages = {k: tasks[k] for k in STAGES if k in tasks}
        cpu, peak_mb = cpu + tasks.get("cpu_s", 0.0), max(peak_mb, tasks.get("peak_rss_mb", 0.0))
    return {"wall": wall, "stages": stages, "manifest": manifest, "cpu": cpu, "peak_mb": peak_mb,
            "frames": sum(c["frames"] for c in manifest["clips"])}


def distributed_figures(runs: dict[str, list[dict]], frames: int) -> dict:
    """The distributed tree's builds against the audio-video tree's, pair by pair (they build the
    same clips: checked)."""
    for r in runs["distributed"]:
        if r["frames"] != frames:
            raise SystemExit(f"the distributed tree built {r['frames']} frames, the audio-video tree {frames}")
    walls, av_walls = [r["wall"] for r in runs["distributed"]], [r["wall"] for r in runs["av"]]
    ratios = [d / a for d, a in zip(walls, av_walls)]
    return {"walls": walls, "av_walls": av_walls, "ratios": ratios, "wall": sum(walls) / len(walls),
            "ratio": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, default=24)
    parser.add_argument("--clips-per-actor", type=int, default=9, help="up to 9 (the shared audio-visual takes)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--executor", choices=["local", "slurm"], default="local")
    parser.add_argument("--array-parallelism", type=int, default=2, help="[slurm] array tasks at once")
    parser.add_argument("--work", type=Path, default=None, help="keep the tree and the build here")
    parser.add_argument("--build-code", type=Path, default=None,
                        help="build with the recon3d of this checkout (e.g. an older commit), to compare")
    parser.add_argument("--limit-max-faces", type=int, nargs="+", default=[BuildConfig().landmarks.max_faces],
                        help="MediaPipe's max_faces in the limit's runs; the first is the build's own setting "
                             "(default: the build default, %(default)s; an older checkout's build: its own), "
                             "others are measured too and reported beside it (limit_fps_max_faces_N)")
    parser.add_argument("--limit-sources", choices=["mediapipe", "mediapipe+dlib"], default=None,
                        help="landmark sources in the limit's runs (default: those the build runs here, "
                             "landmarks.dlib resolved on this machine)")
    parser.add_argument("--pairs", type=int, default=2,
                        help="builds of the audio-video tree and of the distributed tree, alternating (A D A D ...)")
    parser.add_argument("--compare-code", type=Path, default=None,
                        help="also build the audio-video tree with this checkout's recon3d in every pair (A D C ...), "
                             "and print A/C pair by pair: what a change between the two costs")
    args = parser.parse_args()
    model = flame_model_path()
    work = args.work or Path(tempfile.mkdtemp(prefix="recon3d-scale-"))
    tree, distributed_tree = work / "tree", work / "distributed"
    videos = layout_tree(tree, args.actors, args.clips_per_actor)
    layout_tree(distributed_tree, args.actors, args.clips_per_actor, distributed=True)
    cores = args.workers if args.executor == "local" else args.array_parallelism
    default_sources = "mediapipe+dlib" if resolve_landmark_sources(BuildConfig())[0].landmarks.dlib == "on" else "mediapipe"
    limit_sources = args.limit_sources or default_sources
    with_dlib = limit_sources == "mediapipe+dlib"

    # The limit before and after the builds, averaged: this machine's speed drifts by up to 20 %
    # within minutes, and a single measurement on one side of the build made the ratio swing.
    before = {n: machine_limit(videos, cores, n, with_dlib) for n in args.limit_max_faces}
    runs: dict[str, list[dict]] = {"av": [], "distributed": [], "compare": []}
    series = [("av", tree, args.build_code), ("distributed", distributed_tree, args.build_code)]
    if args.compare_code:
        series.append(("compare", tree, args.compare_code))
    for _ in range(max(1, args.pairs)):
        for key, source, code in series:
            runs[key].append(build(source, work / f"out_{key}", model, args.workers, args.executor,
                                   args.array_parallelism, code))
    # A rerun over the finished audio-video build: planning and the source check over unchanged videos.
    rerun = build(tree, work / "out_av", model, args.workers, args.executor, args.array_parallelism, args.build_code,
                  force=False)
    result = runs["av"][0]
    after = {n: machine_limit(videos, cores, n, with_dlib) for n in args.limit_max_faces}
    # What dlib's points add: the same limit with MediaPipe alone, right after (per-frame cost on one core).
    mediapipe_alone = machine_limit(videos, cores, args.limit_max_faces[0], False) if with_dlib else None
    rates = {n: [frames / seconds for frames, seconds in (before[n], after[n])] for n in args.limit_max_faces}
    own = args.limit_max_faces[0]
    limits = rates[own]
    limit_fps = sum(limits) / 2
    manifest, stages, peak_mb = result["manifest"], result["stages"], result["peak_mb"]
    frames = result["frames"]
    # The audio-video tree's wall time: the mean over its builds (the stage table: its first build).
    wall = sum(r["wall"] for r in runs["av"]) / len(runs["av"])
    wall_fps = frames / wall
    idle = max(0.0, cores * wall - result["cpu"])
    identities = {a for a in manifest["actors"]}
    print(f"build scale: {len(manifest['clips'])} clips ({frames} frames) of {len(identities)} actors, "
          f"{args.executor} executor, {cores} core(s); {len(manifest['failures'])} failed")
    print(f"  machine limit (decode + landmarks: {limit_sources}, {cores} processes at once, max_faces {own})  {limit_fps:7.1f} frames/s "
          f"(before the build {limits[0]:.1f}, after {limits[1]:.1f})")
    others = {n: sum(r) / 2 for n, r in rates.items() if n != own}
    for n, fps in others.items():
        print(f"  the limit with max_faces {n} (for comparison)              {fps:7.1f} frames/s "
              f"(before {rates[n][0]:.1f}, after {rates[n][1]:.1f}); the build is {100 * wall_fps / fps:.0f} % of it")
    added_ms = None
    if mediapipe_alone:
        alone_fps = mediapipe_alone[0] / mediapipe_alone[1]
        added_ms = 1000 * cores * (1 / limit_fps - 1 / alone_fps)
        print(f"  the limit with MediaPipe alone (after the build)           {alone_fps:7.1f} frames/s: dlib's points add "
              f"{added_ms:.2f} ms/frame on a core")
    print(f"  build, wall                                                {wall_fps:7.1f} frames/s "
          f"({wall:.1f} s; {100 * wall_fps / limit_fps:.0f} % of the limit)")
    print("  time per stage, summed over workers (s):")
    for key in STAGES:
        if key in stages:
            print(f"    {key:10s} {stages[key]:8.1f}  ({1000 * stages[key] / frames:5.2f} ms/frame)")
    print(f"  idle core time   {idle:8.1f} s of {cores * wall:.1f} ({100 * idle / (cores * wall):.0f} %)")
    # The ratio's ceiling from this build's own work, whatever the machine's speed did between the
    # limit's run and the build's (on a shared VM by up to 40 %): decode + landmarks over all
    # the stage time, i.e. the ratio with no idle core and the limit's per-frame costs.
    work_share = (stages.get("decode", 0.0) + stages.get("landmarks", 0.0)) / max(sum(stages.values()), 1e-9)
    print(f"  decode + landmarks: {100 * work_share:.0f} % of the build's stage time (the ratio's ceiling)")
    print(f"  peak memory per worker  {peak_mb:6.0f} MB")
    projected = RAVDESS_AV_FRAMES / wall_fps / 60
    # Idle cores are the start-up (imports, models, the setup check) and the tail: paid once per
    # build, not per frame. Counted once, the rest of the wall time scaled to RAVDESS's frames:
    fixed_s = idle / cores
    amortised = (fixed_s + RAVDESS_AV_FRAMES * (wall - fixed_s) / frames) / 60
    print(f"  projected whole RAVDESS AV ({RAVDESS_AV_FRAMES} frames): {projected:.1f} min "
          f"({amortised:.1f} min with the idle start-up and tail, {fixed_s:.1f} s, paid once)")
    dist = distributed_figures(runs, frames)
    d_manifest = runs["distributed"][0]["manifest"]
    print(f"  as distributed (twins and audio-only files beside each take): {len(d_manifest['clips'])} clips built, "
          f"{len(d_manifest['skipped'])} twins skipped, {d_manifest['audio_only_files']} audio-only files counted")
    print(f"    wall per build, audio-video tree {', '.join(f'{r:.1f}' for r in dist['av_walls'])} s; "
          f"distributed {', '.join(f'{r:.1f}' for r in dist['walls'])} s")
    print(f"    distributed / audio-video wall, pair by pair: {', '.join(f'{r:.3f}' for r in dist['ratios'])} "
          f"(median {dist['ratio']:.3f}; goal <= 1.10)")
    d_fps = frames / dist["wall"]
    speech_song, speech = RAVDESS_AV_FRAMES / d_fps / 60, RAVDESS_SPEECH_FRAMES / d_fps / 60
    print(f"    projected whole RAVDESS as distributed: speech + song {speech_song:.1f} min, speech only "
          f"{speech:.1f} min ({RAVDESS_SPEECH_FRAMES} frames); limit {PROJECTION_GOAL_MIN:.0f} min "
          f"(audio-video tree: {projected:.1f} / {RAVDESS_SPEECH_FRAMES / wall_fps / 60:.1f} min)")
    print(f"  rerun over the finished build (unchanged videos: plan, source check, finalize): {rerun['wall']:.1f} s")
    compare = [a["wall"] / c["wall"] for a, c in zip(runs["av"], runs["compare"])]
    if compare:
        walls = ", ".join(f"{c['wall']:.1f}" for c in runs["compare"])
        print(f"  against {args.compare_code}: wall this / that, pair by pair "
              f"{', '.join(f'{r:.3f}' for r in compare)} (median {statistics.median(compare):.3f}); "
              f"that checkout's walls {walls} s")
        print("    ms per frame, summed over workers and averaged over the builds (this / that):")
        for key in STAGES:
            this, that = (statistics.mean(r["stages"].get(key, 0.0) for r in runs[k]) * 1000 / frames
                          for k in ("av", "compare"))
            print(f"      {key:10s} {this:6.3f} / {that:6.3f}")
    print_json({"clips": len(manifest["clips"]), "frames": frames, "wall_s": round(wall, 2),
                "wall_fps": round(wall_fps, 2), "limit_fps": round(limit_fps, 2),
                "ratio": round(wall_fps / limit_fps, 3), "projected_ravdess_min": round(projected, 2),
                "peak_rss_mb": round(peak_mb, 1), "limit_work_share": round(work_share, 3),
                "limit_sources": limit_sources, "limit_fps_before": round(limits[0], 2),
                **({"dlib_added_ms_per_frame": round(added_ms, 3)} if added_ms is not None else {}), "limit_fps_after": round(limits[1], 2),
                "projected_ravdess_min_amortised": round(amortised, 2), "limit_max_faces": own,
                **{f"limit_fps_max_faces_{n}": round(fps, 2) for n, fps in others.items()},
                "distributed_clips": len(d_manifest["clips"]), "distributed_twins_skipped": len(d_manifest["skipped"]),
                "distributed_audio_only": d_manifest["audio_only_files"],
                "distributed_wall_s": round(dist["wall"], 2), "distributed_ratio": round(dist["ratio"], 3),
                "distributed_ratios": [round(r, 3) for r in dist["ratios"]],
                "av_walls_s": [round(r, 2) for r in dist["av_walls"]],
                "projected_ravdess_distributed_min": round(speech_song, 2),
                "projected_speech_distributed_min": round(speech, 2),
                "projected_speech_min": round(RAVDESS_SPEECH_FRAMES / wall_fps / 60, 2),
                "projection_goal_min": PROJECTION_GOAL_MIN, "rerun_s": round(rerun["wall"], 2),
                **({"compare_ratio": round(statistics.median(compare), 4), "compare_ratios": [round(r, 4) for r in compare]}
                   if compare else {})})
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
