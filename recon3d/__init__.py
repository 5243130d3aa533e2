"""recon3d: emotional speech videos to FLAME 3D datasets, and the EmoFace animator trained on them."""

__version__ = "0.1.0"
