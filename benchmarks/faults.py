"""Faults injected into local builds at random moments, reruns until complete, the result against an
undisturbed build.

Over the README's clips (or ``--videos``) the build is started, and at a random moment one fault
is injected: ``kill -9`` of the build (its whole process group), ``kill -9`` of one worker process,
SIGTERM or SIGINT to the build, or (as root, with the output on a tmpfs) a full disk that is then
freed. The same command is rerun, with a new fault at a random moment, until a run completes;
then a fresh round starts, until ``--faults`` faults were injected. Every round's dataset is
compared with the undisturbed build. A clip is *lost* when the final dataset lacks it or failed it,
*refitted* when its finished clip file was written again by a later run.

    python benchmarks/faults.py [--faults 20] [--seed 0] [--videos ../shared/assets/ravdess/video]

The last line is JSON: ``{"faults": K, "kinds": {...}, "reruns": n, "clips_lost": 0,
"clips_refitted": n, "max_abs_diff_m": x}``. SLURM faults (scancel, requeue, the pre-time-limit
signal) are not injected yet.
"""

from __future__ import annotations

import argparse
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


def command(videos: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "recon3d", "build-dataset", str(videos), "--flame-model", str(flame_model_path()),
            "--out", str(out), "--no-progress", "--workers", "2"]


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
    parser.add_argument("--videos", type=Path, default=REPO.parent / "shared" / "assets" / "ravdess" / "video")
    args = parser.parse_args()
    random.seed(args.seed)
    kinds = KINDS if os.geteuid() == 0 else KINDS[:-1]
    if kinds != KINDS:
        print("not root: no full-disk faults (they need a tmpfs mount)")
    with tempfile.TemporaryDirectory(prefix="recon3d-faults-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        subprocess.run(command(args.videos, work / "ref"), check=True, capture_output=True, cwd=REPO)
        undisturbed = time.perf_counter() - t0
        print(f"undisturbed build: {undisturbed:.1f} s")
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
    print_json({"faults": sum(counts.values()), "kinds": dict(sorted(counts.items())), "reruns": reruns,
                "rounds": rounds, "clips_lost": lost, "clips_refitted": refitted, "max_abs_diff_m": diff})


if __name__ == "__main__":
    main()
