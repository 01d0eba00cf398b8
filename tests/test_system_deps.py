"""scripts/system-deps.sh on a stock Debian: the Debian packages are installed by their own apt-get call
(the Google Cloud CLI emulator packages are not in Debian's repositories, and one call with both
installed nothing), and when the Google packages cannot be located it says how to add Google's apt
repository, as root and not. `--dev` (what scripts/dev.sh runs) wants only what askbase dev needs.

apt-get, apt-cache, id and npm are stand-ins on a PATH of their own; nothing is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "system-deps.sh"
TOOLS = ("bash", "ls", "sed", "grep", "cat", "dirname", "env")
STOCK_DEBIAN = """#!/bin/sh
echo "$0 $*" >> "$LOG"
for arg in "$@"; do
  case "$arg" in google-cloud-cli-*) echo "E: Unable to locate package $arg" >&2; exit 100 ;; esac
done
exit 0
"""


def _run(tmp_path: Path, uid: int, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, body in {
        "apt-get": STOCK_DEBIAN,
        "apt-cache": STOCK_DEBIAN,
        "id": f"#!/bin/sh\necho {uid}\n",
        "npm": '#!/bin/sh\necho "npm $*" >> "$LOG"\n',
    }.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        "PATH": str(bin_dir),
        "LOG": str(log),
        "HOME": str(tmp_path),
        "ASKBASE_GCLOUD_PLATFORM": str(tmp_path / "no-sdk"),  # no emulator installed
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return done, calls


def _installs(calls: list[str]) -> list[list[str]]:
    return [call.split()[1:] for call in calls if " install " in f" {call} " and "apt-get" in call]


REPO_HINT = "https://packages.cloud.google.com/apt cloud-sdk main"
KEY_HINT = "https://packages.cloud.google.com/apt/doc/apt-key.gpg"


def test_as_root_debian_packages_are_installed_apart_and_the_repository_is_explained(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, 0)
    installs = _installs(calls)
    debian = [call for call in installs if "openjdk-17-jre-headless" in call]
    assert debian and not any(p.startswith("google-cloud-cli") for p in debian[0]), calls
    assert not any("google-cloud-cli-firestore-emulator" in call for call in debian), calls
    assert REPO_HINT in done.stderr and KEY_HINT in done.stderr, done.stderr


def test_not_root_says_what_to_install_and_how_to_add_the_repository(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, 1000)
    assert not _installs(calls)
    assert "sudo apt-get install openjdk-17-jre-headless" in done.stderr
    assert REPO_HINT in done.stderr and KEY_HINT in done.stderr, done.stderr


def test_dev_wants_only_what_dev_needs(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, 1000, "--dev")
    for test_only in ("chromium", "postgresql-doc-15", "npm"):
        assert test_only not in done.stderr, done.stderr
    assert not [call for call in calls if call.startswith("npm")]
    assert "openjdk-17-jre-headless" in done.stderr and "google-cloud-cli-firestore-emulator" in done.stderr


def test_dev_sh_asks_for_the_dev_set() -> None:
    assert "scripts/system-deps.sh --dev" in (ROOT / "scripts" / "dev.sh").read_text()
