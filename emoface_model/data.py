"""Training and evaluation data from recon3d shards: which clips (:func:`select_clips`), and their
windows of motion, audio and labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon3d.shards import schema as S
from recon3d.shards.manifest import SPLITS, speech_clip
from recon3d.shards.reader import Dataset3D, shot_starts_of, window_in_one_shot
from recon3d.shards.schema import audio_span


@dataclass
class Batch:
    offsets: torch.Tensor  # (B, T, V, 3) vertices minus the actor template
    audio: torch.Tensor  # (B, N) 16 kHz
    template: torch.Tensor  # (B, V, 3)
    emotion: torch.Tensor  # (B,) 0-8 (recon3d.io.labels.EMOTION_NAMES)
    intensity: torch.Tensor  # (B,) 0-2
    actor: torch.Tensor  # (B,) index into the training actors, -1 if unseen
    initial: torch.Tensor  # (B, V, 3) the frame before the window (zeros at a clip start)
    has_initial: torch.Tensor  # (B,) bool

    def to(self, device) -> "Batch":
        return Batch(**{k: v.to(device) for k, v in vars(self).items()})


def labels_of(entry: dict) -> tuple[int, int]:
    """(emotion 0-8, intensity 0-2) of a manifest entry; unlabeled clips count as neutral, normal,
    and so does an unspecified intensity (CREMA-D's XX)."""
    labels = entry.get("labels") or {}
    return int(labels.get("emotion_id", 1)) - 1, max(int(labels.get("intensity", 1)), 1) - 1


#: Why a clip is not trained, validated or tested on (``clips.json``'s ``excluded``).
NO_SPEECH = "no speech audio (a video-only take or a silent track)"
SONG = "song (data.include_song: false)"


def select_clips(entries: list[dict], include_song: bool) -> dict:
    """The clips a run trains, validates and tests on, from manifest entries: ``{"train": [ids],
    "val": [...], "test": [...], "excluded": {id: reason}}``. A clip without speech audio never
    enters a split (it would teach the mouth to move to silence); song takes only with
    ``include_song``."""
    lists: dict = {split: [] for split in SPLITS}
    excluded = {}
    for entry in sorted(entries, key=lambda e: e["id"]):
        split = entry.get("split", "train")
        if not speech_clip(entry, include_song):
            excluded[entry["id"]] = NO_SPEECH if not entry.get("has_speech_audio") else SONG
        elif split not in lists:
            excluded[entry["id"]] = f"split '{split}' is none of {', '.join(SPLITS)}"
        else:
            lists[split].append(entry["id"])
    return {**lists, "excluded": excluded}


class ClipData:
    """Clips of a dataset (by id), with the training actors' indices (the speaker style)."""

    def __init__(self, dataset: Dataset3D, clip_ids: list[str], actors: list[str]):
        self.dataset = dataset
        self.entries = [dataset.info(clip_id) for clip_id in clip_ids]
        self.actors = actors
        self._templates: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def actor_index(self, actor: str) -> int:
        return self.actors.index(actor) if actor in self.actors else -1

    def template(self, entry: dict) -> np.ndarray:
        key = (str(entry["actor"]), entry["shard"])
        if key not in self._templates:
            self._templates[key] = self.dataset.template(*key).astype(np.float32)
        return self._templates[key]

    def window(self, entry: dict, start: int, length: int) -> dict:
        """A window of a clip: offsets, audio, labels and the frame before it."""
        clip_id, fps = entry["id"], float(entry["fps"])
        template = self.template(entry)
        first = max(start - 1, 0)
        vertices = self.dataset.array(clip_id, S.VERTICES, first, start + length)
        initial = vertices[0] - template if start > 0 else np.zeros_like(template)
        vertices = vertices[1:] if start > 0 else vertices
        a, b = audio_span(start, length, fps)
        audio = self.dataset.array(clip_id, S.AUDIO, a, b)
        audio = np.pad(audio, (0, max(0, b - a - len(audio))))
        emotion, intensity = labels_of(entry)
        return {"offsets": vertices - template[None], "audio": audio, "template": template, "emotion": emotion,
                "intensity": intensity, "actor": self.actor_index(str(entry["actor"])), "initial": initial,
                "has_initial": start > 0}

    def clip(self, entry: dict) -> dict:
        return self.window(entry, 0, int(entry["frames"]))


def collate(items: list[dict]) -> Batch:
    n = min(len(i["audio"]) for i in items)
    t = min(len(i["offsets"]) for i in items)
    return Batch(
        offsets=torch.from_numpy(np.stack([i["offsets"][:t] for i in items]).astype(np.float32)),
        audio=torch.from_numpy(np.stack([i["audio"][:n] for i in items]).astype(np.float32)),
        template=torch.from_numpy(np.stack([i["template"] for i in items])),
        emotion=torch.tensor([i["emotion"] for i in items]),
        intensity=torch.tensor([i["intensity"] for i in items]),
        actor=torch.tensor([i["actor"] for i in items]),
        initial=torch.from_numpy(np.stack([i["initial"] for i in items]).astype(np.float32)),
        has_initial=torch.tensor([bool(i["has_initial"]) for i in items]),
    )


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch on ``device``; to a GPU from pinned memory without blocking (the copy overlaps work)."""
    if device.type != "cuda":
        return batch.to(device)
    return Batch(**{k: v.pin_memory().to(device, non_blocking=True) for k, v in vars(batch).items()})


def epoch_batches(data: ClipData, epoch: int, seed: int, window: int, batch_size: int, per_clip: int):
    """The epoch's batches in a fixed order (seeded by ``seed`` and ``epoch``): resumable mid-epoch."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(np.repeat(np.arange(len(data)), per_clip))
    plan = []
    for i in order:
        entry = data.entries[i]
        plan.append((entry, *window_in_one_shot(int(entry["frames"]), window, shot_starts_of(entry), rng)))
    return [plan[k:k + batch_size] for k in range(0, len(plan), batch_size)]
