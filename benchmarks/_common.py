"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FLAME = REPO.parent / "shared" / "assets" / "flame" / "flame_stand_in.pkl"


def flame_model_path(given: str | Path | None = None) -> Path:
    """``given`` (a script's ``--flame-model``), else ``$RECON3D_FLAME_MODEL``, else the stand-in in
    ../shared/assets/flame."""
    path = Path(given or os.environ.get("RECON3D_FLAME_MODEL", DEFAULT_FLAME))
    if not path.exists():
        raise SystemExit(f"FLAME model not found at {path}: pass --flame-model or set RECON3D_FLAME_MODEL")
    return path


def add_model_option(parser) -> None:
    parser.add_argument("--flame-model", default=None,
                        help="FLAME model pickle (default: $RECON3D_FLAME_MODEL, else the stand-in)")


def model_id(path: Path) -> str:
    """How a benchmark names the model it ran on: file name and the first 8 hex digits of its sha256."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{Path(path).name}@{h.hexdigest()[:8]}"


def config_dir(prefix: Path, config=None, model: Path | None = None) -> Path:
    """``<prefix>_<hash>``: where a benchmark keeps a build under --work, so that a changed default
    or override builds anew beside the old build instead of reusing or refusing it. The hash is
    the build configuration's (``config``: a BuildConfig, default the build's defaults) and, with
    ``model``, everything else a folder's stamp checks (the model, its landmark-offsets
    calibration and embedding files: a recalibrated file builds anew too)."""
    import hashlib
    import json

    from recon3d.pipeline.build import build_identity
    from recon3d.pipeline.config import BuildConfig

    config = config or BuildConfig()
    key = config.digest() if model is None else hashlib.sha256(
        json.dumps(build_identity(config, Path(model)), sort_keys=True).encode()).hexdigest()[:16]
    return prefix.with_name(f"{prefix.name}_{key}")


def column_means(rows: list[dict], keys: list[str]) -> dict[str, float]:
    """Each of ``keys`` averaged over ``rows`` (e.g. clips or seeds)."""
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def column_sds(rows: list[dict], keys: list[str]) -> dict[str, float]:
    """Each of ``keys``' standard deviation over ``rows`` (sample sd: the spread over seeds)."""
    return {k: float(np.std([r[k] for r in rows], ddof=1)) for k in keys}


def one_core() -> None:
    """Pin the maths libraries (torch, and numpy/scipy's BLAS) to one thread, as the targets are stated per core.

    threadpoolctl limits only the libraries loaded when it is called: scipy.linalg (which brings
    scipy's own OpenBLAS, used by the fitter's banded solves) is imported first for that reason.
    """
    import importlib

    import torch
    from threadpoolctl import threadpool_limits

    importlib.import_module("scipy.linalg")  # loads scipy's BLAS, so that it is limited too

    torch.set_num_threads(1)
    threadpool_limits(1)


def add_overrides_option(parser, what: str, example: str) -> None:
    """``--set KEY=VALUE ...``: fitting options overriding ``what`` (read with :func:`parse_overrides`)."""
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help=f"override fitting options ({what}), e.g. --set {example}")


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
