"""The landmark backends by name. The registry imports the backends (on first use); they import only
the interface (:mod:`recon3d.landmarks.base`), never the registry."""

from __future__ import annotations

from recon3d.landmarks.base import LandmarkBackendError, LandmarkDetector
from recon3d.landmarks.schemes import DLIB_CHOICES

BACKENDS = ("mediapipe", "fan")


def create_detector(name: str = "mediapipe", native_log: str | None = None, dlib: bool = False,
                    **options) -> LandmarkDetector:
    """``mediapipe`` (478 points, default) or ``fan`` (face-alignment's 68 points, weights must be local).

    ``dlib``: with mediapipe, dlib's 68 points follow MediaPipe's (546 points, scheme
    ``MEDIAPIPE_DLIB``). ``native_log``: a file for MediaPipe's native start-up lines (None: stderr).
    """
    if name == "mediapipe":
        from recon3d.landmarks.mediapipe_backend import MediaPipeDetector

        detector = MediaPipeDetector(native_log=native_log, **options)
        if not dlib:
            return detector
        from recon3d.landmarks.dlib_backend import MediaPipeDlibDetector

        return MediaPipeDlibDetector(detector)
    if dlib:
        raise LandmarkBackendError(f"landmarks.dlib works beside the mediapipe backend, not '{name}' "
                                   "(set landmarks.dlib: off)")
    if name == "fan":
        from recon3d.landmarks.fan_backend import FanDetector

        return FanDetector(**options)
    raise LandmarkBackendError(f"unknown landmark backend '{name}' (choose {' or '.join(BACKENDS)})")


def landmark_sources(backend: str, dlib: str | bool) -> tuple[tuple[str, ...], str | None]:
    """The sources a build with ``landmarks.backend`` / ``landmarks.dlib`` runs, and a one-line note
    when ``auto`` leaves dlib out because it is not installed. ``on`` without dlib, or an unknown
    value, raises :class:`LandmarkBackendError`."""
    setting = ("on" if dlib else "off") if isinstance(dlib, bool) else str(dlib)
    if setting not in DLIB_CHOICES:
        raise LandmarkBackendError(f"landmarks.dlib: {dlib!r} is not one of {', '.join(DLIB_CHOICES)}")
    if setting == "off" or (setting == "auto" and backend != "mediapipe"):
        return (backend,), None
    if backend != "mediapipe":
        raise LandmarkBackendError(f"landmarks.dlib: on works beside the mediapipe backend, not '{backend}'")
    from recon3d.landmarks.dlib_backend import dlib_missing

    missing = dlib_missing()
    if missing is None:
        return ("mediapipe", "dlib"), None
    if setting == "on":
        raise LandmarkBackendError(f"landmarks.dlib: on, but {missing}; or set landmarks.dlib: off")
    return ("mediapipe",), f"landmarks: MediaPipe alone ({missing} to fuse dlib's 68 points)"
