"""Writing a built dataset as the files that community trainers read.

``vocaset`` (FaceFormer, CodeTalker, SelfTalk; checked against EvelynFan/FaceFormer dfaea81,
Doubiiu/CodeTalker 1b7cb95 and psyai-net/SelfTalk_release data_loader.py, which share one loader):

```
OUT/templates.pkl                 {subject: (5023, 3) float32 template}, pickle protocol 2
OUT/vertices_npy/<name>.npy       (2T, 15069) float32: every frame written twice (see below)
OUT/wav/<name>.wav                16 kHz mono PCM16, the clip's audio
OUT/splits/train.txt ...          one <name> per line; subjects.json: the subject lists
OUT/README.txt                    the trainers' command-line options for this export
```

``<name>`` is ``<subject>_<sequence>``: the loaders take the subject as everything before the last
underscore and the sentence number as the last two characters. Subjects are ``Actor_<id>``;
sequences ``<emotion>-<intensity>-<clip id>-<NN>`` (no underscore), with ``NN`` 01-20 for
train clips and 21-40 for val/test clips, because the loaders keep train sentences 1-40 and
val/test sentences 21-40 of the listed subjects. VOCASET's meshes are at 60 fps and the loaders
take every other frame (``[::2]``), so each 3D-RAVDESS frame is written twice: the loaders then
read the dataset's own frames at its own rate (29.97 fps). Clips without speech audio (RAVDESS's
video-only files) are left out: these trainers learn from the audio.

``flame-npz`` (FLAME-parameter trainers such as EMOTE-style pipelines): one ``<clip id>.npz`` per
clip with ``shape (K,), expression (T, n), jaw_pose, neck_pose, global_pose, translation (T, 3),
eye_pose (T, 6)``, the camera (``focal, cx, cy, width, height`` and ``camera_translation (T, 3)``),
``fps`` and the labels (``emotion`` name, ``emotion_id`` 1-8, ``intensity`` 1-2, ``actor``,
``statement``, ``repetition``, ``split``); plus ``index.json`` listing every clip and its labels.
"""

from __future__ import annotations

import pickle
import wave
from pathlib import Path

import numpy as np

from recon3d.atomic import atomic_path, write_json
from recon3d.errors import SetupError
from recon3d.io.ravdess import INTENSITIES
from recon3d.shards import schema as S
from recon3d.shards.reader import Dataset3D

FORMATS = ("vocaset", "flame-npz")
TRAIN_NUMBERS, HELD_OUT_NUMBERS = range(1, 21), range(21, 41)


def subject_name(actor: str) -> str:
    return f"Actor_{actor}"


def sequence_names(ds: Dataset3D, entries: list[dict]) -> dict[str, str]:
    """``<subject>_<sequence>`` of each clip (see the module docstring)."""
    counters: dict[tuple[str, bool], int] = {}
    names = {}
    for entry in sorted(entries, key=lambda e: e["id"]):
        labels = entry.get("labels") or {}
        emotion = labels.get("emotion", "unlabeled")
        intensity = INTENSITIES.get(int(labels.get("intensity", 1) or 1), "normal")
        held_out = entry.get("split", "train") != "train"
        key = (str(entry["actor"]), held_out)
        counters[key] = counters.get(key, 0) + 1
        numbers = HELD_OUT_NUMBERS if held_out else TRAIN_NUMBERS
        number = numbers[(counters[key] - 1) % len(numbers)]
        clip = entry["id"].replace("_", "-")
        names[entry["id"]] = f"{subject_name(str(entry['actor']))}_{emotion}-{intensity}-{clip}-{number:02d}"
    return names


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes((np.clip(audio, -1.0, 1.0) * 32767).round().astype("<i2").tobytes())


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def export_vocaset(ds: Dataset3D, out: Path, progress=lambda items: items) -> dict:
    """Write ``ds`` in VOCASET's layout under ``out``; returns a summary."""
    entries = [e for e in ds.clips() if e.get("has_speech_audio")]
    if not entries:
        raise SetupError(f"{ds.root}: no clip has speech audio; the vocaset layout is for audio-driven trainers")
    names = sequence_names(ds, entries)
    templates = {}
    for entry in progress(entries):
        clip = ds.load_clip(entry["id"])
        subject = subject_name(str(entry["actor"]))
        templates.setdefault(subject, clip.template.astype(np.float32))
        vertices = clip.vertices.reshape(len(clip.vertices), -1).astype(np.float32)
        _save_npy(out / "vertices_npy" / f"{names[entry['id']]}.npy", np.repeat(vertices, 2, axis=0))
        write_wav(out / "wav" / f"{names[entry['id']]}.wav", clip.audio, S.AUDIO_RATE)
    with atomic_path(out / "templates.pkl") as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(templates, f, protocol=2)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    subjects: dict[str, set] = {"train": set(), "val": set(), "test": set()}
    for entry in entries:
        split = entry.get("split", "train")
        splits.setdefault(split, []).append(names[entry["id"]])
        subjects.setdefault(split, set()).add(subject_name(str(entry["actor"])))
    for split, seqs in splits.items():
        with atomic_path(out / "splits" / f"{split}.txt") as tmp:
            tmp.write_text("".join(f"{s}\n" for s in sorted(seqs)))
    subject_lists = {k: sorted(v) for k, v in subjects.items()}
    write_json(out / "subjects.json", subject_lists)
    fps = float(np.median([e["fps"] for e in entries]))
    (out / "README.txt").write_text(_vocaset_readme(subject_lists, fps, ds.manifest.get("split_method", "actor")))
    return {"sequences": len(entries), "subjects": len(templates), "splits": {k: len(v) for k, v in splits.items()}}


