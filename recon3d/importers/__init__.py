"""Other datasets into recon3d's shard format (so the animator trains on them too)."""
