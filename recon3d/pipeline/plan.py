"""Planning a build: which clips, their labels, actors, shards and splits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from recon3d.config_io import ConfigError
from recon3d.io.ravdess import LabelError, choose_recordings, discover_media, parse_ravdess_name, skip_counts
from recon3d.pipeline.config import BuildConfig, SplitConfig


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
    split_method: str = "actor"  # how the splits were made: actor | take
    #: files not built, by choice: {"id", "path", "reason", "twin"} (video-only twins, by modality)
    skipped: list[dict] = field(default_factory=list)
    audio_only: int = 0  # audio-only files (.wav) found and not built
    missing: list[str] = field(default_factory=list)  # clips kept whose video is gone (source missing)
    pruned: list[str] = field(default_factory=list)  # clips whose video is gone, removed by this run (--prune)

    def skipped_by_reason(self) -> dict[str, int]:
        """How many files were skipped for each reason (audio-only files included)."""
        return skip_counts(self.skipped, self.audio_only)

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
        return {"clips": [c.to_dict() for c in self.clips], "rejected": self.rejected, "split_method": self.split_method,
                "skipped": self.skipped, "audio_only": self.audio_only, "missing": self.missing,
                "pruned": self.pruned}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls([PlannedClip(**c) for c in d["clips"]], list(d.get("rejected", [])), d.get("split_method", "actor"),
                   list(d.get("skipped", [])), int(d.get("audio_only", 0)), list(d.get("missing", [])),
                   list(d.get("pruned", [])))


SPLIT_METHODS = ("auto", "actor", "take")


def actor_split(labels: list[dict], config: SplitConfig) -> list[str]:
    """By actor: the configured ``test`` and ``val`` actors are held out, the rest train."""
    return ["test" if lab["actor"] in config.test else "val" if lab["actor"] in config.val else "train"
            for lab in labels]


def animator_usable(labels: dict) -> bool:
    """Whether the animator can learn from a clip of these labels: an audio-video speech take (a
    video-only file's audio is zeroed, and songs are left out of training unless asked)."""
    return labels.get("modality", 1) == 1 and labels.get("vocal_channel", 1) == 1


def take_split(labels: list[dict]) -> list[str]:
    """Within each actor, by take (statement, repetition), counting the takes the animator can use
    (:func:`animator_usable`; all of the actor's takes where none is): the last such take is test,
    the one before it val when there are four or more, the others train. Deterministic; every clip
    of a take (all emotions and intensities) goes to the same split, and a take with no usable
    clip is train, so the clips the animator cannot use never take a held-out place."""
    takes: dict[int, set[tuple[int, int]]] = {}
    usable: dict[int, set[tuple[int, int]]] = {}
    for lab in labels:
        take = (lab["statement"], lab["repetition"])
        takes.setdefault(lab["actor"], set()).add(take)
        if animator_usable(lab):
            usable.setdefault(lab["actor"], set()).add(take)
    held: dict[tuple[int, tuple[int, int]], str] = {}
    for actor, present in takes.items():
        order = sorted(usable.get(actor) or present)
        if len(order) >= 2:
            held[actor, order[-1]] = "test"
        if len(order) >= 4:
            held[actor, order[-2]] = "val"
    return [held.get((lab["actor"], (lab["statement"], lab["repetition"])), "train") for lab in labels]


def assign_splits(labels: list[dict], config: SplitConfig) -> tuple[list[str], str]:
    """Splits of labelled clips and the method used (``auto`` resolved to ``actor`` or ``take``)."""
    if config.method not in SPLIT_METHODS:
        raise ConfigError(f"split.method '{config.method}' is not one of {', '.join(SPLIT_METHODS)}")
    if config.method in ("auto", "actor"):
        splits = actor_split(labels, config)
        if config.method == "actor" or not labels or {"train", "test"} <= set(splits):
            return splits, "actor"
    return take_split(labels), "take"


def plan_build(video_dir: Path, config: BuildConfig, kept: list[PlannedClip] = ()) -> Plan:
    """Discover videos and assign each to an actor, a shard and a split; unusable names are rejected,
    and with RAVDESS labels one file per recording is kept (``config.modality``:
    :func:`~recon3d.io.ravdess.choose_recordings`); audio-only files are counted, not built.

    ``kept``: clips of an earlier plan whose video is gone but whose result stays in the dataset
    (``Plan.missing``); planned as if their files were there, so shards and splits do not move."""
    videos, audio_only = discover_media(video_dir)
    found = {p.stem for p in videos}
    missing = [c for c in kept if c.clip_id not in found]
    videos = sorted(videos + [Path(c.path) for c in missing])
    rejected, seen, unlabeled, labelled = [], {}, [], []
    for path in videos:
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
            labelled.append((path, parse_ravdess_name(clip_id)))
        except LabelError as exc:
            rejected.append({"id": clip_id, "path": str(path), "stage": "plan", "reason": str(exc)})
    keep, skipped = choose_recordings([(p.stem, labels) for p, labels in labelled], config.modality)
    clips = [PlannedClip(p.stem, str(p), f"{labels.actor:02d}", f"actor_{labels.actor:02d}", "train", labels.to_dict())
             for p, labels in labelled if p.stem in keep]
    skipped_files = [{"id": p.stem, "path": str(p), **skipped[p.stem]} for p, _ in labelled if p.stem in skipped]
    splits, method = assign_splits([c.labels for c in clips], config.split)
    clips = [replace(c, split=split) for c, split in zip(clips, splits)]
    per = max(1, config.shards.clips_per_shard)
    for i, path in enumerate(unlabeled):
        clips.append(PlannedClip(path.stem, str(path), path.stem, f"clips_{i // per:03d}", "train", None))
    return Plan(_split_large_shards(clips, config.shards.max_clips_per_shard), rejected, method, skipped_files,
                len(audio_only), [c.clip_id for c in missing])


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
