"""The build configuration (``pipelines/ravdess.yaml`` documents every key and its default)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from recon3d.config_io import config_from_dict, load_config
from recon3d.fitting.config import FitConfig
from recon3d.landmarks.schemes import MAX_FACES
from recon3d.shards.writer import StorageConfig


@dataclass
class LandmarkConfig:
    backend: str = "mediapipe"  # mediapipe | fan
    # faces tracked per frame (one speaker: 1, so the face detector idles while tracking); with
    # more, the one continuing the track is kept
    max_faces: int = MAX_FACES
    # dlib's 68 points (51 inner points and the jaw line) fused into the fit beside MediaPipe's points: auto (where
    # the [dlib] extra is installed), on (required), off. A build resolves auto to on or off, and
    # that is what its configuration hash records.
    dlib: str = "auto"
    # A video at least 1.5 times this long (seconds) is tracked in parts of this length on as many
    # workers as are free, then joined (recon3d.pipeline.chunks); 0: every video in one piece.
    chunk_seconds: float = 30.0


@dataclass
class IdentityConfig:
    prefer_emotion: str = "neutral"  # fit each actor's identity on these clips when it has any
    shapes_dir: str | None = None  # folder of <actor>.npy identity shapes to use instead of fitting


@dataclass
class QCConfig:
    """Per-clip quality thresholds; clips beyond them are flagged (or rejected with --qc strict)."""

    min_frames: int = 5  # shorter clips fail
    max_reprojection_iod: float = 0.02  # mean landmark error / inter-ocular distance (RAVDESS: ~0.008)
    max_reprojection_p95_iod: float = 0.04
    # dlib's points, over the frames the fit used them in: the fit weighs them at dlib_weight beside
    # MediaPipe's, and the detectors place the face differently by ~1.5 % of the IOD (RAVDESS, wojtek)
    max_reprojection_iod_dlib: float = 0.04
    max_reprojection_p95_iod_dlib: float = 0.08
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
    """Train / val / test splits (docs/dataset-format.md#splits).

    ``method``: ``actor`` (the ``val`` and ``test`` actors are held out; RAVDESS: odd actors male,
    even female, both in each split), ``take`` (within each actor, by statement and repetition,
    over the takes the animator can use: the last is test, the one before it val when there are
    four or more, the rest train), or ``auto``: by actor when that gives both train and test clips, else
    by take (a dataset of one actor, or without the held-out actors).
    """

    method: str = "auto"  # auto | actor | take
    val: list[int] = field(default_factory=lambda: [19, 20])
    test: list[int] = field(default_factory=lambda: [21, 22, 23, 24])


def video_fitting() -> FitConfig:
    """Fitting defaults for landmarks from video: the sources' systematic offsets corrected, noise
    of 3 mm at the face instead of the library's 0.4 mm (~1 px): MediaPipe errs by 1-2 % of the
    inter-ocular distance after the correction, correlated over time; 3 mm was the most accurate on
    synthetic renders for both test models (benchmarks/video_accuracy.py, calibration seeds;
    docs/fitting.md); each point weighted by its own noise on those renders, and FLAME's jaw line
    fitted to the face outline (dlib's jaw line when fused: closer faces and jaws on both models);
    dlib's points at 0.3 of their noise weight beside MediaPipe's: the largest weight at which the
    fused fit stays within 10 % of MediaPipe's lips on real faces on both test models (at 0.5 the
    renders fit 0.02 mm closer, but the hybrid's fit moves 13 % away from MediaPipe's lips; at
    1.0 the stand-in's fitted mouth opening falls to 0.83 of the true one); and the mouth's optical
    flow between frames, its horizontal component only, at 10 times a landmark's weight per surface
    sample: lip motion closer to the truth on every render seed of both models at 250 and 120 px,
    the sideways lip motion 1.5x, and on real faces the mouth-width motion closer to dlib's with
    the opening unchanged (the vertical component too: renders a little closer still, but real
    faces' fitted opening falls by 5-12 %; docs/fitting.md)."""
    return FitConfig(landmark_offsets="default", landmark_sigma_mm=3.0, landmark_noise="calibrated",
                     contour_weight=1.0, dlib_weight=0.3, flow_weight=10.0, flow_vertical=0.0)


@dataclass
class BuildConfig:
    # where labels come from (recon3d.io.labels): auto (the layout that names most videos), ravdess, mead,
    # crema-d, none (any video, no labels, one identity per video)
    labels: str = "auto"
    views: str = "front"  # MEAD's cameras to build: a comma-separated list (front,left_30,...) or all
    # which files of a RAVDESS recording are built (recon3d.io.ravdess.MODALITY_CHOICES): auto, one per
    # recording (audio-video, or the video-only file without its twin); audio-video; all (twins too)
    modality: str = "auto"
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    fitting: FitConfig = field(default_factory=video_fitting)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    @classmethod
    def from_dict(cls, values: dict | None) -> "BuildConfig":
        return config_from_dict(cls, values)

    @classmethod
    def load(cls, path: str | Path | None) -> "BuildConfig":
        return load_config(cls, path)

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Hash of everything that changes the results (:func:`result_options`)."""
        return hashlib.sha256(json.dumps(result_options(self.to_dict()), sort_keys=True).encode()).hexdigest()[:16]


def resolve_landmark_sources(config: BuildConfig) -> tuple[BuildConfig, str | None]:
    """``config`` with ``landmarks.dlib`` resolved to on or off for this machine, and the one-line
    note when ``auto`` leaves dlib out (:func:`recon3d.landmarks.registry.landmark_sources`)."""
    from recon3d.landmarks.registry import landmark_sources

    sources, note = landmark_sources(config.landmarks.backend, config.landmarks.dlib)
    landmarks = replace(config.landmarks, dlib="on" if "dlib" in sources else "off")
    return replace(config, landmarks=landmarks), note


def result_options(config: dict) -> dict:
    """The options of a :meth:`BuildConfig.to_dict` that change the results: all but the fitting
    device and how arrays are stored (a build can go on with another compression, the values read
    back are the same). As JSON stores them, so a configuration read back from a folder's stamp
    compares equal to the same one built in memory (tuples become lists)."""
    d = json.loads(json.dumps(config))
    d.get("fitting", {}).pop("device", None)
    if d.get("labels") != "mead":
        d.pop("views", None)  # only MEAD has cameras
    d.pop("storage", None)
    return d


def changed_options(before: dict, after: dict) -> list[str]:
    """``section.key: old -> new`` for each result-changing option that differs between two
    :meth:`BuildConfig.to_dict` (``(none)`` where one version had no such option)."""
    return _differences(result_options(before), result_options(after), "")


_ABSENT = object()


def _differences(before: dict, after: dict, where: str) -> list[str]:
    out = []
    for key in sorted(set(before) | set(after)):
        name = f"{where}.{key}".lstrip(".")
        old, new = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if isinstance(old, dict) and isinstance(new, dict):
            out += _differences(old, new, name)
        elif old != new:
            out.append(f"{name}: {_shown(old)} -> {_shown(new)}")
    return out


def _shown(value) -> str:
    return "(none)" if value is _ABSENT else json.dumps(value)
