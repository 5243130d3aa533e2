"""RAVDESS as its archives unpack: each recording built once (video-only twins skipped, not failed),
song labelled, audio-only files counted; the animator never sees a clip without speech; one build
at a time per folder. Real files, real builds, real locks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recon3d.io.ravdess import SKIP_AUDIO_ONLY, SKIP_MODALITY, SKIP_TWIN
from recon3d.pipeline.config import BuildConfig
from recon3d.pipeline.plan import plan_build
from recon3d.pipeline.slurm import slurm_available
from tests import media
from tests.cli import build, run_cli, tiny_train_config
from tests.conftest import RAVDESS_VIDEO, STAND_IN, need

TWIN = "02-01-06-01-01-01-05"  # the shared clips' video-only twin of 01-01-06-01-01-01-05
SONG = "01-02-03-01-02-02-05"  # a song take (a speech recording under a song name: labels are what is tested)


def archive_tree(root: Path, with_twin_partner: bool = True) -> Path:
    """The shared clips laid out as RAVDESS's archives unpack: ``Video_Speech_Actor_05/Actor_05``,
    ``Video_Song_Actor_05/Actor_05`` and the audio-only ``Audio_Speech_Actors_01-24/Actor_05``."""
    speech = root / "Video_Speech_Actor_05" / "Actor_05"
    song = root / "Video_Song_Actor_05" / "Actor_05"
    audio = root / "Audio_Speech_Actors_01-24" / "Actor_05"
    for folder in (speech, song, audio):
        folder.mkdir(parents=True)
    for video in sorted(need(RAVDESS_VIDEO).glob("*.mp4")):
        if with_twin_partner or video.stem != "01-01-06-01-01-01-05":
            (speech / video.name).symlink_to(video)
    (song / f"{SONG}.mp4").symlink_to(need(RAVDESS_VIDEO / "01-01-04-01-01-01-05.mp4"))
    media.write_tone_wav(audio / "03-01-01-01-02-01-05.wav")
    media.write_tone_wav(audio / "03-01-04-01-01-01-05.wav")
    return root


def _plan(tree: Path, modality: str):
    config = BuildConfig()
    config.modality = modality
    return plan_build(tree, config)


def test_the_archive_layout_plans_each_recording_once(tmp_path):
    tree = archive_tree(tmp_path / "RAVDESS")
    plan = _plan(tree, "auto")
    ids = sorted(c.clip_id for c in plan.clips)
    assert TWIN not in ids and "01-01-06-01-01-01-05" in ids and SONG in ids and len(ids) == 5
    assert plan.skipped == [{"id": TWIN, "path": str(tree / "Video_Speech_Actor_05" / "Actor_05" / f"{TWIN}.mp4"),
                             "reason": SKIP_TWIN, "twin": "01-01-06-01-01-01-05"}]
    assert plan.audio_only == 2 and not plan.rejected
    assert plan.skipped_by_reason() == {SKIP_TWIN: 1, SKIP_AUDIO_ONLY: 2}
    song = next(c for c in plan.clips if c.clip_id == SONG)
    assert song.labels["vocal"] == "song" and song.labels["vocal_channel"] == 2
    # The other choices: every file (twins fitted too), or audio-video files only.
    assert TWIN in {c.clip_id for c in _plan(tree, "all").clips} and not _plan(tree, "all").skipped
    strict = _plan(tree, "audio-video")
    assert TWIN not in {c.clip_id for c in strict.clips} and strict.skipped[0]["reason"] == SKIP_MODALITY


def test_a_video_only_take_without_its_twin_is_planned(tmp_path):
    tree = archive_tree(tmp_path / "RAVDESS", with_twin_partner=False)
    plan = _plan(tree, "auto")
    assert TWIN in {c.clip_id for c in plan.clips} and not plan.skipped
    assert TWIN not in {c.clip_id for c in _plan(tree, "audio-video").clips}


def test_a_bad_modality_is_one_line(tmp_path):
    proc = run_cli("build-dataset", str(tmp_path), "--out", str(tmp_path / "o"), "--modality", "twins",
                   check_exit=2)
    assert "'twins' is not one of" in proc.stderr and "Traceback" not in proc.stderr


def _lock_holder(out: Path, proc: subprocess.Popen, timeout: float = 120) -> dict:
    lock = out / "work" / "build.lock"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if lock.exists() and lock.stat().st_size:
            return json.loads(lock.read_text())
        time.sleep(0.05)
    raise AssertionError("the first build never took its lock")


@pytest.fixture(scope="module")
def twinless(tmp_path_factory) -> dict:
    """A tree whose video-only take lacks its audio-video twin, with a song take and audio-only files,
    built once, while a second build (and a SLURM submission, where a cluster answers) is started on
    the same folder."""
    root = tmp_path_factory.mktemp("download")
    tree = archive_tree(root / "RAVDESS", with_twin_partner=False)
    out = root / "out"
    args = [sys.executable, "-m", "recon3d", "build-dataset", str(tree), "--flame-model", str(need(STAND_IN)),
            "--out", str(out), "--no-progress", "--workers", "2"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = _lock_holder(out, first)
    # Held still while the others try (the build is faster than a second command starts): the lock
    # is held by a live process, so the refusals cannot race the first build's end.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = subprocess.run(args, capture_output=True, text=True, timeout=300)
        slurm = None
        if slurm_available() is None:
            slurm = subprocess.run(args + ["--executor", "slurm", "--cpus-per-task", "1", "--mem-gb", "3"],
                                   capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first build ended before the second was refused: the test proves nothing"
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, stderr = first.communicate(timeout=900)
    assert first.returncode == 0, stderr[-3000:]
    return {"tree": tree, "out": out, "holder": holder, "second": second, "slurm": slurm, "stderr": stderr}


def test_a_second_build_in_a_running_folder_is_refused_in_one_line(twinless):
    holder, second = twinless["holder"], twinless["second"]
    assert holder["host"] == socket.gethostname() and holder["pid"] > 0
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2 and len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"pid {holder['pid']} on host {holder['host']}" in lines[0] and "is being built by" in lines[0]
    if twinless["slurm"] is None:
        pytest.skip(f"no SLURM cluster here for the submission half: {slurm_available()}")
    assert twinless["slurm"].returncode == 2 and f"pid {holder['pid']}" in twinless["slurm"].stderr


def test_the_twinless_video_only_take_is_built_without_speech_audio(twinless):
    manifest = json.loads((twinless["out"] / "manifest.json").read_text())
    clips = {c["id"]: c for c in manifest["clips"]}
    assert sorted(clips) == sorted(["01-01-01-01-02-01-05", "01-01-04-01-01-01-05", "01-01-06-02-01-01-05", TWIN, SONG])
    assert not manifest["failures"] and manifest["skipped"] == [] and manifest["audio_only_files"] == 2
    assert clips[TWIN]["has_speech_audio"] is False and clips[TWIN]["labels"]["modality"] == 2
    assert clips[SONG]["labels"]["vocal"] == "song" and clips[SONG]["has_speech_audio"]
    assert "skipped: 2 (audio-only 2)" in twinless["stderr"]
    summary = json.loads(run_cli("inspect", str(twinless["out"]), "--json").stdout)
    assert summary["vocal"] == {"song": 1, "speech": 4} and summary["without_speech_audio"] == 1
    assert summary["skipped_by_reason"] == {SKIP_AUDIO_ONLY: 2}


def test_the_animator_trains_and_evaluates_only_on_clips_with_speech(twinless, tmp_path):
    out, run = twinless["out"], tmp_path / "run"
    run_cli("train", str(out), "--out", str(run), "--epochs", "1", "--no-progress",
            "--config", str(tiny_train_config(tmp_path / "tiny.yaml")))
    clips = json.loads((run / "clips.json").read_text())
    assert set(clips) == {"train", "val", "test", "excluded"}
    assert clips["excluded"] == {TWIN: "no speech audio (a video-only take or a silent track)",
                                 SONG: "song (data.include_song: false)"}
    used = clips["train"] + clips["val"] + clips["test"]
    assert TWIN not in used and SONG not in used and clips["train"]
    result = json.loads(run_cli("evaluate", str(run), "--split", "train", "--json").stdout)
    assert result["overall"]["sequences"] == len(clips["train"])
    # With song takes switched on, the song take is trained on; the silent take still is not.
    cfg = tmp_path / "song.yaml"
    cfg.write_text(tiny_train_config(tmp_path / "tiny2.yaml").read_text().replace(
        "data:\n", "data:\n  include_song: true\n"))
    run_cli("train", str(out), "--out", str(tmp_path / "song_run"), "--max-steps", "1", "--no-progress",
            "--config", str(cfg))
    with_song = json.loads((tmp_path / "song_run" / "clips.json").read_text())
    assert SONG in with_song["train"] + with_song["val"] + with_song["test"] and list(with_song["excluded"]) == [TWIN]


#: Issue 40's one-actor tree: three speech takes (two of them one take), a video-only take without
#: its twin and a song take; names relabel the shared clips (labels are what is tested).
ONE_ACTOR = {"01-01-01-01-02-02-05": "01-01-01-01-02-01-05", "01-01-03-01-02-02-05": "01-01-04-01-01-01-05",
             "01-01-05-01-02-01-05": "01-01-06-01-01-01-05", TWIN: TWIN, "01-02-03-01-01-02-05": "01-01-06-02-01-01-05"}
OLD_SPLIT = {"01-01-01-01-02-02-05": "test", "01-01-03-01-02-02-05": "test", "01-01-05-01-02-01-05": "val",
             TWIN: "train", "01-02-03-01-01-02-05": "train"}  # the split before issue 40: nothing to train on


def test_a_one_actor_tree_keeps_speech_takes_in_train_and_says_which_split_has_none(tmp_path):
    import shutil

    tree = tmp_path / "Actor_05"
    tree.mkdir()
    for name, source in ONE_ACTOR.items():
        (tree / f"{name}.mp4").symlink_to(need(RAVDESS_VIDEO / f"{source}.mp4"))
    out = tmp_path / "out"
    proc = build(tree, out, "--workers", "2")
    manifest = json.loads((out / "manifest.json").read_text())
    splits = {c["id"]: c["split"] for c in manifest["clips"]}
    assert splits == {"01-01-01-01-02-02-05": "test", "01-01-03-01-02-02-05": "test", "01-01-05-01-02-01-05": "train",
                      TWIN: "train", "01-02-03-01-01-02-05": "train"}
    line = "clips with speech audio (what the animator learns from): train 1, val 0, test 2"
    empty = "no clip with speech audio in the 'val' split"
    assert line in proc.stderr and empty in proc.stderr
    inspect = run_cli("inspect", str(out)).stdout
    assert line in inspect and empty in inspect
    assert json.loads(run_cli("inspect", str(out), "--json").stdout)["speech_by_split"] == {
        "train": 1, "val": 0, "test": 2}
    config = str(tiny_train_config(tmp_path / "tiny.yaml"))
    run_cli("train", str(out), "--out", str(tmp_path / "run"), "--max-steps", "2", "--no-progress", "--config", config)
    assert json.loads((tmp_path / "run" / "clips.json").read_text())["train"] == ["01-01-05-01-02-01-05"]

    # A dataset split the old way: train says what to do, and the rerun it names re-splits without a refit.
    old = tmp_path / "old"
    shutil.copytree(out, old)
    stale = json.loads((old / "manifest.json").read_text())
    for clip in stale["clips"]:
        clip["split"] = OLD_SPLIT[clip["id"]]
    (old / "manifest.json").write_text(json.dumps(stale))
    proc = run_cli("train", str(old), "--out", str(tmp_path / "run_old"), "--max-steps", "2", "--no-progress",
                   "--config", config, check_exit=2)
    message = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(message) == 1 and "no clip with speech audio in the 'train' split (val 1, test 2" in message[0]
    assert f"Rerun `recon3d build-dataset {tree} --out {old}`" in message[0]
    assert not (tmp_path / "run_old").exists()
    rerun = build(tree, old, "--workers", "2")
    assert "redo" not in rerun.stderr and "rebuilding" not in rerun.stderr
    assert {c["id"]: c["split"] for c in json.loads((old / "manifest.json").read_text())["clips"]} == splits
    run_cli("train", str(old), "--out", str(tmp_path / "run_old"), "--max-steps", "2", "--no-progress",
            "--config", config)


def test_a_killed_build_leaves_a_lock_file_that_does_not_stop_the_rerun(tmp_path):
    """``kill -9`` ends the holder: the kernel drops the lock, the file stays, the rerun goes on."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "recon3d", "build-dataset", str(need(RAVDESS_VIDEO)), "--flame-model",
            str(need(STAND_IN)), "--out", str(out), "--no-progress", "--workers", "1", "--plan-only"]
    proc = subprocess.Popen(args[:-1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _lock_holder(out, proc)
    os.killpg(proc.pid, 9)
    proc.wait()
    assert (out / "work" / "build.lock").stat().st_size > 0  # the killed holder's record is still there
    proc = build(need(RAVDESS_VIDEO), out, "--plan-only")
    assert "is being built" not in proc.stderr and "4 clips in 1 shard(s)" in proc.stderr
