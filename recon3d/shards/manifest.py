"""``manifest.json``: every clip of a dataset (from its shards' attributes), failures, actors, build."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from recon3d import __version__
from recon3d.io.ravdess import EMOTIONS
from recon3d.atomic import atomic_path, write_json

MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"
LABEL_KEYS = ("modality", "vocal_channel", "emotion_id", "intensity", "statement", "repetition")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def clip_entry(clip_id: str, shard: str, attrs: dict) -> dict:
    """The manifest entry of a clip from its HDF5 attributes."""
    a = {k: _plain(v) for k, v in attrs.items()}
    labels = None
    if int(a.get("emotion_id", 0) or 0) > 0:
        labels = {k: int(a[k]) for k in LABEL_KEYS if k in a}
        labels["emotion"] = EMOTIONS[labels["emotion_id"] - 1]
        actor = str(a["actor"])
        labels["actor"] = int(actor) if actor.isdigit() else actor
    return {"id": clip_id, "shard": shard, "frames": int(a["n_frames"]), "fps": float(a["fps"]),
            "duration_s": float(a["n_frames"]) / float(a["fps"]), "actor": str(a["actor"]),
            "split": a.get("split", "train") or "train", "labels": labels,
            "has_speech_audio": bool(a.get("has_speech_audio", False)),
            "qc": {k[3:]: a[k] for k in a if k.startswith("qc_")}}


def shard_entries(path: Path, shard: str) -> tuple[list[dict], list[str]]:
    """Manifest entries of a shard's clips and the actors it holds."""
    with h5py.File(path, "r") as f:
        entries = [clip_entry(clip_id, shard, dict(g.attrs)) for clip_id, g in f["clips"].items()]
        return entries, list(f["actors"])


def write_manifest(out_dir: Path, entries: list[dict], failures: list[dict], actors: dict, build: dict) -> dict:
    """Atomically write ``manifest.json`` and ``failures.jsonl``; returns the manifest."""
    entries = sorted(entries, key=lambda e: e["id"])
    manifest = {
        "format": "recon3d-3d-dataset", "format_version": 1, "recon3d_version": __version__,
        "clips": entries, "failures": failures, "actors": actors,
        "splits": {s: sum(e["split"] == s for e in entries) for s in ("train", "val", "test")},
        "build": build,
    }
    with atomic_path(Path(out_dir) / FAILURES) as tmp:
        tmp.write_text("".join(json.dumps(f) + "\n" for f in failures))
    write_json(Path(out_dir) / MANIFEST, manifest)
    return manifest
