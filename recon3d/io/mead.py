"""MEAD as downloaded: ``MXXX/video/VIEW/EMOTION/level_N/NNN.mp4`` (audio in the video, or else
in ``MXXX/audio/EMOTION/level_N/NNN.m4a``).

60 actors (``M003``, ``W009``, ...), eight emotions in three levels (neutral in one), seven
cameras (``front``, ``down``, ``top``, ``left_30``, ``left_60``, ``right_30``, ``right_60``).
Emotions map onto RAVDESS's names (``disgusted`` -> ``disgust``, ``fear`` -> ``fearful``);
``contempt``, which RAVDESS has not, is kept as its own (:data:`~recon3d.io.labels.EMOTION_NAMES`).
"""

from __future__ import annotations

import re
from pathlib import Path

from recon3d.errors import LabelError

#: MEAD's emotion folder names -> the shared vocabulary's names.
MEAD_EMOTIONS = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful",
                 "disgusted": "disgust", "surprised": "surprised", "contempt": "contempt"}
VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
_ACTOR = re.compile(r"^[MW]\d{3}$")
_LEVEL = re.compile(r"^level_([123])$")
_TAKE = re.compile(r"^(\d{3})$")
LAYOUT = "MXXX/video/VIEW/EMOTION/level_N/NNN.mp4"


def parse_mead_path(path: Path) -> tuple[str, dict]:
    """``(clip id, labels)`` of a video in MEAD's layout; :class:`LabelError` otherwise.

    The clip id joins the folders, e.g. ``M003_front_angry_level_1_001`` (MEAD's file names
    repeat in every folder)."""
    parts = Path(path).with_suffix("").parts[-6:]
    if len(parts) < 6:
        raise LabelError(f"'{path}' is not in MEAD's layout ({LAYOUT})")
    actor, video, view, emotion, level, take = parts
    problems = [what for what, ok in (("actor folder (M003, W009, ...)", _ACTOR.match(actor)),
                                       ("'video' folder", video == "video"), ("camera", view in VIEWS),
                                       ("emotion", emotion in MEAD_EMOTIONS), ("level_1-3", _LEVEL.match(level)),
                                       ("take number NNN", _TAKE.match(take))) if not ok]
    if problems:
        raise LabelError(f"'{path}' is not in MEAD's layout ({LAYOUT}): not a {', '.join(problems)}")
    labels = {"dataset": "mead", "actor": actor, "emotion": MEAD_EMOTIONS[emotion],
              "intensity": int(_LEVEL.match(level).group(1)), "statement": int(take), "repetition": 1,
              "modality": 1, "vocal_channel": 1, "view": view}
    return f"{actor}_{view}_{emotion}_{level}_{take}", labels


def mead_audio_path(path: Path) -> Path:
    """Where MEAD keeps a video's audio: ``MXXX/audio/EMOTION/level_N/NNN.m4a``."""
    path = Path(path)
    actor_dir = path.parents[4]
    return actor_dir / "audio" / path.parts[-3] / path.parts[-2] / f"{path.stem}.m4a"
