"""The landmark backends by name. The registry imports the backends (on first use); they import only
the interface (:mod:`recon3d.landmarks.base`), never the registry."""

from __future__ import annotations

from recon3d.landmarks.base import LandmarkBackendError, LandmarkDetector

BACKENDS = ("mediapipe", "fan")


def create_detector(name: str = "mediapipe", native_log: str | None = None, **options) -> LandmarkDetector:
    """``mediapipe`` (478 points, default) or ``fan`` (face-alignment's 68 points, weights must be local).

    ``native_log``: a file for MediaPipe's native start-up lines (None: they go to stderr).
    """
    if name == "mediapipe":
        from recon3d.landmarks.mediapipe_backend import MediaPipeDetector

        return MediaPipeDetector(native_log=native_log, **options)
    if name == "fan":
        from recon3d.landmarks.fan_backend import FanDetector

        return FanDetector(**options)
    raise LandmarkBackendError(f"unknown landmark backend '{name}' (choose {' or '.join(BACKENDS)})")
