"""A run folder's file names and checkpoint names (torch-free, so the CLI's ``--help`` can list them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Which checkpoint inference loads: the epoch best on validation (the last one when the run has
#: no best.pt: no validation clips, or ``best_on: none``), or where training stopped.
CHECKPOINTS = ("best", "last")


@dataclass
class RunDir:
    """The files of a run folder (``emoface_model.run`` describes them)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def info(self) -> Path:
        return self.root / "run.json"

    @property
    def regions(self) -> Path:
        return self.root / "regions.npz"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.root / "checkpoints" / "best.pt"

    @property
    def clips(self) -> Path:
        """``clips.json``: the clip ids of each split and the excluded clips with their reasons."""
        return self.root / "clips.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"
