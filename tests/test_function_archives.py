"""The local stack's functions run from the deployed archive (shared/devstack/archives.py), not the tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from infra import archive, deps
from shared.devstack import archives
from shared.emulators import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return archives.prepare_function_source(tmp_path_factory.mktemp("fnsrc"), "webhooks")


def test_the_source_is_the_deployed_archive_unpacked_and_reused(source: Path, tmp_path: Path) -> None:
    spec = archive.archive_specs()["webhooks"]
    built = spec.build(tmp_path / "zips")
    assert source.name == built.path.stem  # webhooks-<hash16>: the object name pulumi up uploads
    unpacked = sorted(
        p.relative_to(source).as_posix()
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert unpacked == sorted(built.names)
    assert (source / "main.py").read_text() == archive.MAIN_PY
    assert (source / "requirements.txt").read_text() == spec.requirements
    # The webhooks set (deploy/requirements/webhooks.txt): no Chroma, onnxruntime or numpy.
    assert spec.requirements == deps.requirements_path("webhooks").read_text()
    assert not {"chromadb", "onnxruntime", "numpy"} & set(deps.read_pins(source / "requirements.txt"))
    # Same content, same directory: reused, not unpacked again.
    marker = source / "functions" / "reused.marker"
    marker.write_text("")
    try:
        assert archives.prepare_function_source(source.parent, "webhooks") == source
        assert marker.exists()
    finally:
        marker.unlink()
    with pytest.raises(ValueError, match="unknown function archive"):
        archives.prepare_function_source(tmp_path, "nope", requirements="")


# What the functions-framework console script does, in a subprocess of the same interpreter: its
# sys.path starts with the script's directory, not the cwd (hence the pop), then create_app loads main.py.
WHERE = """
import json, sys
sys.path.pop(0)
from functions_framework import create_app
create_app(sys.argv[1], "main.py")
print(json.dumps({m: sys.modules[m].__file__ for m in
                  ("main", "functions", "functions.telegram_webhook", "shared", "shared.bots.webhooks")}))
"""


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_functions_framework_serves_the_archive_copy(source: Path, tmp_path: Path) -> None:
    # A PYTHONPATH pointing at the checkout (the shadowing case) is replaced, not extended.
    env = archives.function_env(source, {**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    assert env["PYTHONPATH"] == str(source)

    where = subprocess.run(
        [sys.executable, "-c", WHERE, "telegram_webhook"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert where.returncode == 0, where.stderr
    for module, path in json.loads(where.stdout.strip().splitlines()[-1]).items():
        assert Path(path).is_relative_to(source), f"{module} imported from {path}"

    # The served process itself: it answers as the Telegram function, and the bytecode it wrote on
    # import is in the unpacked tree (the archive holds no __pycache__), so that is where it imported from.
    for pyc in source.rglob("__pycache__"):
        for f in pyc.iterdir():
            f.unlink()
    port = free_port()
    log = tmp_path / "function.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            archives.function_command(source, "telegram_webhook", port),
            cwd=source,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status, body = _get_when_up(f"http://127.0.0.1:{port}/123", proc, log)
        assert status == 405 and body == {"ok": False, "error": "method not allowed"}
        for module in ("main", "functions/telegram_webhook", "shared/bots/webhooks", "shared/config"):
            parent, name = (source / f"{module}.py").parent, Path(module).name
            assert list((parent / "__pycache__").glob(f"{name}.*.pyc")), (
                f"{module} not imported from {source}"
            )
        # Lazy: the other entry points were not imported.
        assert not list((source / "functions" / "__pycache__").glob("scrape.*.pyc"))
        assert not list((source / "functions" / "__pycache__").glob("discord_interactions.*.pyc"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _get_when_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"functions-framework exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
