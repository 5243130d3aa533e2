"""The self-growing schedule: the share of ground-truth motion inputs per epoch, and the motion
inputs it gives a training batch (teacher forcing, scheduled sampling)."""

from __future__ import annotations

import math

import torch

from emoface_model.config import ScheduleConfig
from emoface_model.data import Batch
from emoface_model.models import TalkingFace
from recon3d.config_io import ConfigError


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
        raise ConfigError(f"schedule.curve: unknown curve '{s.curve}' (linear, exponential, inverse_sigmoid)")
    return float(min(max(r, min(s.start, s.end)), max(s.start, s.end)))


def teacher_forced(model: TalkingFace, batch: Batch, feats: torch.Tensor, inputs: torch.Tensor):
    """One parallel pass with the given motion inputs (``inputs[:, t]`` is frame t's); returns the
    offsets and the motion inputs the model would feed itself."""
    return model(feats, inputs, batch.has_initial, batch.emotion, batch.intensity, batch.actor, batch.template)


def ground_truth_inputs(model: TalkingFace, batch: Batch) -> torch.Tensor:
    """``[initial, x_0, ..., x_{T-2}]``: each frame's input is the previous frame's true motion."""
    return model.motion_input(torch.cat([batch.initial[:, None], batch.offsets[:, :-1]], 1))


def mixed_inputs(model: TalkingFace, batch: Batch, feats: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """Scheduled sampling in two passes: a teacher-forced pass predicts every frame; each frame's
    input is then the truth with probability ``ratio``, else that prediction."""
    truth = ground_truth_inputs(model, batch)
    if ratio >= 1.0:
        return truth
    with torch.no_grad():
        _, own_inputs = teacher_forced(model, batch, feats, truth)
    own = torch.cat([truth[:, :1], own_inputs[:, :-1]], 1)
    keep = torch.rand(truth.shape[:2], generator=gen, device=truth.device) < ratio
    keep[:, 0] = True  # the first input is the given initial frame (or the start vector)
    return torch.where(keep[..., None, None], truth, own)
