"""The output folder's disk: writable before a build starts, and a full disk in the middle of one
stops it with a message (what was free, about how much more it needs, that a rerun continues)
instead of a traceback. Writes are atomic (:mod:`recon3d.atomic`), so what a full disk
interrupts is a temporary file, never a result a reader could take for complete."""

from __future__ import annotations

import errno
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from recon3d.errors import SetupError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(SetupError):
    """The output folder's disk filled up during the build; freeing space and rerunning continues it."""


def check_writable(out_dir: Path) -> None:
    """A :class:`SetupError` (nothing recorded) when ``out_dir`` cannot be created or written."""
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise SetupError(f"--out {out_dir}: cannot write there ({exc.strerror or exc}); choose a writable "
                         "folder") from None


def no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is a disk that is full (or over its quota)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE or no_space_text(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


@contextmanager
def full_disk_message(out_dir: Path, clips_left: Callable[[], tuple[int, int]]) -> Iterator[None]:
    """Turn a full disk inside the block into a :class:`DiskFullError` naming ``out_dir``, the
    space free and about how much the rest of the build needs (``clips_left()``: clips done and
    clips in all, for the estimate)."""
    try:
        yield
    except Exception as exc:
        if not no_space(exc):
            raise
        done, total = clips_left()
        used = _folder_bytes(out_dir)
        per_clip = used / done if done else 50 * 2 ** 20
        need = per_clip * (total - done) + used / 2  # the rest, and a shard rewritten while its clips exist
        free = shutil.disk_usage(out_dir).free
        raise DiskFullError(
            f"{out_dir}: the disk is full ({free / 2 ** 20:.0f} MB free); the build stopped and left nothing a "
            f"reader could take for complete. Free about {need / 2 ** 20:.0f} MB more there (what the rest of "
            f"the build writes, estimated from the {done} of {total} clips done) and rerun the same command: "
            "it continues where it stopped") from None


def quiet_full_disk_noise() -> None:
    """Drop the reports h5py prints while it cleans up a file it could not flush to a full disk
    (its objects' clean-up prints through ``sys.excepthook`` and ``sys.unraisablehook``; the build
    reports the full disk once, in one line). Any other report goes to the hook that was there."""
    previous_unraisable, previous_except = sys.unraisablehook, sys.excepthook

    def unraisable_hook(unraisable) -> None:
        if not no_space_text(unraisable.exc_value):
            previous_unraisable(unraisable)

    def except_hook(kind, value, traceback) -> None:
        if not no_space_text(value):
            previous_except(kind, value, traceback)

    sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook


def no_space_text(exc: BaseException | None) -> bool:
    """Whether an error's text says the disk is full (h5py's say so only there: RuntimeError, errno 28)."""
    return exc is not None and ("No space left on device" in str(exc) or "errno = 28" in str(exc))
