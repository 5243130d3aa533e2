"""Per-clip quality figures and the documented thresholds (``qc`` in pipelines/ravdess.yaml)."""

from __future__ import annotations

import numpy as np

from recon3d.fitting.sequence import FitResult
from recon3d.flame.embeddings import LandmarkEmbedding
from recon3d.landmarks.schemes import LandmarkScheme
from recon3d.pipeline.config import QCConfig

#: Faces smaller than this (median outer-eye-corner distance, pixels) are flagged ``small_face``:
#: on renders with known truth (benchmarks/video_accuracy.py, both test models, seeds 1-3) the lips'
#: motion error at 120 px is within 1 % of the 250-px figure, at 80 px it is 4-8 % higher with the
#: lips' absolute error 1.3-1.5x and their jitter +7 %, and at 60 px in a 1280x720 frame MediaPipe
#: finds no face in 17 of 18 clips.
SMALL_FACE_IOD_PX = 100.0


def _iod_figures(rel: np.ndarray, suffix: str = "") -> dict:
    """Mean and 95th percentile of a reprojection error over the IOD (finite frames only)."""
    rel = rel[np.isfinite(rel)]
    return {f"reprojection_iod_mean{suffix}": float(rel.mean()) if rel.size else float("nan"),
            f"reprojection_iod_p95{suffix}": float(np.percentile(rel, 95)) if rel.size else float("nan")}


def lip_jitter_mm(result: FitResult, lip_points: LandmarkEmbedding, faces: np.ndarray) -> float:
    """Mean second difference of the fitted lip points between consecutive frames of one shot, mm
    (a block of meshes at a time)."""
    within = np.ones(max(result.n_frames - 2, 0), bool)  # second differences within one shot
    for start in result.shot_starts:
        within[max(start - 2, 0):start] = False
    total, count, tail = 0.0, 0, np.zeros((0, len(lip_points.face_idx), 3))
    for start, block in result.mesh_chunks():
        pts = np.concatenate([tail, lip_points.points(block.astype(np.float64), faces)])
        accel = np.linalg.norm(pts[2:] - 2 * pts[1:-1] + pts[:-2], axis=-1).mean(1)
        first = start + len(block) - len(pts)  # the frame of accel[0]'s first point
        keep = within[first:first + len(accel)]
        total, count = total + accel[keep].sum(), count + int(keep.sum())
        tail = pts[-2:]
    return float(total / count * 1000) if count else 0.0


def clip_qc(iod: np.ndarray, valid: np.ndarray, scheme: LandmarkScheme, result: FitResult,
            embedding: LandmarkEmbedding, faces: np.ndarray, config: QCConfig) -> dict:
    """QC figures of a fitted clip and the names of the thresholds it exceeds (``flags``); shards store
    them as ``qc_<name>`` attributes. ``iod``: the face's size per frame
    (:meth:`LandmarkSequence.inter_ocular_px`), ``valid``: the frames with a face, ``scheme``: the
    landmarks' (its lip points are the ones whose jitter is measured).

    The reprojection error is given over the points the fit used (``reprojection_iod_*``, a second
    source weighted by its trust) and per landmark source (``reprojection_iod_*_mediapipe``, and
    ``*_dlib`` over the frames the fit used dlib in: ``frames_<source>``); the thresholds apply to
    each source (dlib's own: ``max_reprojection_*_dlib``), so a flag names the source that missed (``reprojection_p95_dlib``) and a failing
    detector neither hides nor fakes a bad fit. With the mouth flow in the fit,
    ``flow_residual_px_mean`` / ``flow_residual_iod_mean``: its surface samples' mean motion error
    against the flow per frame (no threshold). ``shots``: how many shots the clip was fitted in,
    ``shot_starts`` the frames where they start (comma-separated; the lip jitter is measured within
    shots)."""
    lips = np.isin(embedding.source_ids, scheme.lip_ids)
    lip_points = LandmarkEmbedding(embedding.face_idx[lips], embedding.bary[lips], embedding.source_ids[lips])
    jitter = lip_jitter_mm(result, lip_points, faces)
    figures = _iod_figures(result.reprojection_px / iod)
    by_source = result.reprojection_px_by_source or {"mediapipe": result.reprojection_px}
    for source, err in by_source.items():
        figures.update(_iod_figures(err / iod, f"_{source}"))
    for source, n in result.source_frames.items():
        figures[f"frames_{source}"] = int(n)
    figures.update({
        "face_fraction": float(np.mean(valid)),
        "lip_jitter_mm": jitter,
        "inter_ocular_px": float(np.nanmedian(iod)) if np.isfinite(iod).any() else float("nan"),
        "shots": len(result.shot_starts) + 1,
        "shot_starts": ",".join(str(int(s)) for s in result.shot_starts),
    })
    flow = result.flow_residual_px
    if flow is not None and np.isfinite(flow).any():  # the mouth flow's residual: what the pixel term left
        figures["flow_residual_px_mean"] = float(np.nanmean(flow))
        figures["flow_residual_iod_mean"] = float(np.nanmean(flow / iod))
    flags = []
    limits = {"dlib": (config.max_reprojection_iod_dlib, config.max_reprojection_p95_iod_dlib)}
    for source in by_source:
        mean, p95 = figures[f"reprojection_iod_mean_{source}"], figures[f"reprojection_iod_p95_{source}"]
        max_mean, max_p95 = limits.get(source, (config.max_reprojection_iod, config.max_reprojection_p95_iod))
        if np.isfinite(mean) and not mean <= max_mean:
            flags.append(f"reprojection_mean_{source}")
        if np.isfinite(p95) and not p95 <= max_p95:
            flags.append(f"reprojection_p95_{source}")
    if not np.isfinite(figures["reprojection_iod_mean"]):
        flags.append("reprojection_mean")
    if figures["face_fraction"] < config.min_face_fraction:
        flags.append("face_fraction")
    if jitter > config.max_lip_jitter_mm:
        flags.append("lip_jitter")
    if figures["inter_ocular_px"] < SMALL_FACE_IOD_PX:
        flags.append("small_face")
    figures["flags"] = ",".join(flags)
    figures["pass"] = not flags
    return figures
