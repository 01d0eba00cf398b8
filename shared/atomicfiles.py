"""Whole-file writes that a reader or a crash never sees half done.

The index sidecar, the chunk table and the cached ONNX model are each replaced as a whole while other
processes may read them, and a process may be killed mid-write. :func:`write_atomically` writes a
temporary file in the same directory, fsyncs it and renames it over the target: readers see the old
file or the new one, and a crash leaves at most a ``*.tmp`` file, never a torn target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write`` writes to the binary handle it is given.

    Raises what ``write`` or the file system raise; the temporary file is removed then.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
