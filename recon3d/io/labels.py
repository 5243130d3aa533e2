"""The dataset layouts a build reads labels from, in one vocabulary.

``--labels``: ``ravdess`` (``MM-VV-EE-II-SS-RR-AA`` names, :mod:`recon3d.io.ravdess`), ``mead``
(MEAD's folders, :mod:`recon3d.io.mead`), ``crema-d`` (``AAAA_SSS_EEE_LL`` names,
:mod:`recon3d.io.crema_d`) or ``none`` (any video, no labels, one identity per video); ``auto``
(the default) takes the layout that names most of the videos found (:func:`detect_layout`).

Every layout's emotions are named in RAVDESS's vocabulary; MEAD's ``contempt`` comes after
RAVDESS's eight (:data:`EMOTION_NAMES`, ``emotion_id`` 1-9). A labels dict has the keys of
:meth:`~recon3d.io.ravdess.ClipLabels.to_dict`; MEAD's and CREMA-D's also name their
``dataset`` (and MEAD's camera ``view``, CREMA-D's ``sentence`` code).
"""

from __future__ import annotations

from pathlib import Path

from recon3d.errors import LabelError, SetupError
from recon3d.io.crema_d import parse_crema_d_name
from recon3d.io.mead import VIEWS, parse_mead_path
from recon3d.io.ravdess import EMOTIONS, parse_ravdess_name

#: The shared emotion vocabulary: ``emotion_id`` k is ``EMOTION_NAMES[k - 1]``.
EMOTION_NAMES = EMOTIONS + ("contempt",)
LAYOUTS = ("ravdess", "mead", "crema-d")
LABEL_CHOICES = ("auto",) + LAYOUTS + ("none",)
#: How each layout names its videos (messages).
LAYOUT_NAMES = {"ravdess": "RAVDESS names them (MM-VV-EE-II-SS-RR-AA)",
                "mead": "MEAD keeps them (MXXX/video/VIEW/EMOTION/level_N/NNN.mp4)",
                "crema-d": "CREMA-D names them (AAAA_SSS_EEE_LL)"}


def label_video(layout: str, path: Path) -> tuple[str, dict]:
    """``(clip id, labels)`` of a video in ``layout``; :class:`LabelError` where it is not."""
    path = Path(path)
    if layout == "ravdess":
        return path.stem, parse_ravdess_name(path.stem).to_dict()
    clip_id, labels = parse_mead_path(path) if layout == "mead" else parse_crema_d_name(path.stem)
    return clip_id, {**labels, "emotion_id": EMOTION_NAMES.index(labels["emotion"]) + 1, "vocal": "speech"}


def detect_layout(videos: list[Path]) -> tuple[str, int]:
    """The layout that names most of ``videos`` and how many it names (``("none", 0)`` where
    none names any)."""
    best, count = "none", 0
    for layout in LAYOUTS:
        n = 0
        for path in videos:
            try:
                label_video(layout, path)
                n += 1
            except LabelError:
                pass
        if n > count:
            best, count = layout, n
    return best, count


def parse_views(value: str) -> tuple[str, ...]:
    """MEAD cameras from ``--views``: a comma-separated list of :data:`~recon3d.io.mead.VIEWS`, or ``all``."""
    views = tuple(v.strip() for v in value.split(",") if v.strip())
    if views == ("all",):
        return VIEWS
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise SetupError(f"views '{value}': not MEAD cameras ({', '.join(unknown) or 'none given'}); use a "
                         f"comma-separated list of {', '.join(VIEWS)}, or all")
    return views
