"""``manifest.json``: every clip of a dataset (from its shards' attributes), failures, actors, build."""

from __future__ import annotations

import json
from pathlib import Path

from recon3d import __version__
from recon3d.atomic import atomic_path, write_json
from recon3d.io.ravdess import VOCAL_CHANNELS
from recon3d.shards.reader import ShardFile
from recon3d.shards.schema import ClipAttrs, FORMAT_VERSION

#: The splits a manifest entry can be in.
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"


def clip_entry(clip_id: str, shard: str, attrs: ClipAttrs) -> dict:
    """The manifest entry of a clip from its attributes."""
    return {"id": clip_id, "shard": shard, "frames": attrs.n_frames, "fps": attrs.fps,
            "duration_s": attrs.duration_s, "actor": attrs.actor, "split": attrs.split or "train",
            "labels": attrs.labels, "has_speech_audio": bool(attrs.has_speech_audio), "qc": dict(attrs.qc),
            "landmark_sources": attrs.landmark_backend,
            "source_frames": {k[len("frames_"):]: int(v) for k, v in attrs.qc.items() if k.startswith("frames_")},
            "source": {"path": attrs.source_path, "size": int(attrs.source_size),
                       "mtime_ns": int(attrs.source_mtime_ns), "sha256": attrs.source_sha256}}


def vocal_of(entry: dict) -> str:
    """A manifest entry's vocal channel: ``speech``, ``song`` or ``unlabeled``."""
    return VOCAL_CHANNELS.get((entry.get("labels") or {}).get("vocal_channel"), "unlabeled")


def speech_clip(entry: dict, include_song: bool = False) -> bool:
    """Whether the animator can learn from a clip: it has speech audio (a song only with ``include_song``)."""
    return bool(entry.get("has_speech_audio")) and (include_song or vocal_of(entry) != "song")


def shard_entries(path: Path, shard: str) -> tuple[list[dict], list[str]]:
    """Manifest entries of a shard's clips and the actors it holds."""
    with ShardFile(path) as f:
        return [clip_entry(clip_id, shard, f.attrs(clip_id)) for clip_id in f.clip_ids()], f.actors()


def write_manifest(out_dir: Path, entries: list[dict], failures: list[dict], actors: dict, build: dict,
                   split_method: str = "actor", skipped: list[dict] | None = None, audio_only: int = 0) -> dict:
    """Atomically write ``manifest.json`` and ``failures.jsonl``; returns the manifest.

    ``skipped``: files not built by choice (``{"id", "path", "reason", "twin"}``: video-only twins);
    ``audio_only``: how many audio-only files the video folder held (never built)."""
    entries = sorted(entries, key=lambda e: e["id"])
    manifest = {
        "format": "recon3d-3d-dataset", "format_version": FORMAT_VERSION, "recon3d_version": __version__,
        "clips": entries, "failures": failures, "actors": actors,
        "splits": {s: sum(e["split"] == s for e in entries) for s in ("train", "val", "test")},
        "split_method": split_method,
        "skipped": sorted(skipped or [], key=lambda e: e["id"]), "audio_only_files": int(audio_only),
        "build": build,
    }
    with atomic_path(Path(out_dir) / FAILURES) as tmp:
        tmp.write_text("".join(json.dumps(f) + "\n" for f in failures))
    write_json(Path(out_dir) / MANIFEST, manifest)
    return manifest
