"""The local build's schedule: every stage of every unfinished shard as tasks on one pool of worker
processes, started as soon as their inputs exist, so that no core waits for a shard's identity.

Tasks (the stage functions of :mod:`recon3d.pipeline.stages`, one call each):

* ``landmarks`` of a clip: queued actor by actor, each actor's preferred-emotion (neutral) clips
  first, so that identities can start early; for a long video it only plans its parts
  (:mod:`recon3d.pipeline.chunks`), and then each ``part`` is a task, and a ``join`` of them makes
  the clip's landmarks;
* ``identity`` of an actor in a shard: once the landmarks it is fitted from are done;
* ``fit`` of a clip: once its landmarks and its actor's identity in its shard are done; for a
  long clip it only plans its pieces, each a ``fit_part`` task, and a ``fit_join`` writes the clip;
* ``assemble`` of a shard: once all its clips are fitted or failed.

Ready identities and fits go before landmarks, so that finished work leaves the pipeline and the
workers' memory does not grow with the number of clips. Everything a task produces is a file, so
the schedule is rebuilt from disk on every run: killed at any point, a rerun continues.
"""

from __future__ import annotations

import heapq
import importlib
import multiprocessing as mp
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from recon3d.pipeline.chunks import missing_parts, read_plan
from recon3d.pipeline.disk import quiet_full_disk_noise
from recon3d.pipeline.plan import Plan, PlannedClip
from recon3d.pipeline.stages import (BuildContext, assemble_stage, clip_work, identity_clips_needed, measured,
                                     record_shard_error, shard_identity)
from recon3d.pipeline.workspace import Workspace

# Priorities: lower runs first among ready tasks.
ASSEMBLE, IDENTITY, FIT, LANDMARKS = 0, 1, 2, 3
#: The stages a long clip is split in (recon3d.pipeline.chunks): the task kinds of a part and of
#: their join, and the join's priority (the stage's own for the parts).
SPLIT_STAGES = {"landmarks": ("part", "join", FIT), "fit": ("fit_part", "fit_join", IDENTITY)}
PRIORITY = {"landmarks": LANDMARKS, "fit": FIT}


def landmarks_task(ctx: BuildContext, clip: PlannedClip) -> dict:
    return measured(clip_work, ctx, Workspace(ctx.out_dir).shard_work(clip.shard), clip, "landmarks")


def part_task(ctx: BuildContext, clip: PlannedClip, stage: str, strict_qc: bool, part: int) -> dict:
    """Part ``part`` of a long clip's ``stage`` (``landmarks`` or ``fit``), or -1: their join."""
    return measured(clip_work, ctx, Workspace(ctx.out_dir).shard_work(clip.shard), clip, stage, strict_qc, part)


def identity_task(ctx: BuildContext, shard: str, actor: str, candidates: list[PlannedClip]) -> dict:
    return measured(shard_identity, ctx, shard, actor, candidates)


def fit_task(ctx: BuildContext, clip: PlannedClip, strict_qc: bool) -> dict:
    return measured(clip_work, ctx, Workspace(ctx.out_dir).shard_work(clip.shard), clip, "fit", strict_qc)


def assemble_task(ctx: BuildContext, shard: str, clips: list[PlannedClip]) -> dict:
    return measured(assemble_stage, ctx, shard, clips)


@dataclass(order=True)
class Task:
    priority: int
    order: int
    kind: str = field(compare=False)
    shard: str = field(compare=False)
    args: tuple = field(compare=False)


