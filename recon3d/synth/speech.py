"""Speech audio for synthetic data: espeak-ng sentences when installed, else shaped noise."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

from recon3d.shards.schema import AUDIO_RATE

SENTENCES = (
    "Kids are talking by the door.", "Dogs are sitting by the door.", "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.", "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.", "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.", "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str = "en", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by espeak-ng as 16 kHz mono float32."""
    from recon3d.io.video import load_audio

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
                       check=True, capture_output=True)
        return load_audio(wav, AUDIO_RATE)


def shaped_noise(rng: np.random.Generator, seconds: float, syllable_hz: float = 4.0) -> np.ndarray:
    """Speech-like noise: bursts at the syllable rate, low-passed (a stand-in without espeak-ng)."""
    n = int(seconds * AUDIO_RATE)
    t = np.arange(n) / AUDIO_RATE
    env = np.clip(np.sin(2 * np.pi * syllable_hz * t + rng.uniform(0, 6)) + rng.uniform(-0.2, 0.4), 0, None)
    noise = uniform_filter1d(rng.standard_normal(n), 4)
    return (0.3 * env * noise / max(np.abs(noise).max(), 1e-9)).astype(np.float32)


def speech_audio(rng: np.random.Generator, seconds: float | None = None, prefer_espeak: bool = True) -> np.ndarray:
    """A spoken sentence (espeak-ng) or, without it, speech-like noise (with a warning)."""
    if prefer_espeak and espeak_available():
        audio = speak(SENTENCES[int(rng.integers(len(SENTENCES)))], speed=int(rng.integers(140, 190)),
                      pitch=int(rng.integers(30, 70)))
        if seconds is not None:
            n = int(seconds * AUDIO_RATE)
            audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
        return audio
    if prefer_espeak:
        warnings.warn("espeak-ng is not installed: using speech-like noise (apt install espeak-ng for speech)")
    return shaped_noise(rng, seconds or 3.0)


def loudness(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """RMS loudness per animation frame ``(n_frames,)``, normalised to [0, 1]."""
    edges = np.linspace(0, len(audio), n_frames + 1).astype(int)
    rms = np.array([np.sqrt(np.mean(audio[a:b] ** 2)) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    return rms / max(rms.max(), 1e-9)
