"""Headless rendering of FLAME meshes: a numpy rasteriser, shading, and mesh-over-video previews."""
