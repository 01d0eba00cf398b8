"""The README's run command: `askbase dev` brings the whole stack up, crawls the sample site, answers
on the chat port, and leaves nothing running when it stops."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.emulators


def _ephemeral_low() -> int:
    """The kernel's lowest ephemeral port: ports from there on may be taken by any outgoing connection."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _free_base() -> int:
    # Below the ephemeral range, so no connection's local port can take one after the check.
    high = max(20_000, min(40_000, _ephemeral_low() - 10))
    for _ in range(50):
        base = random.randint(20_000, high)
        try:
            for offset in range(6):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no six free consecutive ports")


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_dev_serves_the_sample_site_answers_and_stops_cleanly(tmp_path: Path) -> None:
    base = _free_base()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "dev", "--port", str(base)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: a suite started in the background by a shell without job control
        # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stop: Ctrl+C" in line:  # the last line of the ready message
                break
        output = "".join(lines)
        assert "askbase is running" in output, output
        assert re.search(r"index ready: snapshot \S+", output), output

        chat = f"http://127.0.0.1:{base}"
        web = httpx.Client(base_url=chat, timeout=30)
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', web.get("/signin").text).group(1)
        web.post("/signin/dev", data={"email": "dev@example.com", "csrf_token": csrf, "next": "/"})
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', web.get("/").text).group(1)
        answer = web.post(
            "/api/ask", json={"question": "How do I deploy askbase?"}, headers={"X-CSRF-Token": csrf}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["sources"], "the sample site's pages should be cited"

        # The CLI reaches the running stack after sourcing the env file dev wrote (it holds the token
        # key: only its owner may read it), and `askbase emulators status` says dev runs them.
        sourced = re.search(r"CLI: source (\S+)", output)
        assert sourced, output
        env_file = Path(sourced.group(1))
        assert env_file.stat().st_mode & 0o777 == 0o600
        for args, expect in ((["snapshots", "list"], r"(?m)^\* \S+"), (["bots", "list"], r"")):
            cli = subprocess.run(
                ["bash", "-c", f'source "{env_file}" && exec "$0" -m shared.cli "$@"', sys.executable, *args],
                cwd=tmp_path,
                env={k: v for k, v in env.items() if not k.startswith("ASKBASE_")},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert cli.returncode == 0, (args, cli.stdout, cli.stderr)
            assert re.search(expect, cli.stdout), (args, cli.stdout)
        status = subprocess.run(
            [sys.executable, "-m", "shared.cli", "emulators", "status"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0 and "askbase dev" in status.stdout, status.stdout + status.stderr
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl+C sends
        try:
            rest, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
            pytest.fail("askbase dev did not stop within 90 s of Ctrl+C:\n" + "".join(lines) + rest)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopping every process" in rest
    time.sleep(1)
    assert all(_closed(base + offset) for offset in range(6))
