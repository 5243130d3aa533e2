"""Several finished builds read as one (``recon3d train 3D-RAVDESS 3D-MEAD``).

Each clip's manifest entry gains ``dataset``, the name of the build it comes from (its folder's
name, made unique with ``-2``, ``-3``... where two folders share one), and its ``shard`` is named
``<dataset>/<shard>`` so that shards of the same name in different builds stay apart. The builds
must share the mesh (FLAME topology); a clip id or an actor found in two of them is a
:class:`DatasetError` (two people under one speaker index, or one take twice, would be wrong
silently). Emotions need nothing: every layout labels them in one vocabulary
(:mod:`recon3d.io.labels`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon3d.shards.reader import ClipData, Dataset3D, DatasetError, open_dataset


def dataset_names(roots: list[Path]) -> list[str]:
    """Each build folder's name, unique (``-2``, ``-3``... after a repeated one)."""
    names: list[str] = []
    for root in roots:
        base = Path(root).resolve().name
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


class DatasetUnion:
    """The clips of several :class:`Dataset3D` as one, with the reading methods the animator uses."""

    def __init__(self, datasets: list[Dataset3D], names: list[str]):
        self.datasets = dict(zip(names, datasets))
        self._entries: dict[str, dict] = {}
        actors: dict[str, str] = {}
        for name, ds in self.datasets.items():
            for entry in ds.clips():
                clip_id, actor = entry["id"], str(entry["actor"])
                if clip_id in self._entries:
                    raise DatasetError(f"clip '{clip_id}' is in both {self._entries[clip_id]['dataset']} and {name}: "
                                       "train on builds of different videos (a take built twice would count twice)")
                if actors.setdefault(actor, name) != name:
                    raise DatasetError(f"actor '{actor}' is in both {actors[actor]} and {name}: the animator would "
                                       "take two speakers for one; train on them apart, or rebuild one with its own "
                                       "actor names")
                self._entries[clip_id] = {**entry, "dataset": name, "shard": f"{name}/{entry['shard']}"}
        faces = [ds.faces() for ds in datasets if len(ds)]
        if any(f.shape != faces[0].shape or not np.array_equal(f, faces[0]) for f in faces[1:]):
            raise DatasetError(f"{', '.join(names)}: the builds' meshes differ (another FLAME topology); "
                               "train on builds of one FLAME model")
        first = datasets[0].manifest
        self.manifest = {**first, "clips": list(self._entries.values()),
                         "datasets": {name: str(ds.root) for name, ds in self.datasets.items()}}
        self.root = datasets[0].root

    def __len__(self) -> int:
        return len(self._entries)

    def clips(self, split: str | None = None) -> list[dict]:
        """Manifest entries (with ``dataset``) of every build's clips, optionally of one split."""
        return [c for c in self._entries.values() if split is None or c.get("split") == split]

    def clip_ids(self, split: str | None = None) -> list[str]:
        return [c["id"] for c in self.clips(split)]

    def info(self, clip_id: str) -> dict:
        try:
            return self._entries[clip_id]
        except KeyError:
            raise DatasetError(f"no clip '{clip_id}' in {', '.join(self.datasets)}") from None

    def _of(self, clip_id: str) -> Dataset3D:
        return self.datasets[self.info(clip_id)["dataset"]]

    def _shard(self, shard: str) -> tuple[Dataset3D, str]:
        name, _, own = shard.partition("/")
        return self.datasets[name], own

    def array(self, clip_id: str, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self._of(clip_id).array(clip_id, name, start, stop)

    def faces(self, shard: str | None = None) -> np.ndarray:
        if shard is None:
            return next(ds for ds in self.datasets.values() if len(ds)).faces()
        ds, own = self._shard(shard)
        return ds.faces(own)

    def template(self, actor: str, shard: str) -> np.ndarray:
        ds, own = self._shard(shard)
        return ds.template(actor, own)

    def load_clip(self, clip_id: str, start: int = 0, n_frames: int | None = None) -> ClipData:
        return self._of(clip_id).load_clip(clip_id, start, n_frames)

    def close(self) -> None:
        for ds in self.datasets.values():
            ds.close()


def open_datasets(roots: list[str | Path] | str | Path) -> Dataset3D | DatasetUnion:
    """One finished build folder (a :class:`Dataset3D`), or several read as one."""
    if isinstance(roots, (str, Path)):
        return open_dataset(roots)
    roots = [Path(r) for r in roots]
    if len(roots) == 1:
        return open_dataset(roots[0])
    return DatasetUnion([open_dataset(r) for r in roots], dataset_names(roots))
