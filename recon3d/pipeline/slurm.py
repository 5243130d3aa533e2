"""Building on a SLURM cluster with submitit: one array task per shard, status, resubmission.

A task runs its shard's part of :func:`recon3d.pipeline.schedule.run_schedule`, as a local build
does, so it is idempotent: killed, preempted, requeued or rerun, it continues from the shard's finished work and
writes only its own shard's files. Submissions are recorded in ``OUT_DIR/work/slurm/jobs.json``;
``submitit``'s logs are in ``OUT_DIR/work/slurm/logs``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from recon3d.atomic import write_json
from recon3d.pipeline.disk import quiet_full_disk_noise
from recon3d.pipeline.plan import Plan
from recon3d.pipeline.stages import BuildContext
from recon3d.pipeline.slurm_jobs import ACTIVE, job_states, latest_tasks, records
from recon3d.pipeline.workspace import Workspace, disk_status

@dataclass
class SlurmOptions:
    """Resources of each array task (submitit parameters)."""

    partition: str | None = None
    time_min: int = 60
    mem_gb: float = 8.0
    cpus_per_task: int = 4
    array_parallelism: int = 32
    additional: dict = field(default_factory=dict)  # any sbatch option, e.g. {"account": "lab", "qos": "low"}


def slurm_available() -> str | None:
    """None when sbatch, squeue and sacct answer here; else why not."""
    import shutil
    import subprocess

    for tool in ("sbatch", "squeue", "sacct"):
        if shutil.which(tool) is None:
            return f"'{tool}' not found: SLURM's client tools are not installed here"
    try:
        subprocess.run(["squeue", "-h"], check=True, capture_output=True, timeout=20)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"squeue does not answer ({exc}): no SLURM controller reachable"
    return None


def slurm_parameters(options: SlurmOptions, name: str, array: bool = True) -> dict:
    """submitit parameters for ``options`` (build array tasks and training jobs alike)."""
    params = dict(name=name, timeout_min=int(options.time_min), mem_gb=options.mem_gb,
                  cpus_per_task=int(options.cpus_per_task), slurm_additional_parameters=dict(options.additional))
    if array:
        params["slurm_array_parallelism"] = int(options.array_parallelism)
    if options.partition:
        params["slurm_partition"] = options.partition
    return params


def slurm_executor(folder: Path, options: SlurmOptions, name: str, array: bool = True):
    """A submitit executor for SLURM with ``options``; its logs go to ``folder``."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**slurm_parameters(options, name, array))
    return executor


class ShardTask:
    """An array task: one shard with its stages on ``$SLURM_CPUS_PER_TASK`` processes.

    submitit requeues it on preemption or time-out (``checkpoint``); the stages then skip what the
    interrupted run finished.
    """

    def __call__(self, ctx: BuildContext, shard: str, strict_qc: bool) -> dict:
        from recon3d.pipeline.build import load_plan
        from recon3d.pipeline.schedule import run_schedule
        from recon3d.pipeline.stages import sum_timings

        quiet_full_disk_noise()
        workers = int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        ctx = replace(ctx, decode_threads=1)  # the task's processes fill its CPUs
        return sum_timings(run_schedule(ctx, load_plan(Path(ctx.out_dir)), [shard], strict_qc, workers))

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def finalize_task(out_dir: str) -> str:
    """The dependent job of ``--no-wait``: merge the manifest when every shard is done."""
    from recon3d.pipeline.build import BuildError, finalize

    try:
        manifest = finalize(Path(out_dir))
    except BuildError as exc:
        return f"not finalized: {exc}"
    return f"finalized: {len(manifest['clips'])} clips, {len(manifest['failures'])} failures"


def log_paths(ws: Workspace, job_id: str) -> dict[str, str]:
    import submitit

    paths = submitit.SlurmJob(folder=ws.slurm / "logs", job_id=job_id).paths
    return {"stdout": str(paths.stdout), "stderr": str(paths.stderr)}


