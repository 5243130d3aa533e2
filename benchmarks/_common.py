"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FLAME = REPO.parent / "shared" / "assets" / "flame" / "flame_stand_in.pkl"


def flame_model_path() -> Path:
    """``$RECON3D_FLAME_MODEL``, else the stand-in in ../shared/assets/flame."""
    path = Path(os.environ.get("RECON3D_FLAME_MODEL", DEFAULT_FLAME))
    if not path.exists():
        raise SystemExit(f"FLAME model not found at {path}: set RECON3D_FLAME_MODEL")
    return path


def one_core() -> None:
    """Pin the maths libraries to one thread, as the targets are stated per core."""
    import torch

    torch.set_num_threads(1)


def parse_overrides(pairs: list[str]) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), 9) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        print("  ".join(v.rjust(w) for v, w in zip(cells, widths)))


def print_json(obj: dict) -> None:
    """The machine-readable result: always the last printed line."""
    print(json.dumps(obj), flush=True)
