"""Importing VOCASET (``data_verts.npy``, ``raw_audio_fixed.pkl``, ``templates.pkl``,
``subj_seq_to_idx.pkl``) into recon3d's shard format, so the animator trains on it too.

VOCASET's meshes are FLAME-topology, in metres, at 60 fps; they are taken every other frame
(30 fps). Audio (22 kHz int16) is resampled to 16 kHz. Every clip is emotion "neutral",
intensity 1. Subjects are split as in VOCA / FaceFormer (8 train, 2 validation, 2 test).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from recon3d.errors import SetupError
from recon3d.flame.safe_pickle import load_pickle_file
from recon3d.io.mesh import read_mesh
from recon3d.shards.schema import AUDIO_RATE, ClipAttrs, audio_samples
from recon3d.shards.writer import ClipRecord, write_dataset

FILES = ("data_verts.npy", "raw_audio_fixed.pkl", "templates.pkl", "subj_seq_to_idx.pkl")
SPLITS = {
    "train": ("FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
              "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
              "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA"),
    "val": ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"),
    "test": ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"),
}
SOURCE_FPS, FPS = 60, 30


class VocasetError(SetupError):
    """A folder that is not in VOCASET's layout."""


def split_of(subject: str) -> str:
    return next((s for s, subjects in SPLITS.items() if subject in subjects), "train")


def _faces(vocaset_dir: Path, faces_from: Path | None) -> np.ndarray:
    path = faces_from or next(iter(sorted(vocaset_dir.rglob("FLAME_sample.ply"))), None)
    if path is None:
        raise VocasetError(f"{vocaset_dir}: no FLAME_sample.ply for the triangles; pass --faces-from a FLAME-topology "
                           ".ply/.obj (e.g. VOCA's template/FLAME_sample.ply) or --flame-model")
    _, faces = read_mesh(path)
    return faces


def check_layout(vocaset_dir: Path) -> None:
    missing = [f for f in FILES if not (Path(vocaset_dir) / f).exists()]
    if missing:
        raise VocasetError(f"{vocaset_dir}: not a VOCASET folder (missing {', '.join(missing)}); VOCASET comes "
                           "from https://voca.is.tue.mpg.de/")


def import_vocaset(vocaset_dir: str | Path, out_dir: str | Path, faces: np.ndarray | None = None,
                   faces_from: Path | None = None) -> dict:
    """Convert a VOCASET folder into a recon3d dataset at ``out_dir``; returns the manifest."""
    vocaset_dir = Path(vocaset_dir)
    check_layout(vocaset_dir)
    verts = np.load(vocaset_dir / "data_verts.npy", mmap_mode="r")
    audio_all = load_pickle_file(vocaset_dir / "raw_audio_fixed.pkl")
    templates = load_pickle_file(vocaset_dir / "templates.pkl")
    index = load_pickle_file(vocaset_dir / "subj_seq_to_idx.pkl")
    if faces is None:
        faces = _faces(vocaset_dir, faces_from)
    records, actors = [], {}
    for subject in sorted(index):
        template = np.asarray(templates[subject], np.float32)
        actors[subject] = {"shape": np.zeros(0, np.float32), "template": template}
        for seq in sorted(index[subject]):
            frames = index[subject][seq]
            if seq not in audio_all.get(subject, {}):
                continue
            order = sorted(frames)[::SOURCE_FPS // FPS]
            vertices = np.asarray(verts[[frames[k] for k in order]], np.float32)
            raw = audio_all[subject][seq]
            ratio = Fraction(AUDIO_RATE, int(raw["sample_rate"]))
            audio = resample_poly(np.asarray(raw["audio"], np.float32) / 32768.0, ratio.numerator, ratio.denominator)
            n = audio_samples(len(vertices), FPS)
            audio = np.pad(audio, (0, max(0, n - len(audio))))[:n].astype(np.float32)
            t = len(vertices)
            attrs = ClipAttrs(actor=subject, fps=float(FPS), n_frames=t, emotion="neutral", emotion_id=1, intensity=1,
                              vocal_channel=1, modality=3, has_speech_audio=bool(np.abs(audio).max() > 0),
                              split=split_of(subject), source_path=str(vocaset_dir), extra={"sequence": seq})
            records.append(ClipRecord(
                clip_id=f"{subject}_{seq}", attrs=attrs, times=np.arange(t) / FPS, vertices=vertices, audio=audio,
                landmarks=np.zeros((t, 0, 2), np.float32), landmarks_valid=np.zeros(t, bool), flame={}, camera={},
                head_translation=np.zeros((t, 3), np.float32)))
    if not records:
        raise VocasetError(f"{vocaset_dir}: no sequence has both meshes and audio")
    return write_dataset(Path(out_dir), records, actors, faces,
                         {"source": "VOCASET", "vocaset_dir": str(vocaset_dir.resolve()), "fps": FPS})
