"""Faults injected into local builds at random moments, reruns until complete, the result against an
undisturbed build.

Over the README's clips (or ``--videos``) the build is started, and at a random moment one fault
is injected: ``kill -9`` of the build (its whole process group), ``kill -9`` of one worker process,
SIGTERM or SIGINT to the build, or (as root, with the output on a tmpfs) a full disk that is then
freed. The same command is rerun, with a new fault at a random moment, until a run completes;
then a fresh round starts, until ``--faults`` faults were injected. Every round's dataset is
compared with the undisturbed build. A clip is *lost* when the final dataset lacks it or failed it,
*refitted* when its finished clip file was written again by a later run.

With ``--slurm`` the build runs as SLURM array tasks (``--executor slurm --no-wait``, a shard per
two clips so that there are several tasks; by default over all of ``../shared/assets/ravdess``, nine
clips in five tasks), and each fault strikes one random array task of the folder still in the
queue, at a random moment within the undisturbed build's time (a fault that finds no task left
is not counted): ``scancel`` (the task ends; the rerun resubmits its shard), ``scontrol
requeue``, or the signal SLURM sends before a time limit (``scancel --signal=USR2``; submitit
requeues the task). After each submission the benchmark waits until no task of the folder is
queued, then reruns the same command until the manifest is merged with every shard done.

    python benchmarks/faults.py [--faults 20] [--seed 0] [--videos ../shared/assets/ravdess/video] [--slurm]

The last line is JSON: ``{"faults": K, "kinds": {...}, "reruns": n, "clips_lost": 0,
"clips_refitted": n, "max_abs_diff_m": x}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from _common import REPO, flame_model_path, print_json

KINDS = ("kill9_build", "kill9_worker", "sigterm", "sigint", "full_disk")
SLURM_KINDS = ("scancel", "requeue", "usr2")
#: --slurm: array tasks of one CPU, two clips a shard (several tasks from the README's clips).
SLURM_ARGS = ["--executor", "slurm", "--cpus-per-task", "1", "--mem-gb", "3", "--time", "20", "--no-wait"]
SLURM_CONFIG = "shards:\n  max_clips_per_shard: 2\n"


def command(videos: Path, out: Path, slurm_config: Path | None = None) -> list[str]:
    base = [sys.executable, "-m", "recon3d", "build-dataset", str(videos), "--flame-model", str(flame_model_path()),
            "--out", str(out), "--no-progress"]
    return base + (["--config", str(slurm_config), *SLURM_ARGS] if slurm_config else ["--workers", "2"])


def workers_of(pid: int) -> list[int]:
    """The build's worker processes (not multiprocessing's resource tracker)."""
    try:
        kids = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
        return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def clip_files(out: Path) -> dict[str, int]:
    """Each finished clip file (before its shard is assembled) -> its mtime: a later run that writes
    one again has refitted that clip."""
    return {p.stem: p.stat().st_mtime_ns for p in out.glob("work/shards/*/clips/*.h5")}


def mount(target: Path, size: str, remount: bool = False) -> None:
    opts = f"remount,size={size}" if remount else f"size={size}"
    args = ["mount", "-o", opts, str(target)] if remount else ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)]
    subprocess.run(args, check=True, capture_output=True)


def inject(kind: str, proc: subprocess.Popen, out: Path, disk: Path | None) -> None:
    if kind == "kill9_build":
        os.killpg(proc.pid, signal.SIGKILL)
    elif kind == "kill9_worker":
        workers = workers_of(proc.pid)
        if workers:
            os.kill(random.choice(workers), signal.SIGKILL)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    elif kind == "sigterm":
        proc.send_signal(signal.SIGTERM)
    elif kind == "sigint":
        proc.send_signal(signal.SIGINT)
    elif kind == "full_disk":
        used = sum(p.stat().st_size for p in disk.rglob("*") if p.is_file())
        mount(disk, f"{used // 2 ** 20 + 2}m", remount=True)  # a couple of MB left: the build fills it


def one_round(videos: Path, out: Path, disk: Path | None, budget: int, kinds: tuple[str, ...], undisturbed_s: float,
              counts: Counter, log) -> tuple[int, int]:
    """Runs until the build completes; returns (reruns, clips refitted)."""
    reruns = refitted = 0
    seen: dict[str, int] = {}
    while True:
        fault = random.choice(kinds) if sum(counts.values()) < budget else None
        proc = subprocess.Popen(command(videos, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, cwd=REPO)
        if fault:
            deadline = time.time() + random.uniform(0.3, undisturbed_s)
            while time.time() < deadline and proc.poll() is None:
                time.sleep(0.05)
            if proc.poll() is None:
                inject(fault, proc, out, disk)
                counts[fault] += 1
        _, stderr = proc.communicate(timeout=900)
        if fault == "full_disk":
            mount(disk, "4g", remount=True)  # the space freed
        now = clip_files(out)
        refitted += sum(1 for clip, mtime in now.items() if clip in seen and seen[clip] != mtime)
        seen.update(now)
        log(f"  run {reruns}: fault {fault or '-'} -> exit {proc.returncode}"
            + (f" ({stderr.strip().splitlines()[-1][:150]})" if stderr.strip() and proc.returncode else ""))
        if proc.returncode == 0 and (out / "manifest.json").exists():
            return reruns, refitted
        reruns += 1


def folder_jobs(out: Path) -> list[str]:
    """The SLURM job ids the folder's submissions made: array tasks, then finalize jobs."""
    path = out / "work" / "slurm" / "jobs.json"
    records = json.loads(path.read_text()) if path.exists() else []
    return ([j for r in records for j in r.get("tasks", {}).values()]
            + [str(r["finalize_job"]) for r in records if "finalize_job" in r])


