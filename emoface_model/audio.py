"""Audio encoders: a log-mel front end with a small conv/transformer encoder trained from scratch
(default, offline), or a pretrained wav2vec 2.0 / HuBERT from a local folder. Both return features
aligned to the mesh frame rate: one vector per animation frame.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recon3d.config_io import ConfigError
from recon3d.errors import SetupError
from recon3d.io.fingerprint import sha256_of
from recon3d.shards.schema import AUDIO_RATE


def mel_filterbank(n_mels: int = 80, n_fft: int = 400, sample_rate: int = AUDIO_RATE,
                   fmin: float = 40.0, fmax: float = 7600.0) -> np.ndarray:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)`` on the HTK mel scale."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None] - lower) / (centre - lower)
    fall = (upper - freqs[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rise, fall)).astype(np.float32)


class LogMel(nn.Module):
    """Log-mel spectrogram at 100 frames/s (25 ms windows, 10 ms hop) of 16 kHz audio."""

    def __init__(self, n_mels: int = 80):
        super().__init__()
        self.n_fft, self.hop = 400, 160
        self.register_buffer("filters", torch.from_numpy(mel_filterbank(n_mels, self.n_fft)), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio (B, N)`` -> ``(B, n_mels, frames)``."""
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.window, return_complex=True).abs() ** 2
        return torch.log(self.filters @ spec + 1e-6)


def align(features: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Resample ``(B, C, L)`` features to ``(B, n_frames, C)`` (linear interpolation over time)."""
    return F.interpolate(features, size=n_frames, mode="linear", align_corners=False).transpose(1, 2)


class MelEncoder(nn.Module):
    """Log-mel -> two temporal convolutions -> resampled to the mesh frame rate -> transformer."""

    def __init__(self, dim: int = 128, n_mels: int = 80, layers: int = 2, heads: int = 4):
        super().__init__()
        self.mel = LogMel(n_mels)
        self.norm = nn.GroupNorm(1, n_mels)
        self.conv = nn.Sequential(nn.Conv1d(n_mels, dim, 5, padding=2), nn.GELU(),
                                  nn.Conv1d(dim, dim, 5, padding=2), nn.GELU())
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.1, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.max_len = 2048
        self.register_buffer("positions", _sinusoid(self.max_len, dim), persistent=False)

    def forward(self, audio: torch.Tensor, n_frames: int) -> torch.Tensor:
        x = self.conv(self.norm(self.mel(audio)))
        x = align(x, n_frames)
        return self.transformer(x + self.positions[:n_frames])


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


#: How a pretrained encoder trains: ``fine_tune`` (its convolutional feature extractor frozen, its
#: transformer trained with the animator, as FaceFormer does) or ``frozen`` (not trained at all; its
#: features are computed once per clip and cached).
ENCODER_MODES = ("fine_tune", "frozen")
#: The files whose bytes identify a model folder (its configuration and weights).
_MODEL_FILES = ("config.json", "*.safetensors", "*.bin")


def encoder_fingerprint(path: str | Path) -> str:
    """sha256 over a model folder's configuration and weight files (each file's name and sha256)."""
    files = sorted({f for pattern in _MODEL_FILES for f in Path(path).glob(pattern)})
    return hashlib.sha256("".join(f"{f.name}:{sha256_of(f)};" for f in files).encode()).hexdigest()


class PretrainedEncoder(nn.Module):
    """wav2vec 2.0 / HuBERT loaded with ``transformers`` from a local folder, projected to ``dim``."""

    def __init__(self, path: str | Path, dim: int = 128, mode: str = "fine_tune"):
        super().__init__()
        path = Path(path)
        if mode not in ENCODER_MODES:
            raise ConfigError(f"model.audio_encoder_mode '{mode}' is not one of {', '.join(ENCODER_MODES)}")
        if not path.is_dir() or not (path / "config.json").exists():
            raise SetupError(
                f"--audio-encoder-path {path}: not a local model folder (no config.json). Download a "
                "wav2vec 2.0 or HuBERT model (e.g. facebook/wav2vec2-base-960h) on a machine with "
                "internet and copy its folder here; nothing is downloaded at run time")
        try:
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise SetupError("--audio-encoder wav2vec2 / hubert needs the 'transformers' package: "
                             "pip install 'recon3d[speech]'") from exc
        hf_logging.disable_progress_bar()  # one line per command on stderr, not a bar per load
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.frozen = mode == "frozen"
        if self.frozen:
            self.model.requires_grad_(False)
        else:
            self.model.feature_extractor.requires_grad_(False)
        self.project = nn.Linear(self.model.config.hidden_size, dim)

    def train(self, mode: bool = True) -> "PretrainedEncoder":
        super().train(mode)
        if self.frozen:  # never dropped out: its features are the same every time (and cached)
            self.model.eval()
        return self

    def frame_hidden(self, audio: torch.Tensor, n_frames: int) -> torch.Tensor:
        """The model's last hidden states ``(B, n_frames, H)``, aligned to the frames."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.model(audio).last_hidden_state  # (B, L, H) at 50 Hz
        return align(hidden.transpose(1, 2), n_frames)

    def forward(self, audio: torch.Tensor, n_frames: int) -> torch.Tensor:
        return self.project(self.frame_hidden(audio, n_frames))


def build_audio_encoder(kind: str, dim: int, path: str | None = None, mode: str = "fine_tune") -> nn.Module:
    if kind == "mel":
        return MelEncoder(dim)
    if kind in ("wav2vec2", "hubert"):
        if not path:
            raise SetupError(f"--audio-encoder {kind} needs --audio-encoder-path DIR (a local model folder)")
        return PretrainedEncoder(path, dim, mode)
    raise ConfigError(f"unknown audio encoder '{kind}' (mel, wav2vec2 or hubert)")
