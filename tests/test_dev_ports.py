"""A taken port or a running `askbase dev` is found before dev touches anything: a clear message and a
non-zero exit, no traceback, the running stack's working directory left alone. Nothing here starts a
process: a dev that got past its checks stops at the first thing it would start."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from shared.cli import dev
from shared.devstack import workdir as wd
from shared.devstack.stack import LocalStack


class WouldStart(Exception):
    """Raised where dev would start the stack."""


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise WouldStart

    monkeypatch.setattr(LocalStack, "start_emulators", refuse)


def _free_base() -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        if base + 5 < 65536 and all(_bindable(base + offset) for offset in range(6)):
            return base
    raise RuntimeError("no six free consecutive ports")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def base() -> int:
    return _free_base()


@pytest.fixture
def running(tmp_path: Path) -> Path:
    """The working directory of a dev that is running: its files must survive a second dev."""
    workdir = tmp_path / "dev"
    workdir.mkdir()
    (workdir / wd.MARKER).write_text(wd.MARKER_TEXT)
    (workdir / "logs").mkdir()
    (workdir / "logs" / "qa.log").write_text("the running stack's log")
    return workdir


def _listen(port: int) -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def _dev(*args: str) -> Result:
    return CliRunner().invoke(dev.dev_command, list(args))


@pytest.mark.parametrize("offset", [0, 2, 4, 5])  # chat, another service, scrape, the sample site
def test_a_taken_port_is_refused_before_anything_is_touched(base: int, running: Path, offset: int) -> None:
    for _ in _listen(base + offset):
        result = _dev("--port", str(base), "--workdir", str(running))
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a message, not a traceback
    assert f"port {base + offset} is in use (another askbase dev?): use --port" in result.output
    assert (running / "logs" / "qa.log").read_text() == "the running stack's log"


def test_a_second_dev_on_the_same_workdir_is_refused(base: int, running: Path) -> None:
    """The first dev holds the working directory's lock (as here) for as long as it runs."""
    with open(running / wd.LOCK_NAME, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"{os.getpid()}\n")
        held.flush()
        result = _dev("--port", str(base), "--workdir", str(running))
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert "another askbase dev" in result.output and str(os.getpid()) in result.output
    assert (running / "logs" / "qa.log").read_text() == "the running stack's log"


def test_the_lock_is_released_when_dev_ends(base: int, running: Path) -> None:
    assert isinstance(_dev("--port", str(base), "--workdir", str(running)).exception, WouldStart)
    again = _dev("--port", str(base), "--workdir", str(running))
    assert isinstance(again.exception, WouldStart), again.output  # not "another askbase dev"
    assert not (running / "logs").exists()  # askbase's own directory, not held: emptied


@pytest.mark.parametrize(
    "option", [["--port", "9000"], ["--scrape-every", "60"], ["--reconcile-every", "60"]]
)
def test_production_shape_refuses_the_options_it_cannot_honour(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, option: list[str]
) -> None:
    """--production-shape picks free ports and schedules nothing: these options would be ignored."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise WouldStart

    monkeypatch.setattr(dev, "_production_shape", refuse)
    result = _dev("--production-shape", "--workdir", str(tmp_path / "dev"), *option)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"{option[0]} cannot be used with --production-shape" in result.output
    assert not (tmp_path / "dev").exists()  # refused before anything was touched
    assert isinstance(_dev("--production-shape", "--workdir", str(tmp_path / "dev")).exception, WouldStart)