def queued(jobs: list[str], states: str | None = None) -> list[str]:
    """Those of ``jobs`` in SLURM's queue in ``states`` (default: pending, running or completing;
    not the finished jobs squeue keeps listing for a while with ``-t all``)."""
    if not jobs:
        return []
    listed = subprocess.run(["squeue", "-h", "-r", *(["-t", states] if states else []), "-o", "%i", "-j",
                             ",".join(jobs)], capture_output=True, text=True).stdout.split()
    return [j for j in jobs if j in listed]


def inject_slurm(kind: str, job: str) -> None:
    args = {"scancel": ["scancel", job], "requeue": ["scontrol", "requeue", job],
            "usr2": ["scancel", "--signal=USR2", job]}[kind]
    subprocess.run(args, check=False, capture_output=True)


def one_round_slurm(videos: Path, out: Path, config: Path, budget: int, undisturbed_s: float, counts: Counter,
                    log) -> tuple[int, int]:
    """``one_round`` on SLURM: submit, strike a random queued task of the folder, wait until no task
    is queued; rerun until the manifest is merged. Returns (reruns, clips refitted)."""
    reruns = refitted = 0
    seen: dict[str, int] = {}
    while True:
        fault = random.choice(SLURM_KINDS) if sum(counts.values()) < budget else None
        proc = subprocess.run(command(videos, out, config), capture_output=True, text=True, cwd=REPO)
        struck = "-"
        if fault:
            time.sleep(random.uniform(1.0, 0.8 * undisturbed_s))
            tasks = [j for j in queued(folder_jobs(out), "PENDING,RUNNING") if "_" in j]  # not finalize jobs
            if tasks:
                struck = random.choice(tasks)
                inject_slurm(fault, struck)
                counts[fault] += 1
        deadline = time.time() + 1800
        while queued(folder_jobs(out)) and time.time() < deadline:
            time.sleep(2)
        now = clip_files(out)
        refitted += sum(1 for clip, mtime in now.items() if clip in seen and seen[clip] != mtime)
        seen.update(now)
        log(f"  run {reruns}: submit exit {proc.returncode}, fault {fault or '-'} on {struck}")
        if (out / "manifest.json").exists():
            return reruns, refitted
        reruns += 1


def compare(out: Path, ref: Path) -> tuple[int, float]:
    from recon3d.shards import open_dataset

    ds, reference = open_dataset(out), open_dataset(ref)
    have = set(ds.clip_ids()) - {f["id"] for f in ds.manifest["failures"]}
    lost = len(set(reference.clip_ids()) - have)
    diff = max((float(np.abs(ds.load_clip(c).vertices - reference.load_clip(c).vertices).max())
                for c in reference.clip_ids() if c in have), default=float("inf"))
    return lost, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=Path, default=None,
                        help="default: ../shared/assets/ravdess/video (the README clips), with --slurm ../shared/assets/ravdess")
    parser.add_argument("--slurm", action="store_true",
                        help="build as SLURM array tasks and inject scancel, requeue and the pre-time-limit signal")
    args = parser.parse_args()
    args.videos = args.videos or REPO.parent / "shared" / "assets" / "ravdess" / ("" if args.slurm else "video")
    random.seed(args.seed)
    kinds = SLURM_KINDS if args.slurm else KINDS if os.geteuid() == 0 else KINDS[:-1]
    if not args.slurm and kinds != KINDS:
        print("not root: no full-disk faults (they need a tmpfs mount)")
    with tempfile.TemporaryDirectory(prefix="recon3d-faults-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        subprocess.run(command(args.videos, work / "ref"), check=True, capture_output=True, cwd=REPO)
        undisturbed = time.perf_counter() - t0
        print(f"undisturbed build: {undisturbed:.1f} s")
        config = None
        if args.slurm:
            config = work / "split.yaml"
            config.write_text(SLURM_CONFIG)
            t0 = time.perf_counter()
            subprocess.run(command(args.videos, work / "probe", config), check=True, capture_output=True, cwd=REPO)
            while queued(folder_jobs(work / "probe")):
                time.sleep(1)
            undisturbed = time.perf_counter() - t0
            print(f"undisturbed SLURM build: {undisturbed:.1f} s")
        disk = None
        if "full_disk" in kinds:
            disk = work / "disk"
            disk.mkdir()
            mount(disk, "4g")
        counts: Counter = Counter()
        reruns = refitted = lost = 0
        diff = 0.0
        rounds = 0
        try:
            while sum(counts.values()) < args.faults:
                out = (disk or work) / f"round_{rounds}"
                print(f"round {rounds}:")
                if config is not None:
                    r, f = one_round_slurm(args.videos, out, config, args.faults, undisturbed, counts, print)
                else:
                    r, f = one_round(args.videos, out, disk, args.faults, kinds, undisturbed, counts, print)
                l, d = compare(out, work / "ref")
                reruns, refitted, lost, diff = reruns + r, refitted + f, lost + l, max(diff, d)
                print(f"  complete after {r} rerun(s): {l} clip(s) lost, largest vertex difference {d:.2e} m")
                import shutil

                shutil.rmtree(out)
                rounds += 1
        finally:
            if disk is not None:
                subprocess.run(["umount", "-l", str(disk)], check=False)
    print(f"{sum(counts.values())} faults ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}) in {rounds} "
          f"round(s), {reruns} reruns: {lost} clips lost, {refitted} refitted, largest difference {diff:.2e} m")
    print_json({"faults": sum(counts.values()), "slurm": args.slurm, "kinds": dict(sorted(counts.items())),
                "reruns": reruns, "rounds": rounds, "clips_lost": lost, "clips_refitted": refitted, "max_abs_diff_m": diff})


if __name__ == "__main__":
    main()
