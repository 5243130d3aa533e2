"""3D-RAVDESS shards: HDF5 files of fitted clips, written atomically and read for training."""

from recon3d.shards.reader import ClipData, Dataset3D, WindowDataset, open_dataset
from recon3d.shards.writer import ClipRecord, write_clip_file, assemble_shard

__all__ = ["ClipData", "ClipRecord", "Dataset3D", "WindowDataset", "assemble_shard", "open_dataset", "write_clip_file"]
