"""Preview videos: the fitted mesh drawn over the source frames and beside them, with the clip's audio."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from scipy.spatial.transform import Rotation

from recon3d.io.video import VideoError, iter_frames, probe, write_video
from recon3d.render.rasterizer import project_pinhole, rasterize
from recon3d.render.shading import lambert, vertex_normals
from recon3d.shards.reader import DatasetError
from recon3d.shards.schema import AUDIO_RATE


def camera_vertices(vertices: np.ndarray, global_pose: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Canonical vertices ``(T, V, 3)`` placed in the camera frame by head rotation and translation."""
    rot = Rotation.from_rotvec(global_pose.astype(np.float64)).as_matrix()  # (T, 3, 3)
    return np.einsum("tvc,trc->tvr", vertices.astype(np.float64), rot) + translation[:, None, :]


def render_mesh(vertices: np.ndarray, faces: np.ndarray, focal: float, cx: float, cy: float,
                height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Shaded image ``(H, W, 3)`` in [0, 1] and its coverage mask for camera-frame ``vertices``."""
    frags = rasterize(project_pinhole(vertices, focal, cx, cy), faces, height, width)
    return lambert(frags, faces, vertex_normals(vertices, faces)), frags.mask


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return img
    import cv2

    h, w = img.shape[:2]
    return cv2.resize(img, (max(2, int(round(w * scale))), max(2, int(round(h * scale)))), interpolation=cv2.INTER_AREA)


#: Colours (RGB, [0, 1]) of each landmark source's points drawn by ``preview --landmarks``.
SOURCE_COLOURS = {"MediaPipe": (0.2, 0.9, 1.0), "dlib": (1.0, 0.55, 0.1)}


def draw_landmarks(image: np.ndarray, points: np.ndarray, scale: float) -> np.ndarray:
    """``image (H, W, 3)`` float with the detected ``points (P, 2)`` (source pixels) drawn at
    ``scale``: MediaPipe's (ids < 478) and dlib's (ids 478-545) in their :data:`SOURCE_COLOURS`,
    with a legend."""
    import cv2

    from recon3d.landmarks.schemes import DLIB_OFFSET

    out = np.ascontiguousarray(image)
    sources = {"MediaPipe": points[:DLIB_OFFSET], "dlib": points[DLIB_OFFSET:]}
    for row, (name, pts) in enumerate((k, v) for k, v in sources.items() if len(v)):
        colour = SOURCE_COLOURS[name]
        radius = max(1, int(round((2 if name == "MediaPipe" else 4) * scale)))  # dlib's few points larger, on top
        for x, y in pts[np.isfinite(pts).all(1)] * scale:
            cv2.circle(out, (int(round(x)), int(round(y))), radius, colour, -1, lineType=cv2.LINE_AA)
        cv2.putText(out, name, (8, 20 + 20 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 1, cv2.LINE_AA)
    return out


#: ``preview --appearance``: the measured flow and the fit's motion, their arrows this many times longer.
FLOW_COLOURS = {"flow": (0.2, 1.0, 0.3), "fit": (1.0, 0.25, 0.9)}
FLOW_ARROW_GAIN = 8.0


def draw_flow(image: np.ndarray, at: np.ndarray, measured: np.ndarray, fitted: np.ndarray, scale: float) -> np.ndarray:
    """``image`` with, from each surface sample ``at (S, 2)`` (source pixels), the optical flow
    measured there and the fit's motion of the sample to the next frame (``(S, 2)`` pixels each),
    in :data:`FLOW_COLOURS`, :data:`FLOW_ARROW_GAIN` times longer, and their mean difference."""
    import cv2

    out = np.ascontiguousarray(image)
    thickness = max(1, int(round(2 * scale)))
    for name, motion in (("fit", fitted), ("flow", measured)):
        for a, d in zip(at * scale, motion * scale * FLOW_ARROW_GAIN):
            b = a + d
            cv2.arrowedLine(out, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))),
                            FLOW_COLOURS[name], thickness, cv2.LINE_AA, tipLength=0.3)
    diff = float(np.linalg.norm(measured - fitted, axis=1).mean()) if len(at) else float("nan")
    text = f"mouth flow (green) vs fit (magenta), x{FLOW_ARROW_GAIN:g}: {diff:.2f} px apart"
    cv2.putText(out, text, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (1.0, 1.0, 1.0), 1, cv2.LINE_AA)
    return out


def preview_frames(video: Path | None, cam_vertices: np.ndarray, faces: np.ndarray, camera: dict,
                   scale: float = 0.5, alpha: float = 0.65, landmarks: np.ndarray | None = None,
                   flow: tuple | None = None) -> Iterator[np.ndarray]:
    """Side-by-side frames: source with the mesh blended over it | the mesh alone.

    Rendering happens at ``scale`` of the source resolution. Without the source video (moved or
    deleted) the left side is left dark. With ``landmarks (T, P, 2)`` (the detected points) they
    are drawn over the left side, each source in its colour (:func:`draw_landmarks`). With ``flow``
    ``(tracker, points (T, P, 2), samples (T, S, 2))``, the mouth flow is measured again on the
    frames as the build did (a :class:`~recon3d.landmarks.mouth_flow.MouthFlowTracker` fed the
    detected points) and each frame shows it against the fit's motion of its surface samples
    (projected ``samples``) from the frame before (:func:`draw_flow`).
    """
    width, height = int(camera["width"]), int(camera["height"])
    w, h = max(2, int(round(width * scale))), max(2, int(round(height * scale)))
    f, cx, cy = camera["focal"] * w / width, camera["cx"] * w / width, camera["cy"] * h / height
    sources = iter_frames(video) if video is not None and Path(video).exists() else None
    for t in range(len(cam_vertices)):
        background, rgb = np.zeros((h, w, 3), np.float32), None
        if sources is not None:
            try:
                rgb, _ = next(sources)
                background = _resize(rgb, w / rgb.shape[1]).astype(np.float32) / 255.0
            except (StopIteration, VideoError):
                sources = None
        shaded, mask = render_mesh(cam_vertices[t], faces, f, cx, cy, h, w)
        overlay = background.copy()
        overlay[mask] = alpha * shaded[mask] + (1 - alpha) * background[mask]
        if landmarks is not None:
            overlay = draw_landmarks(overlay, landmarks[t], w / width)
        if flow is not None and rgb is not None:
            tracker, points, samples = flow
            tracker.update(rgb, points[t] if np.isfinite(points[t]).all() else None)
            pair = tracker.latest() if t else None
            if pair is not None:
                measured, known = pair.sample(samples[t - 1][None])
                fitted = samples[t] - samples[t - 1]
                overlay = draw_flow(overlay, samples[t - 1][known[0]], measured[0][known[0]], fitted[known[0]], w / width)
        alone = np.where(mask[..., None], shaded, 0.12)
        yield (np.concatenate([overlay, alone], axis=1) * 255).clip(0, 255).astype(np.uint8)


def frontal_view(reference: np.ndarray, focal: float, size: int, lips: np.ndarray | None = None,
                 width: float = 3.0, lift: float = 0.3) -> tuple[np.ndarray, float]:
    """(centre (3,), camera distance) of a frontal camera on ``reference (V, 3)``.

    ``lips``: the lip vertex ids: the picture is ``width`` times the mouth's width across, centred
    ``lift`` mouth widths above the mouth (from the eyebrows to below the chin), so the mouth fills
    a useful part of it. ``None``: the whole mesh (head and neck)."""
    if lips is None:
        centre = reference.mean(axis=0)
        radius = float(np.linalg.norm(reference - centre, axis=1).max())
        return centre, 1.1 * radius * focal / (0.5 * size)
    mouth = reference[lips]
    lo, hi = mouth.min(axis=0), mouth.max(axis=0)
    across = float(hi[0] - lo[0])
    centre = (lo + hi) / 2 + np.array([0.0, lift * across, 0.0])
    return centre, 0.5 * width * across * focal / (0.5 * size) + float(hi[2] - centre[2])


def frontal_frames(vertices: np.ndarray, faces: np.ndarray, size: int = 512, fov_deg: float = 20.0,
                   reference: np.ndarray | None = None, lips: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Frames ``(size, size, 3) uint8`` of a mesh sequence ``(T, V, 3)`` seen from the front.

    The camera is placed once for the whole sequence (from the first frame, or from ``reference
    (V, 3)``: the same camera for meshes shown side by side), so motion stays visible; with
    ``lips`` the face around the mouth fills the picture (:func:`frontal_view`), else the whole mesh.
    """
    focal = 0.5 * size / np.tan(np.radians(fov_deg) / 2)
    centre, distance = frontal_view(vertices[0] if reference is None else reference, focal, size, lips)
    for frame in vertices:
        cam = frame.astype(np.float64) - centre + np.array([0.0, 0.0, -distance])
        shaded, mask = render_mesh(cam, faces, focal, size / 2, size / 2, size, size)
        yield (np.where(mask[..., None], shaded, 0.12) * 255).clip(0, 255).astype(np.uint8)


def flow_overlay(dataset_root: Path, points: np.ndarray, cam: np.ndarray, camera: dict, backend: str) -> tuple:
    """What :func:`preview_frames` needs to show the mouth flow: a tracker for the build's
    landmark scheme, the detected ``points``, and the fit's surface samples projected per frame
    (the build's own fitter chooses them; the dataset must have been built with the flow)."""
    from recon3d.landmarks.mouth_flow import MouthFlowTracker
    from recon3d.pipeline.build import build_context
    from recon3d.pipeline.landmark_cache import SCHEMES_BY_DETECTOR
    from recon3d.pipeline.stages import resources

    ctx = build_context(dataset_root)
    if ctx.build_config.fitting.flow_weight <= 0:
        raise DatasetError(f"{dataset_root}: built without the mouth flow (fitting.flow_weight: 0), so the fit "
                           "compared no pixels; preview without --appearance")
    ids = resources(ctx).fitter.flow_samples
    samples = np.stack([project_pinhole(v[ids], camera["focal"], camera["cx"], camera["cy"])[:, :2] for v in cam])
    return MouthFlowTracker.for_scheme(SCHEMES_BY_DETECTOR[backend]), points, samples


def render_clip_preview(dataset_root: Path, clip_id: str, out: Path, scale: float = 0.5, video: Path | None = None,
                        landmarks: bool = False, appearance: bool = False) -> int:
    """Write ``out`` (mp4 with video and audio) for a clip of a built dataset, with ``landmarks``
    the detected points drawn over the frames, with ``appearance`` the mouth flow against the
    fit's motion (:func:`draw_flow`); returns frames written."""
    from recon3d.shards import schema as S
    from recon3d.shards.reader import open_dataset

    ds = open_dataset(dataset_root)
    try:
        shard = ds.shard_of(clip_id)
        attrs = shard.attrs(clip_id)
        vertices = shard.array(clip_id, S.VERTICES)
        global_pose = shard.array(clip_id, f"{S.FLAME}/global_pose")
        cam = camera_vertices(vertices, global_pose, shard.array(clip_id, f"{S.CAMERA}/{S.CAMERA_TRANSLATION}"))
        camera = shard.camera(clip_id)
        faces = shard.faces()
        audio = shard.array(clip_id, S.AUDIO)
        points = shard.array(clip_id, S.LANDMARKS) if landmarks or appearance else None
    finally:
        ds.close()
    if not camera:
        raise DatasetError(f"{clip_id}: has no camera (not built from a video); nothing to draw the mesh over")
    if video is not None:
        probe(video)  # a given source must be a readable video
    source = video or Path(attrs.source_path)
    flow = flow_overlay(dataset_root, points, cam, camera, attrs.landmark_backend) if appearance else None
    if flow is not None and not source.exists():
        raise DatasetError(f"{source}: the source video is not there, and --appearance measures the flow on its "
                           "frames; pass --video PATH")
    frames = preview_frames(source, cam, faces, camera, scale, landmarks=points if landmarks else None, flow=flow)
    return write_video(out, frames, attrs.fps, audio, AUDIO_RATE)
