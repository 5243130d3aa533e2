"""Keeping native libraries' log lines (MediaPipe / TFLite / absl) off the terminal.

absl and TFLite write straight to file descriptor 2 from C++ threads, at graph start-up and
whenever a sub-graph first runs (for MediaPipe: when the first face of a clip is found), past
Python's ``sys.stderr``, and they ignore logging environment variables until
``absl::InitializeLog`` runs. :func:`route_native_stderr` therefore moves Python's
``sys.stderr`` to a duplicate of the terminal's descriptor and points descriptor 2 itself at a
log file, for the rest of the process: Python's messages, progress bars and tracebacks still
reach the terminal; native lines go to the file. Child processes inherit the log as their
descriptor 2.
"""

from __future__ import annotations

import os
import sys

_ROUTED: list[str] = []  # the log this process's descriptor 2 points at, once routed


def route_native_stderr(path: str | os.PathLike | None) -> None:
    """Send native writes to file descriptor 2 to ``path`` (appending) from now on; None: leave it."""
    if path is None:
        return
    path = os.path.abspath(path)
    if _ROUTED and _ROUTED[0] == path:
        return
    sys.stderr.flush()
    if not _ROUTED:
        terminal = os.dup(2)
        sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                               errors="backslashreplace")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    os.close(target)
    _ROUTED[:] = [path]
