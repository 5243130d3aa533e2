"""Per-clip quality figures and the documented thresholds (``qc`` in pipelines/ravdess.yaml)."""

from __future__ import annotations

import numpy as np

from recon3d.fitting.sequence import FitResult, LandmarkSequence
from recon3d.flame.embeddings import LandmarkEmbedding
from recon3d.pipeline.config import QCConfig


def clip_qc(seq: LandmarkSequence, result: FitResult, embedding: LandmarkEmbedding, faces: np.ndarray,
            config: QCConfig) -> dict:
    """QC figures of a fitted clip and the names of the thresholds it exceeds (``flags``); shards store
    them as ``qc_<name>`` attributes."""
    iod = seq.inter_ocular_px()
    rel = result.reprojection_px / iod
    rel = rel[np.isfinite(rel)]
    lips = np.isin(embedding.source_ids, seq.scheme.lip_ids)
    lip_points = LandmarkEmbedding(embedding.face_idx[lips], embedding.bary[lips], embedding.source_ids[lips])
    pts = lip_points.points(result.vertices.astype(np.float64), faces)
    jitter = float(np.linalg.norm(pts[2:] - 2 * pts[1:-1] + pts[:-2], axis=-1).mean() * 1000) if len(pts) > 2 else 0.0
    figures = {
        "reprojection_iod_mean": float(rel.mean()) if rel.size else float("nan"),
        "reprojection_iod_p95": float(np.percentile(rel, 95)) if rel.size else float("nan"),
        "face_fraction": float(seq.valid.mean()),
        "lip_jitter_mm": jitter,
        "inter_ocular_px": float(np.nanmedian(iod)) if np.isfinite(iod).any() else float("nan"),
    }
    flags = []
    if not figures["reprojection_iod_mean"] <= config.max_reprojection_iod:
        flags.append("reprojection_mean")
    if not figures["reprojection_iod_p95"] <= config.max_reprojection_p95_iod:
        flags.append("reprojection_p95")
    if figures["face_fraction"] < config.min_face_fraction:
        flags.append("face_fraction")
    if jitter > config.max_lip_jitter_mm:
        flags.append("lip_jitter")
    figures["flags"] = ",".join(flags)
    figures["pass"] = not flags
    return figures
