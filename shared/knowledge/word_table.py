"""MiniLM's word-embedding table, read from its file one row per distinct token instead of held in memory.

The table is 30,522 rows of 384 float32 values (47 MB, over half of the model's weights), yet a call
only ever needs the rows of the tokens it embeds: a question uses a dozen, a batch of chunks a few
hundred. :class:`WordTable` therefore keeps only an open file and reads exactly those rows with
``preadv`` into the batch's own array, which is freed when the call returns. The file's pages stay in
the kernel's page cache (shared by every process reading the file, dropped under memory pressure) and
are never mapped into the process, so they count towards neither its anonymous memory nor its RSS.
A container's memory limit may still count page cache (cgroups charge it to the container that read
the file; the kernel reclaims it before the limit is hit, unlike anonymous memory), so the table can
show in an instance's memory graph without ever pushing it out of memory.

Why not ``mmap`` (measured on the 2-core machine, Linux 6.18, ext4, a 47 MB table, 300 random rows):
with the file already in the page cache, as it is after the build or once any process has read it,
``MADV_RANDOM`` did not stop the kernel from mapping whole neighbourhoods around each touched row, and
the process's file-backed RSS grew by the whole table (+45 MB); reading the same rows with ``pread``
maps nothing.

The values are the packaged weights, bit for bit, so gathering rows here instead of in the ONNX graph
changes no vector (see :mod:`shared.knowledge.onnx_graph`).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["WordTable", "save_word_table"]

_DTYPE = np.dtype("<f4")


def save_word_table(handle: BinaryIO, table: np.ndarray) -> None:
    """Write ``table`` as a ``.npy`` file (little-endian float32, C order) to a binary ``handle``.

    ``.npy`` carries its own shape and dtype, so a reader never trusts a size it was told elsewhere.
    """
    np.save(handle, np.ascontiguousarray(table, dtype=_DTYPE), allow_pickle=False)


class WordTable:
    """Rows of a ``[vocabulary, dimension]`` float32 table, from a ``.npy`` file or an array in memory.

    Thread-safe: ``preadv`` takes its offset with each call, so concurrent ``rows`` calls share the file.
    """

    def __init__(self, array: np.ndarray) -> None:
        """A table held in memory (the fallback when the model cache is not writable)."""
        if array.ndim != 2:
            raise ValueError(f"a word table is 2-D, got shape {array.shape}")
        self._array: np.ndarray | None = np.ascontiguousarray(array, dtype=_DTYPE)
        self._fd = -1
        self._offset = 0
        self.path: Path | None = None
        self.vocabulary, self.dimension = (int(size) for size in array.shape)

    @classmethod
    def open(cls, path: Path) -> WordTable:
        """The table in the ``.npy`` file at ``path``, read row by row; checks its header and size."""
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
        if len(shape) != 2 or fortran or dtype != _DTYPE:
            raise ValueError(f"{path} is not a C-order float32 [rows, dimension] table")
        vocabulary, dimension = (int(size) for size in shape)
        if path.stat().st_size != offset + vocabulary * dimension * _DTYPE.itemsize:
            raise ValueError(f"{path} is truncated or has trailing bytes")
        table = cls.__new__(cls)
        table._array = None
        table._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        table._offset = offset
        table.path = path
        table.vocabulary, table.dimension = vocabulary, dimension
        # The descriptor lives as long as the table: a cache rebuild renames a new file over this one,
        # and the open descriptor keeps reading the file it opened (the same weights).
        weakref.finalize(table, os.close, table._fd)
        return table

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """``table[ids]``: float32, shape ``ids.shape + (dimension,)``; each distinct id is read once."""
        ids = np.asarray(ids)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.vocabulary):
            raise IndexError(f"token id outside the table's {self.vocabulary} rows")
        if self._array is not None:
            taken: np.ndarray = self._array[ids]
            return taken
        if not ids.size:
            return np.empty((*ids.shape, self.dimension), dtype=_DTYPE)
        distinct, inverse = np.unique(ids.reshape(-1), return_inverse=True)
        found = np.empty((len(distinct), self.dimension), dtype=_DTYPE)
        row_bytes = self.dimension * _DTYPE.itemsize
        # Sorted ids: a run of consecutive ids (e.g. the [unusedN] rows, digits) is one read.
        starts = np.flatnonzero(np.diff(distinct, prepend=-2) != 1)
        ends = np.append(starts[1:], len(distinct))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            wanted = (end - start) * row_bytes
            got = os.preadv(
                self._fd, [found[start:end].data], self._offset + int(distinct[start]) * row_bytes
            )
            if got != wanted:
                raise OSError(f"short read from the word table ({got} of {wanted} bytes)")
        gathered: np.ndarray = found[inverse].reshape(*ids.shape, self.dimension)
        return gathered
