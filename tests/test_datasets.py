"""MEAD and CREMA-D as downloaded (issue 39): their layouts, labels, views and splits, real builds
of trees made from the shared clips (the MEAD samples are real MEAD takes), and training on them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recon3d.errors import LabelError, SetupError
from recon3d.io.labels import EMOTION_NAMES, detect_layout, label_video, parse_views
from recon3d.pipeline.config import BuildConfig
from recon3d.pipeline.plan import plan_build, resolve_labels
from tests import media
from tests.cli import build, run_cli, tiny_train_config
from tests.conftest import ASSETS, RAVDESS_VIDEO, need

MEAD_SAMPLES = ASSETS / "video" / "mead"


def touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


def test_mead_and_crema_d_labels_in_the_shared_vocabulary():
    clip_id, mead = label_video("mead", Path("/data/MEAD/M003/video/left_30/contempt/level_3/012.mp4"))
    assert clip_id == "M003_left_30_contempt_level_3_012"
    assert (mead["dataset"], mead["actor"], mead["view"], mead["intensity"], mead["statement"]) == \
        ("mead", "M003", "left_30", 3, 12)
    assert mead["emotion"] == "contempt" and mead["emotion_id"] == 9 == len(EMOTION_NAMES)
    assert label_video("mead", Path("W009/video/front/disgusted/level_1/001.mp4"))[1]["emotion"] == "disgust"
    assert label_video("mead", Path("W009/video/front/fear/level_2/001.mp4"))[1]["emotion_id"] == 6  # fearful
    clip_id, crema = label_video("crema-d", Path("/x/1091_TIE_FEA_HI.FLV"))
    assert clip_id == "1091_TIE_FEA_HI" and crema["actor"] == "1091" and crema["emotion"] == "fearful"
    assert (crema["intensity"], crema["sentence"], crema["statement"]) == (3, "TIE", 2)
    assert label_video("crema-d", Path("1001_DFA_NEU_XX.flv"))[1]["intensity"] == 0  # unspecified
    with pytest.raises(LabelError, match="MEAD's layout.*camera"):
        label_video("mead", Path("M003/video/side/angry/level_1/001.mp4"))
    with pytest.raises(LabelError, match="emotion XYZ is not a CREMA-D code"):
        label_video("crema-d", Path("1001_DFA_XYZ_XX.flv"))
    with pytest.raises(SetupError, match="sideways"):
        parse_views("front,sideways")
    assert len(parse_views("all")) == 7


def test_the_layout_is_detected_and_views_and_actors_planned(tmp_path):
    """A MEAD tree (two cameras, three actors, one misplaced file) plans the front camera only,
    splits by actor, and points a video without audio at MEAD's .m4a; the layout is detected."""
    mead = touch(tmp_path / "MEAD", *(f"{a}/video/{v}/{e}/level_1/00{i}.mp4" for a in ("M003", "M005", "W009")
                                      for v in ("front", "left_30") for e in ("neutral", "angry") for i in (1, 2)),
                 "M003/video/front/angry/level_9/001.mp4")
    config, line = resolve_labels(BuildConfig(), mead)
    assert config.labels == "mead" and line.startswith("labels: mead, detected (24 of 25 videos")
    plan = plan_build(mead, config)
    assert len(plan.clips) == 12 and {c.labels["view"] for c in plan.clips} == {"front"}
    assert sum(s["reason"] == "camera left_30 (views: front)" for s in plan.skipped) == 12
    assert [r["reason"] for r in plan.rejected] == [
        f"'{mead}/M003/video/front/angry/level_9/001.mp4' is not in MEAD's layout "
        "(MXXX/video/VIEW/EMOTION/level_N/NNN.mp4): not a level_1-3"]
    assert {c.actor: c.split for c in plan.clips} == {"M003": "train", "M005": "train", "W009": "test"}
    clip = next(c for c in plan.clips if c.clip_id == "M005_front_angry_level_1_002")
    assert clip.audio_path == str(mead / "M005/audio/angry/level_1/002.m4a") and clip.shard == "actor_M005"
    assert len(plan_build(mead, BuildConfig(labels="mead", views="all")).clips) == 24

    crema = touch(tmp_path / "CREMA-D", "1001_DFA_ANG_XX.flv", "1001_IEO_NEU_XX.FLV", "1002_TIE_SAD_LO.mp4",
                  "notes.txt")
    assert detect_layout(sorted(crema.glob("*.*"))[:3]) == ("crema-d", 3)
    config, line = resolve_labels(BuildConfig(), crema)
    assert config.labels == "crema-d" and "3 of 3 videos named as CREMA-D names them" in line
    assert resolve_labels(BuildConfig(), touch(tmp_path / "any", "talk.mp4"))[0].labels == "none"
    assert resolve_labels(BuildConfig(), need(RAVDESS_VIDEO))[0].labels == "ravdess"


