"""3D-RAVDESS shards: HDF5 files of fitted clips (layout in :mod:`recon3d.shards.schema`), written
atomically and read for training."""

from recon3d.shards.reader import ClipData, Dataset3D, DatasetError, ShardFile, WindowDataset, open_dataset
from recon3d.shards.schema import AUDIO_RATE, ClipAttrs
from recon3d.shards.writer import ClipRecord, assemble_shard, write_clip_file, write_dataset

__all__ = ["AUDIO_RATE", "ClipAttrs", "ClipData", "ClipRecord", "Dataset3D", "DatasetError", "ShardFile",
           "WindowDataset", "assemble_shard", "open_dataset", "write_clip_file", "write_dataset"]
