"""`askbase emulators up|status|down` as a user runs it: detached processes that really stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.processes import pid_alive

pytestmark = pytest.mark.emulators


def _askbase(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")
    }
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.__main__", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_up_status_down(tmp_path: Path) -> None:
    up = _askbase("emulators", "up", "--project", "askbase-cli-test", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert "export FIRESTORE_EMULATOR_HOST=127.0.0.1:" in up.stdout
    state = json.loads((tmp_path / ".askbase" / "emulators.json").read_text())
    pids = [e["pid"] for e in state["emulators"]]
    try:
        assert len(pids) == 3 and all(pid_alive(p) for p in pids)
        status = _askbase("emulators", "status", cwd=tmp_path)
        assert status.returncode == 0
        assert status.stdout.count("running") == 3
        again = _askbase("emulators", "up", cwd=tmp_path)
        assert again.returncode != 0 and "already running" in again.stderr
    finally:
        down = _askbase("emulators", "down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in pids)
    status = _askbase("emulators", "status", cwd=tmp_path)
    assert status.returncode == 1 and "not running" in status.stdout


def test_missing_emulator_fails_fast_with_install_hint(tmp_path: Path) -> None:
    env = dict(os.environ, ASKBASE_GCLOUD_PLATFORM=str(tmp_path / "no-sdk-here"))
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli.__main__", "emulators", "up"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "apt-get install" in out.stderr and "firestore" in out.stderr.lower()