@pytest.fixture(scope="module")
def mead_tree(tmp_path_factory) -> Path:
    """MEAD's layout from the three real MEAD takes, one of them also seen by a second camera, and
    one copy whose audio is only in MEAD's audio folder (a neutral take for the identity)."""
    root = tmp_path_factory.mktemp("mead") / "MEAD"
    samples = sorted(need(MEAD_SAMPLES).glob("*.mp4"))
    for sample in samples:  # M003_level_1_disgusted_015.mp4
        actor, _, level, emotion, take = sample.stem.split("_")
        for view in ("front", "left_30") if actor == "M003" else ("front",):
            target = root / actor / "video" / view / emotion / f"level_{level}" / f"{take}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(sample, target)
    m003 = next(s for s in samples if s.stem.startswith("M003"))
    media.split_audio(m003, root / "M003/video/front/neutral/level_1/001.mp4", root / "M003/audio/neutral/level_1/001.m4a")
    return root


@pytest.fixture(scope="module")
def mead_built(mead_tree, tmp_path_factory) -> tuple[Path, str]:
    """The MEAD tree built (its folder, and the build's stderr)."""
    out = tmp_path_factory.mktemp("built") / "3d-mead"
    return out, build(mead_tree, out, "--workers", "2").stderr


@pytest.fixture(scope="module")
def crema_d_built(tmp_path_factory) -> tuple[Path, str]:
    """CREMA-D's names and 480-px .flv files (RAVDESS takes, re-encoded and renamed), built."""
    source = need(RAVDESS_VIDEO)
    folder = tmp_path_factory.mktemp("crema") / "CREMA-D"
    folder.mkdir()
    for name, take in (("1001_IEO_NEU_XX", "01-01-01-01-02-01-05"), ("1001_DFA_SAD_LO", "01-01-04-01-01-01-05"),
                       ("1002_TIE_FEA_HI", "01-01-06-02-01-01-05")):
        media.write_resized(source / f"{take}.mp4", folder / f"{name}.flv", 480, 45)
    out = folder.parent / "3d-crema-d"
    return out, build(folder, out, "--workers", "2", "--labels", "crema-d").stderr


def test_a_mead_tree_builds_with_its_labels_and_the_audio_folder(mead_built, tmp_path):
    out, stderr = mead_built
    assert stderr.splitlines()[0].startswith("labels: mead, detected (5 of 5 videos")
    manifest = json.loads((out / "manifest.json").read_text())
    clips = {c["id"]: c for c in manifest["clips"]}
    assert sorted(clips) == ["M003_front_disgusted_level_1_015", "M003_front_neutral_level_1_001",
                             "M030_front_angry_level_3_016", "W023_front_surprised_level_2_010"]
    disgusted = clips["M003_front_disgusted_level_1_015"]["labels"]
    assert {k: disgusted[k] for k in ("dataset", "actor", "view", "emotion", "emotion_id", "intensity")} == \
        {"dataset": "mead", "actor": "M003", "view": "front", "emotion": "disgust", "emotion_id": 7, "intensity": 1}
    assert clips["M003_front_neutral_level_1_001"]["has_speech_audio"]  # from M003/audio/neutral/level_1/001.m4a
    assert clips["M030_front_angry_level_3_016"]["labels"]["intensity"] == 3
    assert {c["actor"] for c in clips.values() if c["split"] == "test"} == {"W023"}

    run = tmp_path / "run"
    run_cli("train", str(out), "--out", str(run), "--config", str(tiny_train_config(tmp_path / "t.yaml")),
            "--epochs", "1", "--no-progress")
    config = (run / "config.yaml").read_text()
    assert "n_intensities: 3" in config and "n_emotions: 8" in config  # MEAD's level 3 grew the embedding
    result = run_cli("evaluate", str(run), "--split", "test", "--json")
    assert set(json.loads(result.stdout)["per_emotion"]) == {"surprised"}  # W023's take, by actor


