"""Training configuration (``pipelines/emoface.yaml`` documents every key and its default)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from emoface_model.models import ModelConfig


@dataclass
class DataConfig:
    window_frames: int = 60  # training windows (2 s at 30 fps); evaluation uses whole clips
    batch_size: int = 8
    windows_per_clip: int = 4  # random windows drawn from each training clip per epoch


@dataclass
class ScheduleConfig:
    """Self-growing: the share of ground-truth motion inputs falls from ``start`` to ``end`` over epochs.

    curve: linear (reaches ``end`` at ``decay_epochs``), exponential (``start * rate**epoch``),
    inverse_sigmoid (``k / (k + exp(epoch / k))``, Bengio et al.'s scheduled sampling).
    """

    curve: str = "linear"
    start: float = 1.0
    end: float = 0.0
    decay_epochs: int = 20
    rate: float = 0.9
    k: float = 5.0


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    epochs: int = 40
    warmup_steps: int = 50
    velocity_weight: float = 1.0  # weight of the velocity (frame difference) loss
    lip_weight: float = 1.0  # extra weight of lip vertices in the loss (1: none); needs FLAME_masks.pkl


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 200  # steps (and at every epoch end)
    seed: int = 0
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        return _from_dict(cls, values or {}, "")

    @classmethod
    def load(cls, path: str | Path | None) -> "TrainConfig":
        if path is None:
            return cls()
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of options")
        return cls.from_dict(values)


def _from_dict(cls, values: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) in '{where or 'top'}': {', '.join(unknown)} (known: {', '.join(known)})")
    kwargs = {}
    for name, value in values.items():
        factory = known[name].default_factory
        default = factory() if callable(factory) else None
        kwargs[name] = _from_dict(type(default), value, f"{where}.{name}".strip(".")) if is_dataclass(default) else value
    return cls(**kwargs)
