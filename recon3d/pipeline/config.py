"""The build configuration (``pipelines/ravdess.yaml`` documents every key and its default)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import yaml

from recon3d.fitting.config import FitConfig
from recon3d.shards.writer import StorageConfig


@dataclass
class LandmarkConfig:
    backend: str = "mediapipe"  # mediapipe | fan
    max_faces: int = 2  # faces looked for per frame; the one continuing the track is kept


@dataclass
class IdentityConfig:
    prefer_emotion: str = "neutral"  # fit each actor's identity on these clips when it has any
    shapes_dir: str | None = None  # folder of <actor>.npy identity shapes to use instead of fitting


@dataclass
class QCConfig:
    """Per-clip quality thresholds; clips beyond them are flagged (or rejected with --qc strict)."""

    min_frames: int = 5  # shorter clips fail
    max_reprojection_iod: float = 0.02  # mean landmark error / inter-ocular distance (RAVDESS: ~0.004)
    max_reprojection_p95_iod: float = 0.04
    min_face_fraction: float = 0.90  # frames with a detected face
    max_lip_jitter_mm: float = 1.5  # mean |second difference| of lip vertices per frame


@dataclass
class ShardConfig:
    """One shard per actor (unlabeled videos: groups of ``clips_per_shard``); shards with more than
    ``max_clips_per_shard`` clips are split (0: never), e.g. for more, shorter SLURM tasks."""

    clips_per_shard: int = 50
    max_clips_per_shard: int = 0


@dataclass
class SplitConfig:
    """Split by actor (RAVDESS: odd actors male, even female; both sexes in val and test)."""

    val: list[int] = field(default_factory=lambda: [19, 20])
    test: list[int] = field(default_factory=lambda: [21, 22, 23, 24])


def video_fitting() -> FitConfig:
    """Fitting defaults for MediaPipe landmarks from video: its systematic offsets corrected, and
    noise of ~2 mm at the face (1-2 % of the inter-ocular distance after the correction, measured
    on synthetic renders: benchmarks/video_accuracy.py) instead of the library's 0.4 mm (~1 px)."""
    return FitConfig(landmark_offsets="default", landmark_sigma_mm=2.0)


@dataclass
class BuildConfig:
    labels: str = "ravdess"  # ravdess | none
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    fitting: FitConfig = field(default_factory=video_fitting)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    @classmethod
    def from_dict(cls, values: dict | None) -> "BuildConfig":
        return _from_dict(cls, values or {}, "")

    @classmethod
    def load(cls, path: str | Path | None) -> "BuildConfig":
        if path is None:
            return cls()
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of options at the top level")
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Hash of everything that changes the results (not the fitting device)."""
        d = self.to_dict()
        d["fitting"].pop("device", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _from_dict(cls, values: dict, where: str, base=None):
    """``cls`` (or the instance ``base``) with ``values`` applied; nested sections keep the defaults
    of their parent (so a partial ``fitting:`` section only changes the keys it names)."""
    if not isinstance(values, dict):
        raise ValueError(f"config section '{where or 'top'}' must be a mapping")
    base = base if base is not None else cls()
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown option(s) in config section '{where or 'top'}': {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    changes = {}
    for name, value in values.items():
        current = getattr(base, name)
        if is_dataclass(current):
            changes[name] = _from_dict(type(current), value, f"{where}.{name}".strip("."), current)
        else:
            changes[name] = value
    return replace(base, **changes)
