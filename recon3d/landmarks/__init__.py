"""2D face landmark detection on video frames, behind a small backend interface.

The conventions (:mod:`recon3d.landmarks.schemes`) need only the standard library; the detectors
and tracking (PyAV, MediaPipe) are imported on first use, so that configuration code can name a
scheme without loading the video stack.
"""

from importlib import import_module

_EXPORTS = {name: "recon3d.landmarks.base"
            for name in ("LandmarkBackendError", "LandmarkDetector", "LandmarkTrack", "create_detector", "track_video")}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
