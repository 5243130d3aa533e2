"""RAVDESS file names, labels and clip discovery.

A RAVDESS name is ``MM-VV-EE-II-SS-RR-AA``: modality (01 audio-video, 02 video-only, 03
audio-only), vocal channel (01 speech, 02 song), emotion (01-08), intensity (01 normal, 02
strong), statement (01, 02), repetition (01, 02) and actor (01-24; odd male, even female).

RAVDESS's archives (``Video_Speech_Actor_XX.zip``, ``Video_Song_Actor_XX.zip``, the audio-only
``Audio_*.zip``) each unpack to ``Actor_XX/``. A video archive holds every take twice: the
audio-video file (``01-...``) and its video-only twin (``02-...``), the same recording with the
audio track zeroed. :func:`choose_recordings` keeps one file per recording.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from recon3d.errors import LabelError, SetupError

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
VOCAL_CHANNELS = {1: "speech", 2: "song"}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
AUDIO_VIDEO, VIDEO_ONLY, AUDIO_ONLY = 1, 2, 3
#: Which video files of a recording are built (``modality`` in the build config, ``--modality``):
#: ``auto`` one per recording, the audio-video file where the tree has it, else its video-only
#: twin; ``audio-video`` only audio-video files; ``all`` every video file, twins too.
MODALITY_CHOICES = ("auto", "audio-video", "all")
#: Why a file was not built (the manifest's ``skipped`` entries and the summaries count these).
SKIP_TWIN = "video-only twin"
SKIP_MODALITY = "video-only (modality: audio-video)"
SKIP_AUDIO_ONLY = "audio-only"
#: Containers looked for (any case): those PyAV decodes that talking-head datasets come in
#: (CREMA-D: .flv; film and interviews: .mov, .mkv, .avi, .webm).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".flv", ".webm")
AUDIO_EXTENSIONS = (".wav",)
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class ClipLabels:
    modality: int
    vocal_channel: int
    emotion_id: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def emotion(self) -> str:
        return EMOTIONS[self.emotion_id - 1]

    @property
    def vocal(self) -> str:
        """``speech`` or ``song``."""
        return VOCAL_CHANNELS[self.vocal_channel]

    @property
    def recording(self) -> str:
        """The name without its modality (``VV-EE-II-SS-RR-AA``): the same for a file and its twins."""
        fields = (self.vocal_channel, self.emotion_id, self.intensity, self.statement, self.repetition, self.actor)
        return "-".join(f"{x:02d}" for x in fields)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipLabels":
        """From :meth:`to_dict`'s keys (others ignored)."""
        return cls(*(int(d[f]) for f in ("modality", "vocal_channel", "emotion_id", "intensity", "statement",
                                          "repetition", "actor")))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["emotion"] = self.emotion
        d["vocal"] = self.vocal
        return d


def parse_ravdess_name(name: str) -> ClipLabels:
    """Labels of a RAVDESS stem such as ``01-01-06-01-02-01-12``; :class:`LabelError` otherwise."""
    m = _NAME.match(name)
    if not m:
        raise LabelError(f"'{name}' is not a RAVDESS name (MM-VV-EE-II-SS-RR-AA, e.g. 01-01-06-01-02-01-12); "
                         "use --labels none to accept any video")
    mm, vv, ee, ii, ss, rr, aa = (int(x) for x in m.groups())
    checks = [("modality", mm, MODALITIES), ("vocal channel", vv, VOCAL_CHANNELS),
              ("emotion", ee, range(1, 9)), ("intensity", ii, INTENSITIES), ("statement", ss, STATEMENTS),
              ("repetition", rr, (1, 2)), ("actor", aa, range(1, 25))]
    for what, value, allowed in checks:
        if value not in allowed:
            raise LabelError(f"'{name}': {what} {value:02d} is not a RAVDESS value")
    return ClipLabels(mm, vv, ee, ii, ss, rr, aa)


def discover_media(root: Path) -> tuple[list[Path], list[Path]]:
    """(video files, audio-only files) under ``root`` at any depth, each sorted: RAVDESS's archives
    as they unpack (``Actor_XX/`` folders, speech and song side by side), or a flat folder.

    Broken symbolic links are listed too, so that they are reported as unreadable, not skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise SetupError(f"{root}: not a folder of videos")
    videos, audio = [], []
    for p in root.rglob("*"):
        if p.is_file() or p.is_symlink():
            suffix = p.suffix.lower()
            if suffix in VIDEO_EXTENSIONS:
                videos.append(p)
            elif suffix in AUDIO_EXTENSIONS:
                audio.append(p)
    return sorted(videos), sorted(audio)


def choose_recordings(labelled: list[tuple[str, ClipLabels]], modality: str = "auto") -> tuple[set[str], dict[str, dict]]:
    """Which of the ``(clip id, labels)`` to build, by ``modality`` (:data:`MODALITY_CHOICES`):
    ``(ids to build, {skipped id: {"reason": ..., "twin": id or None}})``.

    Decided from the names alone (no file is opened): a twin costs a directory listing."""
    if modality not in MODALITY_CHOICES:
        raise SetupError(f"modality '{modality}' is not one of {', '.join(MODALITY_CHOICES)}")
    by_recording: dict[str, dict[int, str]] = {}
    for clip_id, labels in labelled:
        by_recording.setdefault(labels.recording, {})[labels.modality] = clip_id
    keep, skipped = set(), {}
    for clip_id, labels in labelled:
        twin = by_recording[labels.recording].get(AUDIO_VIDEO)
        if labels.modality == AUDIO_ONLY:
            skipped[clip_id] = {"reason": SKIP_AUDIO_ONLY, "twin": None}
        elif labels.modality == VIDEO_ONLY and modality == "audio-video":
            skipped[clip_id] = {"reason": SKIP_MODALITY, "twin": twin}
        elif labels.modality == VIDEO_ONLY and modality == "auto" and twin is not None:
            skipped[clip_id] = {"reason": SKIP_TWIN, "twin": twin}
        else:
            keep.add(clip_id)
    return keep, skipped


def skip_counts(skipped: list[dict], audio_only: int) -> dict[str, int]:
    """How many files were not built, by reason: the ``skipped`` entries and the audio-only files."""
    counts = Counter(entry["reason"] for entry in skipped)
    if audio_only:
        counts[SKIP_AUDIO_ONLY] += audio_only
    return dict(sorted(counts.items()))
