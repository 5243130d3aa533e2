"""The self-growing schedule: the share of ground-truth motion inputs per epoch."""

from __future__ import annotations

import math

from emoface_model.config import ScheduleConfig


def teacher_ratio(epoch: int, s: ScheduleConfig) -> float:
    """Probability that a frame's motion input is the ground truth (else the model's own prediction)."""
    if s.curve == "linear":
        frac = min(1.0, epoch / max(1, s.decay_epochs))
        r = s.start + (s.end - s.start) * frac
    elif s.curve == "exponential":
        r = s.start * s.rate ** epoch
    elif s.curve == "inverse_sigmoid":
        r = s.k / (s.k + math.exp(epoch / s.k))
    else:
        raise ValueError(f"unknown schedule curve '{s.curve}' (linear, exponential, inverse_sigmoid)")
    return float(min(max(r, min(s.start, s.end)), max(s.start, s.end)))
