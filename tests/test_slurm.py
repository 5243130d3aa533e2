"""build-dataset on a real SLURM cluster (sbatch through submitit): arrays, scancel, resubmission.

Skipped where no SLURM cluster answers, unless RECON3D_REQUIRE_SLURM=1 (CI sets it after starting
its cluster with .ci/slurm.sh), in which case a missing cluster fails the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recon3d.pipeline.slurm import slurm_available
from recon3d.shards import open_dataset
from tests import media
from tests.conftest import RAVDESS_EXTRA, RAVDESS_VIDEO, STAND_IN, need

_problem = slurm_available()
if _problem and os.environ.get("RECON3D_REQUIRE_SLURM") == "1":
    raise RuntimeError(f"RECON3D_REQUIRE_SLURM=1 but no SLURM cluster: {_problem}")
pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(_problem is not None, reason=f"no SLURM cluster here: {_problem}")]

SLURM_ARGS = ["--executor", "slurm", "--cpus-per-task", "1", "--mem-gb", "3", "--time", "20"]


def recon3d(*args: str, check: int | None = 0, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "recon3d", *args], capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Actor 05's ten shared takes (video/ and extra/), each also under the song channel's name
    (``MM-02-...``): eighteen clips built (the video-only twin is skipped in both channels), so that
    a task has more work left after its first clip than the 4-5 s SLURM lets a cancelled task's
    step run on here (KillWait, srun's wait): a cancel lands mid-run."""
    folder = tmp_path_factory.mktemp("videos")
    for clip in sorted(need(RAVDESS_VIDEO).glob("*.mp4")) + sorted(need(RAVDESS_EXTRA).glob("*.mp4")):
        for channel in ("01", "02"):
            name = clip.name[:3] + channel + clip.name[5:]
            (folder / name).symlink_to(clip.resolve())
    return folder


def build_args(out: Path, config: Path, videos: Path, *extra: str) -> list[str]:
    return ["build-dataset", str(videos), "--flame-model", str(need(STAND_IN)), "--out", str(out),
            "--config", str(config), "--no-progress", *extra]


@pytest.fixture(scope="module")
def split_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "split.yaml"
    path.write_text("shards:\n  max_clips_per_shard: 16\n")  # eighteen clips -> shards of 16 and 2 -> two array tasks
    return path


@pytest.fixture(scope="module")
def local_build(tmp_path_factory, split_config, videos) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    recon3d(*build_args(out, split_config, videos, "--workers", "2"))
    return out


def _array_tasks(out: Path) -> list[dict]:
    return json.loads((out / "work" / "slurm" / "jobs.json").read_text())


def test_slurm_array_build_equals_local_build(tmp_path, split_config, videos, local_build):
    out = tmp_path / "slurm"
    recon3d(*build_args(out, split_config, videos, *SLURM_ARGS))
    records = _array_tasks(out)
    assert len(records) == 1 and len(records[0]["tasks"]) == 2
    assert all("_" in job for job in records[0]["tasks"].values())  # array tasks "<array>_<index>"
    ds, ref = open_dataset(out), open_dataset(local_build)
    assert sorted(ds.clip_ids()) == sorted(ref.clip_ids())
    for clip_id in ref.clip_ids():
        assert ds.info(clip_id)["frames"] == ref.info(clip_id)["frames"]
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)
    status = json.loads(recon3d("status", str(out), "--json").stdout)
    assert [r["status"] for r in status] == ["done", "done"]
    assert all(r["slurm_state"] == "COMPLETED" for r in status)


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _submit_and_start(out: Path, split_config: Path, videos: Path) -> tuple[dict[str, str], str, str]:
    """Submit the build with --no-wait and wait until its 16-clip shard's task (the longer one) has
    finished some work: (shard -> job id, that shard, its job id)."""
    recon3d(*build_args(out, split_config, videos, *SLURM_ARGS, "--no-wait"))
    tasks = _array_tasks(out)[0]["tasks"]
    victim_shard, victim_job = sorted(tasks.items())[0]
    work = out / "work" / "shards" / victim_shard
    _wait(lambda: list(work.glob("landmarks/*.npz")), 300, f"{victim_shard} to start working")
    return tasks, victim_shard, victim_job