class Schedule:
    """The build's tasks and what they wait for. State is read from disk once, then updated as tasks
    finish; :meth:`pop` gives the most urgent ready task."""

    def __init__(self, ctx: BuildContext, plan: Plan, shards: list[str], strict_qc: bool):
        self.ctx, self.strict = ctx, strict_qc
        self.ws = Workspace(ctx.out_dir)
        self.prefer = ctx.build_config.identity.prefer_emotion
        self.shards = {s: plan.shards[s] for s in shards if not self.ws.shard(s).exists()}
        self.actor_clips = plan.actor_clips()
        self._heap: list[Task] = []
        self._order = 0
        self.tracked = {c.clip_id for clips in plan.shards.values() for c in clips if self._tracked_on_disk(c)}
        self.fitted = {c.clip_id for clips in self.shards.values() for c in clips
                       if self.ws.shard_work(c.shard).clip_done(c.clip_id)}
        self.identities = {(s, a) for s, clips in self.shards.items() for a in {c.actor for c in clips}
                           if self.ws.shard_work(s).identity(a).exists()}
        self.queued: set[tuple] = set()
        self.parts: dict[tuple[str, str], set[int]] = {}  # a long video's parts not done yet, by stage and clip
        self.actor_shards: dict[str, list[str]] = {}
        for shard, cs in self.shards.items():
            for actor in sorted({c.actor for c in cs}):
                self.actor_shards.setdefault(actor, []).append(shard)
        # Landmarks: actor by actor, preferred clips first; then other shards' clips an identity here needs.
        clips = sorted((c for cs in self.shards.values() for c in cs),
                       key=lambda c: (c.actor, not self._preferred(c), c.clip_id))
        own = {c.clip_id for c in clips}
        extra = {c.clip_id: c for s, cs in self.shards.items() for a in {c.actor for c in cs}
                 for c in identity_clips_needed(s, a, self.actor_clips.get(a, []), self.prefer) if c.clip_id not in own}
        for clip in clips + sorted(extra.values(), key=lambda c: (c.actor, c.clip_id)):
            if clip.clip_id not in self.tracked:
                self._push_stage("landmarks", clip)
        for shard, cs in self.shards.items():
            for actor in sorted({c.actor for c in cs}):
                self._after_identity_input(shard, actor)
            self._after_fit(shard)

    # ------------------------------------------------------------------------ bookkeeping
    def _preferred(self, clip: PlannedClip) -> bool:
        return bool(clip.labels) and clip.labels.get("emotion") == self.prefer

    def _tracked_on_disk(self, clip: PlannedClip) -> bool:
        work = self.ws.shard_work(clip.shard)
        return work.landmarks(clip.clip_id).exists() or work.failure(clip.clip_id).exists()

    def _has_landmarks(self, clip: PlannedClip) -> bool:
        return self.ws.shard_work(clip.shard).landmarks(clip.clip_id).exists()

    def _parts_folder(self, stage: str, clip: PlannedClip):
        work = self.ws.shard_work(clip.shard)
        return work.chunks(clip.clip_id) if stage == "landmarks" else work.fit_parts(clip.clip_id)

    def _push_stage(self, stage: str, clip: PlannedClip) -> None:
        """Queue a clip's ``landmarks`` or ``fit``; for a clip whose stage is planned in parts, its
        missing parts (or, when none is missing, their join)."""
        args = (self.ctx, clip) if stage == "landmarks" else (self.ctx, clip, self.strict)
        folder = self._parts_folder(stage, clip)
        if read_plan(folder) is None:
            self._push(PRIORITY[stage], stage, (stage, clip.clip_id), clip.shard, args)
            return
        part, _, _ = SPLIT_STAGES[stage]
        self.parts[part, clip.clip_id] = set(missing_parts(folder))
        for k in sorted(self.parts[part, clip.clip_id]):
            self._push(PRIORITY[stage], part, (part, clip.clip_id, k), clip.shard,
                       (self.ctx, clip, stage, self.strict, k))
        if not self.parts[part, clip.clip_id]:
            self._push_join(stage, clip)

    def _push_join(self, stage: str, clip: PlannedClip) -> None:
        _, join, priority = SPLIT_STAGES[stage]
        self._push(priority, join, (join, clip.clip_id), clip.shard, (self.ctx, clip, stage, self.strict, -1))

    def _stage_done(self, stage: str, task: Task) -> bool:
        """After a task of ``stage`` (the stage itself, a part or the join): whether the clip's stage
        is complete; if not, its parts (after the planning task) or their join (after the last part)
        are queued."""
        clip = task.args[1]
        work = self.ws.shard_work(clip.shard)
        complete = self._tracked_on_disk(clip) if stage == "landmarks" else work.clip_done(clip.clip_id)
        if complete or read_plan(self._parts_folder(stage, clip)) is None:
            return True
        if task.kind == stage:
            self._push_stage(stage, clip)
        elif task.kind == SPLIT_STAGES[stage][0]:
            self.parts[task.kind, clip.clip_id].discard(task.args[4])
            if not self.parts[task.kind, clip.clip_id]:
                self._push_join(stage, clip)
        return False

    def _tracked(self, clip: PlannedClip) -> None:
        """A clip's landmarks are done (or it failed): what waited for them can go."""
        self.tracked.add(clip.clip_id)
        if clip.shard in self.shards and self.ws.shard_work(clip.shard).failure(clip.clip_id).exists():
            self.fitted.add(clip.clip_id)
            self._after_fit(clip.shard)
        for shard in self.actor_shards.get(clip.actor, []):
            self._after_identity_input(shard, clip.actor)

    def _push(self, priority: int, kind: str, key: tuple, shard: str, args: tuple) -> None:
        if key in self.queued:
            return
        self.queued.add(key)
        self._order += 1
        heapq.heappush(self._heap, Task(priority, self._order, kind, shard, args))

    def _identity_ready(self, shard: str, actor: str) -> bool:
        """Its preferred clips are all tracked and one has landmarks; else, when none can be used,
        the shard's own clips of the actor are all tracked too."""
        candidates = self.actor_clips.get(actor, [])
        preferred = [c for c in candidates if self._preferred(c)]
        if not all(c.clip_id in self.tracked for c in preferred):
            return False
        if any(self._has_landmarks(c) for c in preferred):
            return True
        return all(c.clip_id in self.tracked for c in candidates if c.shard == shard)

    def _after_identity_input(self, shard: str, actor: str) -> None:
        if (shard, actor) in self.identities:
            self._after_identity(shard, actor)
        elif self._identity_ready(shard, actor):
            self._push(IDENTITY, "identity", ("identity", shard, actor), shard,
                       (self.ctx, shard, actor, self.actor_clips.get(actor, [])))

    def _after_identity(self, shard: str, actor: str) -> None:
        for clip in self.shards[shard]:
            if clip.actor == actor and clip.clip_id in self.tracked and clip.clip_id not in self.fitted:
                self._push_stage("fit", clip)
        self._after_fit(shard)

    def _after_fit(self, shard: str) -> None:
        clips = self.shards[shard]
        if all(c.clip_id in self.fitted for c in clips):
            self._push(ASSEMBLE, "assemble", ("assemble", shard), shard, (self.ctx, shard, clips))

    # ------------------------------------------------------------------------ interface
    def pop(self) -> Task | None:
        return heapq.heappop(self._heap) if self._heap else None

    def done(self, task: Task) -> None:
        """Record that ``task`` finished (its files are on disk) and queue what it unblocks."""
        if task.kind in ("landmarks", "part", "join"):
            if self._stage_done("landmarks", task):
                self._tracked(task.args[1])
        elif task.kind == "identity":
            _, shard, actor, _ = task.args
            self.identities.add((shard, actor))
            self._after_identity(shard, actor)
        elif task.kind in ("fit", "fit_part", "fit_join") and self._stage_done("fit", task):
            clip = task.args[1]
            self.fitted.add(clip.clip_id)
            self._after_fit(clip.shard)