def shard_status(out_dir: Path, plan: Plan) -> list[dict]:
    """Per shard: ``done``, ``pending``, ``running``, ``failed`` (with reason and log) or ``not submitted``."""
    ws = Workspace(out_dir)
    tasks = latest_tasks(ws)
    states = job_states(sorted(set(tasks.values()))) if tasks else {}
    rows = disk_status(out_dir, plan)
    for row in rows:
        job = tasks.get(row["shard"])
        if row["status"] == "done" or not job:
            if row["status"] != "done":
                row["status"] = "not submitted"
            if job:
                row.update(job_id=job, slurm_state=states.get(job, ""),
                           **{f"log_{k}": v for k, v in log_paths(ws, job).items()})
            continue
        state = states.get(job, "")
        row.update(job_id=job, slurm_state=state, **{f"log_{k}": v for k, v in log_paths(ws, job).items()})
        if state in ACTIVE:
            row.pop("reason", None)
            row["status"] = "pending" if state in ("PENDING", "SUBMITTED", "UNKNOWN", "CONFIGURING") else "running"
        else:
            row["status"] = "failed"
            row["reason"] = row.get("reason") or f"SLURM state {state or 'unknown'} (see the log)"
    return rows


def submit_build(ctx: BuildContext, plan: Plan, options: SlurmOptions, strict_qc: bool,
                 finalize_job: bool) -> dict:
    """Submit one array job for the shards that are neither done nor queued/running.

    Returns the submission record (``array_job``, ``tasks``: shard -> job id, ``skipped``).
    """
    ws = Workspace(ctx.out_dir)
    active = {r["shard"] for r in shard_status(Path(ctx.out_dir), plan) if r["status"] in ("pending", "running")}
    todo = {s: c for s, c in plan.shards.items() if not ws.shard(s).exists() and s not in active}
    record: dict = {"submitted": dt.datetime.now().isoformat(timespec="seconds"), "tasks": {},
                    "skipped_active": sorted(active)}
    if todo:
        executor = slurm_executor(ws.slurm / "logs", options, "recon3d-build")
        shards = list(todo)
        n = len(shards)
        jobs = executor.map_array(ShardTask(), [ctx] * n, shards, [strict_qc] * n)
        record["array_job"] = jobs[0].job_id.split("_")[0]
        record["tasks"] = {s: j.job_id for s, j in zip(shards, jobs)}
    if finalize_job and (todo or active):
        waiting_on = [record.get("array_job")] + sorted({latest_tasks(ws)[s].split("_")[0] for s in active})
        deps = ":".join(j for j in waiting_on if j)
        final = slurm_executor(ws.slurm / "logs", SlurmOptions(partition=options.partition, time_min=30, mem_gb=4,
                                                               cpus_per_task=1, additional=dict(options.additional)),
                               "recon3d-finalize", array=False)
        final.update_parameters(slurm_additional_parameters={**options.additional, "dependency": f"afterany:{deps}"})
        record["finalize_job"] = final.submit(finalize_task, ctx.out_dir).job_id
    write_json(ws.slurm / "jobs.json", records(ws) + [record])
    return record


def wait_for_shards(out_dir: Path, plan: Plan, poll_s: float = 5.0, progress: bool = True) -> list[dict]:
    """Block until no shard is pending or running; a progress bar counts shards done/running/failed."""
    from tqdm import tqdm

    bar = tqdm(total=len(plan.shards), desc="shards", unit="shard", disable=not progress, dynamic_ncols=True)
    try:
        while True:
            rows = shard_status(out_dir, plan)
            count = {k: sum(r["status"] == k for r in rows) for k in ("done", "running", "pending", "failed")}
            bar.n = count["done"]
            bar.set_postfix(running=count["running"], pending=count["pending"], failed=count["failed"], refresh=False)
            bar.refresh()
            if not count["running"] and not count["pending"]:
                return rows
            time.sleep(poll_s)
    finally:
        bar.close()