def _assert_equals_local(out: Path, local_build: Path) -> None:
    """Every clip of the local build once, its vertices within 1e-6 m."""
    ds, ref = open_dataset(out), open_dataset(local_build)
    ids = ds.clip_ids()
    assert sorted(ids) == sorted(ref.clip_ids()) and len(ids) == len(set(ids))
    for clip_id in ref.clip_ids():
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)


def test_cancelled_task_is_reported_and_resubmitted_alone(tmp_path, split_config, videos, local_build):
    out = tmp_path / "slurm"
    tasks, victim_shard, victim_job = _submit_and_start(out, split_config, videos)  # cancelled mid-run
    subprocess.run(["scancel", victim_job], check=True)

    def settled():
        rows = json.loads(recon3d("status", str(out), "--json").stdout)
        return rows if all(r["status"] in ("done", "failed") for r in rows) else None

    def in_queue() -> bool:
        return bool(subprocess.run(["squeue", "-h", "-j", victim_job], capture_output=True, text=True).stdout.strip())

    # sacct says CANCELLED at once; the task's processes run on until SLURM kills them (4-5 s here)
    # and it stays in squeue (COMPLETING) until then: the status reports it running, so a rerun
    # cannot put a second writer beside it. Once it says failed, the task has left the queue.
    rows = {r["shard"]: r for r in _wait(settled, 300, "both tasks to end")}
    assert not in_queue(), f"{victim_job} reported failed while still in squeue"
    assert rows[victim_shard]["status"] == "failed" and "CANCELLED" in rows[victim_shard]["slurm_state"]
    assert "CANCELLED" in rows[victim_shard]["reason"] and rows[victim_shard]["log_stderr"].endswith(".err")
    other = next(s for s in tasks if s != victim_shard)
    assert rows[other]["status"] == "done"
    human = recon3d("status", str(out)).stdout
    assert "failed" in human and "log:" in human
    assert not (out / "shards" / f"{victim_shard}.h5").exists()

    recon3d(*build_args(out, split_config, videos, *SLURM_ARGS))  # the same command, waiting this time
    records = _array_tasks(out)
    assert list(records[-1]["tasks"]) == [victim_shard]  # only the cancelled shard was resubmitted
    _assert_equals_local(out, local_build)


@pytest.mark.parametrize("fault", ["usr2", "requeue"])
def test_a_task_signalled_before_its_time_limit_or_requeued_completes(tmp_path, split_config, videos, local_build,
                                                                      fault):
    """USR2 is what SLURM sends before a task's time limit (submitit checkpoints and requeues the
    task); `scontrol requeue` is a requeue by the cluster. Either way the task continues its shard,
    and the dataset equals the local build with every clip once."""
    out = tmp_path / "slurm"
    tasks, victim_shard, victim_job = _submit_and_start(out, split_config, videos)
    command = (["scancel", "--signal=USR2", victim_job] if fault == "usr2" else ["scontrol", "requeue", victim_job])
    subprocess.run(command, check=True, capture_output=True)

    def requeued() -> bool:
        states = subprocess.run(["sacct", "-n", "-X", "-D", "-j", victim_job, "-o", "State"], capture_output=True,
                                text=True).stdout
        return "REQUEUE" in states or "PREEMPT" in states

    _wait(requeued, 300, f"{victim_job} to be requeued")
    _wait(lambda: all((out / "shards" / f"{s}.h5").exists() for s in tasks), 900, "both shards to finish")
    recon3d(*build_args(out, split_config, videos, *SLURM_ARGS))  # finalizes (nothing left to submit)
    assert len(_array_tasks(out)[-1]["tasks"]) == 0, "a finished shard was submitted again"
    _assert_equals_local(out, local_build)


