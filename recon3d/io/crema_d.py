"""CREMA-D names: ``AAAA_SSS_EEE_LL`` (e.g. ``1001_DFA_ANG_XX.flv``).

91 actors (1001-1091), 12 sentences, six emotions (ANG, DIS, FEA, HAP, NEU, SAD) at a level LO,
MD, HI or XX (unspecified), 480x360 video. Emotions map onto RAVDESS's names; levels to
intensity 1-3, and XX to 0 (the animator reads it as normal).
"""

from __future__ import annotations

import re

from recon3d.errors import LabelError

CREMA_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"XX": 0, "LO": 1, "MD": 2, "HI": 3}
#: The sentences by code, in the order of their ``statement`` number (1-12).
SENTENCES = {"IEO": "It's eleven o'clock", "TIE": "That is exactly what happened",
             "IOM": "I'm on my way to the meeting", "IWW": "I wonder what this is about",
             "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
             "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
             "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before",
             "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes"}
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
LAYOUT = "AAAA_SSS_EEE_LL, e.g. 1001_DFA_ANG_XX"


def parse_crema_d_name(stem: str) -> tuple[str, dict]:
    """``(clip id, labels)`` of a CREMA-D file stem; :class:`LabelError` otherwise."""
    m = _NAME.match(stem)
    if not m:
        raise LabelError(f"'{stem}' is not a CREMA-D name ({LAYOUT})")
    actor, sentence, emotion, level = m.groups()
    for what, value, allowed in (("sentence", sentence, SENTENCES), ("emotion", emotion, CREMA_EMOTIONS),
                                 ("level", level, LEVELS)):
        if value not in allowed:
            raise LabelError(f"'{stem}': {what} {value} is not a CREMA-D code ({', '.join(allowed)})")
    labels = {"dataset": "crema-d", "actor": actor, "emotion": CREMA_EMOTIONS[emotion], "intensity": LEVELS[level],
              "statement": list(SENTENCES).index(sentence) + 1, "repetition": 1, "modality": 1, "vocal_channel": 1,
              "sentence": sentence}
    return stem, labels
