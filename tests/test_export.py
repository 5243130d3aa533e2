"""`recon3d export`, read back as the community's trainers read the formats (loaders written here
from the formats' descriptions and FaceFormer's data_loader.py, not with recon3d's reader) and
compared with the shards read through h5py."""

from __future__ import annotations

import json
import os
import pickle
import wave

import h5py
import numpy as np
import pytest

from tests.cli import run_cli

pytestmark = pytest.mark.slow


def faceformer_style_read(root, train_subjects, val_subjects, test_subjects):
    """What FaceFormer / CodeTalker / SelfTalk's read_data does for --dataset vocaset (minus wav2vec)."""
    with open(root / "templates.pkl", "rb") as f:
        templates = pickle.load(f, encoding="latin1")
    data = {}
    for r, _, files in os.walk(root / "wav"):
        for name in files:
            if not name.endswith("wav"):
                continue
            key = name.replace("wav", "npy")
            subject = "_".join(key.split("_")[:-1])
            with wave.open(os.path.join(r, name)) as w:
                assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
                audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767
            vertices_path = root / "vertices_npy" / key
            if vertices_path.exists():
                data[key] = {"audio": audio, "template": templates[subject].reshape(-1),
                             "vertice": np.load(vertices_path, allow_pickle=True)[::2, :], "subject": subject}
    ranges = {"train": range(1, 41), "val": range(21, 41), "test": range(21, 41)}
    subjects = {"train": train_subjects, "val": val_subjects, "test": test_subjects}
    out = {split: [] for split in ranges}
    for key, item in data.items():
        sentence = int(key.split(".")[0][-2:])
        for split in ranges:
            if item["subject"] in subjects[split] and sentence in ranges[split]:
                out[split].append((key, item))
    return out


def shard_clip(built, clip_id):
    with h5py.File(built / "shards" / "actor_05.h5", "r") as f:
        g = f["clips"][clip_id]
        return {"vertices": g["vertices"][()], "audio": g["audio"][()], "template": f["actors/05/template"][()],
                "flame": {k: g["flame"][k][()] for k in g["flame"]}, "shape": f["actors/05/shape"][()],
                "camera": dict(g["camera"].attrs), "camera_translation": g["camera/translation"][()],
                "attrs": dict(g.attrs)}


def test_vocaset_export_reads_back_as_faceformer_reads_it(built, tmp_path):
    out = tmp_path / "vocaset"
    summary = json.loads(run_cli("export", str(built), "--format", "vocaset", "--out", str(out), "--no-progress").stdout)
    manifest = json.loads((built / "manifest.json").read_text())
    speech = [c for c in manifest["clips"] if c["has_speech_audio"]]
    assert summary["sequences"] == len(speech) == 4
    subjects = json.loads((out / "subjects.json").read_text())
    read = faceformer_style_read(out, subjects["train"], subjects["val"], subjects["test"])
    by_clip = {}
    for key, item in read["train"] + read["test"]:
        clip_id = next(c["id"] for c in speech if c["id"].replace("_", "-") in key)
        by_clip.setdefault(clip_id, (key, item))
        labels = next(c["labels"] for c in speech if c["id"] == clip_id)
        assert key.startswith(f"Actor_05_{labels['emotion']}-")  # emotion and intensity in the name
    assert sorted(by_clip) == sorted(c["id"] for c in speech)
    test_keys = {k for k, _ in read["test"]}
    assert test_keys == {f"{n}.npy" for n in (out / "splits" / "test.txt").read_text().split()}
    for clip_id, (key, item) in by_clip.items():
        ref = shard_clip(built, clip_id)
        np.testing.assert_array_equal(item["vertice"], ref["vertices"].reshape(len(ref["vertices"]), -1))
        np.testing.assert_array_equal(item["template"], ref["template"].reshape(-1))
        assert len(item["audio"]) == len(ref["audio"])
        np.testing.assert_allclose(item["audio"], np.clip(ref["audio"], -1, 1), atol=1.0 / 32767 + 1e-6)
    assert "--train_subjects" in (out / "README.txt").read_text()


def test_flame_npz_export_reads_back(built, tmp_path):
    out = tmp_path / "flame"
    run_cli("export", str(built), "--format", "flame-npz", "--out", str(out), "--no-progress")
    index = json.loads((out / "index.json").read_text())
    assert len(index) == 4
    for row in index:
        with np.load(out / f"{row['id']}.npz") as d:
            ref = shard_clip(built, row["id"])
            for name in ("expression", "jaw_pose", "neck_pose", "global_pose", "translation", "eye_pose"):
                np.testing.assert_array_equal(d[name], ref["flame"][name])
            np.testing.assert_array_equal(d["shape"], ref["shape"])
            np.testing.assert_array_equal(d["camera_translation"], ref["camera_translation"])
            for key in ("focal", "cx", "cy", "width", "height"):
                assert float(d[key]) == pytest.approx(float(ref["camera"][key]))
            assert str(d["emotion"]) == ref["attrs"]["emotion"] and int(d["emotion_id"]) == ref["attrs"]["emotion_id"]
            assert int(d["intensity"]) == ref["attrs"]["intensity"] and str(d["actor"]) == "05"
            assert float(d["fps"]) == pytest.approx(float(ref["attrs"]["fps"]))
            assert d["expression"].shape[0] == ref["vertices"].shape[0] == row["frames"]


@pytest.mark.parametrize("args, message", [
    (["--format", "vocaset"], "not a finished recon3d build"),
    (["--format", "bvh"], "'bvh' is not one of 'vocaset', 'flame-npz'"),
])
def test_export_bad_input_is_a_clear_error(tmp_path, args, message):
    proc = run_cli("export", str(tmp_path), *args, "--out", str(tmp_path / "x"), check_exit=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr
