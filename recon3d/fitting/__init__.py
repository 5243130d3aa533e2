"""Fitting FLAME to 2D landmark sequences."""

from recon3d.fitting.camera import PinholeCamera
from recon3d.fitting.config import FitConfig
from recon3d.fitting.fitter import FittingError, FlameFitter
from recon3d.fitting.sequence import FitResult, LandmarkSequence

__all__ = ["FitConfig", "FitResult", "FittingError", "FlameFitter", "LandmarkSequence", "PinholeCamera"]
