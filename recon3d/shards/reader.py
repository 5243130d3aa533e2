"""Reading a built dataset: the manifest, clips, windows, and a torch ``Dataset`` of windows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from recon3d.errors import Recon3dError

AUDIO_RATE = 16000


class DatasetError(Recon3dError, ValueError):
    """A dataset folder that is not a finished recon3d build."""


@dataclass
class ClipData:
    clip_id: str
    vertices: np.ndarray  # (T, V, 3) m
    audio: np.ndarray  # (N,) float32, 16 kHz
    fps: float
    attrs: dict
    template: np.ndarray  # (V, 3) the actor's identity template

    @property
    def offsets(self) -> np.ndarray:
        """Vertices minus the actor's template: face motion (T, V, 3)."""
        return self.vertices - self.template[None]


def audio_span(start_frame: int, n_frames: int, fps: float) -> tuple[int, int]:
    """Sample range of frames ``[start_frame, start_frame + n_frames)`` at 16 kHz.

    The length depends only on ``n_frames`` (windows of equal length batch together).
    """
    a = int(round(start_frame * AUDIO_RATE / fps))
    return a, a + int(round(n_frames * AUDIO_RATE / fps))


class Dataset3D:
    """A finished build: ``OUT_DIR/manifest.json`` plus ``OUT_DIR/shards/*.h5``.

    HDF5 files are opened lazily and per process, so the object can be handed to DataLoader
    workers.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.exists():
            raise DatasetError(f"{self.root}: no manifest.json: not a finished recon3d build "
                               "(run or finish `recon3d build-dataset`, or `recon3d finalize`)")
        self.manifest = json.loads(manifest.read_text())
        self._by_id = {c["id"]: c for c in self.manifest["clips"]}
        self._files: dict[str, h5py.File] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def __len__(self) -> int:
        return len(self._by_id)

    def clips(self, split: str | None = None) -> list[dict]:
        """Manifest entries of the clips, optionally of one split (train, val, test)."""
        return [c for c in self.manifest["clips"] if split is None or c.get("split") == split]

    def clip_ids(self, split: str | None = None) -> list[str]:
        return [c["id"] for c in self.clips(split)]

    def info(self, clip_id: str) -> dict:
        try:
            return self._by_id[clip_id]
        except KeyError:
            raise KeyError(f"no clip '{clip_id}' in {self.root}") from None

    def _file(self, shard: str) -> h5py.File:
        f = self._files.get(shard)
        if f is None:
            path = self.root / "shards" / f"{shard}.h5"
            f = h5py.File(path, "r")
            if not f.attrs.get("complete", False):
                f.close()
                raise DatasetError(f"{path}: shard is not marked complete")
            self._files[shard] = f
        return f

    def group(self, clip_id: str) -> h5py.Group:
        return self._file(self.info(clip_id)["shard"])["clips"][clip_id]

    def faces(self, shard: str | None = None) -> np.ndarray:
        """The mesh's triangles ``(F, 3)``."""
        shard = shard or self.manifest["clips"][0]["shard"]
        return self._file(shard)["mesh"]["faces"][()]

    def template(self, actor: str, shard: str) -> np.ndarray:
        return self._file(shard)["actors"][actor]["template"][()]

    def load_clip(self, clip_id: str, start: int = 0, n_frames: int | None = None) -> ClipData:
        """Frames ``[start, start + n_frames)`` of a clip (all by default) with the matching audio."""
        info = self.info(clip_id)
        g = self.group(clip_id)
        total = int(g.attrs["n_frames"])
        n_frames = total - start if n_frames is None else n_frames
        if start < 0 or n_frames < 1 or start + n_frames > total:
            raise ValueError(f"{clip_id}: frames [{start}, {start + n_frames}) outside 0..{total}")
        fps = float(g.attrs["fps"])
        a, b = audio_span(start, n_frames, fps)
        audio = g["audio"][a:b]
        if len(audio) < b - a:
            audio = np.pad(audio, (0, b - a - len(audio)))
        return ClipData(clip_id=clip_id, vertices=g["vertices"][start:start + n_frames], audio=audio, fps=fps,
                        attrs={k: _plain(v) for k, v in g.attrs.items()},
                        template=self.template(str(g.attrs["actor"]), info["shard"]))

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_dataset(root: str | Path) -> Dataset3D:
    """Open a finished build folder."""
    return Dataset3D(root)


class WindowDataset:
    """A torch ``Dataset`` of windows over the clips of one split.

    Items: ``offsets (T, V, 3)`` float32 (vertices minus the actor template), ``template (V, 3)``,
    ``audio (N,)`` (aligned 16 kHz samples), ``emotion`` (0-7), ``intensity`` (0-1), ``actor``
    (index into :attr:`actors`), ``clip_id``. With ``window_frames`` set, each access picks a random
    window of that length (shorter clips are returned whole); ``window_frames=None`` gives whole
    clips (evaluation).
    """

    def __init__(self, dataset: Dataset3D | str | Path, split: str | None = "train", window_frames: int | None = None,
                 seed: int = 0, actors: list[str] | None = None):
        self.dataset = dataset if isinstance(dataset, Dataset3D) else Dataset3D(dataset)
        self.entries = self.dataset.clips(split)
        self.window_frames = window_frames
        self.actors = actors or sorted({str(c["actor"]) for c in self.dataset.clips()})
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        import torch

        entry = self.entries[index]
        total = int(entry["frames"])
        start, length = 0, total
        if self.window_frames and total > self.window_frames:
            length = self.window_frames
            start = int(self._rng.integers(0, total - length + 1))
        clip = self.dataset.load_clip(entry["id"], start, length)
        labels = entry.get("labels") or {}
        actor = str(entry["actor"])
        return {
            "offsets": torch.from_numpy(clip.offsets.astype(np.float32)),
            "template": torch.from_numpy(clip.template.astype(np.float32)),
            "audio": torch.from_numpy(clip.audio.astype(np.float32)),
            "emotion": int(labels.get("emotion_id", 1)) - 1,
            "intensity": int(labels.get("intensity", 1)) - 1,
            "actor": self.actors.index(actor) if actor in self.actors else 0,
            "fps": clip.fps,
            "clip_id": entry["id"],
            "start": start,
        }
