"""Staged Gauss-Newton fitting of FLAME to 2D landmark sequences.

1. Rigid: head rotation and translation per frame against the mean face.
2. Identity: the shape shared by a set of frames (closed-mouth frames spread over the clips),
   jointly with those frames' expression and pose (arrowhead system, Schur complement).
3. Clip: every frame's expression, jaw, eyes, rotation and translation with the shape fixed and
   second-difference smoothness over time (banded system, solved exactly).

Each stage is Levenberg-Marquardt (:mod:`recon3d.fitting.lm`) on analytic Jacobians evaluated only
at the landmarks, minimising the objective of :mod:`recon3d.fitting.objective`; the full mesh is
computed once at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from recon3d.config_io import ConfigError
from recon3d.device import torch_device
from recon3d.errors import ClipError
from recon3d.fitting.camera import PinholeCamera
from recon3d.fitting.config import FitConfig
from recon3d.fitting.landmark_bias import contour_offsets_for, noise_for, offsets_for, resolve_offsets_path
from recon3d.fitting import flow_term
from recon3d.fitting import objective as obj
from recon3d.fitting.landmark_model import LandmarkModel, ParamLayout
from recon3d.fitting.lm import damped, levenberg_marquardt
from recon3d.fitting.normal_equations import (
    apply_second_difference_gram,
    second_difference_cost,
    solve_arrowhead,
    solve_smoothed_blocks,
)
from recon3d.fitting.sequence import FitResult, LandmarkSequence
from recon3d.fitting.windows import temporal_windows
from recon3d.fitting.source_trust import (
    SourceAgreement, agreement_weights, cosine_ramp, facing_camera, pose_gate, vertex_normals, view_angles,
    visibility_weights)
from recon3d.flame.embeddings import LandmarkEmbedding, load_fan68_embedding
from recon3d.flame.landmark_basis import LandmarkBasis, landmark_basis
from recon3d.flame.layer import FlameLayer
from recon3d.flame.lbs import axis_angle_to_matrix
from recon3d.flame.model_file import FlameModelData, FlameModelError
from recon3d.landmarks.mouth_flow import MouthFlow
from recon3d.landmarks.schemes import DLIB_OFFSET, MEDIAPIPE, LandmarkScheme
from recon3d.landmarks.shots import shot_ranges

IRIS_IDS = set(range(468, 478))
#: Bounds of the calibrated per-point weights (``landmark_noise: calibrated``): no point counts more
#: than 4 times, or less than a quarter of, a typical one.
NOISE_WEIGHT_RANGE = (0.25, 4.0)
#: Frames processed at once where memory grows with the clip (the Jacobians of the normal equations).
FRAME_CHUNK = 64
#: Frames of the rigid start solved at once (each frame on its own: any chunk gives the same poses).
RIGID_CHUNK = 1024
#: The identity of a longer clip is chosen among this many of its frames, spread evenly
#: (:func:`identity_frames`): its memory stays that of a minute of video.
IDENTITY_MAX_FRAMES = 1800
#: ``fitting.precision`` values: the arithmetic of the fit's tensors and its banded solves. float32
#: fits equal float64 ones to ~1e-4 mm at about three quarters of the time (benchmarks.md,
#: 2026-12-04).
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}
#: ``fitting.landmark_sigma`` values (FitConfig); an estimated noise is never taken below
#: MIN_SIGMA_MM (~0.4 px at RAVDESS's face size): the model's own misfit acts as noise even on perfect
#: points; 0.15 mm was the best noiseless value on the calibration seeds for both models (fitting.md).
SIGMA_SOURCES = ("fixed", "estimated")
MIN_SIGMA_MM = 0.15


def identity_frames(n_frames: int) -> np.ndarray:
    """The frames of a clip of ``n_frames`` that its identity is fitted on: all, or
    :data:`IDENTITY_MAX_FRAMES` of them spread evenly."""
    return np.linspace(0, n_frames - 1, min(n_frames, IDENTITY_MAX_FRAMES)).round().astype(int)


class FittingError(ClipError):
    """A clip cannot be fitted (for example: no face in any frame)."""

    def __init__(self, reason: str):
        super().__init__(reason, stage="fit")


@dataclass(frozen=True)
class _Batch:
    """Frames being optimised together, with their observations and weights."""

    model: LandmarkModel
    obs: torch.Tensor  # (T, N, 2) pixels
    curves: tuple[torch.Tensor, ...]  # per fitted outline (T, L, 2) pixels: the detected face outline (NaN where unknown)
    frame_w: torch.Tensor  # (T, M) data weight per frame and residual point (a second source's trust)
    mm_per_px: torch.Tensor  # (T,)
    sigma_mm: float  # the landmarks' noise at the face

    def frames(self, start: int, stop: int) -> "_Batch":
        curves = tuple(c[start:stop] for c in self.curves)
        return _Batch(self.model, self.obs[start:stop], curves, self.frame_w[start:stop], self.mm_per_px[start:stop],
                      self.sigma_mm)


@dataclass(frozen=True)
class _Flow:
    """The mouth flow of a clip in its fit: the samples' projection, the measured flow and where
    each sample is seen in both frames of a pair ``(T - 1, S)``."""

    model: LandmarkModel
    flow: MouthFlow
    seen: torch.Tensor


class FlameFitter:
    """Fits FLAME to landmark sequences with the settings of a :class:`FitConfig`.

    ``embedding`` ties detector ids to the mesh; ``scheme`` names the detector's eye corners,
    lip/eyelid pairs and face outline (MediaPipe by default). With ``config.contour_weight`` > 0 and
    a scheme with an outline, FLAME's jaw line (DECA's contour embedding, found beside the model
    or at ``$RECON3D_FAN_EMBEDDING``) is fitted to it as extra points after the landmarks.
    """

    def __init__(self, model: FlameModelData, embedding: LandmarkEmbedding, config: FitConfig | None = None,
                 scheme: LandmarkScheme = MEDIAPIPE):
        self.config = config = config or FitConfig()
        if config.n_shape > model.n_shape or config.n_expr > model.n_expr:
            raise ConfigError(f"fitting.n_shape {config.n_shape} / n_expr {config.n_expr}: the model has only "
                              f"{model.n_shape} shape and {model.n_expr} expression components")
        self.device = torch_device(config.device)
        if config.precision not in PRECISIONS:
            raise ConfigError(f"fitting.precision: {config.precision!r} is not one of {', '.join(PRECISIONS)}")
        if config.landmark_sigma not in SIGMA_SOURCES:
            raise ConfigError(f"fitting.landmark_sigma: {config.landmark_sigma!r} is not one of {', '.join(SIGMA_SOURCES)}")
        self.dtype = PRECISIONS[config.precision]
        self.embedding = embedding
        self.scheme = scheme
        self.contour = self._contour(model, config, scheme)
        # The outlines the jaw line is fitted to: the scheme's; and where that is a second source's
        # (dlib's jaw line) beside MediaPipe's points, MediaPipe's face oval too, for the frames that
        # source is not trusted in. A second source fitted alone (no MediaPipe point) is its own judge.
        self.has_primary = bool((np.asarray(embedding.source_ids) < DLIB_OFFSET).any())
        self.outlines = [] if self.contour is None else [(scheme.face_contour, scheme.outline_calibration)]
        if self.outlines and self.has_primary and min(scheme.face_contour) >= DLIB_OFFSET:
            self.outlines.append((MEDIAPIPE.face_contour, MEDIAPIPE.outline_calibration))
        points = embedding.joined(self.contour) if self.contour is not None else embedding
        fitted = points
        for _ in self.outlines[1:]:
            fitted = fitted.joined(self.contour)
        self.shape_basis = self._observable_subspace(model, points, model.shapedirs[:, :, :config.n_shape], config.shape_dims)
        self.expr_basis = self._observable_subspace(model, points, model.exprdirs[:, :, :config.n_expr], config.expr_dims)
        self.layout = ParamLayout(self.expr_basis.shape[1])
        # Full identity space for clips (the shape is fixed there); the observable subspace for
        # fitting the identity itself.
        offsets = offsets_for(embedding, config.landmark_offsets, model) if scheme.outline_calibration else None
        if offsets is not None:
            offsets = np.concatenate([offsets] + [contour_offsets_for(self.contour, config.landmark_offsets, model, key)
                                                  for _, key in self.outlines])
        self.basis = landmark_basis(model, fitted, np.eye(config.n_shape), self.expr_basis, self.dtype,
                                    offsets).to(self.device)
        self.identity_basis = landmark_basis(model, fitted, self.shape_basis, self.expr_basis, self.dtype,
                                             offsets).to(self.device)
        self.layer = FlameLayer(model, dtype=torch.float32).to(self.device)
        ids = list(embedding.source_ids)
        pos = {int(i): k for k, i in enumerate(ids)}
        self.pairs = torch.tensor([(pos[a], pos[b]) for a, b in scheme.lip_pairs + scheme.eyelid_pairs
                                   if a in pos and b in pos], dtype=torch.long, device=self.device).reshape(-1, 2)
        weights = [config.iris_weight if int(i) in IRIS_IDS else config.dlib_weight if int(i) >= DLIB_OFFSET else 1.0
                   for i in ids]
        weights += [config.contour_weight] * (len(self.contour) * len(self.outlines) if self.outlines else 0)
        weights = np.asarray(weights)[:, None] * self._noise_weights(model, config, len(weights))
        weights = np.concatenate([weights, np.full((len(self.pairs), 2), config.contact_weight)])
        self.point_w = self._t(weights)  # (M, 2): per point and image axis
        self.second_rows, self.fallback_rows = self._second_source_rows()
        self.agreement = SourceAgreement.for_model(model, embedding) if self.second_rows.any() else None
        template = model.v_template.astype(np.float64)
        template_normals = vertex_normals(template, model.faces)
        normals = embedding.points(template_normals, model.faces)
        # The landmarks' canonical positions and unit normals on the template, for visibility.
        self.surface = (embedding.points(template, model.faces),
                        normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12))
        self.flow_samples, self.flow_basis, self.flow_surface = (
            self._flow_samples(model, template, template_normals) if config.flow_weight > 0 else (None, None, None))
        self.leak_dir = self._jaw_leak_direction()
        self.prior_hess = obj.prior_hessian(obj.prior_diagonal(config, self.layout, self.point_w), self.leak_dir,
                                            config.jaw_leak_prior, self.layout)

    # ----------------------------------------------------------------------------------- setup
    def _t(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)

    def _second_source_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(M,) rows of the residual (landmarks, jaw line per outline, contact pairs) that come from
        a second source (ids >= DLIB_OFFSET; the jaw line against that source's outline), and the
        rows that stand in for them where it is not trusted (the jaw line against MediaPipe's oval)."""
        ids = np.asarray(self.embedding.source_ids)
        pairs = ids[self.pairs.cpu().numpy()].reshape(-1, 2)
        k = len(self.contour) if self.contour is not None else 0
        outline_second = np.array([min(outline) >= DLIB_OFFSET for outline, _ in self.outlines], bool)
        second = np.concatenate([ids >= DLIB_OFFSET, np.repeat(outline_second, k), (pairs >= DLIB_OFFSET).any(1)])
        second &= self.has_primary
        fallback = np.zeros_like(second)
        if len(self.outlines) > 1:
            fallback[len(ids) + k:len(ids) + 2 * k] = True
        return second, fallback

    def source_weights(self, seq: LandmarkSequence, params: torch.Tensor | None) -> np.ndarray:
        """``(T, M)`` weight of each residual row per frame (:mod:`recon3d.fitting.source_trust`): 1,
        or with ``visibility_full_cos`` > 0 each landmark's visibility under ``params``; times, for a
        second source's rows, its trust: by the head's view angles under ``params`` and by agreement
        with MediaPipe's points (MediaPipe's face oval stands in for its outline where it is not
        trusted); a second source's rows are 0 without ``params`` (the rigid start, MediaPipe's alone)."""
        c = self.config
        out = np.ones((seq.n_frames, len(self.second_rows)))
        if params is None:
            out[:, self.second_rows] = 0.0
            return out
        lay = self.layout
        p = params.detach().cpu().double().numpy()
        rotation = axis_angle_to_matrix(torch.as_tensor(p[:, lay.rot])).numpy()
        n, n_pairs = len(self.embedding), len(self.pairs)
        pairs = self.pairs.cpu().numpy()
        if c.visibility_full_cos > 0:
            points, normals = self.surface
            cosine = facing_camera(normals, points, rotation, p[:, lay.trans])
            out[:, :n] = visibility_weights(cosine, c.visibility_full_cos, c.visibility_floor)
            out[:, len(out[0]) - n_pairs:] = out[:, pairs[:, 0]] * out[:, pairs[:, 1]]
        if self.agreement is None:
            return out
        yaw, pitch = view_angles(p[:, lay.rot], p[:, lay.trans])
        gate = pose_gate(yaw, pitch, (c.dlib_yaw_full_deg, c.dlib_yaw_zero_deg),
                         (c.dlib_pitch_full_deg, c.dlib_pitch_zero_deg))
        mm_per_px = 1000.0 * -p[:, lay.trans.start + 2] / self.camera_for(seq).focal
        points = np.where(seq.valid[:, None, None], seq.points, np.nan)
        disagreement = self.agreement.disagreement_mm(points, mm_per_px, rotation, reference=gate >= 1.0)
        point_w, frame_agree = agreement_weights(disagreement, c.dlib_agreement_mm, c.dlib_agreement_free_mm)
        frame = gate * frame_agree
        second = np.flatnonzero(self.second_rows[:n])
        out[:, second] *= frame[:, None] * point_w
        contour = n + np.flatnonzero(self.second_rows[n:len(out[0]) - n_pairs])
        out[:, contour] = frame[:, None]
        out[:, self.fallback_rows] = 1.0 - frame[:, None]
        out[:, len(out[0]) - n_pairs:] = out[:, pairs[:, 0]] * out[:, pairs[:, 1]]
        return out

    def _flow_samples(self, model: FlameModelData, template: np.ndarray, normals: np.ndarray
                      ) -> tuple[np.ndarray, LandmarkBasis, tuple]:
        """The mouth flow's surface samples (:func:`flow_term.mouth_samples`, placed by the
        scheme's lip landmarks on the template, whose unit vertex ``normals`` are given): their
        vertex ids, basis, and canonical positions and normals."""
        pos = {int(i): k for k, i in enumerate(self.embedding.source_ids)}
        lips = self.surface[0][[pos[i] for i in self.scheme.lip_ids if i in pos]]
        ids = flow_term.mouth_samples(template, normals, lips)
        basis = landmark_basis(model, flow_term.vertex_embedding(ids, model.faces), np.eye(self.config.n_shape),
                               self.expr_basis, self.dtype).to(self.device)
        return ids, basis, (template[ids], normals[ids])

    @staticmethod
    def _contour(model: FlameModelData, config: FitConfig, scheme: LandmarkScheme) -> LandmarkEmbedding | None:
        """FLAME's jaw-line points fitted to the scheme's face outline, or None when not asked for."""
        if config.contour_weight <= 0 or not scheme.face_contour:
            return None
        try:
            return load_fan68_embedding(model).jaw_line()
        except FlameModelError as exc:
            raise FlameModelError(f"{exc} It is needed to fit the jaw line (fitting.contour_weight > 0); "
                                  "set fitting.contour_weight: 0 to fit without it.") from exc

    def _noise_weights(self, model: FlameModelData, config: FitConfig, n_points: int) -> np.ndarray:
        """Per point (landmarks, then the jaw line) and image axis ``(n_points, 2)``: 1, or with
        ``landmark_noise: calibrated`` the inverse square of its calibrated noise along that axis
        relative to the landmarks' median, within :data:`NOISE_WEIGHT_RANGE` (1 for points the file
        has no noise for). The noise comes from the ``landmark_offsets`` file, or the model's own
        calibration when that is ``none``; a file without per-axis noise gives both axes its one."""
        if config.landmark_noise == "uniform":
            return np.ones((n_points, 2))
        if config.landmark_noise != "calibrated":
            raise ConfigError(f"fitting.landmark_noise: {config.landmark_noise!r} is not one of uniform, calibrated")
        source = "default" if resolve_offsets_path(config.landmark_offsets, model) is None else config.landmark_offsets
        outline = self.scheme.outline_calibration
        noise = noise_for(self.embedding, self.contour, source, model, outline) if outline else None
        if noise is not None:
            for _, key in self.outlines[1:]:
                noise = np.concatenate([noise, noise_for(self.embedding, self.contour, source, model, key)[len(self.embedding):]])
        if noise is None or not np.isfinite(noise).any():
            raise ConfigError("fitting.landmark_noise: calibrated needs the points' noise from a calibration file "
                              "written by scripts/calibrate_landmark_bias.py (MediaPipe landmarks only); "
                              "set fitting.landmark_noise: uniform to weigh every point alike")
        relative = noise / np.nanmedian(noise[:len(self.embedding)])
        return np.where(np.isfinite(relative), np.clip(relative ** -2.0, *NOISE_WEIGHT_RANGE), 1.0)

    @staticmethod
    def _observable_subspace(model: FlameModelData, embedding: LandmarkEmbedding, dirs: np.ndarray, dims: int) -> np.ndarray:
        """Orthonormal ``(K, dims)`` basis of the blendshape directions that move the landmarks most.

        With an isotropic prior, the estimate of a linear model lies in the span of the directions
        the data sees, so fitting in the top ``dims`` right-singular vectors of the landmarks'
        basis loses little while keeping the unknowns few. Depth (z) counts less than x/y, as it is
        only seen through perspective and head turns. ``dims`` of 0 keeps all ``K`` components.
        """
        n = dirs.shape[2]
        if not dims or dims >= n:
            return np.eye(n)
        tri = model.faces[embedding.face_idx]
        at_landmarks = np.einsum("nc,ncde->nde", embedding.bary, dirs[tri])
        at_landmarks = at_landmarks * np.array([1.0, 1.0, 0.3])[None, :, None]
        _, _, vt = np.linalg.svd(at_landmarks.reshape(-1, n), full_matrices=False)
        return vt[:dims].T.copy()

    def _jaw_leak_direction(self) -> torch.Tensor:
        """Unit direction in expression space that best imitates opening the jaw.

        Expression bases learned from speech contain mouth opening; penalising this direction makes
        the jaw pose carry jaw opening, as users of ``jaw_pose`` expect.
        """
        lay = self.layout
        cam = PinholeCamera(1.0, 0.0, 0.0, 1, 1)
        lm = LandmarkModel(self.basis, cam, lay)
        shape = torch.zeros(self.config.n_shape, dtype=self.dtype, device=self.device)
        p0 = torch.zeros(1, lay.size, dtype=self.dtype, device=self.device)
        p1 = p0.clone()
        p1[0, lay.jaw.start] = 0.1
        delta = (lm.canonical_points(shape, p1) - lm.canonical_points(shape, p0))[0].reshape(-1)
        basis = self.basis.exprdirs.reshape(-1, lay.n_expr)
        coef = torch.linalg.lstsq(basis, delta[:, None]).solution[:, 0]
        return coef / coef.norm().clamp_min(1e-12)

    def camera_for(self, seq: LandmarkSequence) -> PinholeCamera:
        if self.config.focal_px:
            return PinholeCamera(self.config.focal_px, seq.width / 2, seq.height / 2, seq.width, seq.height)
        return PinholeCamera.from_fov(seq.width, seq.height, self.config.fov_deg)

    def usable_frames(self, seq: LandmarkSequence) -> np.ndarray:
        """(T,) frames with a face whose embedded landmarks are all finite."""
        obs = seq.points[:, self.embedding.source_ids]
        return (seq.frame_weights() > 0) & np.isfinite(obs).all(axis=(1, 2))

    def _observations(self, seq: LandmarkSequence, frames: np.ndarray, source_w: np.ndarray
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
        """Observed embedded landmarks ``(F, N, 2)`` pixels (zeros where unusable), the face outline
        per fitted outline ``(F, L, 2)`` (NaN where unknown; none without contour points) and the weights ``(F, M)`` of
        each frame's residual rows: the frame's weight times ``source_w (T, M)``
        (:meth:`source_weights`)."""
        obs = seq.points[frames][:, self.embedding.source_ids]
        curves = tuple(obj.smooth_outline(self._t(seq.points[frames][:, list(ids)])) for ids, _ in self.outlines)
        frame_w = (seq.frame_weights() * self.usable_frames(seq))[frames, None] * source_w[frames]
        return self._t(np.nan_to_num(obs)), curves, self._t(frame_w)

    def _batch(self, seq: LandmarkSequence, mm_per_px: float | torch.Tensor, source_w: np.ndarray,
               frames: np.ndarray | None = None, basis: LandmarkBasis | None = None) -> _Batch:
        frames = np.arange(seq.n_frames) if frames is None else frames
        obs, curves, frame_w = self._observations(seq, frames, source_w)
        scale = torch.as_tensor(mm_per_px, dtype=self.dtype, device=self.device).expand(len(frames)).clone()
        return _Batch(LandmarkModel(basis or self.basis, self.camera_for(seq), self.layout), obs, curves, frame_w, scale,
                      self.sigma_mm(seq, float(scale.median())))

    def sigma_mm(self, seq: LandmarkSequence, mm_per_px: float) -> float:
        """The landmark noise the fit assumes for ``seq``: ``landmark_sigma_mm``, or with
        ``landmark_sigma: estimated`` the sequence's own (white) noise, at least :data:`MIN_SIGMA_MM`."""
        c = self.config
        if c.landmark_sigma == "fixed":
            return c.landmark_sigma_mm
        noise_px = seq.white_noise_px(self.embedding.source_ids)
        return c.landmark_sigma_mm if not np.isfinite(noise_px) else max(MIN_SIGMA_MM, noise_px * mm_per_px)

    # ------------------------------------------------------------------------------ objective
    def _residuals(self, batch: _Batch, pixels: torch.Tensor, jac: torch.Tensor | None = None):
        return obj.residuals(pixels, batch.obs, batch.mm_per_px, self.pairs, jac, batch.curves)

    def _robust(self, batch: _Batch, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        return obj.robust_weights(r, batch.frame_w, self.point_w, batch.sigma_mm, c.huber_mm)

    def _data_cost(self, batch: _Batch, shape: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        pixels = batch.model.evaluate(shape, params, jac=False).pixels
        return self._robust(batch, self._residuals(batch, pixels, None)[0])[1]

    def _data_normal_equations(self, batch: _Batch, shape: torch.Tensor, params: torch.Tensor, with_shape: bool):
        """Gauss-Newton Hessian blocks and gradients of the (robust) data term.

        Returns ``hess (T, p, p), grad (T, p)`` and, ``with_shape``, the frame/shape coupling
        ``(T, p, K)``, the shape block ``(K, K)`` and the shape gradient ``(K,)``.
        """
        n_frames = params.shape[0]
        if not with_shape and n_frames > FRAME_CHUNK:  # bounded memory for long clips
            parts = [self._data_normal_equations(batch.frames(a, a + FRAME_CHUNK), shape, params[a:a + FRAME_CHUNK], False)
                     for a in range(0, n_frames, FRAME_CHUNK)]
            return torch.cat([h for h, _ in parts]), torch.cat([g for _, g in parts])
        ev = batch.model.evaluate(shape, params, jac=True, jac_shape=with_shape)
        hess, grad, (r, jw, w2) = self._weighted_system(batch, ev.pixels, ev.jac)
        if not with_shape:
            return hess, grad
        _, js = self._residuals(batch, ev.pixels, ev.jac_shape)
        js = js.reshape(params.shape[0], -1, shape.shape[0])
        coupling = jw.transpose(1, 2) @ js
        js_w = (js * w2[..., None]).reshape(-1, js.shape[-1])
        shared = js_w.T @ js.reshape(-1, js.shape[-1])
        shared_grad = js_w.T @ r.reshape(-1)
        return hess, grad, coupling, shared, shared_grad

    def _weighted_system(self, batch: _Batch, pixels: torch.Tensor, jac: torch.Tensor):
        """:func:`objective.weighted_system` of the robust data term at ``pixels``."""
        r, j = self._residuals(batch, pixels, jac)
        w, _ = self._robust(batch, r)
        return obj.weighted_system(r, j, w)

    # ----------------------------------------------------------------------------- mouth flow
    def _flow(self, seq: LandmarkSequence, params: torch.Tensor, camera: PinholeCamera) -> _Flow | None:
        """The clip's mouth-flow term (None when off or not measured); which samples are seen is
        judged under ``params`` (the rigid start), as the landmarks' trust is."""
        if self.flow_basis is None or seq.flow is None or seq.n_frames < 2:
            return None
        lay = self.layout
        p = params.detach().cpu().double().numpy()
        rotation = axis_angle_to_matrix(torch.as_tensor(p[:, lay.rot])).numpy()
        points, normals = self.flow_surface
        seen = cosine_ramp(-facing_camera(normals, points, rotation, p[:, lay.trans]), -self.config.flow_visible_cos, 0.0)
        usable = self.usable_frames(seq)
        both = seen[:-1] * seen[1:] * (usable[:-1] & usable[1:])[:, None]
        return _Flow(LandmarkModel(self.flow_basis, camera, lay), seq.flow, self._t(both))

    @staticmethod
    def _flow_windows(n_frames: int) -> list[tuple[int, int]]:
        """Frame ranges ``[a, b]`` (inclusive) whose pairs cover the clip, FRAME_CHUNK pairs at most."""
        return [(a, min(a + FRAME_CHUNK, n_frames - 1)) for a in range(0, n_frames - 1, FRAME_CHUNK)]

    def _flow_pairs(self, flow: _Flow, batch: _Batch, shape: torch.Tensor, params: torch.Tensor, a: int, b: int,
                    jac: bool):
        """Residuals ``(b - a, S, 2)`` of the pairs of frames ``a..b``, how much each counts, and
        the evaluation of the samples (with Jacobians when ``jac``)."""
        ev = flow.model.evaluate(shape, params[a:b + 1], jac=jac)
        measured, known = flow.flow.window(a, b + 1).sample(ev.pixels.detach().cpu().double().numpy())
        r = flow_term.flow_residuals(ev.pixels, self._t(measured), batch.mm_per_px[a:b + 1])
        return r, self._t(known[:-1]) * flow.seen[a:b], ev

    def _flow_cost(self, flow: _Flow, batch: _Batch, shape: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        c = self.config
        total = params.new_zeros(())
        for a, b in self._flow_windows(params.shape[0]):
            r, known, _ = self._flow_pairs(flow, batch, shape, params, a, b, jac=False)
            total = total + flow_term.flow_weights(r, known, c.flow_weight, batch.sigma_mm, c.flow_huber_mm,
                                                   c.flow_vertical)[1]
        return total

    def _flow_normal_equations(self, flow: _Flow, batch: _Batch, shape: torch.Tensor, params: torch.Tensor):
        """The term's per-frame blocks ``(T, p, p)``, consecutive-frame coupling ``(T - 1, p, p)`` and gradient ``(T, p)``."""
        c = self.config
        n_frames, p = params.shape
        diag = params.new_zeros(n_frames, p, p)
        coupling = params.new_zeros(n_frames - 1, p, p)
        grad = params.new_zeros(n_frames, p)
        for a, b in self._flow_windows(n_frames):
            r, known, ev = self._flow_pairs(flow, batch, shape, params, a, b, jac=True)
            w, _ = flow_term.flow_weights(r, known, c.flow_weight, batch.sigma_mm, c.flow_huber_mm, c.flow_vertical)
            d, cpl, g = flow_term.flow_system(r, ev.jac, w, batch.mm_per_px[a:b + 1])
            diag[a:b + 1] += d
            coupling[a:b] += cpl
            grad[a:b + 1] += g
        return diag, coupling, grad

    def _flow_residual_px(self, flow: _Flow, batch: _Batch, shape: torch.Tensor, params: torch.Tensor) -> np.ndarray:
        """(T,) the samples' mean motion error in pixels per frame (NaN where none was compared)."""
        out = np.full(params.shape[0], np.nan)
        for a, b in self._flow_windows(params.shape[0]):
            r, known, _ = self._flow_pairs(flow, batch, shape, params, a, b, jac=False)
            err = (r.norm(dim=-1) / batch.mm_per_px[a:b, None]).cpu().numpy()
            k = known.cpu().numpy()
            total = k.sum(1)
            out[a:b] = np.where(total > 0.5, (err * k).sum(1) / total.clip(1e-12), np.nan)
        return out

    # ------------------------------------------------------------------------------- stages
    def _rigid_init(self, seq: LandmarkSequence) -> torch.Tensor:
        """Per-frame head rotation and translation against the mean face; invalid frames interpolated."""
        usable = self.usable_frames(seq)
        if not usable.any():
            raise FittingError("no face was detected in any frame")
        lay = self.layout
        cam = self.camera_for(seq)
        mediapipe_only = self.source_weights(seq, None)
        obs = self._observations(seq, np.arange(seq.n_frames), mediapipe_only)[0]
        shape = torch.zeros(self.config.n_shape, dtype=self.dtype, device=self.device)
        params = torch.zeros(seq.n_frames, lay.size, dtype=self.dtype, device=self.device)
        mean_face = LandmarkModel(self.basis, cam, lay).canonical_points(shape, params[:1])[0]
        primary = torch.as_tensor(np.flatnonzero(~self.second_rows[:obs.shape[1]]), device=self.device)
        observed = mean_face[primary]  # MediaPipe's landmarks, without contour points or a second source
        obs = obs[:, primary]
        centre3 = observed.mean(0)
        spread3 = (observed[:, :2] - centre3[:2]).norm(dim=-1).mean()
        centre2 = obs.mean(1)
        spread2 = (obs - centre2[:, None]).norm(dim=-1).mean(1).clamp_min(1.0)
        depth = cam.focal * spread3 / spread2
        params[:, lay.trans.start] = (centre2[:, 0] - cam.cx) * depth / cam.focal - centre3[0]
        params[:, lay.trans.start + 1] = -(centre2[:, 1] - cam.cy) * depth / cam.focal - centre3[1]
        params[:, lay.trans.start + 2] = -depth - centre3[2]
        batch = self._batch(seq, 1000.0 * depth / cam.focal, mediapipe_only)
        pose = params[:, lay.rot.start:lay.trans.stop]
        eye6 = torch.eye(6, dtype=self.dtype, device=self.device)
        for a in range(0, seq.n_frames, RIGID_CHUNK):  # frames are independent here: bounded memory
            b = min(a + RIGID_CHUNK, seq.n_frames)
            part, face = batch.frames(a, b), mean_face.expand(b - a, -1, -1)
            for _ in range(self.config.rigid_iters):
                pixels, jac, _, _ = part.model.rigid(face, pose[a:b, :3], pose[a:b, 3:])
                hess, grad, _ = self._weighted_system(part, pixels, jac)
                pose[a:b] -= torch.linalg.solve(hess + 1e-6 * eye6, grad[..., None])[..., 0]
        return self._interpolate_invalid(params, usable)

    @staticmethod
    def _interpolate_invalid(params: torch.Tensor, valid: np.ndarray) -> torch.Tensor:
        if valid.all():
            return params
        good = np.flatnonzero(valid)
        x = params.cpu().numpy()
        out = np.stack([np.interp(np.arange(len(valid)), good, x[good, i]) for i in range(x.shape[1])], 1)
        return torch.as_tensor(out, dtype=params.dtype, device=params.device)

    def _mm_per_px(self, params: torch.Tensor, camera: PinholeCamera, valid: np.ndarray) -> float:
        depth = -params[:, self.layout.trans.start + 2].cpu().numpy()
        return float(1000.0 * np.median(depth[valid]) / camera.focal)

    def fit_identity(self, sequences: list[LandmarkSequence], init_params: list[torch.Tensor] | None = None,
                     neutral: bool = False) -> np.ndarray:
        """FLAME identity coefficients ``(n_shape,)`` from closed-mouth frames sampled across ``sequences``.

        Unknowns: the shape and the frames' mean expression (shared), and per frame the deviation
        from that mean plus jaw, eyes and head pose. Giving the mean expression its own prior keeps
        a constant expression from being pushed into the identity (and identity into expression).
        ``neutral=True`` (neutral-emotion clips) weighs the mean expression toward zero more strongly.
        A sequence longer than :data:`IDENTITY_MAX_FRAMES` is seen through that many of its frames.
        """
        c, lay = self.config, self.layout
        if any(s.n_frames > IDENTITY_MAX_FRAMES for s in sequences):  # bounded memory: frames spread evenly
            spread = [identity_frames(s.n_frames) for s in sequences]
            sequences = [s.take(frames) for s, frames in zip(sequences, spread)]
            init_params = init_params and [p[torch.as_tensor(f)] for p, f in zip(init_params, spread)]
        init_params = init_params or [self._rigid_init(s) for s in sequences]
        picks = self._identity_frames(sequences, init_params)
        if not picks:
            raise FittingError("no frame with a face to fit the identity on")
        batches, params = [], []
        for si, frames in picks.items():
            seq = sequences[si]
            scale = self._mm_per_px(init_params[si], self.camera_for(seq), self.usable_frames(seq))
            batches.append(self._batch(seq, scale, self.source_weights(seq, init_params[si]), frames,
                                       self.identity_basis))
            params.append(init_params[si][frames].clone())
        params_all = torch.cat(params)
        sizes = [len(p) for p in params]
        n_k, n_e = self.shape_basis.shape[1], lay.n_expr
        shared = torch.zeros(n_k + n_e, dtype=self.dtype, device=self.device)  # [shape, mean expression]
        mean_prior = c.expr_prior * (c.neutral_mean_expr_factor if neutral else 1.0)
        shared_prior_h = torch.zeros(n_k + n_e, n_k + n_e, dtype=self.dtype, device=self.device)
        shared_prior_h[:n_k, :n_k] = c.shape_prior * torch.eye(n_k, dtype=self.dtype, device=self.device)
        shared_prior_h[n_k:, n_k:] = (mean_prior * torch.eye(n_e, dtype=self.dtype, device=self.device)
                                      + c.jaw_leak_prior * torch.outer(self.leak_dir, self.leak_dir))

        def evaluated(frame_params: torch.Tensor) -> torch.Tensor:
            out = frame_params.clone()
            out[:, lay.expr] += shared[n_k:]
            return out

        def cost_fn() -> torch.Tensor:
            shape = shared[:n_k]
            data = sum(self._data_cost(b, shape, evaluated(p)) for b, p in zip(batches, params_all.split(sizes)))
            return data + obj.prior_cost(params_all, self.prior_hess) + 0.5 * shared @ shared_prior_h @ shared

        def linearize():
            shape = shared[:n_k]
            h, g, cpl, s_h, s_g = [], [], [], 0, 0
            for b, p in zip(batches, params_all.split(sizes)):
                hh, gg, cc, ss, sg = self._data_normal_equations(b, shape, evaluated(p), with_shape=True)
                h.append(hh), g.append(gg)
                # Coupling of frame unknowns to [shape, mean expression]; the latter acts like the
                # frames' own expression.
                cpl.append(torch.cat([cc, hh[:, :, lay.expr]], dim=2))
                block = torch.zeros_like(shared_prior_h)
                block[:n_k, :n_k] = ss
                block[:n_k, n_k:] = cc[:, lay.expr].sum(0).T
                block[n_k:, :n_k] = cc[:, lay.expr].sum(0)
                block[n_k:, n_k:] = hh[:, lay.expr, lay.expr].sum(0)
                s_h = s_h + block
                s_g = s_g + torch.cat([sg, gg[:, lay.expr].sum(0)])
            hess = torch.cat(h) + self.prior_hess
            grad, coupling = torch.cat(g) + params_all @ self.prior_hess, torch.cat(cpl)
            s_h = s_h + shared_prior_h
            s_g = s_g + shared_prior_h @ shared

            def solve(damping: float) -> list[torch.Tensor]:
                dx, ds = solve_arrowhead(damped(hess, damping), coupling, damped(s_h, damping), -grad, -s_g)
                return [dx, ds]

            return solve

        levenberg_marquardt(c.identity_iters, [params_all, shared], cost_fn, linearize)
        return self.shape_basis @ shared[:n_k].cpu().numpy()

    def _identity_frames(self, sequences: list[LandmarkSequence], init_params: list[torch.Tensor]
                         ) -> dict[int, np.ndarray]:
        """Frames nearest a neutral face, spread evenly in time across clips: the mouth closed
        (lower half of the lip gap over all clips), with ``identity_open_eyes`` the eyes open (upper
        half of each clip's eyelid gap: no blinks, whose closing lids would otherwise leak into the
        identity through the expression prior), and the face toward the camera: view yaw and pitch
        under the rigid start within ``identity_max_view_deg``, or where fewer than
        ``identity_frames`` such frames remain, the least turned ones (on a turned face the
        detectors guess the far side, and the identity would carry their guess)."""
        lay, c = self.layout, self.config
        candidates = []
        for si, (seq, params) in enumerate(zip(sequences, init_params)):
            p = params.detach().cpu().double().numpy()
            turned = np.maximum(*view_angles(p[:, lay.rot], p[:, lay.trans]))
            gap = seq.mouth_gap()
            usable = self.usable_frames(seq) & np.isfinite(gap)
            if c.identity_open_eyes and usable.any():
                eyes = seq.eye_gap()
                usable &= eyes >= np.nanmedian(eyes[usable])
            candidates += [(gap[t], si, t, turned[t]) for t in np.flatnonzero(usable)]
        if not candidates:
            return {}
        gaps = np.array([g for g, *_ in candidates])
        closed = [(si, t, a) for (g, si, t, a) in candidates if g <= np.nanquantile(gaps, 0.5)]
        frontal = [(si, t) for si, t, a in closed if a <= c.identity_max_view_deg]
        if len(frontal) < c.identity_frames:
            frontal = sorted((si, t) for si, t, _ in sorted(closed, key=lambda x: x[2])[:c.identity_frames])
        n = min(c.identity_frames, len(frontal))
        chosen = [frontal[i] for i in np.linspace(0, len(frontal) - 1, n).round().astype(int)]
        picks: dict[int, list[int]] = {}
        for si, t in chosen:
            picks.setdefault(si, []).append(t)
        return {si: np.unique(ts) for si, ts in picks.items()}

    def fit(self, seq: LandmarkSequence, shape: np.ndarray | None = None, vertices: bool = True) -> FitResult:
        """Fit a clip; the identity is fitted from this clip unless ``shape`` is given. With
        ``shot_cuts``, a clip with cuts (:meth:`LandmarkSequence.shots`) is fitted shot by shot with
        one identity, from the shots' own rigid starts; a shot longer than ``window_frames`` is
        fitted in overlapping windows (:mod:`recon3d.fitting.windows`; :meth:`pieces`).
        ``vertices=False`` leaves the meshes to :meth:`FitResult.mesh` (computed when asked for, a
        part at a time)."""
        shots, pieces = self.pieces(seq)
        if len(pieces) == 1:
            return self._fit_shot(seq, shape, vertices)
        t0 = time.perf_counter()
        if shape is None:
            parts = [seq.window(fa, fb) for fa, fb, _, _ in pieces]
            shape = self.fit_identity([p for p in parts if self.usable_frames(p).any()])
        identity_time = time.perf_counter() - t0
        result = FitResult.joined([self.fit_piece(seq, shape, piece, vertices) for piece in pieces],
                                  shot_starts=[a for a, _ in shots[1:]])
        result.timings["identity"] = identity_time
        return result

    def pieces(self, seq: LandmarkSequence) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, int]]]:
        """The clip's shots ``(start, stop)`` and the pieces it is fitted in, ``(fit_start, fit_stop,
        keep_start, keep_stop)`` in order (each a shot, or a window of a long one): what
        :meth:`fit` does, and what a build spreads over its workers."""
        return self.pieces_of(seq.n_frames, seq.shot_starts() if self.config.shot_cuts else [])

    def pieces_of(self, n_frames: int, shot_starts) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, int]]]:
        """:meth:`pieces` of a clip of ``n_frames`` frames with shots starting at ``shot_starts``."""
        c = self.config
        shots = shot_ranges(n_frames, np.asarray(shot_starts, np.int64)) if c.shot_cuts else [(0, n_frames)]
        return shots, [(a + fa, a + fb, a + ka, a + kb) for a, b in shots
                       for fa, fb, ka, kb in temporal_windows(b - a, c.window_frames, c.window_overlap)]

    def fit_piece(self, seq: LandmarkSequence, shape: np.ndarray, piece: tuple[int, int, int, int],
                  vertices: bool = True) -> FitResult:
        """The kept frames of one of :meth:`pieces`, fitted with its context."""
        fa, fb, ka, kb = piece
        return self._fit_shot(seq.window(fa, fb), shape, vertices).frames(ka - fa, kb - fa)

    def mesh_of(self, result: FitResult):
        """``(start, stop) -> vertices`` of a result's frames, from its parameters (shape, expression,
        jaw and eyes: also for a result read back with :meth:`FitResult.from_arrays`)."""
        shape = torch.zeros(self.layer.n_shape)
        shape[:min(len(result.shape), self.layer.n_shape)] = torch.as_tensor(result.shape[:self.layer.n_shape]).float()
        psi = torch.as_tensor(result.expression).float()
        jaw, eyes = torch.as_tensor(result.jaw_pose).float(), torch.as_tensor(result.eye_pose).float()

        def mesh(a: int, b: int) -> np.ndarray:
            full = psi.new_zeros(b - a, self.layer.n_expr)
            full[:, :psi.shape[1]] = psi[a:b]
            with torch.no_grad():
                return self.layer.canonical(shape.to(self.device), full.to(self.device), jaw[a:b].to(self.device),
                                            eyes[a:b].to(self.device)).cpu().numpy().astype(np.float32)

        return mesh

    def _fit_shot(self, seq: LandmarkSequence, shape: np.ndarray | None, vertices: bool = True) -> FitResult:
        """Fit frames that are one shot, in one piece (``shape`` and ``vertices`` as in :meth:`fit`)."""
        c = self.config
        timings = {}
        t0 = time.perf_counter()
        params = self._rigid_init(seq)
        timings["rigid"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if shape is None:
            shape = self.fit_identity([seq], [params])
        timings["identity"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        shape_t = torch.zeros(c.n_shape, dtype=self.dtype, device=self.device)
        n = min(c.n_shape, len(shape))
        shape_t[:n] = self._t(shape[:n])
        source_w = self.source_weights(seq, params)
        batch = self._batch(seq, self._mm_per_px(params, self.camera_for(seq), self.usable_frames(seq)), source_w)
        smooth = obj.smooth_weights(c, self.layout, seq.fps, params)
        flow = self._flow(seq, params, batch.model.camera)

        def cost_fn() -> torch.Tensor:
            cost = (self._data_cost(batch, shape_t, params) + obj.prior_cost(params, self.prior_hess)
                    + second_difference_cost(params, smooth))
            return cost if flow is None else cost + self._flow_cost(flow, batch, shape_t, params)

        def linearize():
            hess, grad = self._data_normal_equations(batch, shape_t, params, with_shape=False)
            hess = hess + self.prior_hess
            grad = grad + params @ self.prior_hess + smooth * apply_second_difference_gram(params)
            coupling = None
            if flow is not None:
                flow_hess, coupling, flow_grad = self._flow_normal_equations(flow, batch, shape_t, params)
                hess, grad = hess + flow_hess, grad + flow_grad
            return lambda damping: [solve_smoothed_blocks(damped(hess, damping), -grad, smooth, coupling)]

        levenberg_marquardt(c.clip_iters, [params], cost_fn, linearize)
        timings["clip"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = self._result(seq, batch, shape_t, params, source_w, vertices)
        if flow is not None:
            result.flow_residual_px = self._flow_residual_px(flow, batch, shape_t, params)
        timings["mesh"] = time.perf_counter() - t0
        result.timings = timings
        return result

    # ------------------------------------------------------------------------------- output
    def _result(self, seq: LandmarkSequence, batch: _Batch, shape: torch.Tensor, params: torch.Tensor,
                source_w: np.ndarray, with_vertices: bool = True) -> FitResult:
        lay, b = self.layout, self.basis
        n_frames = params.shape[0]
        z = params[:, lay.expr]
        psi = z @ self._t(self.expr_basis).T
        eye_l, eye_r = lay.eye_rotvecs(params)
        rot = params[:, lay.rot]
        root = b.j_template[0] + b.j_shapedirs[0] @ shape + z @ b.j_exprdirs[0].T
        transl = params[:, lay.trans] + torch.einsum("tab,tb->ta", axis_angle_to_matrix(rot), root) - root
        pixels = batch.model.evaluate(shape, params, jac=False).pixels[:, :batch.obs.shape[1]]
        point_err = (pixels - batch.obs).norm(dim=-1).cpu().numpy()  # (T, N)
        usable = self.usable_frames(seq)
        n = point_err.shape[1]
        w = source_w[:, :n]
        err = (point_err * w).sum(1) / w.sum(1).clip(1e-12)
        err[~usable] = np.nan
        by_source, frames = {}, {}
        for name, rows in (("mediapipe", ~self.second_rows[:n]), ("dlib", self.second_rows[:n])):
            if not rows.any():
                continue
            used = usable & (np.median(w[:, rows], 1) >= 0.5) if name == "dlib" else usable
            by_source[name] = np.where(used, point_err[:, rows].mean(1), np.nan)
            frames[name] = int(used.sum())

        def np_(x: torch.Tensor) -> np.ndarray:
            return x.detach().cpu().numpy()

        result = FitResult(
            shape=np_(shape), expression=np_(psi), jaw_pose=np_(params[:, lay.jaw]),
            eye_pose=np_(torch.cat([eye_l, eye_r], 1)), global_pose=np_(rot),
            neck_pose=np.zeros((n_frames, 3)), translation=np_(transl), head_translation=np_(params[:, lay.trans]),
            camera=batch.model.camera,
            vertices=None, projected=np_(pixels), reprojection_px=err, reprojection_px_by_source=by_source,
            source_frames=frames)
        result.mesh_of = self.mesh_of(result)
        if with_vertices:
            result.vertices, result.mesh_of = result.mesh_of(0, n_frames), None
        return result
