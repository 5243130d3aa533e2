"""Writing files so that a reader never sees half of one: write aside, fsync, rename."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


#: A temporary file's name says who writes it: ``.<name>.@<host>@<pid>@<random>.tmp``.
_OWNER = re.compile(r"@([^@/]+)@(\d+)@[^@/]*\.tmp$")


def temp_owner(path: Path) -> tuple[str, int] | None:
    """(host, pid) of the process writing the temporary file ``path`` (None: not named so)."""
    match = _OWNER.search(Path(path).name)
    return (match.group(1), int(match.group(2))) if match else None


def owner_alive(path: Path) -> bool | None:
    """Whether the process writing ``path`` still runs: True / False on this host, None where it
    cannot be told (another host, or a name without its owner)."""
    owner = temp_owner(path)
    if owner is None or owner[0] != socket.gethostname():
        return None
    try:
        os.kill(owner[1], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    The temporary name ends in ``.tmp`` so that no reader or resume logic mistakes it for a
    result, and names its writer (:func:`temp_owner`) so that clean-up never removes a file a
    live process is writing. On failure it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f"@{socket.gethostname()}@{os.getpid()}@"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner}", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.chmod(0o666 & ~_umask())  # as open() would create it (mkstemp makes it private)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
