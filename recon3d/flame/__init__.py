"""The FLAME head model: file loading, the torch forward pass and landmark embeddings."""

from recon3d.flame.embeddings import (
    Fan68Embedding,
    LandmarkEmbedding,
    load_fan68_embedding,
    load_mediapipe_embedding,
)
from recon3d.flame.layer import FlameLayer, FlameOutput
from recon3d.flame.model_file import (
    FLAME_ENV_VAR,
    FlameModelData,
    FlameModelError,
    load_flame_model,
    resolve_flame_model_path,
)

__all__ = [
    "FLAME_ENV_VAR", "Fan68Embedding", "FlameLayer", "FlameModelData", "FlameModelError", "FlameOutput",
    "LandmarkEmbedding", "load_fan68_embedding", "load_flame_model", "load_mediapipe_embedding",
    "resolve_flame_model_path",
]
