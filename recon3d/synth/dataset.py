"""Synthetic labelled datasets in the shard format, with known truth (tests and model benchmarks).

Each actor has a random identity; each clip has speech audio (espeak-ng, or speech-like noise),
mouth and jaw motion that follow the audio's loudness, background expression drift and blinks
(:mod:`recon3d.synth.motion`), and an emotion expression that depends only on the clip's label
(a fixed direction per emotion, scaled by intensity) and ramps in. So audio predicts the mouth
and the label predicts the emotion: what an emotional speech-to-face model must learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recon3d.flame import FlameLayer, load_flame_model, load_mediapipe_embedding
from recon3d.io.ravdess import EMOTIONS
from recon3d.shards.schema import AUDIO_RATE, ClipAttrs, audio_samples
from recon3d.shards.writer import ClipRecord, write_dataset
from recon3d.synth.motion import Motion, canonical_vertices, identity_template, sample_motion, with_closures
from recon3d.synth.speech import loudness, speech_audio

INTENSITY_SCALE = {1: 0.6, 2: 1.0}


def emotion_direction(n_expr: int, emotion_id: int, seed: int = 1234) -> np.ndarray:
    """A fixed expression direction per emotion (zero for neutral), FLAME standard-deviation units."""
    if emotion_id == 1:
        return np.zeros(n_expr)
    rng = np.random.default_rng([seed, emotion_id])
    return 1.5 * rng.standard_normal(n_expr) / (1.0 + np.arange(n_expr) / 10.0)


def labelled_motion(layer: FlameLayer, embedding, shape: np.ndarray, emotion_id: int, intensity: int,
                    audio: np.ndarray, fps: float, seed: int, closures: bool = False, **head) -> Motion:
    """A talking-head motion driven by ``audio`` (mouth and jaw follow its loudness) with the
    expression of its emotion label ramping in; ``head`` sets head-motion ranges (yaw_deg, ...);
    ``closures``: the lips close between some syllables (:func:`~recon3d.synth.motion.with_closures`)."""
    n_frames = max(2, int(round(len(audio) / AUDIO_RATE * fps)))
    motion = sample_motion(layer, embedding, n_frames, fps, seed, loudness=loudness(audio, n_frames),
                           emotion_scale=0.0, **head)
    motion.shape = np.asarray(shape, np.float64)
    level = np.clip(np.arange(n_frames) / (0.4 * fps), 0, 1)
    motion.expression = motion.expression + level[:, None] * INTENSITY_SCALE[intensity] * \
        emotion_direction(layer.n_expr, emotion_id)[None]
    return with_closures(layer, embedding, motion, seed) if closures else motion


def synthetic_clip(layer: FlameLayer, embedding, shape: np.ndarray, emotion_id: int, intensity: int,
                   audio: np.ndarray, fps: float, seed: int) -> tuple[np.ndarray, dict]:
    """Canonical vertices ``(T, V, 3)`` and FLAME parameters of one labelled clip driven by ``audio``."""
    motion = labelled_motion(layer, embedding, shape, emotion_id, intensity, audio, fps, seed)
    n_frames = motion.n_frames
    params = {"expression": motion.expression, "jaw_pose": motion.jaw_pose, "eye_pose": motion.eye_pose,
              "global_pose": np.zeros((n_frames, 3)), "neck_pose": np.zeros((n_frames, 3)),
              "translation": np.zeros((n_frames, 3))}
    return canonical_vertices(layer, motion).astype(np.float32), params


def write_synthetic_dataset(out_dir: str | Path, flame_model: str | Path, n_actors: int = 3, clips_per_actor: int = 6,
                            seconds: float | None = None, fps: float = 30.0, seed: int = 0,
                            val_actors: int = 0, test_actors: int = 1, prefer_espeak: bool = True,
                            emotions: tuple[int, ...] = tuple(range(1, 9))) -> dict:
    """Write a labelled synthetic dataset; the last actors form the test (and validation) split."""
    model = load_flame_model(flame_model)
    layer = FlameLayer(model, dtype=torch.float64)
    embedding = load_mediapipe_embedding(model)
    rng = np.random.default_rng(seed)
    records, actors = [], {}
    for a in range(n_actors):
        actor = f"{a + 1:02d}"
        split = "test" if a >= n_actors - test_actors else "val" if a >= n_actors - test_actors - val_actors else "train"
        shape = rng.standard_normal(layer.n_shape)
        actors[actor] = {"shape": shape.astype(np.float32),
                         "template": identity_template(layer, shape).astype(np.float32)}
        for c in range(clips_per_actor):
            emotion = int(emotions[c % len(emotions)])
            intensity = 1 if emotion == 1 else int(rng.integers(1, 3))
            audio = speech_audio(rng, seconds, prefer_espeak)
            vertices, params = synthetic_clip(layer, embedding, shape, emotion, intensity, audio, fps,
                                              seed * 1000 + a * 100 + c)
            t = len(vertices)
            n = audio_samples(t, fps)
            audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
            clip_id = f"01-01-{emotion:02d}-{intensity:02d}-01-{c % 2 + 1:02d}-{actor}_{c:02d}"
            attrs = ClipAttrs(actor=actor, fps=fps, n_frames=t, emotion=EMOTIONS[emotion - 1], emotion_id=emotion,
                              intensity=intensity, statement=1, repetition=1, vocal_channel=1, modality=1,
                              has_speech_audio=True, split=split, source_path="synthetic")
            records.append(ClipRecord(
                clip_id=clip_id, attrs=attrs, times=np.arange(t) / fps, vertices=vertices, audio=audio,
                landmarks=np.zeros((t, 0, 2), np.float32), landmarks_valid=np.zeros(t, bool), flame=params,
                camera={}, head_translation=np.zeros((t, 3), np.float32)))
    return write_dataset(Path(out_dir), records, actors, model.faces,
                         {"source": "synthetic", "flame_model": str(Path(flame_model).resolve()), "seed": seed})
