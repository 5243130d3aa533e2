"""One build at a time in an output folder: an exclusive ``flock`` on ``OUT_DIR/work/build.lock``.

The kernel holds the lock for the process and drops it when the process ends, however it ends: a
build killed with ``kill -9`` leaves a file behind but no lock, so the rerun that resumes it is
never refused. The file names the holder (host, pid, command, start time) for the refusal message.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from recon3d.errors import SetupError
from recon3d.pipeline.workspace import Workspace


class FolderBusyError(SetupError):
    """Another build is running in the output folder."""


def holder_of(text: str) -> str:
    """``pid 123 on host h (recon3d build-dataset, since ...)`` from the lock file's contents."""
    try:
        who = json.loads(text)
    except ValueError:
        return "another process (it is starting)"
    return f"pid {who['pid']} on host {who['host']} ({who['command']}, since {who['started']})"


@contextmanager
def build_lock(out_dir: str | Path, command: str = "recon3d build-dataset") -> Iterator[Path]:
    """Hold ``OUT_DIR``'s build lock for the block; :class:`FolderBusyError` at once when another
    process holds it (naming that process)."""
    path = Workspace(out_dir).lock
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = holder_of(os.pread(fd, 4096, 0).decode(errors="replace"))
            raise FolderBusyError(f"{out_dir} is being built by {holder}: wait for it to end or stop it, "
                                  "or choose another --out") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": dt.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
