"""Uncompressed ``.npz`` files (``np.savez``) read and written a range of rows at a time.

A long clip's caches are arrays with a row per frame, too large to hold whole as the clip grows.
``np.load`` reads a member whole; here a member of an uncompressed archive is located once (its
offset in the file and its ``.npy`` header) and then read a row range or a set of rows at a time
(:class:`NpzRows`), and an archive is written member by member from blocks of rows
(:func:`write_npz_blocks`). Both files are ordinary ``.npz`` files that ``np.load`` reads.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

#: A zip local file header's fixed part, and where the lengths of its name and extra field are.
_LOCAL_HEADER_SIZE, _LENGTHS_AT = 30, 26
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class Rows:
    """One member of an :class:`NpzRows` archive, read on demand: ``rows[a:b]``, ``rows[indices]``
    (ascending or not) and ``len(rows)``, each read from the file when asked."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, dtype
        self.row_items = int(np.prod(shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, f, start: int, stop: int) -> np.ndarray:
        f.seek(self.offset + start * self.row_items * self.dtype.itemsize)
        data = np.fromfile(f, self.dtype, (stop - start) * self.row_items)
        return data.reshape((stop - start,) + self.shape[1:])

    def __getitem__(self, index) -> np.ndarray:
        n = self.shape[0]
        with open(self.path, "rb") as f:
            if isinstance(index, slice):
                start, stop, step = index.indices(n)
                if step != 1:
                    raise IndexError("Rows: only contiguous slices")
                return self._read(f, start, max(start, stop))
            rows = np.asarray(index, np.int64).reshape(-1)
            rows = np.where(rows < 0, rows + n, rows)
            if rows.size and (rows.min() < 0 or rows.max() >= n):
                raise IndexError(f"Rows: index out of range for {n} rows")
            out = np.empty((len(rows),) + self.shape[1:], self.dtype)
            for i, r in enumerate(rows):
                out[i] = self._read(f, int(r), int(r) + 1)[0]
            return out.reshape(np.shape(index) + self.shape[1:])

    def blocks(self, frames: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` of ``frames`` rows at a time."""
        for start in range(0, len(self), frames):
            yield start, self[start:start + frames]


class NpzRows:
    """The members of an uncompressed ``.npz`` file, each a :class:`Rows` (``archive["points"]``),
    and small ones read whole (:meth:`value`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.members: dict[str, Rows] = {}
        with zipfile.ZipFile(self.path) as archive, open(self.path, "rb") as f:
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"{self.path.name}: {info.filename} is compressed; rows are read from "
                                     "np.savez files")
                f.seek(info.header_offset + _LENGTHS_AT)
                name_len, extra_len = struct.unpack("<HH", f.read(4))
                f.seek(info.header_offset + _LOCAL_HEADER_SIZE + name_len + extra_len)
                version = np.lib.format.read_magic(f)
                if version not in _HEADER_READERS:
                    raise ValueError(f"{self.path.name}: {info.filename} has .npy format {version}, not 1.0 or 2.0")
                shape, fortran, dtype = _HEADER_READERS[version](f)
                if fortran and len(shape) > 1 or dtype.hasobject:
                    raise ValueError(f"{self.path.name}: {info.filename} is not stored row by row")
                self.members[info.filename.removesuffix(".npy")] = Rows(self.path, f.tell(), tuple(shape), dtype)

    def __getitem__(self, name: str) -> Rows:
        return self.members[name]

    def value(self, name: str) -> np.ndarray:
        """A member read whole (a scalar, or a small array)."""
        rows = self.members[name]
        if not rows.shape:
            with open(self.path, "rb") as f:
                f.seek(rows.offset)
                return np.frombuffer(f.read(rows.dtype.itemsize), rows.dtype, 1).reshape(())[()]
        return rows[:]


#: A member written from blocks of rows: ``(shape, dtype, blocks)``.
Blocks = tuple[tuple[int, ...], np.dtype, Iterable[np.ndarray]]


def write_npz_blocks(path: str | Path, members: dict[str, np.ndarray | Blocks]) -> None:
    """An uncompressed ``.npz`` at ``path`` (as ``np.savez`` writes it) from whole arrays, or from
    ``(shape, dtype, blocks)``: the blocks of rows, in order, written as they come."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, member in members.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
                if isinstance(member, tuple):
                    shape, dtype, blocks = member
                    dtype = np.dtype(dtype)
                    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                              "shape": tuple(int(s) for s in shape)}
                    np.lib.format.write_array_header_1_0(out, header)
                    written = 0
                    for block in blocks:
                        block = np.ascontiguousarray(block, dtype)
                        out.write(block.tobytes())
                        written += len(block)
                    if written != shape[0]:
                        raise ValueError(f"write_npz_blocks: {name} got {written} rows of the {shape[0]} declared")
                else:
                    np.lib.format.write_array(out, np.asanyarray(member), allow_pickle=False)
