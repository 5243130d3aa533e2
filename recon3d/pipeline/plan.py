"""Planning a build: which clips, their labels, actors, shards and splits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from recon3d.io.ravdess import LabelError, discover_videos, parse_ravdess_name
from recon3d.pipeline.config import BuildConfig


@dataclass(frozen=True)
class PlannedClip:
    clip_id: str  # the file's stem
    path: str
    actor: str  # "05" for RAVDESS; the clip id itself when labels are unknown
    shard: str
    split: str
    labels: dict | None  # parsed RAVDESS labels, None with --labels none

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    clips: list[PlannedClip]
    rejected: list[dict] = field(default_factory=list)  # {"id", "path", "stage", "reason"} found while planning

    @property
    def shards(self) -> dict[str, list[PlannedClip]]:
        out: dict[str, list[PlannedClip]] = {}
        for clip in self.clips:
            out.setdefault(clip.shard, []).append(clip)
        return dict(sorted(out.items()))

    def actor_clips(self) -> dict[str, list[PlannedClip]]:
        """Every actor's clips, across shards (identity fitting uses them all)."""
        out: dict[str, list[PlannedClip]] = {}
        for clip in self.clips:
            out.setdefault(clip.actor, []).append(clip)
        return out

    def to_dict(self) -> dict:
        return {"clips": [c.to_dict() for c in self.clips], "rejected": self.rejected}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls([PlannedClip(**c) for c in d["clips"]], list(d.get("rejected", [])))


def _split(actor: int | None, config: BuildConfig) -> str:
    if actor in config.split.test:
        return "test"
    if actor in config.split.val:
        return "val"
    return "train"


def plan_build(video_dir: Path, config: BuildConfig) -> Plan:
    """Discover videos and assign each to an actor, a shard and a split; unusable names are rejected."""
    clips, rejected, seen = [], [], {}
    unlabeled = []
    for path in discover_videos(video_dir):
        clip_id = path.stem
        if clip_id in seen:
            rejected.append({"id": clip_id, "path": str(path), "stage": "plan",
                             "reason": f"duplicate clip id: same file name as {seen[clip_id]}"})
            continue
        seen[clip_id] = str(path)
        if config.labels == "none":
            unlabeled.append(path)
            continue
        try:
            labels = parse_ravdess_name(clip_id)
        except LabelError as exc:
            rejected.append({"id": clip_id, "path": str(path), "stage": "plan", "reason": str(exc)})
            continue
        actor = f"{labels.actor:02d}"
        clips.append(PlannedClip(clip_id, str(path), actor, f"actor_{actor}", _split(labels.actor, config),
                                 labels.to_dict()))
    per = max(1, config.shards.clips_per_shard)
    for i, path in enumerate(unlabeled):
        clips.append(PlannedClip(path.stem, str(path), path.stem, f"clips_{i // per:03d}", "train", None))
    return Plan(_split_large_shards(clips, config.shards.max_clips_per_shard), rejected)


def _split_large_shards(clips: list[PlannedClip], limit: int) -> list[PlannedClip]:
    """Split shards with more than ``limit`` clips into ``<shard>_00, <shard>_01, ...`` (0: no limit)."""
    if limit <= 0:
        return clips
    groups: dict[str, list[PlannedClip]] = {}
    for clip in clips:
        groups.setdefault(clip.shard, []).append(clip)
    out = []
    for shard, members in groups.items():
        if len(members) <= limit:
            out += members
            continue
        for i, clip in enumerate(members):
            out.append(replace(clip, shard=f"{shard}_{i // limit:02d}"))
    return out