def test_a_crema_d_folder_of_flv_builds_and_trains(crema_d_built, tmp_path):
    out, stderr = crema_d_built
    assert stderr.splitlines()[0] == "labels: crema-d (--labels)"
    clips = {c["id"]: c for c in json.loads((out / "manifest.json").read_text())["clips"]}
    assert clips["1002_TIE_FEA_HI"]["labels"]["sentence"] == "TIE" and clips["1002_TIE_FEA_HI"]["split"] == "test"
    assert clips["1001_IEO_NEU_XX"]["labels"]["intensity"] == 0
    run = tmp_path / "run"
    run_cli("train", str(out), "--out", str(run), "--config", str(tiny_train_config(tmp_path / "t.yaml")),
            "--epochs", "1", "--no-progress")
    assert "n_intensities: 3" in (run / "config.yaml").read_text()


def test_two_datasets_train_as_one_and_are_evaluated_apart(mead_built, crema_d_built, tmp_path):
    """`recon3d train 3D-MEAD 3D-CREMA-D`: one emotion vocabulary, clips.json names each clip's
    build, evaluate reports each build beside the whole."""
    (mead, _), (crema_d, _) = mead_built, crema_d_built
    run = tmp_path / "run"
    run_cli("train", str(mead), str(crema_d), "--out", str(run), "--config",
            str(tiny_train_config(tmp_path / "t.yaml")), "--epochs", "1", "--no-progress")
    clips = json.loads((run / "clips.json").read_text())
    assert clips["datasets"]["M003_front_disgusted_level_1_015"] == "3d-mead"
    assert clips["datasets"]["1001_DFA_SAD_LO"] == "3d-crema-d"
    assert sorted(clips["test"]) == ["1002_TIE_FEA_HI", "W023_front_surprised_level_2_010"]
    info = json.loads((run / "run.json").read_text())
    assert info["shards_dirs"] == [str(mead.resolve()), str(crema_d.resolve())]
    assert info["actors"] == ["1001", "M003", "M030"]
    result = json.loads(run_cli("evaluate", str(run), "--split", "test", "--json").stdout)
    assert set(result["per_emotion"]) == {"surprised", "fearful"}  # MEAD's and CREMA-D's, one vocabulary
    assert set(result["per_dataset"]) == {"3d-mead", "3d-crema-d"}
    frames = {name: r["frames"] for name, r in result["per_dataset"].items()}
    assert sum(frames.values()) == result["overall"]["frames"] and frames["3d-crema-d"] == 45
    table = run_cli("evaluate", str(run), "--split", "test").stdout
    assert "3d-mead" in table and "3d-crema-d" in table
    # A clip id in both builds is refused before training, with both names.
    again = run_cli("train", str(mead), str(mead), "--out", str(tmp_path / "twice"), check_exit=2)
    assert "is in both 3d-mead and 3d-mead-2" in again.stderr


def test_a_video_moved_within_the_tree_is_found_not_kept_as_missing(tmp_path):
    """A clip of the last plan whose video moved to another folder of the tree is planned from its
    new place (MEAD's clip ids come from the folders, so the id is matched, not the path)."""
    from recon3d.pipeline.plan import PlannedClip

    for config, old, new in ((BuildConfig(labels="ravdess"), "a/01-01-01-01-01-01-05.mp4", "b/01-01-01-01-01-01-05.mp4"),
                             (BuildConfig(labels="mead"), "x/M003/video/front/angry/level_1/001.mp4",
                              "y/M003/video/front/angry/level_1/001.mp4")):
        root = touch(tmp_path / config.labels, new)
        before = plan_build(touch(tmp_path / f"{config.labels}_old", old), config).clips[0]
        kept = PlannedClip(**{**before.to_dict(), "path": str(root / old)})  # its video is gone from there
        plan = plan_build(root, config, kept=[kept])
        assert [c.path for c in plan.clips] == [str(root / new)] and not plan.missing and not plan.rejected