TASKS = {"landmarks": landmarks_task, "part": part_task, "join": part_task, "identity": identity_task, "fit": fit_task,
         "fit_part": part_task, "fit_join": part_task, "assemble": assemble_task}


def warm_up() -> None:
    """Runs once in every worker process as it starts: the heavy imports (torch, the fitter,
    MediaPipe) happen while the main process prepares the build."""
    quiet_full_disk_noise()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process stops us
    importlib.import_module("mediapipe.python.solutions.face_mesh")


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` fresh processes (spawned: the main process already runs MediaPipe and torch
    threads, which must not be forked), started at once."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=warm_up)
    for _ in range(workers):  # one no-op each: the pool spawns its workers on demand
        pool.submit(int)
    return pool


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down with its workers killed at once (an interrupted build: what they were
    writing is a temporary file, and the rerun redoes their tasks)."""
    for process in mp.active_children():
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def run_schedule(ctx: BuildContext, plan: Plan, shards: list[str], strict_qc: bool, workers: int,
                 pool: ProcessPoolExecutor | None = None) -> list[dict]:
    """Run every task of ``shards`` on ``workers`` processes (``pool``, already started, or a new
    one; shut down at the end), or in this process when ``workers`` is 1; returns the tasks'
    timings. A task that raises stops the build (its shard's ``error.json`` says why)."""
    schedule = Schedule(ctx, plan, shards, strict_qc)
    results: list[dict] = []
    if workers <= 1:
        while (task := schedule.pop()) is not None:
            results.append(_run(ctx, task, TASKS[task.kind], *task.args))
            schedule.done(task)
        return results
    pool = pool or worker_pool(workers)
    running: dict[Future, Task] = {}
    try:
        while True:
            while len(running) <= workers and (task := schedule.pop()) is not None:
                running[pool.submit(TASKS[task.kind], *task.args)] = task
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                results.append(_run(ctx, task, future.result))
                schedule.done(task)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (the command turns it into this): stop now
        stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _run(ctx: BuildContext, task: Task, func, *args) -> dict:
    try:
        return func(*args)
    except Exception:
        record_shard_error(ctx, task.shard)
        raise
