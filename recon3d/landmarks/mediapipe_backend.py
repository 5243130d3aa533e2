"""MediaPipe Face Mesh (478 points with iris refinement), run offline from the mediapipe wheel.

MediaPipe's C++ side prints a few start-up notices (TFLite delegate, "Feedback manager ...") to
stderr for every new graph; they are harmless. With ``native_log`` set, they go to that file
instead of the terminal (:mod:`recon3d.landmarks.native_log`).

Per frame, :meth:`MediaPipeDetector.detect` feeds the solution's graph directly and reads the
landmark lists from their serialised protos in one numpy view, which is what
``FaceMesh.process`` does minus its per-frame Python overhead (a new namedtuple class per call, a
Python object per landmark: about 0.5 ms a frame). It relies on mediapipe 0.10.21's solution
internals and falls back to ``process`` where they differ; both give the same points.

In tracking mode MediaPipe's graph (``face_landmark_front_cpu``) runs its face detector on every
frame on which it tracks fewer than ``max_faces`` faces. With one speaker on screen and
``max_faces=2`` that is every frame, about 1.3 ms of its ~4.5 ms; with :data:`MAX_FACES` (1) the
detector runs only until a face is tracked and when the track is lost, and the tracked face's
landmarks are the same (the graph keeps the rectangle from the previous frame's landmarks over a
new detection of the same face: identical points on the RAVDESS clips, tested).
"""

from __future__ import annotations

import numpy as np

from recon3d.landmarks.base import LandmarkBackendError
from recon3d.landmarks.native_log import route_native_stderr
from recon3d.landmarks.schemes import MAX_FACES, MEDIAPIPE

OUTPUT = "multi_face_landmarks"
# A NormalizedLandmark {x, y, z} serialised: field 1 (message, 15 bytes) holding three fixed32 fields.
_LANDMARK = np.dtype([("key", "u1"), ("size", "u1"), ("kx", "u1"), ("x", "<f4"), ("ky", "u1"), ("y", "<f4"),
                      ("kz", "u1"), ("z", "<f4")])
_KEYS = {"key": 0x0A, "size": 15, "kx": 0x0D, "ky": 0x15, "kz": 0x1D}


def parse_landmark_list(serialized: bytes) -> np.ndarray | None:
    """``(P, 2)`` normalised x, y of a serialised ``NormalizedLandmarkList`` whose landmarks carry
    exactly x, y and z; None for any other layout (then parse it with protobuf)."""
    if len(serialized) % _LANDMARK.itemsize:
        return None
    points = np.frombuffer(serialized, dtype=_LANDMARK)
    if not all((points[k] == v).all() for k, v in _KEYS.items()):
        return None
    return np.stack([points["x"], points["y"]], axis=1)


class MediaPipeDetector:
    """MediaPipe's face mesh in tracking mode (video), up to ``max_faces`` faces per frame."""

    name = "mediapipe"
    n_points = MEDIAPIPE.n_points
    scheme = MEDIAPIPE

    def __init__(self, max_faces: int = MAX_FACES, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 native_log: str | None = None):
        route_native_stderr(native_log)
        try:
            from mediapipe.python import packet_creator, packet_getter
            from mediapipe.python._framework_bindings import image_frame
            from mediapipe.python._framework_bindings import _packet_getter as raw_getter
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:  # pragma: no cover - mediapipe is a dependency
            raise LandmarkBackendError(f"mediapipe is not installed ({exc}); pip install mediapipe==0.10.21") from exc
        self._module, self._create, self._getter, self._raw = face_mesh, packet_creator, packet_getter, raw_getter
        self._srgb = image_frame.ImageFormat.SRGB
        self._options = dict(static_image_mode=False, max_num_faces=max_faces, refine_landmarks=True,
                             min_detection_confidence=min_detection_confidence,
                             min_tracking_confidence=min_tracking_confidence)
        self._mesh = None
        self._fast = False

    def reset(self) -> None:
        """Tracking starts anew (call per clip): a new run of the same graph."""
        if self._mesh is None:
            self._mesh = self._module.FaceMesh(**self._options)
            mesh = self._mesh
            self._fast = (all(hasattr(mesh, a) for a in ("_graph", "_graph_outputs", "_simulated_timestamp"))
                          and list(getattr(mesh, "_input_stream_type_info", None) or {}) == ["image"]
                          and hasattr(self._raw, "_get_serialized_proto_list"))
        else:
            self._mesh.reset()

    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        if self._mesh is None:
            self.reset()
        h, w = rgb.shape[:2]
        if not self._fast:
            result = self._mesh.process(rgb)
            return [_scaled(face, w, h) for face in result.multi_face_landmarks or []]
        mesh = self._mesh
        mesh._graph_outputs.clear()
        mesh._simulated_timestamp += 33333  # as FaceMesh.process: 30 fps timestamps
        image = self._create.create_image_frame(np.ascontiguousarray(rgb), image_format=self._srgb)
        mesh._graph.add_packet_to_input_stream(stream="image", packet=image.at(mesh._simulated_timestamp))
        mesh._graph.wait_until_idle()
        packet = mesh._graph_outputs.get(OUTPUT)
        if packet is None or packet.is_empty():
            return []
        faces = []
        for serialized in self._raw._get_serialized_proto_list(packet):
            xy = parse_landmark_list(serialized)
            if xy is None:  # another layout: let protobuf parse it
                return [_scaled(face, w, h) for face in self._getter.get_proto_list(packet)]
            faces.append(((xy.astype(np.float64) * (w, h)).astype(np.float32), 1.0))
        return faces

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


def _scaled(face, w: int, h: int) -> tuple[np.ndarray, float]:
    """A ``NormalizedLandmarkList`` message in pixels."""
    return np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float32), 1.0
