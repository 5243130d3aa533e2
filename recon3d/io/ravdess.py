"""RAVDESS file names, labels and clip discovery.

A RAVDESS name is ``MM-VV-EE-II-SS-RR-AA``: modality (01 audio-video, 02 video-only, 03
audio-only), vocal channel (01 speech, 02 song), emotion (01-08), intensity (01 normal, 02
strong), statement (01, 02), repetition (01, 02) and actor (01-24; odd male, even female).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from recon3d.errors import ClipError, SetupError

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
VOCAL_CHANNELS = {1: "speech", 2: "song"}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


class LabelError(ClipError):
    """A file name that is not a RAVDESS name."""

    def __init__(self, reason: str):
        super().__init__(reason, stage="plan")


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["emotion"] = self.emotion
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


def discover_videos(root: Path, extensions: tuple[str, ...] = (".mp4",)) -> list[Path]:
    """Video files under ``root``: the RAVDESS layout (``Actor_01/...``) or a flat folder, sorted.

    Broken symbolic links are listed too, so that they are reported as unreadable, not skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise SetupError(f"{root}: not a folder of videos")
    return sorted(p for p in root.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.suffix.lower() in extensions)
