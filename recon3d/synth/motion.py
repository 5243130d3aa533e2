"""Realistic FLAME parameter sequences with known truth, for benchmarks and synthetic videos.

A talking head: an identity drawn from all of the model's identity components, speech-rate jaw
motion (syllables at ~4 Hz), mouth components that follow the speech envelope, an emotion
expression that ramps in and holds, slow background expression drift over all components, blinks,
small gaze shifts and head motion (global rotation, a little neck rotation, translation). On
request, lip closures (the bilabials /p b m/): between syllables the lips meet as on the model's
closed template for ~80 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from recon3d.fitting.camera import PinholeCamera
from recon3d.fitting.objective import smooth_outline
from recon3d.flame.embeddings import Fan68Embedding, LandmarkEmbedding
from recon3d.flame.layer import FlameLayer
from recon3d.flame.lbs import axis_angle_to_matrix
from recon3d.landmarks.schemes import MEDIAPIPE, LandmarkScheme


@dataclass
class Motion:
    """Full FLAME parameters of a sequence (all of the model's components)."""

    shape: np.ndarray  # (K,)
    expression: np.ndarray  # (T, E)
    jaw_pose: np.ndarray  # (T, 3)
    eye_pose: np.ndarray  # (T, 6)
    neck_pose: np.ndarray  # (T, 3)
    global_pose: np.ndarray  # (T, 3)
    translation: np.ndarray  # (T, 3)
    fps: float

    @property
    def n_frames(self) -> int:
        return self.expression.shape[0]

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def smooth_noise(rng: np.random.Generator, n_frames: int, n: int, fps: float, cutoff_hz: float) -> np.ndarray:
    """Zero-mean, unit-sd noise ``(T, n)`` with most power below ``cutoff_hz``."""
    sigma = fps / (2 * np.pi * cutoff_hz)
    pad = int(4 * sigma) + 1
    x = gaussian_filter1d(rng.standard_normal((n_frames + 2 * pad, n)), sigma, axis=0)[pad:pad + n_frames]
    return x / x.std(axis=0, keepdims=True).clip(1e-9)


def syllable_envelope(rng: np.random.Generator, n_frames: int, fps: float, rate_hz: float = 4.0,
                      loudness: np.ndarray | None = None) -> np.ndarray:
    """Mouth-opening envelope in [0, 1]: raised-cosine bumps at ~``rate_hz``, or the given loudness."""
    if loudness is not None:
        env = np.interp(np.arange(n_frames), np.linspace(0, n_frames - 1, len(loudness)), loudness)
        return np.clip(env / max(env.max(), 1e-9), 0, 1)
    t = np.arange(n_frames) / fps
    env = np.zeros(n_frames)
    onset = rng.uniform(0.0, 0.3)
    while onset < t[-1]:
        width = rng.uniform(0.15, 0.3)
        amp = rng.uniform(0.3, 1.0)
        inside = np.abs(t - onset) < width / 2
        env[inside] = np.maximum(env[inside], amp * 0.5 * (1 + np.cos(2 * np.pi * (t[inside] - onset) / width)))
        onset += rng.uniform(0.7, 1.3) / rate_hz
    return env


def _embedded_pairs(layer: FlameLayer, embedding: LandmarkEmbedding, pairs: tuple[tuple[int, int], ...]
                    ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """The ``pairs`` of MediaPipe ids that are embedded, as rows of the embedding, with the
    embedded points on the template ``(N, 3)`` and their expression directions ``(N, 3, E)``."""
    pos = {int(i): k for k, i in enumerate(embedding.source_ids)}
    tri = layer.model.faces[embedding.face_idx]
    pts = np.einsum("nc,ncd->nd", embedding.bary, layer.model.v_template[tri])
    dirs = np.einsum("nc,ncde->nde", embedding.bary, layer.model.exprdirs[:, :, :layer.n_expr][tri])
    return [(pos[u], pos[l]) for u, l in pairs if u in pos and l in pos], pts, dirs


def blink_direction(layer: FlameLayer, embedding: LandmarkEmbedding) -> np.ndarray:
    """Expression coefficients ``(E,)`` that close both eyes (upper lids onto lower lids).

    Found by ridge least squares on the eyelid landmarks, so it works for any FLAME-like model.
    """
    pairs, pts, dirs = _embedded_pairs(layer, embedding, MEDIAPIPE.eyelid_pairs)
    rows, target = [], []
    for u, l in pairs:
        rows += [dirs[u], dirs[l]]
        target += [pts[l] - pts[u], np.zeros(3)]
    a = np.concatenate(rows)
    b = np.concatenate(target)
    coef = np.linalg.solve(a.T @ a + 1e-6 * np.eye(a.shape[1]) * np.trace(a.T @ a) / a.shape[1], a.T @ b)
    return coef


def lip_closing(layer: FlameLayer, embedding: LandmarkEmbedding) -> np.ndarray:
    """A matrix ``(E, E)``: expression ``e`` plus ``closing @ e`` puts every inner-lip pair
    (``MEDIAPIPE.lip_pairs``) where it is on the template, i.e. closes the lips with the jaw at rest.

    The smallest such change of ``e`` (ridge least squares on the pairs' offsets, which are linear
    in the expression), so it works for any FLAME-like model."""
    pairs, _, dirs = _embedded_pairs(layer, embedding, MEDIAPIPE.lip_pairs)
    a = np.concatenate([dirs[u] - dirs[l] for u, l in pairs])  # pair offsets per unit expression
    ata = a.T @ a
    return -np.linalg.solve(ata + 1e-8 * np.trace(ata) / len(ata) * np.eye(len(ata)), ata)


def closure_curve(rng: np.random.Generator, env: np.ndarray, fps: float, chance: float = 0.7,
                  hold_s: float = 0.08, ramp_s: float = 0.05) -> np.ndarray:
    """Closure weights ``(T,)`` in [0, 1]: at a share ``chance`` of the envelope's troughs between
    syllables the lips close fully for ``hold_s``, ramping in and out over ``ramp_s``."""
    t = np.arange(len(env)) / fps
    troughs = [i for i in range(1, len(env) - 1) if env[i] <= env[i - 1] and env[i] < env[i + 1] and env[i] < 0.3]
    curve = np.zeros(len(env))
    for i in troughs:
        if rng.uniform() < chance:
            x = np.clip((hold_s / 2 + ramp_s - np.abs(t - t[i])) / ramp_s, 0, 1)
            curve = np.maximum(curve, x * x * (3 - 2 * x))
    return curve


#: The synthetic faces' jaw opening between syllables (radians).
REST_JAW_RAD = 0.02


def sample_motion(layer: FlameLayer, embedding: LandmarkEmbedding, n_frames: int, fps: float, seed: int,
                  yaw_deg: float = 10.0, pitch_deg: float = 5.0, roll_deg: float = 3.0,
                  loudness: np.ndarray | None = None, emotion_scale: float = 0.7,
                  swing_deg: float | None = None) -> Motion:
    """A random talking-head sequence (head at the origin; place it with :func:`place_in_front_of`).

    ``swing_deg``: the head turns from one side to the other (yaw ``+-swing_deg``, one full swing
    over the clip from a random phase, as a speaker turning to a near profile and back) instead of
    wandering within ``+-yaw_deg``. Add lip closures with :func:`with_closures`."""
    rng = np.random.default_rng(seed)
    n_shape, n_expr = layer.n_shape, layer.n_expr
    env = syllable_envelope(rng, n_frames, fps, loudness=loudness)
    env = gaussian_filter1d(env, 0.8)

    decay = 1.0 / (1.0 + np.arange(n_expr) / 20.0)
    emotion = rng.standard_normal(n_expr) * decay * emotion_scale
    start, ramp = rng.uniform(0.0, 0.3) * n_frames, rng.uniform(0.4, 0.9) * fps
    level = np.clip((np.arange(n_frames) - start) / ramp, 0, 1)
    level = level * level * (3 - 2 * level)
    expression = level[:, None] * emotion[None]
    expression += 0.25 * decay * smooth_noise(rng, n_frames, n_expr, fps, 1.5)
    mouth = np.zeros(n_expr)
    mouth[:5] = rng.standard_normal(5) * 0.8
    expression += env[:, None] * mouth[None]

    blink = blink_direction(layer, embedding)
    t = np.arange(n_frames) / fps
    blink_curve = np.zeros(n_frames)
    when = rng.uniform(0.2, 1.5)
    while when < t[-1]:
        blink_curve = np.maximum(blink_curve, np.exp(-0.5 * ((t - when) / 0.05) ** 2) * rng.uniform(0.7, 1.0))
        when += rng.uniform(1.5, 4.0)
    expression += blink_curve[:, None] * blink[None]

    jaw = np.zeros((n_frames, 3))
    jaw[:, 0] = REST_JAW_RAD + env * rng.uniform(0.12, 0.22)
    jaw[:, 1:] = 0.01 * smooth_noise(rng, n_frames, 2, fps, 1.0)
    gaze = 0.08 * smooth_noise(rng, n_frames, 2, fps, 0.7)
    eyes = np.concatenate([gaze, np.zeros((n_frames, 1)), gaze, np.zeros((n_frames, 1))], axis=1)
    limit = np.radians([pitch_deg, yaw_deg, roll_deg])
    head = np.clip(smooth_noise(rng, n_frames, 3, fps, 0.5) * limit / 2, -limit, limit)  # within +-limit
    if swing_deg is not None:
        phase = rng.uniform(0, 2 * np.pi)
        head[:, 1] = np.radians(swing_deg) * np.sin(phase + 2 * np.pi * np.arange(n_frames) / max(n_frames - 1, 1))
    neck = smooth_noise(rng, n_frames, 3, fps, 0.5) * np.radians(2.0) / 2
    trans = 0.004 * smooth_noise(rng, n_frames, 3, fps, 0.4)
    return Motion(shape=rng.standard_normal(n_shape), expression=expression, jaw_pose=jaw, eye_pose=eyes,
                  neck_pose=neck, global_pose=head, translation=trans, fps=fps)


def with_closures(layer: FlameLayer, embedding: LandmarkEmbedding, motion: Motion, seed: int) -> Motion:
    """``motion`` with lip closures in the troughs between syllables (those of its jaw opening):
    the jaw goes to zero and the expression is corrected by :func:`lip_closing`, weighted by
    :func:`closure_curve`. Apply it last: expression added afterwards would open the lips again."""
    opening = motion.jaw_pose[:, 0] - motion.jaw_pose[:, 0].min()
    env = opening / max(opening.max(), 1e-9)
    curve = closure_curve(np.random.default_rng([seed, 37]), env, motion.fps)[:, None]
    closing = lip_closing(layer, embedding)
    return replace(motion, expression=motion.expression + curve * (motion.expression @ closing.T),
                   jaw_pose=motion.jaw_pose * (1 - curve))


def without_expression(motion: Motion) -> Motion:
    """The same head, head motion and gaze with no expression and the jaw at rest: a perfectly
    still face."""
    jaw = np.zeros_like(motion.jaw_pose)
    jaw[:, 0] = REST_JAW_RAD
    return replace(motion, expression=np.zeros_like(motion.expression), jaw_pose=jaw)


def _tensor(x: np.ndarray, layer: FlameLayer) -> torch.Tensor:
    return torch.as_tensor(np.array(x), dtype=layer.v_template.dtype, device=layer.v_template.device)


def posed_vertices(layer: FlameLayer, motion: Motion) -> torch.Tensor:
    """Camera-frame vertices ``(T, V, 3)`` of a motion."""
    n = motion.n_frames
    with torch.no_grad():
        return layer(shape=_tensor(np.broadcast_to(motion.shape, (n, motion.shape.size)), layer),
                     expression=_tensor(motion.expression, layer), global_pose=_tensor(motion.global_pose, layer),
                     neck_pose=_tensor(motion.neck_pose, layer), jaw_pose=_tensor(motion.jaw_pose, layer),
                     eye_pose=_tensor(motion.eye_pose, layer), translation=_tensor(motion.translation, layer)).vertices


def canonical_vertices(layer: FlameLayer, motion: Motion) -> np.ndarray:
    """Canonical-head-space vertices ``(T, V, 3)``: no head rotation or translation."""
    n = motion.n_frames
    with torch.no_grad():
        v = layer.canonical(_tensor(np.broadcast_to(motion.shape, (n, motion.shape.size)), layer),
                            _tensor(motion.expression, layer), _tensor(motion.jaw_pose, layer),
                            _tensor(motion.eye_pose, layer))
    return v.cpu().numpy()


def identity_template(layer: FlameLayer, shape: np.ndarray) -> np.ndarray:
    """The shape-only template ``(V, 3)``."""
    full = np.zeros(layer.n_shape)
    full[:shape.size] = shape
    with torch.no_grad():
        return layer.template(_tensor(full[None], layer))[0].cpu().numpy()


def place_in_front_of(layer: FlameLayer, embedding: LandmarkEmbedding, motion: Motion, camera: PinholeCamera,
                      iod_px: float, offset_px: tuple[float, float] = (0.0, 0.0)) -> Motion:
    """A copy of ``motion`` moved so its outer-eye-corner distance is ~``iod_px``, near the image centre."""
    pos = {int(i): k for k, i in enumerate(embedding.source_ids)}
    a, b = (pos[i] for i in MEDIAPIPE.outer_eye_corners)
    rest = embedding.points(layer.model.v_template, layer.model.faces)
    iod_m = np.linalg.norm(rest[a] - rest[b])
    depth = camera.focal * iod_m / iod_px
    centre = rest.mean(axis=0)
    x = offset_px[0] * depth / camera.focal
    y = -offset_px[1] * depth / camera.focal
    shift = np.array([x - centre[0], y - centre[1], -depth - centre[2]])
    return replace(motion, translation=motion.translation + shift)


def head_rotation(motion: Motion) -> np.ndarray:
    """Per-frame rotation of the head ``(T, 3, 3)``: the global and neck rotations together."""
    return (axis_angle_to_matrix(torch.as_tensor(motion.global_pose, dtype=torch.float64))
            @ axis_angle_to_matrix(torch.as_tensor(motion.neck_pose, dtype=torch.float64))).numpy()


def head_yaw(motion: Motion) -> np.ndarray:
    """Per-frame head yaw ``(T,)``: the head rotation's turn about +y (radians)."""
    rot = head_rotation(motion)
    return np.arctan2(rot[:, 0, 2], rot[:, 2, 2])


def _resample_polyline(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length along the polyline ``points (L, 2)``."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    at = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(at, arc, points[:, c]) for c in range(2)], axis=1)


def project_landmarks(layer: FlameLayer, embedding: LandmarkEmbedding, motion: Motion, camera: PinholeCamera,
                      outline: Fan68Embedding | None = None, scheme: LandmarkScheme = MEDIAPIPE) -> np.ndarray:
    """Pixels ``(T, scheme.n_points, 2)`` of the embedded points in the scheme's order (MediaPipe's
    by default; NaN for points not embedded).

    With ``outline``, the scheme's face-outline ids (``scheme.face_contour``: MediaPipe's face oval,
    or dlib's jaw line when fused) get the face's silhouette as DECA's yaw-dependent contour traces
    it (a smooth curve through its points), resampled evenly along its length (so they are not the
    fitter's own jaw-line points).
    """
    vertices = posed_vertices(layer, motion).double()
    pts = torch.as_tensor(embedding.points(vertices.cpu().numpy(), layer.model.faces))
    pixels = camera.project(pts).numpy()
    out = np.full((motion.n_frames, scheme.n_points, 2), np.nan)
    out[:, embedding.source_ids] = pixels
    if outline is not None:
        faces, v = layer.model.faces, vertices.cpu().numpy()
        ids = list(scheme.face_contour)
        for t, row in enumerate(outline.contour_row(head_yaw(motion))):
            corners = v[t][faces[outline.contour_face_idx[row]]]  # (17, 3, 3)
            silhouette = camera.project(torch.as_tensor(np.einsum("nkc,nk->nc", corners, outline.contour_bary[row])))
            out[t, ids] = _resample_polyline(smooth_outline(silhouette[None], 32)[0].numpy(), len(ids))
    return out
