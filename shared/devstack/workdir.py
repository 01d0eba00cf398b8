"""The working directory of ``askbase dev``: only a directory askbase made is ever cleared.

``askbase dev`` starts from an empty working directory (the emulators keep their data in memory, so last
run's files are stale). Clearing a directory the user named is dangerous (``--workdir .`` is the
checkout, ``--workdir ~`` the home directory), so :func:`claim` clears only a directory that carries
askbase's marker file (written when askbase creates the directory), an empty one, or the default
``.askbase/dev`` holding nothing but the entries ``askbase dev`` itself writes (made before the marker).
Anything else is refused with :class:`WorkdirError` and nothing is deleted.

A running dev holds the directory's lock (``flock`` on :data:`LOCK_NAME`, released by the kernel when
the process ends, however it ends), so a second ``askbase dev`` on the same directory is refused before
it clears the first one's files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MARKER = ".askbase-dev-workdir"
LOCK_NAME = "dev.lock"
# What askbase dev (and --production-shape) writes in its working directory: emulator state, logs, the
# services' data, the function archives, the TLS certificate, the CLI's env file.
KNOWN_ENTRIES = frozenset({MARKER, LOCK_NAME, "emulators", "logs", "data", "functions", "tls", "env"})
MARKER_TEXT = "askbase dev created this directory and empties it each time it starts.\n"


class WorkdirError(Exception):
    """The directory is not askbase's to clear; the message says why and what to do."""


# askbase dev's default --workdir (relative to where it runs). Only a directory ending in its parts is
# taken for an older askbase dev's without the marker, by its entries alone.
DEFAULT_WORKDIR = Path(".askbase/dev")


def owned(path: Path) -> bool:
    """Whether askbase may clear ``path``: its marker is there, or it is empty, or it is the default
    ``.askbase/dev`` and holds only :data:`KNOWN_ENTRIES` (made by an askbase dev from before the marker).

    The entries alone are not proof elsewhere: ``data/``, ``logs/`` and ``env`` are common names, and a
    user's ``--workdir ~/project`` holding just ``data/thesis.tex`` and ``logs/`` must not be emptied."""
    if (path / MARKER).is_file():
        return True
    entries = list(path.iterdir())
    if not entries:
        return True
    return path.parts[-2:] == DEFAULT_WORKDIR.parts and all(entry.name in KNOWN_ENTRIES for entry in entries)


@dataclass
class Claimed:
    """A working directory this process holds: :attr:`path`, locked until :meth:`release`."""

    path: Path
    _lock: IO[str]

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self._lock.close()  # closing the descriptor drops the flock


def claim(path: Path) -> Claimed:
    """Create ``path`` (with the marker) or empty it if askbase owns it, holding its lock; raise
    :class:`WorkdirError`, deleting nothing, if askbase does not own it or another dev holds it."""
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
    lock = _lock(path)
    try:
        for entry in path.iterdir():
            if entry.name in (MARKER, LOCK_NAME):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        (path / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    except BaseException:
        lock.close()
        raise
    return Claimed(path, lock)


def _lock(path: Path) -> IO[str]:
    lock = open(path / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise WorkdirError(
            f"another askbase dev (pid {holder}) is running with --workdir {path}: stop it first, or "
            "give this one its own --workdir and --port"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def holder(path: Path) -> int | None:
    """The pid of the askbase dev holding ``path``, or None when none does."""
    try:
        lock = open(path / LOCK_NAME, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = lock.read().strip()
            return int(text) if text.isdigit() else 0
        return None
