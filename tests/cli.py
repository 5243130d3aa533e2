"""Running the real ``recon3d`` command in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import STAND_IN, need


def run_cli(*args: str, check_exit: int | None = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "recon3d", *args], capture_output=True, text=True,
                          timeout=timeout)
    if check_exit is not None:
        assert proc.returncode == check_exit, proc.stderr[-3000:]
    return proc


def build(videos: Path, out: Path, *extra: str, check_exit: int | None = 0,
          model: Path = STAND_IN) -> subprocess.CompletedProcess:
    return run_cli("build-dataset", str(videos), "--flame-model", str(need(model)), "--out", str(out),
                   "--no-progress", *extra, check_exit=check_exit)


def tiny_train_config(path: Path) -> Path:
    """A small EmoFace configuration that trains in seconds on the CPU."""
    path.write_text("model:\n  dim: 32\n  heads: 2\n  layers: 1\n  n_coarse: 48\n  attention_channels: 8\n"
                    "data:\n  window_frames: 24\n  batch_size: 2\n  windows_per_clip: 1\n")
    return path
