"""Reading a built dataset: the manifest, clips, windows, and a torch ``Dataset`` of windows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from recon3d.errors import SetupError
from recon3d.landmarks.shots import shot_ranges
from recon3d.shards import schema as S
from recon3d.shards.schema import ClipAttrs, audio_span


class DatasetError(SetupError):
    """A dataset folder that is not a finished recon3d build, or a clip or shard it does not have."""


class ShardDamagedError(DatasetError):
    """A shard whose bytes are not what was written (a checksum mismatch, a truncated copy)."""


def _damaged(path: Path, what: str, exc: Exception) -> ShardDamagedError:
    root = path.parent.parent
    return ShardDamagedError(f"{path}: {what} cannot be read ({exc}): the shard is damaged. `recon3d verify {root}` "
                             "lists every problem; delete the shard and rerun the build command to rebuild it")


@dataclass
class ClipData:
    clip_id: str
    vertices: np.ndarray  # (T, V, 3) m
    audio: np.ndarray  # (N,) float32, 16 kHz
    fps: float
    attrs: ClipAttrs
    template: np.ndarray  # (V, 3) the actor's identity template

    @property
    def offsets(self) -> np.ndarray:
        """Vertices minus the actor's template: face motion (T, V, 3)."""
        return self.vertices - self.template[None]


class ShardFile:
    """One finished shard file (refused unless marked complete), read through the schema's names."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"{self.path}: shard file not found")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise _damaged(self.path, "the file", exc) from None
        if not self._f.attrs.get(S.COMPLETE, False):
            self._f.close()
            raise DatasetError(f"{self.path}: shard is not marked complete")

    def __enter__(self) -> "ShardFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def clip_ids(self) -> list[str]:
        return list(self._f[S.CLIPS])

    def actors(self) -> list[str]:
        return list(self._f[S.ACTORS])

    def _clip(self, clip_id: str) -> h5py.Group:
        try:
            return self._f[S.CLIPS][clip_id]
        except KeyError:
            raise DatasetError(f"no clip '{clip_id}' in {self.path}") from None

    def attrs(self, clip_id: str) -> ClipAttrs:
        return ClipAttrs.read(self._clip(clip_id).attrs)

    def _read(self, what: str, dataset: h5py.Dataset, rows=()) -> np.ndarray:
        """``dataset[rows]``; a checksum mismatch or unreadable chunk is a :class:`ShardDamagedError`
        naming the shard and ``what``."""
        try:
            return dataset[rows]
        except OSError as exc:
            raise _damaged(self.path, what, exc) from None

    def array(self, clip_id: str, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """A clip's dataset (``vertices``, ``audio``, ``flame/jaw_pose``, ``camera/translation``, ...),
        rows ``[start, stop)``."""
        return self._read(f"clip {clip_id}'s {name}", self._clip(clip_id)[name], slice(start, stop))

    def flame(self, clip_id: str) -> dict[str, np.ndarray]:
        """Every stored FLAME parameter of a clip, whole."""
        group = self._clip(clip_id)[S.FLAME]
        return {name: self._read(f"clip {clip_id}'s {S.FLAME}/{name}", group[name]) for name in group}

    def camera(self, clip_id: str) -> dict[str, float]:
        """The clip's camera intrinsics (``focal``, ``cx``, ``cy``, ``width``, ``height``); empty if none."""
        attrs = self._clip(clip_id)[S.CAMERA].attrs
        return {k: float(attrs[k]) for k in S.CAMERA_KEYS if k in attrs}

    def template(self, actor: str) -> np.ndarray:
        return self._read(f"actor {actor}'s {S.TEMPLATE}", self._f[S.ACTORS][actor][S.TEMPLATE])

    def shape(self, actor: str) -> np.ndarray:
        return self._read(f"actor {actor}'s {S.SHAPE}", self._f[S.ACTORS][actor][S.SHAPE])

    def faces(self) -> np.ndarray:
        return self._read(f"{S.MESH}/{S.FACES}", self._f[S.MESH][S.FACES])


def clip_file_attrs(path: str | Path) -> dict[str, ClipAttrs]:
    """The clip attributes in a build's unfinished clip file (``work/shards/<shard>/clips/<id>.h5``)."""
    with h5py.File(path, "r") as f:
        return {clip_id: ClipAttrs.read(group.attrs) for clip_id, group in f[S.CLIPS].items()}


