"""Fitting FLAME to 2D landmark sequences.

``FitConfig`` needs only the standard library; the fitter and its torch types are imported on
first use, so that a build's main process (which plans, schedules and merges, and fits nothing)
does not load torch.
"""

from recon3d.fitting.config import FitConfig
from recon3d.lazy_exports import lazy_exports

_TORCH_EXPORTS = {"FitResult": "recon3d.fitting.sequence", "FittingError": "recon3d.fitting.fitter",
                  "FlameFitter": "recon3d.fitting.fitter", "LandmarkSequence": "recon3d.fitting.sequence",
                  "PinholeCamera": "recon3d.fitting.camera"}

__all__ = ["FitConfig", "FitResult", "FittingError", "FlameFitter", "LandmarkSequence", "PinholeCamera"]

__getattr__ = lazy_exports(__name__, _TORCH_EXPORTS)
