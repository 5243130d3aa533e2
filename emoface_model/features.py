"""A frozen pretrained speech encoder's features, computed once per clip and kept for training.

A frozen wav2vec 2.0 / HuBERT gives the same features every step, so running it on every window
of every step is wasted work: :class:`FrozenFeatures` encodes each clip once, whole, exactly as
inference encodes it (:func:`~emoface_model.infer.audio_features`), and training windows slice
the cached frames. Only the projection behind it trains.
"""

from __future__ import annotations

import torch

from emoface_model.audio import PretrainedEncoder
from emoface_model.data import ClipData
from emoface_model.infer import audio_features
from emoface_model.models import TalkingFace


def caches_features(model: TalkingFace) -> bool:
    """Whether the model's audio encoder is a frozen pretrained one (whose features are cached)."""
    return isinstance(model.audio, PretrainedEncoder) and model.audio.frozen


class FrozenFeatures:
    """Frame-aligned hidden states ``(T, H)`` of each clip, encoded on first use."""

    def __init__(self, model: TalkingFace, data: ClipData, device):
        self.model, self.data, self.device = model, data, device
        self._clips: dict[str, torch.Tensor] = {}

    def clip(self, entry: dict) -> torch.Tensor:
        if entry["id"] not in self._clips:
            whole = self.data.clip(entry)
            with torch.no_grad():
                self._clips[entry["id"]] = audio_features(
                    self.model, whole["audio"], int(entry["frames"]), float(entry["fps"]), self.device,
                    encode=self.model.audio.frame_hidden)[0]
        return self._clips[entry["id"]]

    def windows(self, items: list[tuple[dict, int, int]], frames: int) -> torch.Tensor:
        """The cached frames of a batch's windows ``(entry, start, length)``, ``(B, frames, H)``."""
        return torch.stack([self.clip(entry)[start:start + length][:frames] for entry, start, length in items])