def test_hand_submitted_template_builds_the_dataset(tmp_path, split_config, videos, local_build):
    """pipelines/slurm/build-array.sbatch, filled by `recon3d slurm-script build`, through real sbatch."""
    out = tmp_path / "manual"
    listing = recon3d(*build_args(out, split_config, videos, "--plan-only")).stdout
    assert len(listing.strip().splitlines()) == 2
    script = tmp_path / "build.sbatch"
    script.write_text(recon3d("slurm-script", "build", str(out), "--cpus-per-task", "1", "--mem-gb", "3",
                              "--time", "20").stdout)
    (out / "work" / "slurm" / "logs").mkdir(parents=True, exist_ok=True)
    job = subprocess.run(["sbatch", "--wait", str(script)], capture_output=True, text=True, timeout=900)
    logs = "".join(p.read_text() for p in (out / "work" / "slurm" / "logs").glob("manual_*.out"))
    assert job.returncode == 0, job.stderr + logs
    recon3d("finalize", str(out))
    ds, ref = open_dataset(out), open_dataset(local_build)
    assert sorted(ds.clip_ids()) == sorted(ref.clip_ids())
    for clip_id in ref.clip_ids():
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)


def test_train_job_cancelled_after_a_checkpoint_resumes(tmp_path):
    """`recon3d train --executor slurm`: scancel after the first checkpoint, resubmit, same run continues."""
    import yaml

    from emoface_model.checkpoint import load_checkpoint
    from recon3d.synth.dataset import write_synthetic_dataset
    from tests.test_animator import tiny_config

    shards = tmp_path / "shards"
    write_synthetic_dataset(shards, need(STAND_IN), n_actors=1, clips_per_actor=2, seconds=2.0, test_actors=0,
                            prefer_espeak=False, emotions=(3, 6), seed=5)
    cfg = tiny_config(epochs=150)  # long enough that the cancel lands mid-run
    cfg.checkpoint_every = 5
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
    run = tmp_path / "run"
    args = ["train", str(shards), "--out", str(run), "--config", str(cfg_path), "--executor", "slurm",
            "--cpus-per-task", "1", "--mem-gb", "3", "--time", "20"]
    job_id = recon3d(*args, "--no-wait").stdout.strip().splitlines()[-1]
    checkpoint = run / "checkpoints" / "last.pt"
    _wait(lambda: checkpoint.exists(), 600, "the first checkpoint")
    subprocess.run(["scancel", job_id], check=True)
    _wait(lambda: job_id not in subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout,
          120, "the cancelled job to leave the queue")
    at_cancel = load_checkpoint(checkpoint)["step"]
    total = 150 * 2
    assert 0 < at_cancel < total, "the job finished before it could be cancelled"  # epoch ends checkpoint too
    summary = json.loads(recon3d(*args).stdout.strip().splitlines()[-1])  # resubmitted, waiting this time
    assert summary["resumed_at"] == at_cancel and summary["steps"] == total
    steps = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]
             if line.split(",")[2] == "train"]
    assert steps[-(total - at_cancel):] == list(range(at_cancel + 1, total + 1))  # continued, not restarted