def _vocaset_readme(subjects: dict[str, list[str]], fps: float, split_method: str) -> str:
    def flag(split: str) -> str:
        return '"' + " ".join(subjects.get(split) or subjects["train"]) + '"'

    note = ("" if split_method == "actor" else
            "\nThe dataset is split within each actor (by take): its val/test clips share subjects with the\n"
            "training clips. These loaders keep sentences 1-40 of the training subjects, so they would also\n"
            "train on those clips; train on splits/train.txt with your own loader to keep them out.\n")
    return f"""3D-RAVDESS in VOCASET's layout (written by recon3d export --format vocaset).

vertices_npy/ hold every frame twice: the loaders take every other frame (VOCASET is 60 fps) and
read the dataset's own frames at {fps:.2f} fps. Vertices in metres, FLAME topology (15069 = 5023 x 3).

FaceFormer (main.py), CodeTalker and SelfTalk: put this folder where they expect "vocaset" and pass

  --dataset vocaset --vertice_dim 15069 \\
  --train_subjects {flag("train")} \\
  --val_subjects {flag("val")} \\
  --test_subjects {flag("test")}
{note}"""


def export_flame_npz(ds: Dataset3D, out: Path, progress=lambda items: items) -> dict:
    """One ``<clip id>.npz`` of FLAME parameters, camera and labels per clip, and ``index.json``."""
    index = []
    with_flame = 0
    for entry in progress(ds.clips()):
        shard = ds.shard_of(entry["id"])
        flame = shard.flame(entry["id"])
        if not flame:
            continue
        attrs = shard.attrs(entry["id"])
        camera = shard.camera(entry["id"])
        arrays = {name: flame[name] for name in S.FLAME_PARAMS if name in flame}
        arrays["shape"] = shard.shape(attrs.actor)
        arrays["camera_translation"] = shard.array(entry["id"], f"{S.CAMERA}/{S.CAMERA_TRANSLATION}")
        labels = {"emotion": attrs.emotion, "emotion_id": attrs.emotion_id, "intensity": attrs.intensity,
                  "actor": attrs.actor, "statement": attrs.statement, "repetition": attrs.repetition,
                  "split": attrs.split}
        with atomic_path(out / f"{entry['id']}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays, fps=np.float64(attrs.fps), **{k: np.float64(v) for k, v in camera.items()},
                         **{k: np.asarray(v) for k, v in labels.items()})
        index.append({"id": entry["id"], "frames": attrs.n_frames, "fps": attrs.fps, **labels})
        with_flame += 1
    if not with_flame:
        raise SetupError(f"{ds.root}: no clip has FLAME parameters (imported meshes, e.g. VOCASET, have none)")
    write_json(out / "index.json", index)
    return {"clips": with_flame}


def export(dataset_dir: str | Path, fmt: str, out: str | Path, progress=lambda items: items) -> dict:
    """Export the dataset in ``dataset_dir`` as ``fmt`` (:data:`FORMATS`) into ``out``."""
    from recon3d.shards import open_dataset

    if fmt not in FORMATS:
        raise SetupError(f"unknown export format '{fmt}' (choose {' or '.join(FORMATS)})")
    ds = open_dataset(dataset_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        summary = (export_vocaset if fmt == "vocaset" else export_flame_npz)(ds, out, progress)
    finally:
        ds.close()
    write_json(out / "export.json", {"format": fmt, "source": str(Path(dataset_dir).resolve()), **summary})
    return summary
