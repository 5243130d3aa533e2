"""The SLURM jobs a build folder submitted (``work/slurm/jobs.json``) and their states: what the
submitting code and the clean-up of a rerun both need (no submission here)."""

from __future__ import annotations

import json

from recon3d.pipeline.workspace import Workspace

#: SLURM states of a job that is queued, running or about to run again.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
          "RESIZING", "SUSPENDED", "PREEMPTED", "SUBMITTED", "UNKNOWN", "READY"}


def records(ws: Workspace) -> list[dict]:
    path = ws.slurm / "jobs.json"
    return json.loads(path.read_text()) if path.exists() else []


def latest_tasks(ws: Workspace) -> dict[str, str]:
    """Shard -> the SLURM job id of its latest task."""
    out: dict[str, str] = {}
    for record in records(ws):
        out.update(record.get("tasks", {}))
    return out


def job_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM states of jobs: sacct's (through submitit), except for jobs still in the queue.

    sacct reports a cancelled task CANCELLED at once, while its processes may run on (and write)
    for seconds; squeue keeps it as COMPLETING until they have ended, so such a task counts as
    running and is not resubmitted beside itself."""
    import submitit

    if not job_ids:
        return {}
    watcher = submitit.SlurmJob.watcher
    for job_id in job_ids:
        watcher.register_job(job_id)
    watcher.update()
    states = {job_id: watcher.get_state(job_id, mode="cache") for job_id in job_ids}
    states.update({job_id: state for job_id, state in queued_states(job_ids).items() if job_id in states})
    return states


def queued_states(job_ids: list[str]) -> dict[str, str]:
    """squeue's state of those of ``job_ids`` still in the queue (array tasks as ``<job>_<task>``)."""
    return _squeue(job_ids) or {}  # where squeue does not answer, sacct's states stand


def _squeue(job_ids: list[str]) -> dict[str, str] | None:
    """squeue's ``{job id: state}`` of those of ``job_ids`` in the queue; None where it does not answer."""
    import subprocess

    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    fields = (line.split() for line in out.splitlines())
    return {f[0]: f[1] for f in fields if len(f) == 2}


def tasks_may_run(ws: Workspace) -> bool | None:
    """Whether a SLURM task of this folder is in the queue (pending, running, completing or
    requeued): False where the folder submitted none or none is queued, None where that cannot be
    told (no SLURM controller answers here)."""
    tasks = sorted(set(latest_tasks(ws).values()))
    if not tasks:
        return False
    queued = _squeue(tasks)
    return None if queued is None else bool(queued)
