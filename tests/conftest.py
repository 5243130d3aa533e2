"""Shared fixtures: the read-only assets in ../shared/assets (skipped with a reason where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("RECON3D_TEST_ASSETS", REPO.parent / "shared" / "assets"))
FLAME_DIR = ASSETS / "flame"
STAND_IN = FLAME_DIR / "flame_stand_in.pkl"
#: Real FLAME 2023 Open template, main identity components and articulation; the stand-in's expressions.
HYBRID = ASSETS / "flame2023_open" / "flame2023_open_hybrid.pkl"
RAVDESS_VIDEO = ASSETS / "ravdess" / "video"
RAVDESS_EXTRA = ASSETS / "ravdess" / "extra" / "Actor_05"


def need(path: Path) -> Path:
    """Skip the test with a clear reason when a shared asset is missing."""
    if not path.exists():
        pytest.skip(f"shared test asset not found: {path} (tests look for ../shared/assets beside the repository)")
    return path


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def flame_model():
    from recon3d.flame import load_flame_model

    return load_flame_model(need(STAND_IN))


@pytest.fixture(scope="session")
def flame_layer(flame_model):
    from recon3d.flame import FlameLayer

    return FlameLayer(flame_model, dtype=torch.float64)


@pytest.fixture(scope="session")
def mp_embedding(flame_model):
    from recon3d.flame import load_mediapipe_embedding

    return load_mediapipe_embedding(flame_model)


@pytest.fixture(scope="session")
def masks(flame_model):
    from recon3d.flame.masks import load_flame_masks

    return load_flame_masks(need(FLAME_DIR / "FLAME_masks.pkl"), flame_model.n_vertices)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The five shared RAVDESS clips (one actor) built once for this test session."""
    from tests.cli import build

    out = tmp_path_factory.mktemp("ravdess3d") / "out"
    build(need(RAVDESS_VIDEO), out, "--workers", "2")
    return out
