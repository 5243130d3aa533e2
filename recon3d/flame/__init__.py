"""The FLAME head model: file loading, the torch forward pass and landmark embeddings.

File loading and embeddings need only numpy; the forward pass (``FlameLayer``, ``FlameOutput``)
is imported on first use, so that reading a model's path or checking a file does not load torch.
"""

from recon3d.flame.embeddings import (
    Fan68Embedding,
    LandmarkEmbedding,
    load_fan68_embedding,
    load_mediapipe_dlib_embedding,
    load_mediapipe_embedding,
)
from recon3d.flame.model_file import (
    FLAME_ENV_VAR,
    FlameModelData,
    FlameModelError,
    load_flame_model,
    resolve_flame_model_path,
)
from recon3d.lazy_exports import lazy_exports

_TORCH_EXPORTS = {"FlameLayer": "recon3d.flame.layer", "FlameOutput": "recon3d.flame.layer"}

__all__ = [
    "FLAME_ENV_VAR", "Fan68Embedding", "FlameLayer", "FlameModelData", "FlameModelError", "FlameOutput",
    "LandmarkEmbedding", "load_fan68_embedding", "load_flame_model", "load_mediapipe_dlib_embedding",
    "load_mediapipe_embedding",
    "resolve_flame_model_path",
]

__getattr__ = lazy_exports(__name__, _TORCH_EXPORTS)
