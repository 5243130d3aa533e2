"""The HDF5 layout of a shard, in one place: group, dataset and attribute names, the audio rate,
and the clip attributes as one dataclass that the writer writes and every reader reads.

```
/                      attrs: format_version, recon3d_version, shard, n_clips, complete
/clips/<clip_id>/      attrs: ClipAttrs (labels, timing, provenance, qc_*)
    vertices (T, V, 3)  audio (N,)  times (T,)  landmarks (T, P, 2)  landmarks_valid (T,)
    flame/<param> (T, k)    camera/translation (T, 3)   camera attrs: focal, cx, cy, width, height, model
/actors/<actor>/       shape (K,)  template (V, 3)
/mesh/faces (F, 3)
```

docs/dataset-format.md describes every entry and its units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from recon3d.io.labels import EMOTION_NAMES
from recon3d.io.ravdess import VOCAL_CHANNELS

FORMAT_VERSION = 1
#: Sample rate of every clip's audio (and of the animator's audio input).
AUDIO_RATE = 16000

SHARDS_DIR = "shards"  # OUT_DIR/shards/<shard>.h5
#: Shard attributes; ``complete`` is set last, so a shard without it is never read.
COMPLETE, N_CLIPS = "complete", "n_clips"
CLIPS, ACTORS, MESH, FACES = "clips", "actors", "mesh", "faces"
VERTICES, AUDIO, TIMES, LANDMARKS, LANDMARKS_VALID = "vertices", "audio", "times", "landmarks", "landmarks_valid"
FLAME, CAMERA, CAMERA_TRANSLATION = "flame", "camera", "translation"
SHAPE, TEMPLATE = "shape", "template"
#: Per-frame FLAME parameters under ``flame/``.
FLAME_PARAMS = ("expression", "jaw_pose", "eye_pose", "global_pose", "neck_pose", "translation")
#: Camera attributes (pixels) and the camera model's description.
CAMERA_KEYS = ("focal", "cx", "cy", "width", "height")
CAMERA_MODEL = "pinhole, camera looks along -z, y up; pixels u = cx + focal*x/(-z), v = cy - focal*y/(-z)"
QC_PREFIX = "qc_"
LABEL_KEYS = ("modality", "vocal_channel", "emotion_id", "intensity", "statement", "repetition")
#: Labels of some layouts only (MEAD's camera, CREMA-D's sentence code, either's dataset), kept as text attributes.
TEXT_LABEL_KEYS = ("dataset", "view", "sentence")


def shard_path(root: str | Path, name: str) -> Path:
    """Where a dataset folder keeps shard ``name``."""
    return Path(root) / SHARDS_DIR / f"{name}.h5"


def audio_samples(n_frames: int, fps: float) -> int:
    """Audio samples that cover ``n_frames`` frames: ``round(n_frames / fps * AUDIO_RATE)``."""
    return int(round(n_frames / fps * AUDIO_RATE))


def audio_span(start_frame: int, n_frames: int, fps: float) -> tuple[int, int]:
    """Sample range of frames ``[start_frame, start_frame + n_frames)`` (sample 0 is frame 0's time).

    The length depends only on ``n_frames`` (windows of equal length batch together).
    """
    a = int(round(start_frame * AUDIO_RATE / fps))
    return a, a + audio_samples(n_frames, fps)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class ClipAttrs:
    """The attributes of ``/clips/<clip_id>``: labels (0 / empty when unknown), timing, provenance, QC."""

    actor: str
    fps: float
    n_frames: int
    emotion: str = ""
    emotion_id: int = 0  # 1-9 (recon3d.io.labels.EMOTION_NAMES), 0 when unlabeled
    intensity: int = 0  # RAVDESS: 1 normal, 2 strong; MEAD's level and CREMA-D's LO/MD/HI: 1-3 (0: unspecified)
    statement: int = 0
    repetition: int = 0
    vocal_channel: int = 0
    modality: int = 0
    has_speech_audio: bool = False
    split: str = "train"
    source_path: str = ""
    source_sha256: str = ""
    source_size: int = 0  # bytes, and the modification time (ns) read when it was hashed
    source_mtime_ns: int = 0
    landmark_backend: str = ""
    rotation: int = 0
    recon3d_version: str = ""
    fitting_config_hash: str = ""
    build_config_hash: str = ""
    qc: dict = field(default_factory=dict)  # stored as qc_<name>
    extra: dict = field(default_factory=dict)  # any other attribute (e.g. VOCASET's sequence name)

    @classmethod
    def from_labels(cls, actor: str, fps: float, n_frames: int, labels: dict | None, **values) -> "ClipAttrs":
        """Attributes with the ``labels`` (:func:`recon3d.io.labels.label_video`) filled in, if any."""
        labels = labels or {}
        known = {k: labels[k] for k in ("emotion", "emotion_id", *LABEL_KEYS) if k in labels}
        text = {k: str(labels[k]) for k in TEXT_LABEL_KEYS if k in labels}
        extra = {**text, **values.pop("extra", {})}
        return cls(actor=actor, fps=float(fps), n_frames=int(n_frames), **known, **values, extra=extra)

    def write(self, attrs) -> None:
        """Store into an h5py ``AttributeManager``."""
        values = asdict(self)
        qc, extra = values.pop("qc"), values.pop("extra")
        for key, value in {**values, **{QC_PREFIX + k: v for k, v in qc.items()}, **extra}.items():
            attrs[key] = "" if value is None else value

    @classmethod
    def read(cls, attrs) -> "ClipAttrs":
        """From an h5py ``AttributeManager`` (or a dict of attributes)."""
        raw = {k: _plain(v) for k, v in dict(attrs).items()}
        names = {f.name for f in fields(cls)} - {"qc", "extra"}
        values = {k: raw.pop(k) for k in list(raw) if k in names}
        qc = {k[len(QC_PREFIX):]: raw.pop(k) for k in list(raw) if k.startswith(QC_PREFIX)}
        out = cls(**values, qc=qc, extra=raw)
        out.actor, out.fps, out.n_frames = str(out.actor), float(out.fps), int(out.n_frames)
        return out

    @property
    def labels(self) -> dict | None:
        """The manifest's ``labels`` entry, or None for unlabeled clips."""
        if int(self.emotion_id or 0) <= 0:
            return None
        labels = {k: int(getattr(self, k)) for k in LABEL_KEYS}
        labels["emotion"] = EMOTION_NAMES[labels["emotion_id"] - 1]
        if labels["vocal_channel"] in VOCAL_CHANNELS:
            labels["vocal"] = VOCAL_CHANNELS[labels["vocal_channel"]]
        labels["actor"] = int(self.actor) if self.actor.isdigit() else self.actor
        labels.update({k: str(self.extra[k]) for k in TEXT_LABEL_KEYS if k in self.extra})
        return labels

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps
