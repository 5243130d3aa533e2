"""EmoFace: speech + emotion -> animated FLAME-topology meshes, trained on recon3d shards."""
