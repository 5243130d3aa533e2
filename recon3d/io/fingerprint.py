"""What a result was built from: a file's size, modification time and sha256.

The size and time are read first and cheaply; the hash is what decides whether a file changed,
computed only where size or time differ from what was recorded (a touched but identical file is
unchanged)."""

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


def current_sha256(path: str | Path, known: dict | None) -> str:
    """The file's sha256: ``known["sha256"]`` when ``known`` (a :func:`fingerprint`) has the file's
    size and time, else hashed anew (OSError where the file cannot be read)."""
    if known and known.get("sha256") and stat_of(path) == (known.get("size"), known.get("mtime_ns")):
        return known["sha256"]
    return sha256_of(path)
