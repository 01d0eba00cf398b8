"""Common setup mistakes end `askbase` with one line saying what to do and a non-zero exit, not a
traceback (one only with --log-level DEBUG): no Google credentials, a bucket that does not exist, no bot
token key. A stand-in command raises each as the real commands do; one real command shows it end to
end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from google.api_core.exceptions import NotFound
from google.auth.exceptions import DefaultCredentialsError

import shared.cli as cli_module
from shared.bots.secrets import TokenKeyError
from shared.emulators import EmulatorStack

ROOT = Path(__file__).parents[1]
RAISE: dict[str, BaseException] = {}


@click.command("boom")
def boom() -> None:
    raise RAISE["exc"]


def _main(monkeypatch: pytest.MonkeyPatch, exc: BaseException, *options: str) -> int:
    monkeypatch.setitem(cli_module._COMMANDS, "boom", (__name__, "boom", "raises"))
    monkeypatch.setitem(RAISE, "exc", exc)
    monkeypatch.setattr(sys, "argv", ["askbase", *options, "boom"])
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main()
    code = exit_info.value.code
    return code if isinstance(code, int) else 1


NO_BUCKET = NotFound(
    "GET http://127.0.0.1:4443/storage/v1/b/nobucket/o?projection=noAcl&prefix=x%2F: "
    "The specified bucket does not exist."
)
CASES = {
    "credentials": (
        DefaultCredentialsError("Your default credentials were not found."),
        ["gcloud auth application-default login", "askbase emulators up"],
    ),
    "bucket": (NO_BUCKET, ["bucket nobucket does not exist", "ASKBASE_BUCKET"]),
    "bucket (emulator)": (  # fake-gcs-server's 404 on uploading to a missing bucket says only "Not Found"
        NotFound("POST http://127.0.0.1:4443/upload/storage/v1/b/nobucket/o?uploadType=multipart: Not Found"),
        ["bucket nobucket does not exist", "ASKBASE_BUCKET"],
    ),
    "token key": (
        TokenKeyError("no bot token key"),
        ["ASKBASE_TOKEN_KEY", "ASKBASE_TOKEN_KEY_SECRET"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_setup_mistake_is_one_line_and_a_nonzero_exit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    exc, says = CASES[case]
    assert _main(monkeypatch, exc) != 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Traceback" not in out, out
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    for text in says:
        assert text in captured.err, captured.err


def test_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exc, _ = CASES["credentials"]
    assert _main(monkeypatch, exc, "--log-level", "DEBUG") != 0
    captured = capsys.readouterr()
    assert "Traceback" in captured.out + captured.err
    assert "gcloud auth application-default login" in captured.err


def test_another_error_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli_module._COMMANDS, "boom", (__name__, "boom", "raises"))
    monkeypatch.setitem(RAISE, "exc", ZeroDivisionError("a bug"))
    monkeypatch.setattr(sys, "argv", ["askbase", "boom"])
    with pytest.raises(ZeroDivisionError):
        cli_module.main()


def test_snapshots_list_without_credentials(tmp_path: Path) -> None:
    """The real command, with no credentials anywhere (nor the metadata server looked for)."""
    hidden = ("GOOGLE_APPLICATION_CREDENTIALS", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
    env = {k: v for k, v in os.environ.items() if k not in hidden and k != "STORAGE_EMULATOR_HOST"}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path), NO_GCE_CHECK="true")
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "snapshots", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert "gcloud auth application-default login" in done.stderr


@pytest.mark.parametrize("args", [["snapshots", "list"], ["export", "gs://nobucket-cli-errors/x/"]])
def test_a_missing_bucket_on_the_emulators(emulators: EmulatorStack, tmp_path: Path, args: list[str]) -> None:
    """Right after `askbase emulators up` no bucket exists yet: the commands name it."""
    env = {**os.environ, **emulators.env(), "ASKBASE_BUCKET": "nobucket-cli-errors"}
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert "bucket nobucket-cli-errors does not exist" in done.stderr and "ASKBASE_BUCKET" in done.stderr
