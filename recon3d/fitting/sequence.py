"""Inputs and outputs of fitting: a clip's 2D landmarks, and the fitted FLAME parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from recon3d.landmarks.mouth_flow import MouthFlow
from recon3d.landmarks.schemes import MEDIAPIPE, LandmarkScheme
from recon3d.landmarks.shots import shot_ranges, shot_starts

if TYPE_CHECKING:
    from recon3d.fitting.camera import PinholeCamera


def inter_ocular_px(points: np.ndarray, valid: np.ndarray, eye_corners: tuple[int, int]) -> np.ndarray:
    """Per-frame distance between the outer eye corners of ``points (T, P, 2)`` (NaN without a face)."""
    a, b = eye_corners
    d = np.linalg.norm(np.asarray(points[:, a], np.float64) - np.asarray(points[:, b], np.float64), axis=-1)
    return np.where(valid, d, np.nan)


@dataclass
class LandmarkSequence:
    """Per-frame 2D landmarks of one clip (by default MediaPipe's 478 points), pixels."""

    points: np.ndarray  # (T, P, 2) float, pixels; anything where valid is False
    valid: np.ndarray  # (T,) bool: a face was detected
    width: int
    height: int
    fps: float
    score: np.ndarray | None = None  # (T,) detection confidence in [0, 1], optional
    scheme: LandmarkScheme = MEDIAPIPE
    flow: MouthFlow | None = None  # the mouth's optical flow between frames, when it was measured
    # (T,) each frame's image change from the one before (recon3d.landmarks.shots), when measured
    image_change: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float64)
        self.valid = np.asarray(self.valid, dtype=bool)
        if self.points.ndim != 3 or self.points.shape[2] != 2 or self.points.shape[0] != self.valid.shape[0]:
            raise ValueError(f"landmarks must be (T, P, 2) with a (T,) valid flag, got {self.points.shape} and {self.valid.shape}")

    @property
    def n_frames(self) -> int:
        return self.points.shape[0]

    def window(self, start: int, stop: int) -> "LandmarkSequence":
        """Frames ``start`` to ``stop - 1`` as a sequence of their own."""
        part = slice(start, stop)
        return LandmarkSequence(
            self.points[part], self.valid[part], self.width, self.height, self.fps,
            None if self.score is None else np.asarray(self.score)[part], self.scheme,
            None if self.flow is None else self.flow.window(start, stop),
            None if self.image_change is None else np.asarray(self.image_change)[part])

    def take(self, frames: np.ndarray) -> "LandmarkSequence":
        """The given frames only, as a sequence of their own (no flow or image change: they are
        not consecutive)."""
        return LandmarkSequence(self.points[frames], self.valid[frames], self.width, self.height, self.fps,
                                None if self.score is None else np.asarray(self.score)[frames], self.scheme)

    def shot_starts(self) -> np.ndarray:
        """Frames where a new shot starts (:func:`recon3d.landmarks.shots.shot_starts`; none when the
        image change was not measured)."""
        if self.image_change is None:
            return np.zeros(0, np.int64)
        return shot_starts(self.points, self.valid, self.image_change, self.scheme.outer_eye_corners)

    def shots(self) -> list[tuple[int, int]]:
        """``[(start, stop), ...]`` of the clip's shots (one, the whole clip, without cuts)."""
        return shot_ranges(self.n_frames, self.shot_starts())

    def frame_weights(self) -> np.ndarray:
        """Weight of each frame's data: 0 without a face, else the detection score (or 1)."""
        w = self.valid.astype(np.float64)
        if self.score is not None:
            w = w * np.clip(np.asarray(self.score, dtype=np.float64), 0.0, 1.0)
        return w

    def inter_ocular_px(self) -> np.ndarray:
        """Per-frame distance between the outer eye corners (NaN without a face)."""
        return inter_ocular_px(self.points, self.valid, self.scheme.outer_eye_corners)

    def white_noise_px(self, ids: list[int] | np.ndarray) -> float:
        """The points' per-coordinate noise in pixels, assuming it is white: a robust standard
        deviation (median absolute value / 0.6745) of second differences over three consecutive
        frames with a face, divided by sqrt(6) (the second difference of white noise has 6 times its
        variance). Smooth motion adds little at video rates (0.2 px on the synthetic talking heads);
        NaN with fewer than three consecutive frames."""
        x = self.points[:, np.asarray(ids)]
        ok = self.valid[2:] & self.valid[1:-1] & self.valid[:-2]
        d2 = (x[2:] - 2 * x[1:-1] + x[:-2])[ok]
        d2 = np.abs(d2[np.isfinite(d2)])
        return float(np.median(d2) / 0.6745 / np.sqrt(6.0)) if d2.size else float("nan")

    def _pair_gap(self, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
        gaps = [np.linalg.norm(self.points[:, u] - self.points[:, l], axis=-1) for u, l in pairs]
        return np.mean(gaps, axis=0) / self.inter_ocular_px()

    def mouth_gap(self) -> np.ndarray:
        """Mean inner-lip gap over the IOD per frame (NaN without a face)."""
        return self._pair_gap(self.scheme.lip_pairs)

    def eye_gap(self) -> np.ndarray:
        """Mean eyelid gap (both eyes) over the IOD per frame (NaN without a face)."""
        return self._pair_gap(self.scheme.eyelid_pairs)


#: FitResult's FLAME parameters per frame, and all its per-frame arrays (first axis: frames).
FLAME_PARAMETERS = ("expression", "jaw_pose", "eye_pose", "global_pose", "neck_pose", "translation",
                    "head_translation")
PER_FRAME = (*FLAME_PARAMETERS, "projected", "reprojection_px")


@dataclass
class FitResult:
    """Fitted FLAME parameters of a clip, its canonical meshes and the per-frame fit error."""

    shape: np.ndarray  # (K,)
    expression: np.ndarray  # (T, E)
    jaw_pose: np.ndarray  # (T, 3) axis-angle
    eye_pose: np.ndarray  # (T, 6) left eye, right eye
    global_pose: np.ndarray  # (T, 3) head rotation (camera frame)
    neck_pose: np.ndarray  # (T, 3) zero: head rotation is carried by global_pose
    translation: np.ndarray  # (T, 3) metres, FLAME's transl (camera frame)
    head_translation: np.ndarray  # (T, 3) camera-frame vertices = vertices @ R(global_pose)^T + this
    camera: PinholeCamera
    # (T, V, 3) float32, canonical head space (no head rotation/translation); None where the fit
    # was asked for none (FlameFitter.fit(vertices=False)): :meth:`mesh` computes them then.
    vertices: np.ndarray | None
    projected: np.ndarray  # (T, N, 2) fitted landmark pixels, in the embedding's order
    reprojection_px: np.ndarray  # (T,) mean landmark error in pixels over the points the fit used; NaN where no face
    # Per landmark source ("mediapipe", "dlib"): (T,) mean error of its points in pixels, NaN where
    # the fit did not use the source in that frame (recon3d.fitting.source_trust).
    reprojection_px_by_source: dict = field(default_factory=dict)
    # Per landmark source: how many frames the fit used it in (its trust at least 1/2).
    source_frames: dict = field(default_factory=dict)
    # (T,) with the mouth flow in the fit: the mean length in pixels of its surface samples'
    # motion from frame t to t + 1 minus the flow measured there (NaN where none was compared).
    flow_residual_px: np.ndarray | None = None
    timings: dict = field(default_factory=dict)
    # Frames where a new shot starts (recon3d.landmarks.shots): each shot was fitted on its own.
    shot_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # (start, stop) -> the canonical vertices (stop - start, V, 3) float32 of those frames.
    mesh_of: Callable[[int, int], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def n_frames(self) -> int:
        return self.expression.shape[0]

    def mesh(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Canonical vertices of frames ``start`` to ``stop - 1`` (all by default)."""
        stop = self.n_frames if stop is None else stop
        if self.vertices is not None:
            return self.vertices[start:stop]
        return self.mesh_of(start, stop)

    def mesh_chunks(self, frames: int = 256) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, vertices)`` of consecutive frame ranges of at most ``frames`` frames."""
        for start in range(0, self.n_frames, frames):
            yield start, self.mesh(start, min(start + frames, self.n_frames))

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything but the meshes, the fitted landmark pixels (``projected``: no file keeps them)
        and the timings, as arrays (for :meth:`from_arrays`): how a part of a long clip fitted by one
        worker reaches the one that joins the parts. The FLAME parameters are float32, as shards
        store them and as the meshes are computed from them (half the memory of a long clip's join)."""
        out = {"shape": self.shape, "shot_starts": self.shot_starts,
               **{n: np.asarray(getattr(self, n), np.float32 if n in FLAME_PARAMETERS else None)
                  for n in PER_FRAME if n != "projected"},
               **{f"camera_{k}": np.asarray(v) for k, v in self.camera.to_dict().items()}}
        out.update({f"by_source_{k}": v for k, v in self.reprojection_px_by_source.items()})
        out.update({f"source_frames_{k}": np.asarray(v) for k, v in self.source_frames.items()})
        if self.flow_residual_px is not None:
            out["flow_residual_px"] = self.flow_residual_px
        return out

    @classmethod
    def from_arrays(cls, data: dict) -> "FitResult":
        """A result written by :meth:`arrays` (without meshes: give it ``mesh_of``; ``projected``
        empty, ``(T, 0, 2)``)."""
        from recon3d.fitting.camera import PinholeCamera

        def named(prefix: str) -> dict:
            return {k[len(prefix):]: data[k] for k in data if k.startswith(prefix)}

        camera = {k: v.item() for k, v in named("camera_").items()}
        n_frames = len(data["expression"])
        projected = data.get("projected", np.zeros((n_frames, 0, 2), np.float32))
        return cls(shape=data["shape"], camera=PinholeCamera(**camera), vertices=None,
                   **{n: data[n] for n in PER_FRAME if n != "projected"}, projected=projected,
                   reprojection_px_by_source=named("by_source_"),
                   source_frames={k: int(v) for k, v in named("source_frames_").items()},
                   flow_residual_px=data.get("flow_residual_px"), shot_starts=data["shot_starts"])

    def frames(self, start: int, stop: int) -> "FitResult":
        """Frames ``start`` to ``stop - 1`` alone (one shot, as fitted: no shot starts)."""
        part = slice(start, stop)
        by_source = {name: err[part] for name, err in self.reprojection_px_by_source.items()}
        return FitResult(
            shape=self.shape, camera=self.camera, **{name: getattr(self, name)[part] for name in PER_FRAME},
            vertices=None if self.vertices is None else self.vertices[part],
            reprojection_px_by_source=by_source,
            source_frames={name: int(np.isfinite(err).sum()) for name, err in by_source.items()},
            flow_residual_px=None if self.flow_residual_px is None else self.flow_residual_px[part],
            timings=dict(self.timings), mesh_of=None if self.mesh_of is None else
            (lambda a, b, of=self.mesh_of: of(start + a, start + b)))

    @classmethod
    def joined(cls, parts: list["FitResult"], shot_starts: list[int] | None = None) -> "FitResult":
        """Consecutive parts of one clip (same identity and camera) as one result; ``shot_starts``:
        where among them a shot starts (default: at every part but the first)."""
        first = parts[0]
        if len(parts) == 1:
            return first
        starts = np.cumsum([0] + [p.n_frames for p in parts])
        by_source = {name: np.concatenate([p.reprojection_px_by_source[name] for p in parts])
                     for name in first.reprojection_px_by_source}
        flows = [p.flow_residual_px for p in parts]
        flow = (None if all(f is None for f in flows) else
                np.concatenate([np.full(p.n_frames, np.nan) if f is None else f for p, f in zip(parts, flows)]))
        timings: dict = {}
        for p in parts:
            for key, value in p.timings.items():
                timings[key] = timings.get(key, 0.0) + value
        with_vertices = all(p.vertices is not None for p in parts)

        def mesh_of(a: int, b: int) -> np.ndarray:
            pieces = [p.mesh(max(a, lo) - lo, min(b, hi) - lo)
                      for p, lo, hi in zip(parts, starts[:-1], starts[1:]) if max(a, lo) < min(b, hi)]
            return np.concatenate(pieces)

        return cls(shape=first.shape, camera=first.camera,
                   **{name: np.concatenate([getattr(p, name) for p in parts]) for name in PER_FRAME},
                   vertices=np.concatenate([p.vertices for p in parts]) if with_vertices else None,
                   reprojection_px_by_source=by_source,
                   source_frames={name: sum(p.source_frames[name] for p in parts) for name in first.source_frames},
                   flow_residual_px=flow, timings=timings,
                   shot_starts=np.asarray(starts[1:-1] if shot_starts is None else shot_starts, np.int64),
                   mesh_of=None if with_vertices else mesh_of)
