"""import-vocaset on a tiny dataset in VOCASET's layout built from the 12 real subject templates."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from recon3d.io.mesh import read_mesh
from recon3d.importers.vocaset import SPLITS
from recon3d.shards import open_dataset
from tests.conftest import ASSETS, need

TEMPLATES = ASSETS / "vocaset" / "templates"


@pytest.fixture(scope="module")
def vocaset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocaset")
    subjects = sorted(p.stem for p in need(TEMPLATES).glob("*.ply"))
    assert len(subjects) == 12
    templates = {s: read_mesh(TEMPLATES / f"{s}.ply")[0].astype(np.float32) for s in subjects}
    rng = np.random.default_rng(0)
    verts, index, audio, g = [], {}, {}, 0
    for s in subjects:
        index[s], audio[s] = {}, {}
        for q, n in (("sentence01", 42), ("sentence02", 36)):  # frames at 60 fps
            motion = np.sin(np.arange(n) / 60 * 2 * np.pi * 3)[:, None, None] * rng.normal(0, 1e-3, (1, 5023, 3))
            verts.append(templates[s][None] + motion)
            index[s][q] = {k: g + k for k in range(n)}
            g += n
            audio[s][q] = {"sample_rate": 22000, "audio": rng.normal(0, 2000, int(n / 60 * 22000)).astype(np.int16)}
    np.save(folder / "data_verts.npy", np.concatenate(verts).astype(np.float32))
    for name, obj in (("raw_audio_fixed.pkl", audio), ("templates.pkl", templates), ("subj_seq_to_idx.pkl", index)):
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return folder, templates, verts


def test_import_vocaset_into_shards_and_train(vocaset_dir, tmp_path):
    folder, templates, verts = vocaset_dir
    out = tmp_path / "shards"
    subprocess.run([sys.executable, "-m", "recon3d", "import-vocaset", str(folder), "--out", str(out),
                    "--faces-from", str(TEMPLATES / "FaceTalk_170725_00137_TA.ply")], check=True, capture_output=True)
    ds = open_dataset(out)
    assert len(ds) == 24
    for split, subjects in SPLITS.items():
        assert {c["actor"] for c in ds.clips(split)} == set(subjects)
    clip = ds.load_clip("FaceTalk_170725_00137_TA_sentence01")
    assert clip.vertices.shape == (21, 5023, 3) and clip.fps == 30.0  # 42 frames at 60 fps -> 21 at 30
    np.testing.assert_allclose(clip.vertices, verts[0][::2], atol=1e-7)
    np.testing.assert_allclose(clip.template, templates["FaceTalk_170725_00137_TA"])
    assert len(clip.audio) == round(21 / 30 * 16000)
    info = ds.info("FaceTalk_170725_00137_TA_sentence01")
    assert info["labels"]["emotion"] == "neutral" and info["labels"]["intensity"] == 1
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {dim: 32, layers: 1, n_coarse: 48, attention_channels: 4}\n"
                   "data: {window_frames: 12, batch_size: 4, windows_per_clip: 1}\noptim: {epochs: 1}\n")
    proc = subprocess.run([sys.executable, "-m", "recon3d", "train", str(out), "--out", str(run), "--config", str(cfg),
                           "--no-progress", "--flame-masks", str(ASSETS / "flame" / "FLAME_masks.pkl")],
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == 4  # 16 train sequences / 4


def test_not_a_vocaset_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "recon3d", "import-vocaset", str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not a VOCASET folder" in proc.stderr and "voca.is.tue.mpg.de" in proc.stderr
