"""The working directory of ``askbase dev``: only a directory askbase made is ever cleared.

``askbase dev`` starts from an empty working directory (the emulators keep their data in memory, so last
run's files are stale). Clearing a directory the user named is dangerous (``--workdir .`` is the
checkout, ``--workdir ~`` the home directory), so :func:`claim` clears only a directory that carries
askbase's marker file (written when askbase creates the directory), an empty one, or one that holds
nothing but the entries ``askbase dev`` itself writes (a working directory from before the marker).
Anything else is refused with :class:`WorkdirError` and nothing is deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MARKER = ".askbase-dev-workdir"
# What askbase dev (and --production-shape) writes in its working directory: emulator state, logs, the
# services' data, the function archives, the TLS certificate, the CLI's env file.
KNOWN_ENTRIES = frozenset({MARKER, "emulators", "logs", "data", "functions", "tls", "env"})
MARKER_TEXT = "askbase dev created this directory and empties it each time it starts.\n"


class WorkdirError(Exception):
    """The directory is not askbase's to clear; the message says why and what to do."""


def owned(path: Path) -> bool:
    """Whether askbase may clear ``path``: its marker is there, or it is empty, or holds only
    :data:`KNOWN_ENTRIES`."""
    if (path / MARKER).is_file():
        return True
    return all(entry.name in KNOWN_ENTRIES for entry in path.iterdir())


def claim(path: Path) -> Path:
    """Create ``path`` (with the marker) or empty it if askbase owns it; raise :class:`WorkdirError`,
    deleting nothing, if it does not. Returns the resolved path."""
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"--workdir {path} is not a directory: pass a new directory for askbase dev")
    if path.exists() and not owned(path):
        raise WorkdirError(
            f"--workdir {path} already exists and was not created by askbase dev (no {MARKER} in it): "
            "askbase dev empties its working directory, so it refuses this one; pass a new or empty "
            "directory (default .askbase/dev)"
        )
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (path / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    return path
