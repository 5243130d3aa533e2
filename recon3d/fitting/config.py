"""Fitting configuration: every weight and iteration count in one documented place.

Units: landmark residuals are measured in millimetres at the face (pixels times the head's depth
over the focal length), so the same weights work at any face size or resolution. Priors are in the
model's own units (identity/expression coefficients are ~1 per standard deviation, poses in
radians). Smoothness weights apply to second differences per frame at 30 fps and are rescaled for
other frame rates so that they penalise the same physical acceleration.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from recon3d.config_io import config_from_dict


@dataclass
class FitConfig:
    # Model size used by the fitter.
    n_shape: int = 300
    n_expr: int = 100
    # Identity and expression are fitted in the shape_dims / expr_dims directions of FLAME's
    # n_shape / n_expr components that move the landmarks most (0: all components as they are).
    shape_dims: int = 100
    expr_dims: int = 70
    # Camera: fixed pinhole; focal from the horizontal field of view unless focal_px is set.
    fov_deg: float = 40.0
    focal_px: float | None = None
    # Data term.
    landmark_offsets: str = "none"  # MediaPipe bias correction: default (packaged file), none, or a path
    landmark_sigma_mm: float = 0.4
    # fixed: the landmarks' noise is landmark_sigma_mm; estimated: measured per sequence from its
    # landmarks' frame-to-frame second differences (LandmarkSequence.white_noise_px; for white
    # noise, as in the synthetic benchmarks: MediaPipe's errors on video are correlated in time)
    landmark_sigma: str = "fixed"
    # uniform, or calibrated: each point weighted by the inverse square of its own noise on the
    # calibration renders relative to the landmarks' median (from the landmark_offsets file, or
    # the model's own calibration when that is none)
    landmark_noise: str = "uniform"
    huber_mm: float = 4.0
    iris_weight: float = 0.5
    contact_weight: float = 0.5
    # Weight of dlib's points (fused beside MediaPipe's: landmarks.dlib) on top of their noise weights.
    dlib_weight: float = 1.0
    # Where dlib's points are trusted (recon3d.fitting.source_trust): fully up to *_full_deg of
    # yaw / pitch as the camera sees the head, not at all from *_zero_deg on, a cosine ramp between
    # (measured: scripts/source_error_by_yaw.py); and a point (or a frame, by its median point)
    # farther from where MediaPipe's points put it than dlib_agreement_free_mm counts less: half at
    # dlib_agreement_mm beyond that, 1/5 at twice it.
    dlib_yaw_full_deg: float = 20.0
    dlib_yaw_zero_deg: float = 30.0
    dlib_pitch_full_deg: float = 20.0
    dlib_pitch_zero_deg: float = 30.0
    dlib_agreement_mm: float = 3.0
    dlib_agreement_free_mm: float = 1.5
    # Every landmark (both sources) weighed by how squarely its surface faces the camera under the
    # fit's head pose: full from a normal-to-ray cosine of visibility_full_cos on, down to
    # visibility_floor edge-on and beyond (recon3d.fitting.source_trust.visibility_weights); 0: off.
    visibility_full_cos: float = 0.0
    visibility_floor: float = 0.25
    # FLAME's chin and lower jaw line against the detector's face outline (point to curve), with
    # DECA's contour embedding (landmark_embedding.npy beside the model); 0 fits without it.
    contour_weight: float = 0.0
    # The mouth's optical flow (recon3d.landmarks.mouth_flow, measured while tracking when this is
    # > 0) against the frame-to-frame motion of surface samples around the mouth
    # (recon3d.fitting.flow_term): each sample weighs flow_weight times a landmark (both in mm at
    # the face, over landmark_sigma_mm), with a Huber loss beyond flow_huber_mm; a sample counts
    # fully where its surface faces the camera at a cosine of flow_visible_cos or more in both
    # frames, and not at all edge-on. 0: off.
    flow_weight: float = 0.0
    flow_huber_mm: float = 1.0
    flow_visible_cos: float = 0.3
    # The flow's vertical image component counts this much of its horizontal one.
    flow_vertical: float = 1.0
    # Priors (inverse variances).
    shape_prior: float = 1.0
    expr_prior: float = 5.0
    # Identity fitting on neutral clips: the mean expression's prior is this many times stronger.
    neutral_mean_expr_factor: float = 10.0
    jaw_open_prior: float = 2.0
    jaw_side_prior: float = 400.0
    jaw_leak_prior: float = 20.0
    eye_prior: float = 5.0
    # Temporal smoothness on second differences.
    smooth_expr: float = 20.0
    smooth_jaw: float = 200.0
    smooth_eyes: float = 20.0
    smooth_rot: float = 2000.0
    smooth_trans: float = 2.0e5
    # Shot cuts (recon3d.landmarks.shots, from the image change measured while tracking and the
    # landmarks' jump): each shot is fitted on its own with the clip's identity, so that neither
    # the smoothness nor the mouth flow joins frames across a cut. false: the clip in one piece.
    shot_cuts: bool = True
    # A shot longer than window_frames is fitted in windows of that many frames that keep their
    # middle and overlap their neighbours by window_overlap frames on each side
    # (recon3d.fitting.windows): the fit's memory stays that of one window. 0: one piece.
    window_frames: int = 900
    window_overlap: int = 60
    # Optimisation schedule.
    rigid_iters: int = 6
    identity_frames: int = 16
    # Identity frames only where the head is turned at most this far (view yaw and pitch under the
    # rigid start), or the least turned ones where fewer are: the far side of a turned face is guessed.
    identity_max_view_deg: float = 20.0
    # Identity frames only where the eyelid gap is in the clip's upper half (no blinks); false: any.
    identity_open_eyes: bool = True
    identity_iters: int = 4
    clip_iters: int = 2
    # Arithmetic of the fit: float32 (equal to float64 to ~1e-4 mm, ~25 % faster) or float64.
    precision: str = "float32"
    device: str = "cpu"

    @classmethod
    def from_dict(cls, values: dict | None) -> "FitConfig":
        """Defaults with ``values`` applied; unknown keys are a :class:`~recon3d.config_io.ConfigError`."""
        return config_from_dict(cls, values, "fitting")

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Short hash of the options that change results (not the device)."""
        d = self.to_dict()
        d.pop("device")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
