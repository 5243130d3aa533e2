"""2D face landmark detection on video frames, behind a small backend interface.

The conventions (:mod:`recon3d.landmarks.schemes`) need only the standard library; the detectors
and tracking (PyAV, MediaPipe) are imported on first use, so that configuration code can name a
scheme without loading the video stack.
"""

from recon3d.lazy_exports import lazy_exports

_EXPORTS = {**{name: "recon3d.landmarks.base"
               for name in ("LandmarkBackendError", "LandmarkDetector", "LandmarkTrack", "track_video")},
            "create_detector": "recon3d.landmarks.registry"}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
