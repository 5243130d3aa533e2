"""``recon3d synth``: talking-head videos with known FLAME truth, named like RAVDESS clips.

Each clip: a textured head (the texture's own fitted identity) speaking an espeak-ng sentence (or,
without espeak-ng, silence with a warning), mouth and jaw following the audio's loudness, the
expression of its emotion label ramping in, blinks, lip closures on request, gaze shifts, head rotation within
+-15 deg yaw / +-8 deg pitch and a little translation; rendered at 1280x720, 29.97 fps with the
headless rasteriser and encoded as H.264 + AAC. Beside each ``<name>.mp4`` a ``<name>.truth.npz``
holds the parameters, the camera and the projected landmarks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recon3d.errors import SetupError
from recon3d.fitting.camera import PinholeCamera
from recon3d.flame import FlameLayer, load_flame_model, load_mediapipe_embedding
from recon3d.io.video import write_video
from recon3d.synth.dataset import labelled_motion
from recon3d.synth.motion import Motion, place_in_front_of, posed_vertices, project_landmarks
from recon3d.shards.schema import AUDIO_RATE, audio_samples
from recon3d.synth.speech import espeak_available, speech_audio
from recon3d.synth.texture import LIGHTINGS, Lighting, TexturedHead, load_textured_head, render_textured

WIDTH, HEIGHT, FPS = 1280, 720, 30000 / 1001
FOV_DEG = 40.0


@dataclass
class SynthSpec:
    name: str  # RAVDESS-style stem
    emotion_id: int
    intensity: int
    seed: int


def clip_specs(n_clips: int, seed: int, actor: int) -> list[SynthSpec]:
    """RAVDESS-named clips of one actor; the first two are neutral (for identity fitting)."""
    emotions = [1, 1] + [2 + (i % 7) for i in range(max(0, n_clips - 2))]
    specs = []
    for i, emotion in enumerate(emotions[:n_clips]):
        intensity = 1 if emotion == 1 else 1 + (i // 7) % 2
        name = f"01-01-{emotion:02d}-{intensity:02d}-{1 + i % 2:02d}-{1 + (i // 2) % 2:02d}-{actor:02d}"
        specs.append(SynthSpec(name, emotion, intensity, seed * 1000 + i))
    return specs


def background_image(path: str | Path | None, color: float = 0.55) -> np.ndarray:
    """A blurred photo (``path``) or a plain grey frame, float [0, 1]."""
    if path is None:
        return np.full((HEIGHT, WIDTH, 3), color, np.float32)
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SetupError(f"{path}: not a readable image")
    image = cv2.GaussianBlur(cv2.resize(image, (WIDTH, HEIGHT)), (0, 0), 12)
    return image[..., ::-1].astype(np.float32) / 255.0


def render_clip(path: Path, layer: FlameLayer, head: TexturedHead, motion: Motion, camera: PinholeCamera,
                audio: np.ndarray, background: np.ndarray, lighting: Lighting = LIGHTINGS["camera"]) -> int:
    """Render and encode one clip under ``lighting``; returns its frame count."""
    vertices = posed_vertices(layer, motion).cpu().numpy()
    faces = layer.model.faces

    def frames():
        for v in vertices:
            img = render_textured(v, faces, head, camera.focal, camera.cx, camera.cy, background, lighting)
            yield (img * 255).clip(0, 255).astype(np.uint8)

    return write_video(path, frames(), FPS, audio, AUDIO_RATE, crf=lighting.crf)


def save_truth(path: Path, motion: Motion, camera: PinholeCamera, landmarks: np.ndarray, iod_px: float,
               emotion_id: int, intensity: int, has_speech: bool) -> None:
    np.savez(path, **{k: v for k, v in motion.as_dict().items()}, camera=np.array(
        [camera.focal, camera.cx, camera.cy, camera.width, camera.height]), landmarks=landmarks, iod_px=iod_px,
        emotion_id=emotion_id, intensity=intensity, has_speech=has_speech)


def synthesize(out_dir: str | Path, flame_model: str | Path, texture: str | Path, n_clips: int = 4,
               seconds: float | None = 3.0, seed: int = 0, iod_px: float = 250.0, actor: int | None = None,
               background: str | Path | None = None, progress: bool = True,
               swing_deg: float | None = None, lighting: str = "camera", closures: bool = False) -> list[Path]:
    """Write ``n_clips`` synthetic clips (and their truth files) to ``out_dir``; returns the videos.

    ``swing_deg``: each head swings from one side to the other (yaw ``+-swing_deg``) instead of
    wandering within +-15 deg. ``lighting``: a preset of :data:`~recon3d.synth.texture.LIGHTINGS`.
    ``closures``: the lips close between some syllables (bilabials)."""
    if lighting not in LIGHTINGS:
        raise SetupError(f"lighting {lighting!r} is not one of {', '.join(LIGHTINGS)}")
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_flame_model(flame_model)
    layer = FlameLayer(model, dtype=torch.float64)
    embedding = load_mediapipe_embedding(model)
    head = load_textured_head(texture, model)
    camera = PinholeCamera.from_fov(WIDTH, HEIGHT, FOV_DEG)
    bg = background_image(background)
    rng = np.random.default_rng(seed)
    actor = actor or 1 + seed % 24
    if not espeak_available():
        warnings.warn("espeak-ng is not installed: the clips are silent (apt install espeak-ng for speech)")
    written = []
    for spec in tqdm(clip_specs(n_clips, seed, actor), desc="synth", unit="clip", disable=not progress):
        if espeak_available():
            audio = speech_audio(rng, seconds)
        else:
            audio = np.zeros(int((seconds or 3.0) * AUDIO_RATE), np.float32)
        motion = labelled_motion(layer, embedding, head.shape, spec.emotion_id, spec.intensity, audio, FPS,
                                 spec.seed, closures=closures, yaw_deg=15.0, pitch_deg=8.0,
                                 swing_deg=swing_deg)
        offset = tuple(rng.uniform(-0.08, 0.08, 2) * [WIDTH, HEIGHT])
        motion = place_in_front_of(layer, embedding, motion, camera, iod_px, offset_px=offset)
        video = out_dir / f"{spec.name}.mp4"
        n = render_clip(video, layer, head, motion, camera, audio[:audio_samples(motion.n_frames, FPS)], bg,
                        LIGHTINGS[lighting])
        assert n == motion.n_frames
        save_truth(out_dir / f"{spec.name}.truth.npz", motion, camera, project_landmarks(layer, embedding, motion, camera),
                   iod_px, spec.emotion_id, spec.intensity, bool(np.abs(audio).max() > 0))
        written.append(video)
    return written


def complete_renders(folder: str | Path) -> list[Path]:
    """The videos in ``folder`` that :func:`synthesize` finished: its truth file is written after
    the video, so a render stopped midway (a truncated .mp4) is not among them."""
    return sorted(v for v in Path(folder).glob("*.mp4") if v.with_name(v.stem + ".truth.npz").exists())


def load_truth(path: str | Path) -> tuple[Motion, PinholeCamera, dict]:
    """The motion, camera and the rest (landmarks, iod_px, labels) of a ``*.truth.npz``."""
    with np.load(path) as d:
        data = {k: d[k] for k in d.files}
    motion = Motion(**{k: data.pop(k) for k in ("shape", "expression", "jaw_pose", "eye_pose", "neck_pose",
                                                 "global_pose", "translation")}, fps=float(data.pop("fps")))
    f, cx, cy, w, h = data.pop("camera")
    return motion, PinholeCamera(float(f), float(cx), float(cy), int(w), int(h)), data
