"""Process plumbing: helper processes die with their parent, whether they arm that themselves or are
started through the launcher."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from shared.processes import (
    pid_alive,
    spawn_logged,
    stop_process_group,
    wait_until_serving,
    with_parent_death,
)

ROOT = Path(__file__).parents[1]


def _wait_gone(pid: int, what: str) -> None:
    deadline = time.monotonic() + 10
    while pid_alive(pid):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent_code = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", '''
        import os, sys, time
        from shared.processes import die_with_parent
        die_with_parent({{parent}})
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
        '''.replace("{{parent}}", str(os.getpid()))])
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    assert pid_alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _wait_gone(child_pid, "the child outlived its SIGKILLed parent")


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_a_child_whose_parent_is_already_gone_exits(tmp_path: Path) -> None:
    code = "from shared.processes import die_with_parent; die_with_parent(1); print('still here')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and "still here" not in out.stdout


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_the_launcher_execs_the_command_and_it_dies_with_the_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleep.pid"
    # The parent starts `sh -c 'echo $$ > file; exec sleep 60'` through the launcher, then waits.
    parent_code = textwrap.dedent(
        f"""
        import subprocess, time
        from shared.processes import with_parent_death
        argv = ["sh", "-c", "echo $$ > {pid_file}; exec sleep 60"]
        subprocess.Popen(with_parent_death(argv), start_new_session=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the launched command never ran"
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    # exec kept the pid: the process is the command itself, not a launcher waiting for it. sh writes
    # the pid before its own exec, so wait for that exec.
    cmdline = Path(f"/proc/{child_pid}/cmdline")
    while cmdline.read_bytes().split(b"\0")[0] != b"sleep":
        assert time.monotonic() < deadline, f"pid {child_pid} never became sleep: {cmdline.read_bytes()!r}"
        time.sleep(0.05)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _wait_gone(child_pid, "the launched command outlived its SIGKILLed parent")


def test_with_parent_death_wraps_argv_for_this_process() -> None:
    argv = with_parent_death(["java", "-jar", "x.jar"])
    assert argv[:3] == [sys.executable, "-m", "shared.processes"]
    assert argv[3] == str(os.getpid()) and argv[4:] == ["java", "-jar", "x.jar"]


class _Alien:
    """Another program's HTTP server on a loopback port: it answers every GET with 200."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_another_process_answering_on_the_port_is_not_the_child_serving(tmp_path: Path) -> None:
    """The child never listens (as a service whose bind failed but has not exited yet); another process
    answers on its port: that answer must not count as the child being up."""
    alien = _Alien()
    log_path = tmp_path / "child.log"
    child = spawn_logged([sys.executable, "-c", "import time; time.sleep(60)"], os.environ, log_path)
    try:
        with pytest.raises(RuntimeError, match=f"port {alien.port} is answered by another process"):
            wait_until_serving(child, f"http://127.0.0.1:{alien.port}/", 3, "child", log_path)
    finally:
        stop_process_group(child, signal.SIGTERM)
        alien.close()


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_a_child_that_listens_is_serving(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path / "child.log"
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    child = spawn_logged(argv, os.environ, log_path, cwd=tmp_path)
    try:
        wait_until_serving(child, f"http://127.0.0.1:{port}/", 30, "child", log_path)
        assert child.poll() is None
    finally:
        stop_process_group(child, signal.SIGTERM)