class Dataset3D:
    """A finished build: ``OUT_DIR/manifest.json`` plus ``OUT_DIR/shards/*.h5``.

    Shard files are opened lazily and per process, so the object can be handed to DataLoader
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
        self._files: dict[str, ShardFile] = {}

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
        """The manifest entry of a clip."""
        try:
            return self._by_id[clip_id]
        except KeyError:
            raise DatasetError(f"no clip '{clip_id}' in {self.root} ({len(self._by_id)} clips; "
                               f"`recon3d inspect {self.root}` lists them, e.g. {self._example()})") from None

    def _example(self) -> str:
        return next(iter(self._by_id), "none")

    def shard(self, name: str) -> ShardFile:
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = ShardFile(S.shard_path(self.root, name))
        return f

    def shard_of(self, clip_id: str) -> ShardFile:
        return self.shard(self.info(clip_id)["shard"])

    def attrs(self, clip_id: str) -> ClipAttrs:
        return self.shard_of(clip_id).attrs(clip_id)

    def array(self, clip_id: str, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of a clip's dataset (see :meth:`ShardFile.array`)."""
        return self.shard_of(clip_id).array(clip_id, name, start, stop)

    def faces(self, shard: str | None = None) -> np.ndarray:
        """The mesh's triangles ``(F, 3)``."""
        return self.shard(shard or self.manifest["clips"][0]["shard"]).faces()

    def template(self, actor: str, shard: str) -> np.ndarray:
        return self.shard(shard).template(actor)

    def load_clip(self, clip_id: str, start: int = 0, n_frames: int | None = None) -> ClipData:
        """Frames ``[start, start + n_frames)`` of a clip (all by default) with the matching audio."""
        info = self.info(clip_id)
        shard = self.shard(info["shard"])
        attrs = shard.attrs(clip_id)
        total = attrs.n_frames
        n_frames = total - start if n_frames is None else n_frames
        if start < 0 or n_frames < 1 or start + n_frames > total:
            raise DatasetError(f"{clip_id}: frames [{start}, {start + n_frames}) outside 0..{total}")
        a, b = audio_span(start, n_frames, attrs.fps)
        audio = shard.array(clip_id, S.AUDIO, a, b)
        if len(audio) < b - a:
            audio = np.pad(audio, (0, b - a - len(audio)))
        return ClipData(clip_id=clip_id, vertices=shard.array(clip_id, S.VERTICES, start, start + n_frames),
                        audio=audio, fps=attrs.fps, attrs=attrs, template=shard.template(attrs.actor))

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def open_dataset(root: str | Path) -> Dataset3D:
    """Open a finished build folder."""
    return Dataset3D(root)


def shot_starts_of(entry: dict) -> list[int]:
    """The frames where a manifest entry's clip starts a new shot (its QC's ``shot_starts``)."""
    text = str((entry.get("qc") or {}).get("shot_starts") or "")
    return [int(s) for s in text.split(",") if s]


def window_in_one_shot(total: int, length: int, shot_starts: list[int], rng: np.random.Generator) -> tuple[int, int]:
    """``(start, length)`` of a random window of ``length`` frames of a clip of ``total`` frames
    that crosses no shot cut, every such window equally likely; where no shot is that long, the
    longest shot whole (the whole clip without cuts). One draw from ``rng`` either way, so that a
    clip without cuts takes the draws it took before cuts were known."""
    shots = shot_ranges(total, shot_starts)
    long_enough = [(a, b) for a, b in shots if b - a >= length]
    if not long_enough:
        rng.integers(0, 1)
        a, b = max(shots, key=lambda s: s[1] - s[0])
        return a, b - a
    ends = np.cumsum([b - a - length + 1 for a, b in long_enough])  # windows up to each shot's end
    k = int(rng.integers(0, ends[-1]))
    i = int(np.searchsorted(ends, k, side="right"))
    return long_enough[i][0] + k - int(ends[i - 1] if i else 0), length


class WindowDataset:
    """A torch ``Dataset`` of windows over the clips of one split.

    Items: ``offsets (T, V, 3)`` float32 (vertices minus the actor template), ``template (V, 3)``,
    ``audio (N,)`` (aligned 16 kHz samples), ``emotion`` (0-7), ``intensity`` (0-1), ``actor``
    (index into :attr:`actors`), ``clip_id``. With ``window_frames`` set, each access picks a random
    window of that length within one shot (:func:`window_in_one_shot`; shorter clips are returned
    whole); ``window_frames=None`` gives whole clips (evaluation).
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
        if self.window_frames:
            start, length = window_in_one_shot(total, self.window_frames, shot_starts_of(entry), self._rng)
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
