"""The documented training configuration equals the built-in defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from emoface_model.config import TrainConfig
from recon3d.config_io import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_emoface_yaml_documents_the_defaults():
    assert TrainConfig.load(REPO / "pipelines" / "emoface.yaml").to_dict() == TrainConfig().to_dict()


def test_unknown_training_option_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown option.*'optim'.*learning_rate"):
        TrainConfig.load(path)
