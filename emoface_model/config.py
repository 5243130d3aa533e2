"""Training configuration (``pipelines/emoface.yaml`` documents every key and its default)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from emoface_model.models import ModelConfig
from recon3d.config_io import config_from_dict, load_config


@dataclass
class DataConfig:
    window_frames: int = 60  # training windows (2 s at 30 fps); evaluation uses whole clips
    batch_size: int = 8
    windows_per_clip: int = 4  # random windows drawn from each training clip per epoch
    #: RAVDESS's song takes in the splits (clips without speech audio never are): off, since sung
    #: vowels are held over sustained notes, a mouth motion speech does not have (docs/model.md)
    include_song: bool = False


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


#: Training arithmetic: fp32, or bf16 autocast (``TrainConfig.precision``).
PRECISIONS = ("fp32", "bf16")
#: Validation scores ``best_on`` may name: metrics of whole generated validation clips (m^2),
#: or "none" (no best.pt; every command uses the last checkpoint).
BEST_ON = ("lve+eve", "lve", "eve", "none")

#: The paper's components switched off one at a time (config overrides; docs/model.md#ablations).
ABLATIONS: dict[str, dict] = {
    "emoface": {},
    "no_mesh_attention": {"model": {"fusion": "plain"}},
    "no_emotion_stream": {"model": {"emotion_stream": False}},
    "teacher_forcing_only": {"schedule": {"start": 1.0, "end": 1.0}},
    "scheduled_sampling_only": {"schedule": {"start": 0.5, "end": 0.5}},
}


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 200  # steps (and at every epoch end)
    #: checkpoints/best.pt: the epoch with the lowest validation score (generated whole val clips);
    #: one of BEST_ON. Evaluation and animation use it when it exists (--checkpoint last: the end).
    best_on: str = "lve+eve"
    best_every: int = 5  # epochs between those scorings (and the last epoch): each costs one generation of val
    seed: int = 0
    device: str = "cpu"
    #: fp32, or bf16: the forward pass and loss under autocast to bfloat16 (weights and optimiser
    #: state stay float32); for GPUs with bfloat16 (A100, H100).
    precision: str = "fp32"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        return config_from_dict(cls, values)

    @classmethod
    def load(cls, path: str | Path | None) -> "TrainConfig":
        return load_config(cls, path)
