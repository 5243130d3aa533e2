"""Comparing fitted meshes with known truth: absolute error, motion error and jitter, per region."""

from __future__ import annotations

import numpy as np

#: Regions reported by the accuracy benchmarks: key -> name in FLAME_masks.pkl.
REGIONS = {"lip": "lips", "eye": "eye_region", "forehead": "forehead", "face": "face"}


def rigid_align(source: np.ndarray, target: np.ndarray, on: np.ndarray) -> np.ndarray:
    """``source (T, V, 3)`` moved per frame by the rotation + translation that best maps its
    vertices ``on`` onto ``target``'s (Kabsch)."""
    src, dst = source[:, on], target[:, on]
    ms, mt = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    u, _, vt = np.linalg.svd(np.einsum("tvi,tvj->tij", src - ms, dst - mt))
    fix = np.ones((len(u), 3))
    fix[:, 2] = np.sign(np.linalg.det(u @ vt))
    rot = (u * fix[:, None, :]) @ vt
    return np.einsum("tvi,tij->tvj", source - ms, rot) + mt


def mean_distance_mm(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=-1).mean() * 1000.0)


def lip_jitter_ratio(fit: np.ndarray, truth: np.ndarray, lips: np.ndarray) -> float:
    """Mean |second difference| of the fitted lip vertices over the truth's."""
    def jitter(v: np.ndarray) -> float:
        return float(np.linalg.norm(v[2:, lips] - 2 * v[1:-1, lips] + v[:-2, lips], axis=-1).mean())
    return jitter(fit) / max(jitter(truth), 1e-12)


def axis_gains(fit_motion: np.ndarray, truth_motion: np.ndarray) -> np.ndarray:
    """How much of the true motion the fit carries, per axis ``(3,)``: the least-squares slope of
    the fitted on the true vertex motion ``(T, V, 3)``, each vertex's mean over the clip removed
    (so a constant offset does not count)."""
    f = fit_motion - fit_motion.mean(0, keepdims=True)
    t = truth_motion - truth_motion.mean(0, keepdims=True)
    return (f * t).sum((0, 1)) / np.maximum((t * t).sum((0, 1)), 1e-30)


def accuracy_row(fit: np.ndarray, fit_template: np.ndarray, truth: np.ndarray, truth_template: np.ndarray,
                 masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-region errors in mm of canonical meshes ``(T, V, 3)`` against the truth.

    ``*_mm``: absolute, after a per-frame rigid alignment on the face region.
    ``*_motion_mm``: each sequence minus its own identity template ``(V, 3)``, compared directly
    (what the animator learns). ``lip_jitter_ratio``: fitted over true lip jitter.
    ``lip_gain_x/y/z``: :func:`axis_gains` of the lip vertices (sideways, vertical, depth).
    """
    aligned = rigid_align(fit, truth, masks["face"])
    fit_motion = fit - fit_template[None]
    truth_motion = truth - truth_template[None]
    row = {f"{key}_mm": mean_distance_mm(aligned[:, masks[r]], truth[:, masks[r]]) for key, r in REGIONS.items()}
    row.update({f"{key}_motion_mm": mean_distance_mm(fit_motion[:, masks[r]], truth_motion[:, masks[r]])
                for key, r in REGIONS.items()})
    row["lip_jitter_ratio"] = lip_jitter_ratio(fit, truth, masks["lips"])
    lips = masks["lips"]
    gains = axis_gains(fit_motion[:, lips], truth_motion[:, lips])
    row.update({f"lip_gain_{axis}": float(g) for axis, g in zip("xyz", gains)})
    return row


#: MediaPipe's inner-lip pairs (upper, lower) whose mean distance is the lip gap of issue 37.
INNER_LIP_PAIRS = ((13, 14), (82, 87), (81, 178), (80, 88), (312, 317), (311, 402), (310, 318))
#: A truly closed frame: its gap within CLOSED_MM of the template's; truly open: beyond OPEN_MM above
#: it; a fitted frame closes where its gap is within FIT_CLOSED_MM of its own template's.
CLOSED_MM, OPEN_MM, FIT_CLOSED_MM = 0.5, 3.0, 1.0


def lip_gap_mm(vertices: np.ndarray, embedding, faces: np.ndarray) -> np.ndarray:
    """Mean inner-lip gap in mm over :data:`INNER_LIP_PAIRS` of meshes ``(..., V, 3)``."""
    pos = {int(i): k for k, i in enumerate(embedding.source_ids)}
    points = embedding.points(vertices, faces)
    upper = points[..., [pos[u] for u, _ in INNER_LIP_PAIRS], :]
    lower = points[..., [pos[lo] for _, lo in INNER_LIP_PAIRS], :]
    return np.linalg.norm(upper - lower, axis=-1).mean(-1) * 1000.0


def closure_counts(fit: np.ndarray, fit_template: np.ndarray, truth: np.ndarray, truth_template: np.ndarray,
                   embedding, faces: np.ndarray) -> dict[str, int]:
    """Lip closures (issue 37): how many frames are truly closed and how many of them the fit
    closes, how many are truly open and how many of those the fit closes by mistake."""
    true_gap = lip_gap_mm(truth, embedding, faces) - lip_gap_mm(truth_template, embedding, faces)
    fit_closed = lip_gap_mm(fit, embedding, faces) - lip_gap_mm(fit_template, embedding, faces) <= FIT_CLOSED_MM
    closed, open_ = np.abs(true_gap) <= CLOSED_MM, true_gap > OPEN_MM
    return {"closed_frames": int(closed.sum()), "closed_fitted_closed": int((closed & fit_closed).sum()),
            "open_frames": int(open_.sum()), "open_fitted_closed": int((open_ & fit_closed).sum())}
