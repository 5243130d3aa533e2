"""face-alignment's FAN (68 points), when its weights are already on this machine.

face-alignment downloads its weights on first use; recon3d never lets it: without the weights in
the torch hub cache the backend fails with a message saying where to put them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recon3d.landmarks.base import LandmarkBackendError
from recon3d.landmarks.schemes import FAN68

WEIGHT_PREFIXES = ("2DFAN4", "s3fd")


def _hub_checkpoints() -> Path:
    import torch.hub

    return Path(os.environ.get("TORCH_HOME", Path(torch.hub.get_dir()).parent)) / "hub" / "checkpoints"


class FanDetector:
    """face-alignment's 2D FAN landmarks; the fitter uses its 51 inner points (no jaw contour)."""

    name = "fan"
    n_points = 68
    scheme = FAN68

    def __init__(self, device: str = "cpu"):
        try:
            import face_alignment
        except ImportError as exc:
            raise LandmarkBackendError("the 'fan' landmark backend needs face-alignment: pip install face-alignment "
                                       "(and its weights, see --help)") from exc
        folder = _hub_checkpoints()
        missing = [p for p in WEIGHT_PREFIXES if not any(folder.glob(f"{p}*"))]
        if missing:
            raise LandmarkBackendError(
                f"face-alignment weights not found in {folder} (missing {', '.join(missing)}*). They are not "
                "downloaded at run time: copy 2DFAN4-*.zip and s3fd-*.pth there from a machine with internet, "
                "or use --landmarks mediapipe")
        self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device)

    def reset(self) -> None:
        pass

    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        found = self._fa.get_landmarks_from_image(rgb) or []
        return [(np.asarray(p, np.float32)[:, :2], 1.0) for p in found]

    def close(self) -> None:
        pass
