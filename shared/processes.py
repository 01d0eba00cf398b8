"""Process-level plumbing shared by the entry points and the local stack.

:class:`PerProcess` holds a service built lazily and once per process. gunicorn and functions-framework
may fork after import, and gRPC clients (Firestore, Pub/Sub) do not survive a fork: a value built in the
parent is rebuilt in the child the first time the child asks for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``factory()`` called at most once per process (thread-safe), on first :meth:`get`."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: tuple[int, T] | None = None

    def get(self) -> T:
        pid = os.getpid()
        value = self._value
        if value is None or value[0] != pid:
            with self._lock:
                value = self._value
                if value is None or value[0] != pid:
                    value = (pid, self._factory())
                    self._value = value
        return value[1]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent exits (Linux ``PR_SET_PDEATHSIG``).

    Called first thing in a helper child process; exits at once if ``parent_pid`` is already gone
    (it died before the signal was armed). A no-op where prctl is unavailable.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


def remove_orphaned_dirs(root: Path, prefix: str) -> None:
    """Delete the directories ``root/<prefix><pid>-…`` whose process is gone.

    Ones named with this process's pid go too: the caller has created none yet, so they are a previous
    life's (containers reuse pids). Directories of other live processes (sibling workers) stay.
    """
    for child in Path(root).glob(prefix + "*"):
        try:
            pid = int(child.name[len(prefix) :].split("-", 1)[0])
        except ValueError:
            pid = 0
        if pid == os.getpid() or not pid_alive(pid):
            shutil.rmtree(child, ignore_errors=True)


def stop_process_group(proc: subprocess.Popen[bytes] | None, sig: int, grace: float = 15.0) -> None:
    """Send ``sig`` to ``proc``'s whole process group (gunicorn's and functions-framework's workers
    included: they were started with ``start_new_session``), wait up to ``grace`` seconds, then kill."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


def spawn_logged(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` (dying with this process) in a new session, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            with_parent_death(argv),
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_until_serving(
    proc: subprocess.Popen[bytes], url: str, timeout: float, name: str, log_path: Path
) -> None:
    """Return once ``url`` answers at all (a 4xx or 405 on "/" means the server is up) and the answer
    is ``proc``'s: it is alive and it (or its process group: gunicorn's workers) holds the socket
    listening on the URL's port (:func:`serves_port`). Another program answering on that port (the
    child's bind failed) does not count. Raise ``RuntimeError`` with the log's tail if ``proc`` exits
    first or ``timeout`` passes."""
    import urllib.error
    import urllib.parse
    import urllib.request

    port = urllib.parse.urlsplit(url).port or 80
    other = ""

    def tail() -> str:
        return log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}{other}; {log_path}:\n{tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                pass
        except urllib.error.HTTPError:
            pass
        except OSError:
            time.sleep(0.1)
            continue
        if proc.poll() is None and serves_port(proc.pid, port) is not False:
            return
        other = f" (port {port} is answered by another process)"
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on {url} within {timeout:.0f}s{other}; {log_path}:\n{tail()}")


def ports_in_use(ports: Sequence[int], host: str = "127.0.0.1") -> list[int]:
    """The ports of ``ports`` a server could not bind on ``host`` now (another process holds them)."""
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As gunicorn and uvicorn bind: a port left in TIME_WAIT by a stopped server is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                taken.append(port)
    return taken


def serves_port(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` or a process of its group holds a socket listening on TCP ``port`` (on
    any address); None where that cannot be told (no Linux ``/proc``)."""
    inodes: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            fields = row.split()
            # sl local_address rem_address st ... inode; st 0A is LISTEN
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not readable:
        return None
    if not inodes:
        return False
    for member in {pid, *_process_group(pid)}:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{member}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return True
    return False


def _process_group(pgid: int) -> list[int]:
    """The pids of the processes in process group ``pgid`` (from ``/proc``)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(int(entry.name))
    return members


def with_parent_death(argv: Sequence[str]) -> list[str]:
    """``argv`` behind a small launcher that arms :func:`die_with_parent` for this process, then execs it.

    Use it instead of a ``preexec_fn`` doing the same: a ``preexec_fn`` makes subprocess fork() instead of
    vfork(), fork() runs gRPC's fork handlers, and in a process with live gRPC channels (Firestore,
    Pub/Sub) those restart a poller thread that can abort the child before it execs (grpc/grpc#43055;
    seen here as a service "exited with -6"). Pair it with ``start_new_session=True`` for a process group
    of its own.
    """
    return [sys.executable, "-m", "shared.processes", str(os.getpid()), *argv]


def _launch(args: Sequence[str]) -> None:  # pragma: no cover - replaced by exec
    parent, *argv = args
    die_with_parent(int(parent))
    os.execvp(argv[0], argv)  # noqa: S606 - the argv is the caller's own command, no shell by design


if __name__ == "__main__":
    _launch(sys.argv[1:])
