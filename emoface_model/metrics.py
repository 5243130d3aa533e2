"""Evaluation metrics as the community computes them (VOCASET / CodeTalker conventions).

Vertices are in metres, so LVE, EVE and FDD are in m^2 and MVE in m.

* LVE: per frame, the maximum over lip vertices of the squared L2 error; mean over frames.
* EVE: the same over the eye region and the forehead.
* FDD: upper-face dynamics deviation: per sequence, the standard deviation over time of each
  upper-face vertex's squared motion (displacement from the template), averaged over vertices,
  ground truth minus prediction; mean over sequences (positive: the prediction moves too little).
* MVE: mean L2 vertex error.
* Lip opening: the distance between the upper and lower lip vertex where the mouth opens
  (:func:`opening_pair`), per clip: the animated gap's standard deviation over the true one
  (amplitude ratio) and their correlation. LVE can be below the still face while the mouth
  barely moves; these say so at a glance.

Regions come from FLAME_masks.pkl: lips = ``lips``; eyes = ``eye_region`` + ``forehead``; upper
face = ``eye_region`` + ``forehead`` + ``nose``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon3d.flame.masks import eye_and_forehead


@dataclass(frozen=True)
class Regions:
    lips: np.ndarray
    eyes: np.ndarray
    upper: np.ndarray

    @classmethod
    def from_masks(cls, masks: dict[str, np.ndarray]) -> "Regions":
        eyes = eye_and_forehead(masks)
        return cls(lips=masks["lips"], eyes=eyes, upper=np.union1d(eyes, masks["nose"]))


def max_region_error(pred: np.ndarray, gt: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per frame ``(T,)``: max over ``ids`` of the squared L2 error."""
    return ((pred[:, ids] - gt[:, ids]) ** 2).sum(-1).max(-1)


def lip_vertex_error(pred: np.ndarray, gt: np.ndarray, lips: np.ndarray) -> float:
    return float(max_region_error(pred, gt, lips).mean())


def upper_motion_std(vertices: np.ndarray, template: np.ndarray, upper: np.ndarray) -> float:
    """Mean over upper-face vertices of the std over time of the squared motion."""
    motion = ((vertices[:, upper] - template[None, upper]) ** 2).sum(-1)
    return float(motion.std(axis=0).mean())


def face_dynamics_deviation(pred: np.ndarray, gt: np.ndarray, template: np.ndarray, upper: np.ndarray) -> float:
    return upper_motion_std(gt, template, upper) - upper_motion_std(pred, template, upper)


def opening_pair(true_lips: list[np.ndarray], template_lips: np.ndarray, midline_m: float = 0.003) -> tuple[int, int]:
    """The two lip vertices (indices into the lip region) whose distance varies most over the true
    clips ``(T_i, L, 3)``: the upper and lower lip where the mouth opens. Candidates lie within
    ``midline_m`` of the lips' midline in the template (the mouth's vertical centre line)."""
    x = template_lips[:, 0]
    near = np.flatnonzero(np.abs(x - np.median(x)) <= midline_m)
    total = squares = 0.0
    frames = 0
    for clip in true_lips:  # the gaps' variance, clip by clip (bounded memory)
        points = clip[:, near].astype(np.float64)
        gaps = np.linalg.norm(points[:, :, None] - points[:, None, :], axis=-1)  # (T, N, N)
        total, squares, frames = total + gaps.sum(0), squares + (gaps ** 2).sum(0), frames + len(clip)
    variance = squares / frames - (total / frames) ** 2
    i, j = np.unravel_index(np.argmax(variance), variance.shape)
    return int(near[i]), int(near[j])


def opening_agreement(pred_lips: np.ndarray, true_lips: np.ndarray, pair: tuple[int, int]) -> dict[str, float]:
    """How the animated lip opening follows the true one over a clip: ``amplitude_ratio`` (standard
    deviation of the animated gap over the true one: 1 moves as much, 0 not at all) and
    ``correlation`` (Pearson, over frames; NaN where either does not move)."""
    i, j = pair
    pred = np.linalg.norm(pred_lips[:, i] - pred_lips[:, j], axis=-1)
    true = np.linalg.norm(true_lips[:, i] - true_lips[:, j], axis=-1)
    moves = pred.std() > 0 and true.std() > 0
    return {"amplitude_ratio": float(pred.std() / true.std()) if true.std() > 0 else float("nan"),
            "correlation": float(np.corrcoef(pred, true)[0, 1]) if moves else float("nan")}


@dataclass
class MetricSums:
    """Accumulates metrics over sequences (frame-weighted LVE/EVE/MVE, sequence-mean FDD)."""

    lve: float = 0.0
    eve: float = 0.0
    mve: float = 0.0
    fdd: float = 0.0
    frames: int = 0
    sequences: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, template: np.ndarray, regions: Regions) -> None:
        self.lve += float(max_region_error(pred, gt, regions.lips).sum())
        self.eve += float(max_region_error(pred, gt, regions.eyes).sum())
        self.mve += float(np.linalg.norm(pred - gt, axis=-1).mean(-1).sum())
        self.fdd += face_dynamics_deviation(pred, gt, template, regions.upper)
        self.frames += len(pred)
        self.sequences += 1

    def result(self) -> dict[str, float]:
        f, s = max(self.frames, 1), max(self.sequences, 1)
        return {"lve": self.lve / f, "eve": self.eve / f, "fdd": self.fdd / s, "mve": self.mve / f,
                "frames": self.frames, "sequences": self.sequences}
