"""What a result was built from: a file's size, modification time and sha256 (the hash decides
whether a file changed; size and time say cheaply when it need not be computed again:
:func:`recon3d.pipeline.retry.changed_sources`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stat_of(path: str | Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file (OSError where it cannot be read)."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def fingerprint(path: str | Path) -> dict:
    """``{"size", "mtime_ns", "sha256"}`` of a file, its size and time read before its bytes."""
    size, mtime_ns = stat_of(path)
    return {"size": size, "mtime_ns": mtime_ns, "sha256": sha256_of(path)}
