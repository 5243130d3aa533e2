"""One error model, reruns that retry what may have changed, splits that work on any dataset, and
quiet builds: real builds of real RAVDESS clips, real PyAV, real MediaPipe, real HDF5."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon3d.pipeline.config import BuildConfig
from recon3d.pipeline.plan import plan_build, take_split
from tests import media
from tests.cli import build, run_cli, tiny_train_config
from tests.conftest import RAVDESS_VIDEO, REPO, STAND_IN, need

pytestmark = pytest.mark.slow

NATIVE_LINE = re.compile(r"^[WIEF]\d{4} |inference_feedback_manager|TensorFlow Lite|absl::InitializeLog", re.M)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The command failed with exactly one non-empty stderr line and no traceback; returns that line."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


def failure_records(out: Path) -> list[Path]:
    return sorted((out / "work" / "shards").glob("*/failures/*.json"))


def test_device_without_cuda_stops_at_once_and_the_corrected_rerun_writes_every_clip(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is not a setup error here")
    out = tmp_path / "out"
    started = time.perf_counter()
    proc = build(need(RAVDESS_VIDEO), out, "--device", "cuda", check_exit=2)
    assert time.perf_counter() - started < 60
    assert "--device cuda" in one_line_error(proc) and "--device cpu" in proc.stderr
    assert not failure_records(out) and not (out / "manifest.json").exists()
    build(need(RAVDESS_VIDEO), out, "--workers", "2")
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["clips"]) == len(list(need(RAVDESS_VIDEO).glob("01-*.mp4"))) and not manifest["failures"]


def test_a_missing_landmark_offsets_file_stops_the_build_and_records_nothing(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    missing = tmp_path / "offsets_gone.npz"
    cfg.write_text(f"fitting:\n  landmark_offsets: {missing}\n")
    out = tmp_path / "out"
    # Two workers: the setup is checked in them (they build the fitter), and still stops the command.
    proc = build(need(RAVDESS_VIDEO), out, "--config", str(cfg), "--workers", "2", check_exit=2)
    assert "offsets_gone.npz" in one_line_error(proc) and "landmark_offsets" in proc.stderr
    assert not failure_records(out) and not (out / "shards").exists()


def test_a_mistyped_fitting_option_stops_the_build_in_one_line_and_records_nothing(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("fitting:\n  landmark_sigma: auto\n")
    out = tmp_path / "out"
    proc = build(need(RAVDESS_VIDEO), out, "--config", str(cfg), "--workers", "2", check_exit=2)
    assert "fitting.landmark_sigma: 'auto' is not one of fixed, estimated" in one_line_error(proc)
    assert not failure_records(out) and not (out / "shards").exists()


def test_a_truncated_file_is_retried_once_replaced_and_skipped_while_unchanged(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    sources = sorted(need(RAVDESS_VIDEO).glob("01-*.mp4"))
    for source in sources[:2]:
        media.copy(source, videos / source.name)
    bad = videos / sources[2].name
    media.write_truncated(sources[2], bad, 0.4)
    out = tmp_path / "out"
    build(videos, out, "--workers", "1", check_exit=1)
    (record,) = failure_records(out)
    first = json.loads(record.read_text())
    assert first["id"] == bad.stem and first["source_size"] == bad.stat().st_size
    assert len(first["source_sha256"]) == 64 and first["config_hash"] and first["recon3d_version"] and first["time"]
    shard = out / "shards" / "actor_05.h5"
    before = shard.stat().st_mtime_ns

    proc = build(videos, out, "--workers", "1", check_exit=1)  # unchanged: the failure stands, nothing is redone
    assert "redo" not in proc.stderr and shard.stat().st_mtime_ns == before
    assert json.loads(record.read_text())["time"] == first["time"]
    status = run_cli("status", str(out)).stdout
    assert bad.stem in status and "ago" in status and "truncated" in status

    proc = build(videos, out, "--workers", "1", "--retry-failed", check_exit=1)  # retried on request: fails again
    assert f"redo {bad.stem}: --retry-failed" in proc.stderr

    media.copy(sources[2], bad)  # replaced by the good file: retried, and the shard now holds it
    proc = build(videos, out, "--workers", "1")
    assert f"redo {bad.stem}: source file changed" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(c["id"] for c in manifest["clips"]) == sorted(s.stem for s in sources[:3])
    assert not manifest["failures"] and not failure_records(out)


def test_the_readme_dataset_trains_and_evaluates_on_a_within_actor_split(built, tmp_path):
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["split_method"] == "take"
    splits = {c["id"]: c["split"] for c in manifest["clips"]}
    assert splits["01-01-01-01-02-01-05"] == "test" and list(splits.values()).count("test") == 1
    assert "by take" in run_cli("inspect", str(built)).stdout
    run = tmp_path / "run"
    run_cli("train", str(built), "--out", str(run), "--epochs", "1", "--no-progress",
            "--config", str(tiny_train_config(tmp_path / "tiny.yaml")))
    result = json.loads(run_cli("evaluate", str(run), "--split", "test", "--json").stdout)
    assert result["overall"]["sequences"] == 1 and result["overall"]["lve"] > 0


_HELD_WRITER = """
import os, signal, sys
from pathlib import Path
from recon3d.atomic import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_text("half of a result")
    print(tmp, flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # held in the middle of the write
    tmp.write_text("a whole result")
"""


def test_a_rerun_never_deletes_what_a_live_process_is_writing(tmp_path):
    """A task held mid-write (SIGSTOP) keeps its temporary file through a rerun of the build command
    and finishes its write after; a writer killed mid-write leaves a file the next rerun removes."""
    videos = tmp_path / "videos"
    videos.mkdir()
    media.write_first_frames(need(RAVDESS_VIDEO / "01-01-04-01-01-01-05.mp4"), videos / "01-01-04-01-01-01-05.mp4", 12)
    out = tmp_path / "out"
    build(videos, out, "--workers", "1")
    result = out / "work" / "shards" / "actor_05" / "task_result.json"

    def held_writer() -> tuple[subprocess.Popen, Path]:
        proc = subprocess.Popen([sys.executable, "-c", _HELD_WRITER, str(result)], stdout=subprocess.PIPE, text=True)
        tmp = Path(proc.stdout.readline().strip())
        deadline = time.time() + 30
        while time.time() < deadline and open(f"/proc/{proc.pid}/stat").read().split()[2] != "T":
            time.sleep(0.01)
        return proc, tmp

    live, live_tmp = held_writer()
    dead, dead_tmp = held_writer()
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    try:
        assert live_tmp.exists() and dead_tmp.exists()
        build(videos, out, "--workers", "1")  # the rerun while the live writer is held
        assert live_tmp.read_text() == "half of a result", "the rerun deleted a file a live process is writing"
        assert not dead_tmp.exists(), "a killed writer's leftover stays"
    finally:
        os.kill(live.pid, signal.SIGCONT)
    assert live.wait(timeout=30) == 0
    assert result.read_text() == "a whole result" and not live_tmp.exists()
    assert run_cli("verify", str(out)).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MB tmpfs (the README build needs ~60 MB at its peak), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small_disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_in_one_line_and_the_rerun_after_freeing_space_completes(small_disk, built):
    from recon3d.shards import open_dataset

    out = small_disk / "out"
    proc = build(need(RAVDESS_VIDEO), out, "--workers", "2", check_exit=2)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert len(lines) == 1 and f"{out}: the disk is full" in lines[0] and "rerun the same command" in lines[0], \
        proc.stderr[-3000:]
    assert re.search(r"Free about \d+ MB more", lines[0])
    assert not (out / "manifest.json").exists() and not (out / "failures.jsonl").exists()
    assert not list((out / "work").glob("shards/*/failures/*")), "a clip was failed for the disk's fault"
    for path in out.rglob("*.h5"):  # what a full disk cut short is a named temporary, never a result
        if not path.name.endswith(".tmp"):
            with h5py.File(path, "r") as f:
                assert "clips" in f
    subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)
    build(need(RAVDESS_VIDEO), out, "--workers", "2")
    assert not list(out.rglob("*.tmp"))
    ds, ref = open_dataset(out), open_dataset(built)
    assert sorted(ds.clip_ids()) == sorted(ref.clip_ids()) and not ds.manifest["failures"]
    for clip_id in ref.clip_ids():
        np.testing.assert_allclose(ds.load_clip(clip_id).vertices, ref.load_clip(clip_id).vertices, atol=1e-6)


def test_a_read_only_out_is_a_setup_error_that_records_nothing(small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc = build(need(RAVDESS_VIDEO), small_disk / "out", check_exit=2)
    assert proc.stderr.strip().splitlines() == [
        f"error: --out {small_disk / 'out'}: cannot write there (Read-only file system); choose a writable folder"]
    assert not any(small_disk.iterdir())


def test_a_multi_actor_plan_still_splits_by_actor(tmp_path):
    videos = tmp_path / "videos"
    for actor in (1, 2, 19, 21):
        for statement in (1, 2):
            path = videos / f"Actor_{actor:02d}" / f"01-01-01-01-{statement:02d}-01-{actor:02d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")  # planning reads names only
    plan = plan_build(videos, BuildConfig())
    assert plan.split_method == "actor"
    assert {c.actor: c.split for c in plan.clips} == {"01": "train", "02": "train", "19": "val", "21": "test"}


def test_the_take_split_is_deterministic_and_holds_out_whole_takes():
    labels = [{"actor": 5, "statement": s, "repetition": r} for s in (1, 2) for r in (1, 2) for _ in range(3)]
    splits = take_split(labels)
    assert splits == take_split(list(labels))
    by_take = {(lab["statement"], lab["repetition"]): split for lab, split in zip(labels, splits)}
    assert by_take == {(1, 1): "train", (1, 2): "train", (2, 1): "val", (2, 2): "test"}
    assert take_split([{"actor": 5, "statement": 1, "repetition": 1}]) == ["train"]  # one take: nothing to hold out


def test_the_take_split_holds_out_only_takes_the_animator_can_use():
    """Issue 40's one-actor tree: three speech takes, a video-only take without its twin, a song take."""
    def lab(modality, vocal, statement, repetition, emotion=1):
        return {"actor": 5, "modality": modality, "vocal_channel": vocal, "emotion_id": emotion,
                "statement": statement, "repetition": repetition}

    labels = [lab(1, 1, 2, 2, 1), lab(1, 1, 2, 2, 3), lab(1, 1, 2, 1, 5), lab(2, 1, 1, 1), lab(1, 2, 1, 2)]
    splits = take_split(labels)
    assert splits == ["test", "test", "train", "train", "train"]
    usable = [split for lab_, split in zip(labels, splits) if lab_["modality"] == 1 and lab_["vocal_channel"] == 1]
    assert "train" in usable and "test" in usable
    full = [lab(1, 1, s, r) for s in (1, 2) for r in (1, 2)] + [lab(2, 1, 2, 2, 4), lab(1, 2, 2, 2)]
    assert take_split(full) == ["train", "train", "val", "test", "test", "test"]  # RAVDESS's four takes: as before


def test_a_build_keeps_mediapipe_native_lines_off_stderr_unless_verbose(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    media.write_first_frames(need(RAVDESS_VIDEO / "01-01-04-01-01-01-05.mp4"), videos / "01-01-04-01-01-01-05.mp4", 15)
    quiet = build(videos, tmp_path / "quiet", "--workers", "1")
    assert not NATIVE_LINE.search(quiet.stderr), quiet.stderr
    assert NATIVE_LINE.search((tmp_path / "quiet" / "work" / "logs" / "native.log").read_text())
    loud = build(videos, tmp_path / "loud", "--workers", "1", "--verbose")
    assert NATIVE_LINE.search(loud.stderr), "--verbose should let MediaPipe's lines through"


def test_slurm_script_works_from_a_wheel_in_a_fresh_venv(tmp_path, built):
    import shutil

    source = tmp_path / "source"  # a copy, so that building leaves nothing in the repository
    shutil.copytree(REPO, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "out", "runs"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(source)], check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("recon3d-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    # The dependencies come from the test environment; recon3d itself only from the wheel.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "test_deps.pth").write_text(deps + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import recon3d; print(recon3d.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(site), where
    script = subprocess.run([str(venv / "bin" / "recon3d"), "slurm-script", "build", str(built),
                             "--partition", "cpu", "--time", "30"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert script.returncode == 0, script.stderr
    assert "#SBATCH --array=0-0%32" in script.stdout and "#SBATCH --partition=cpu" in script.stdout
    assert "build-shard" in script.stdout and "{{" not in script.stdout


@pytest.fixture(scope="module")
def plain_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plain")
    notes = folder / "notes.wav"
    notes.write_text("these are notes, not audio\n")
    speech = media.write_tone_wav(folder / "tone.wav")
    not_a_run = folder / "not_a_run"
    not_a_run.mkdir()
    empty_videos = folder / "no_videos"
    empty_videos.mkdir()
    (empty_videos / "readme.txt").write_text("nothing here\n")
    return {"notes": notes, "speech": speech, "not_a_run": not_a_run, "no_videos": empty_videos}


WRONG_ARGUMENTS = {
    "preview an unknown clip": (lambda b, f: ["preview", str(b), "nosuchclip", "--out", str(f["not_a_run"] / "p.mp4")],
                                "no clip 'nosuchclip'.*recon3d inspect"),
    "inspect a folder that is not a dataset": (lambda b, f: ["inspect", str(f["not_a_run"])], "not a finished recon3d build"),
    "train on a folder that is not a dataset": (lambda b, f: ["train", str(f["not_a_run"]), "--out",
                                                              str(f["not_a_run"] / "run")], "not a finished recon3d build"),
    "evaluate an unknown run": (lambda b, f: ["evaluate", str(f["not_a_run"])], "not a training run"),
    "animate with an unknown run": (lambda b, f: ["animate", str(f["not_a_run"]), str(f["speech"]), "--out",
                                                  str(f["not_a_run"] / "a")], "not a training run"),
    "animate a file that is not audio": (lambda b, f: ["animate", str(f["not_a_run"]), str(f["notes"]), "--out",
                                                       str(f["not_a_run"] / "a")], "not a readable audio file"),
    "build from a folder without videos": (lambda b, f: ["build-dataset", str(f["no_videos"]), "--flame-model",
                                                         str(STAND_IN), "--out", str(f["not_a_run"] / "o")],
                                           r"no videos \(.mp4 .mov .mkv .avi .flv .webm\) found"),
    "build with a missing model": (lambda b, f: ["build-dataset", str(RAVDESS_VIDEO), "--flame-model",
                                                 str(f["not_a_run"] / "generic_model.pkl"), "--out",
                                                 str(f["not_a_run"] / "o")], "FLAME model not found"),
    "check a missing model": (lambda b, f: ["check-model", "--flame-model", str(f["not_a_run"] / "flame2023.pkl")],
                              "file not found.*flame.is.tue.mpg.de"),
    "status of a folder that was never built": (lambda b, f: ["status", str(f["not_a_run"])], "no build plan"),
    "preview with a source that is not a video": (lambda b, f: ["preview", str(b), "01-01-04-01-01-01-05", "--out",
                                                                str(f["not_a_run"] / "p.mp4"), "--video",
                                                                str(f["notes"])], "not a readable video file"),
}


@pytest.mark.parametrize("case", sorted(WRONG_ARGUMENTS))
def test_a_wrong_argument_is_one_line_without_traceback(case, built, plain_files):
    make_args, message = WRONG_ARGUMENTS[case]
    line = one_line_error(run_cli(*make_args(built, plain_files), check_exit=None))
    assert line.startswith("error:") and re.search(message, line), line
