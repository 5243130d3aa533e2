"""Where shards run: one small interface for this machine (joblib workers) and a SLURM cluster
(submitit array tasks), as submitit has one for its executors.

An executor ``submit``s shards, ``wait``s for them with a progress bar, and reports each shard's
``status``. Both run :func:`recon3d.pipeline.schedule.run_schedule` (all shards on this machine's
workers, or one shard per array task), whose work is idempotent and kept in files, so that
progress and status are read from the build folder for either.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path

from recon3d.pipeline.plan import Plan
from recon3d.pipeline.schedule import run_schedule
from recon3d.pipeline.stages import BuildContext, check_setup, sum_timings
from recon3d.pipeline.workspace import Workspace, count_clips, disk_status

EXECUTORS = ("local", "slurm")


@dataclass
class Outcome:
    """What :meth:`Executor.wait` saw at the end: one status row per shard, and for local runs the
    summed stage timings (seconds per stage and ``frames``) and the wall time."""

    rows: list[dict]
    stages: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def unfinished(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "done"]


class Executor(ABC):
    """Runs shards of a planned build somewhere."""

    name: str

    def check(self) -> None:
        """Raise :class:`~recon3d.errors.SetupError` when this executor cannot run here."""

    def start(self) -> None:
        """Get ready to run while the build is being prepared (local: start the worker processes)."""

    def close(self, now: bool = False) -> None:
        """Release what :meth:`start` took if :meth:`wait` did not (a build stopped before its shards
        ran; ``now``: at once, for an interrupted build)."""

    def check_setup(self, ctx: BuildContext) -> None:
        """Build the model, fitter and detector once and run the detector on a blank frame
        (:func:`~recon3d.pipeline.stages.check_setup`): raises :class:`~recon3d.errors.SetupError`
        for a bad setup, before any clip. Here: in this process."""
        check_setup(ctx)

    @abstractmethod
    def submit(self, ctx: BuildContext, plan: Plan, strict_qc: bool) -> dict:
        """Hand over every shard that is not finished (nor already queued); returns a record of it."""

    @abstractmethod
    def wait(self, ctx: BuildContext, plan: Plan, progress: bool = True) -> Outcome:
        """Block until no submitted shard is pending or running (a progress bar on stderr)."""

    @abstractmethod
    def status(self, out_dir: Path, plan: Plan) -> list[dict]:
        """One row per shard: ``shard``, ``status``, ``clips``, ``clips_done``, ``clips_failed``
        (and ``reason`` for failed shards)."""


class LocalExecutor(Executor):
    """Worker processes on this machine, kept for the whole build: every stage of every shard is a
    task on the same pool (:mod:`recon3d.pipeline.schedule`). ``wait`` does the work."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._todo: dict = {}
        self._strict = False
        self._pool = None

    def start(self) -> None:
        from recon3d.pipeline.schedule import worker_pool

        if self.workers > 1 and self._pool is None:
            self._pool = worker_pool(self.workers)

    def close(self, now: bool = False) -> None:
        """Shut the worker processes down (``now``: killed at once, for an interrupted build)."""
        if self._pool is not None:
            from recon3d.pipeline.schedule import stop_workers

            if now:
                stop_workers(self._pool)
            else:
                self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def check_setup(self, ctx: BuildContext) -> None:
        """In the worker processes once they are started, which need the model, fitter and detector
        anyway (this process runs no clip then): one check per worker, all awaited, the first
        failure raised here."""
        if self._pool is None:
            return super().check_setup(ctx)
        for check in [self._pool.submit(check_setup, ctx) for _ in range(self.workers)]:
            check.result()

    def submit(self, ctx: BuildContext, plan: Plan, strict_qc: bool) -> dict:
        ws = Workspace(ctx.out_dir)
        self._todo = {s: c for s, c in plan.shards.items() if not ws.shard(s).exists()}
        self._strict = strict_qc
        return {"executor": self.name, "shards": list(self._todo), "workers": self.workers}

    def wait(self, ctx: BuildContext, plan: Plan, progress: bool = True) -> Outcome:
        ws = Workspace(ctx.out_dir)
        stop = threading.Event()
        watcher = threading.Thread(target=watch_progress, args=(ws, plan, stop), daemon=True) if progress else None
        if watcher:
            watcher.start()
        started = time.perf_counter()
        results: list[dict] = []
        try:
            ctx = replace(ctx, decode_threads=1 if self.workers > 1 else 0)
            results = run_schedule(ctx, plan, list(self._todo), self._strict, self.workers, self._pool)
        finally:
            self._pool = None  # run_schedule shut it down
            stop.set()
            if watcher:
                watcher.join()
        return Outcome(self.status(Path(ctx.out_dir), plan), sum_timings(results), time.perf_counter() - started)

    def status(self, out_dir: Path, plan: Plan) -> list[dict]:
        return disk_status(out_dir, plan)


class SlurmExecutor(Executor):
    """One SLURM array task per shard through submitit (:mod:`recon3d.pipeline.slurm`)."""

    name = "slurm"

    def __init__(self, options=None, finalize_job: bool = False, poll_s: float = 5.0):
        from recon3d.pipeline.slurm import SlurmOptions

        self.options = options or SlurmOptions()
        self.finalize_job = finalize_job
        self.poll_s = poll_s

    def check(self) -> None:
        from recon3d.errors import SetupError
        from recon3d.pipeline.slurm import slurm_available

        problem = slurm_available()
        if problem:
            raise SetupError(f"--executor slurm: {problem}")

    def submit(self, ctx: BuildContext, plan: Plan, strict_qc: bool) -> dict:
        from recon3d.pipeline.slurm import submit_build

        return submit_build(ctx, plan, self.options, strict_qc, self.finalize_job)

    def wait(self, ctx: BuildContext, plan: Plan, progress: bool = True) -> Outcome:
        from recon3d.pipeline.slurm import wait_for_shards

        started = time.perf_counter()
        rows = wait_for_shards(Path(ctx.out_dir), plan, self.poll_s, progress)
        return Outcome(rows, seconds=time.perf_counter() - started)

    def status(self, out_dir: Path, plan: Plan) -> list[dict]:
        from recon3d.pipeline.slurm import shard_status

        return shard_status(out_dir, plan)


def executor_for(name: str, workers: int | None = None, slurm_options=None, finalize_job: bool = False) -> Executor:
    """The executor called ``name`` (``local`` or ``slurm``)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "slurm":
        return SlurmExecutor(slurm_options, finalize_job)
    from recon3d.errors import SetupError

    raise SetupError(f"unknown executor '{name}' (choose {' or '.join(EXECUTORS)})")


def watch_progress(ws: Workspace, plan: Plan, stop: threading.Event, desc: str = "clips") -> None:
    """Progress bar from the files on disk until ``stop`` is set (works for any executor)."""
    from tqdm import tqdm

    with tqdm(total=len(plan.clips), desc=desc, unit="clip", dynamic_ncols=True) as bar:
        stopped = False
        while not stopped:
            stopped = stop.wait(0.5)
            done, failed = count_clips(ws, plan)
            bar.n = done
            bar.set_postfix(failed=failed, refresh=False)
            bar.refresh()
