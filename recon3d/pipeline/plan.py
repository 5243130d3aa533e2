"""Planning a build: which clips, their labels, actors, shards and splits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from recon3d.config_io import ConfigError
from recon3d.errors import LabelError
from recon3d.io.labels import LABEL_CHOICES, LAYOUT_NAMES, detect_layout, label_video, parse_views
from recon3d.io.mead import mead_audio_path
from recon3d.io.ravdess import ClipLabels, choose_recordings, discover_media, skip_counts
from recon3d.pipeline.config import BuildConfig, SplitConfig


@dataclass(frozen=True)
class PlannedClip:
    clip_id: str  # the file's stem (MEAD: its folders joined, recon3d.io.mead)
    path: str
    actor: str  # "05" for RAVDESS, "M003" for MEAD, "1001" for CREMA-D; the clip id itself when labels are unknown
    shard: str
    split: str
    labels: dict | None  # parsed labels (recon3d.io.labels), None with --labels none
    audio_path: str | None = None  # where the audio is when the video has none (MEAD's .m4a)

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
    """By actor: the configured ``test`` and ``val`` actors are held out, the rest train. In a
    dataset other than RAVDESS (MEAD, CREMA-D) where none of them is present, the last actors in
    sorted order are held out instead (:func:`held_out_actors`)."""
    test, val = {str(a) for a in config.test}, {str(a) for a in config.val}
    actors = sorted({str(lab["actor"]) for lab in labels})
    if labels and "dataset" in labels[0] and not (test | val) & set(actors):
        test, val = held_out_actors(actors)
    return ["test" if str(lab["actor"]) in test else "val" if str(lab["actor"]) in val else "train" for lab in labels]


def held_out_actors(actors: list[str]) -> tuple[set[str], set[str]]:
    """(test, val) actors of a dataset without configured ones: the last ~15 % of the sorted
    actors test (one from two actors on) and the ~10 % before them val (one from four on)."""
    n_test = max(1, round(0.15 * len(actors))) if len(actors) >= 2 else 0
    n_val = max(1, round(0.10 * len(actors))) if len(actors) >= 4 else 0
    order = actors[::-1]
    return set(order[:n_test]), set(order[n_test:n_test + n_val])


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


def resolve_labels(config: BuildConfig, video_dir: Path) -> tuple[BuildConfig, str]:
    """``config`` with ``labels: auto`` resolved to the layout that names most of the videos under
    ``video_dir`` (:func:`~recon3d.io.labels.detect_layout`), and the line that says which labels
    the build reads (and, for ``auto``, that they were detected)."""
    if config.labels not in LABEL_CHOICES:
        raise ConfigError(f"labels '{config.labels}' is not one of {', '.join(LABEL_CHOICES)}")
    if config.labels == "auto":
        videos, _ = discover_media(video_dir)
        layout, count = detect_layout(videos)
        how = (f"{count} of {len(videos)} videos named as {LAYOUT_NAMES[layout]}" if count else
               "no video is named as RAVDESS, MEAD or CREMA-D names them: no labels, one identity per video")
        config, line = replace(config, labels=layout), f"labels: {layout}, detected ({how}; --labels chooses)"
    else:
        line = f"labels: {config.labels} (--labels)"
    if config.labels == "mead":
        parse_views(config.views)  # a mistyped camera stops the command here
    return config, line


def plan_build(video_dir: Path, config: BuildConfig, kept: list[PlannedClip] = ()) -> Plan:
    """Discover videos and assign each to an actor, a shard and a split; unusable names are rejected,
    and with RAVDESS labels one file per recording is kept (``config.modality``:
    :func:`~recon3d.io.ravdess.choose_recordings`); audio-only files are counted, not built.

    ``kept``: clips of an earlier plan whose video is gone but whose result stays in the dataset
    (``Plan.missing``); planned as if their files were there, so shards and splits do not move."""
    if config.labels == "auto":
        config = resolve_labels(config, video_dir)[0]
    videos, audio_only = discover_media(video_dir)
    entries = [(p, *_labelled(config.labels, p)) for p in videos]
    found = {clip_id for _, clip_id, _, _ in entries}  # by clip id: a video moved within the tree is found
    missing = [c for c in kept if c.clip_id not in found]
    entries = sorted(entries + [(Path(c.path), *_labelled(config.labels, Path(c.path))) for c in missing],
                     key=lambda e: e[0])
    rejected, seen, unlabeled, labelled = [], {}, [], []
    views = parse_views(config.views) if config.labels == "mead" else ()
    view_skipped = []
    for path, clip_id, labels, why_not in entries:
        if why_not:
            rejected.append({"id": clip_id, "path": str(path), "stage": "plan", "reason": why_not})
            continue
        if clip_id in seen:
            rejected.append({"id": clip_id, "path": str(path), "stage": "plan",
                             "reason": f"duplicate clip id: same file name as {seen[clip_id]}"})
            continue
        seen[clip_id] = str(path)
        if labels is None:
            unlabeled.append(path)
        elif views and labels["view"] not in views:
            view_skipped.append({"id": clip_id, "path": str(path), "reason": f"camera {labels['view']} (views: "
                                 f"{','.join(views)})", "twin": None})
        else:
            labelled.append((clip_id, path, labels))
    if config.labels == "ravdess":
        keep, skipped = choose_recordings([(i, ClipLabels.from_dict(lab)) for i, _, lab in labelled], config.modality)
    else:
        keep, skipped = {i for i, _, _ in labelled}, {}
    clips = [PlannedClip(i, str(p), _actor(lab), f"actor_{_actor(lab)}", "train", lab, _audio_path(config.labels, p))
             for i, p, lab in labelled if i in keep]
    skipped_files = view_skipped + [{"id": i, "path": str(p), **skipped[i]} for i, p, _ in labelled if i in skipped]
    splits, method = assign_splits([c.labels for c in clips], config.split)
    clips = [replace(c, split=split) for c, split in zip(clips, splits)]
    per = max(1, config.shards.clips_per_shard)
    for i, path in enumerate(unlabeled):
        clips.append(PlannedClip(path.stem, str(path), path.stem, f"clips_{i // per:03d}", "train", None))
    return Plan(_split_large_shards(clips, config.shards.max_clips_per_shard), rejected, method, skipped_files,
                len(audio_only), [c.clip_id for c in missing])


def _labelled(layout: str, video: Path) -> tuple[str, dict | None, str | None]:
    """``(clip id, labels, why not)`` of a video in ``layout``: its labels (None with ``none``), or
    why it is not in the layout (the :class:`LabelError`'s reason; the clip id is then its stem)."""
    if layout == "none":
        return video.stem, None, None
    try:
        return (*label_video(layout, video), None)
    except LabelError as exc:
        return video.stem, None, str(exc)


def _actor(labels: dict) -> str:
    """The actor's name: RAVDESS's number in two digits, others' as named (``M003``, ``1001``)."""
    actor = labels["actor"]
    return f"{actor:02d}" if isinstance(actor, int) else str(actor)


def _audio_path(layout: str, video: Path) -> str | None:
    """Where a video's audio is kept apart, if its layout has such a place (MEAD's .m4a)."""
    return str(mead_audio_path(video)) if layout == "mead" else None


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
