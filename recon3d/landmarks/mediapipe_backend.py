"""MediaPipe Face Mesh (478 points with iris refinement), run offline from the mediapipe wheel.

MediaPipe's C++ side prints a few start-up notices (TFLite delegate, "Feedback manager ...") to
stderr for every new graph; they are harmless. With ``native_log`` set, they go to that file
instead of the terminal (:mod:`recon3d.landmarks.native_log`).
"""

from __future__ import annotations

import numpy as np

from recon3d.landmarks.base import LandmarkBackendError
from recon3d.landmarks.native_log import route_native_stderr
from recon3d.landmarks.schemes import MEDIAPIPE


class MediaPipeDetector:
    """MediaPipe's face mesh in tracking mode (video), up to ``max_faces`` faces per frame."""

    name = "mediapipe"
    n_points = 478
    scheme = MEDIAPIPE

    def __init__(self, max_faces: int = 2, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 native_log: str | None = None):
        route_native_stderr(native_log)
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:  # pragma: no cover - mediapipe is a dependency
            raise LandmarkBackendError(f"mediapipe is not installed ({exc}); pip install mediapipe==0.10.21") from exc
        self._module = face_mesh
        self._options = dict(static_image_mode=False, max_num_faces=max_faces, refine_landmarks=True,
                             min_detection_confidence=min_detection_confidence,
                             min_tracking_confidence=min_tracking_confidence)
        self._mesh = None

    def reset(self) -> None:
        """A fresh graph: tracking starts anew (call per clip)."""
        self.close()
        self._mesh = self._module.FaceMesh(**self._options)

    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        if self._mesh is None:
            self.reset()
        result = self._mesh.process(rgb)
        if not result.multi_face_landmarks:
            return []
        h, w = rgb.shape[:2]
        faces = []
        for face in result.multi_face_landmarks:
            pts = np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float32)
            faces.append((pts, 1.0))
        return faces

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