def test_a_replaced_video_is_rebuilt_by_the_array_job(tmp_path):
    """The source check is the submitting command's: a rerun after a video changed resubmits its
    shard, and the task rebuilds the clip from the new video."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for clip_id in ("01-01-01-01-02-01-05", "01-01-04-01-01-01-05"):
        media.copy(need(RAVDESS_VIDEO / f"{clip_id}.mp4"), videos / f"{clip_id}.mp4")
    out = tmp_path / "out"
    args = ["build-dataset", str(videos), "--flame-model", str(need(STAND_IN)), "--out", str(out), "--no-progress",
            *SLURM_ARGS]
    recon3d(*args)
    assert recon3d(*args).stderr.count("redo") == 0 and len(_array_tasks(out)) == 2  # nothing to submit
    assert not _array_tasks(out)[-1]["tasks"]
    media.write_first_frames(need(RAVDESS_VIDEO / "01-01-06-02-01-01-05.mp4"), videos / "01-01-04-01-01-01-05.mp4", 40)
    proc = recon3d(*args)
    assert "redo 01-01-04-01-01-01-05: source changed" in proc.stderr
    assert list(_array_tasks(out)[-1]["tasks"]) == ["actor_05"]
    entries = {e["id"]: e for e in json.loads((out / "manifest.json").read_text())["clips"]}
    assert entries["01-01-04-01-01-01-05"]["frames"] == 40
    assert open_dataset(out).load_clip("01-01-04-01-01-01-05").vertices.shape[0] == 40


def _stop_a_writer(out: Path, timeout: float = 300) -> tuple[int, Path]:
    """SIGSTOP a build task in the middle of a write: poll for a temporary file whose writer (named
    in it) runs here, stop that process, and keep it stopped only if the file is still there (its
    write not finished). Returns (pid, the temporary file)."""
    import signal

    from recon3d.atomic import temp_owner

    deadline = time.time() + timeout
    while time.time() < deadline:
        for tmp in out.rglob("*.tmp"):
            owner = temp_owner(tmp)
            if owner is None:
                continue
            try:
                os.kill(owner[1], signal.SIGSTOP)
            except ProcessLookupError:
                continue
            if tmp.exists():
                return owner[1], tmp
            os.kill(owner[1], signal.SIGCONT)  # the write ended first: try the next one
        time.sleep(0.002)
    raise AssertionError("timed out waiting to catch a task in the middle of a write")


def test_reruns_while_a_task_is_held_mid_write_destroy_nothing(tmp_path, split_config, videos, local_build):
    """Issue 38: the submitting command, status and verify rerun while an array task is stopped in
    the middle of a write (its temporary file open) leave that file alone; the task, continued,
    completes and the dataset equals the local build."""
    import signal

    out = tmp_path / "slurm"
    recon3d(*build_args(out, split_config, videos, *SLURM_ARGS, "--no-wait"))
    pid, tmp = _stop_a_writer(out)
    try:
        rerun = recon3d(*build_args(out, split_config, videos, *SLURM_ARGS, "--no-wait"))
        assert "still queued or running, not resubmitted" in rerun.stderr
        recon3d("status", str(out))
        recon3d("verify", str(out), check=None)  # not finished: verify may say so, but must not touch the file
        assert tmp.exists(), "a rerun deleted a running task's temporary file"
    finally:
        os.kill(pid, signal.SIGCONT)
    tasks = _array_tasks(out)[0]["tasks"]
    _wait(lambda: all((out / "shards" / f"{s}.h5").exists() for s in tasks), 900, "both shards to finish")
    recon3d(*build_args(out, split_config, videos, *SLURM_ARGS))  # finalizes
    _assert_equals_local(out, local_build)


def test_a_task_past_its_time_limit_is_requeued_and_completes(tmp_path, split_config, videos, local_build):
    """Issue 38: with --time 1 the 16-clip task cannot finish in one run. SLURM signals it before
    the limit, submitit requeues it (its time-out handling), and each run continues the shard
    where the last one stopped; the finalize job merges the manifest, the status says done, and
    the dataset equals the local build with every clip once."""
    out = tmp_path / "slurm"
    short = [a if a != "20" else "1" for a in SLURM_ARGS]  # --time 1 (minute)
    recon3d(*build_args(out, split_config, videos, *short, "--no-wait"))
    tasks = _array_tasks(out)[0]["tasks"]
    array = next(iter(tasks.values())).split("_")[0]

    def states() -> str:
        return subprocess.run(["sacct", "-n", "-X", "-D", "-j", array, "-o", "JobID,State"], capture_output=True,
                              text=True).stdout

    _wait(lambda: (out / "manifest.json").exists(), 1500, "the requeued tasks and the finalize job to finish")
    assert "REQUEUED" in states() or "TIMEOUT" in states(), states()
    rows = json.loads(recon3d("status", str(out), "--json").stdout)
    assert {r["status"] for r in rows} == {"done"}, rows
    _assert_equals_local(out, local_build)
