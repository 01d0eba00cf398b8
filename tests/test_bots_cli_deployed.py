"""``askbase bots start|restart|token|reconcile`` from a shell that talks to real Firestore (no
``FIRESTORE_EMULATOR_HOST``) refuse, before any Firestore or platform call, to register webhooks at a
loopback or plain-http base URL (the local defaults), or to run without a token key: one line saying what
to export, a non-zero exit, nothing changed. No emulators, no Google: the settings are an object and the
control plane a stand-in that records every call."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

import shared.cli.bots as bots_cli
from shared.cli.bots import bots_group
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOYED = {
    "telegram_webhook_url": "https://europe-west1-p.cloudfunctions.net/askbase-telegram-webhook",
    "discord_webhook_url": "https://europe-west1-p.cloudfunctions.net/askbase-discord-interactions",
    "token_key_secret": "askbase-token-key",
    "token_key": "",
}
REGISTERING = {
    "start": (["start", "b1"], None),
    "restart": (["restart", "b1"], None),
    "token": (["token", "b1"], "123:new-token\n"),
    "reconcile": (["reconcile"], None),
}


class RecordingControl:
    """Stands in for BotControl: records each call, answers with a running bot."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.registry = SimpleNamespace(list_bots=lambda: calls.append("list_bots") or [])

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return SimpleNamespace(
                id="b1",
                platform="telegram",
                status="running",
                desired="running",
                owner="ann@example.com",
                name="B",
                platform_info={"username": "b_bot"},
                last_error=None,
            )

        return call


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every control-plane construction and call the command makes; Firestore is never reached."""
    made: list[str] = []

    def control(settings: Settings) -> RecordingControl:
        made.append("BotControl")
        return RecordingControl(made)

    monkeypatch.setattr(bots_cli, "_control", control)
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    return made


def _run(monkeypatch: pytest.MonkeyPatch, command: str, **settings: Any) -> Result:
    chosen = Settings(_env_file=None, project_id="p", **{**DEPLOYED, **settings})
    monkeypatch.setattr(bots_cli, "get_settings", lambda: chosen)
    args, stdin = REGISTERING[command]
    return CliRunner().invoke(bots_group, args, input=stdin)


def _refused(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a message, no traceback
    [line] = result.output.strip().splitlines()
    assert "New token" not in line  # refused before the prompt: no token pasted for nothing
    return line


@pytest.mark.parametrize("command", sorted(REGISTERING))
def test_a_loopback_webhook_url_is_refused_before_any_call(
    command: str, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = _refused(_run(monkeypatch, command, telegram_webhook_url="http://127.0.0.1:8082"))
    assert calls == []
    assert "ASKBASE_TELEGRAM_WEBHOOK_URL" in line and "http://127.0.0.1:8082" in line
    assert "export ASKBASE_TELEGRAM_WEBHOOK_URL=$(pulumi stack output telegramWebhookBaseUrl)" in line
    assert "DISCORD" not in line  # only what is wrong
    assert "nothing was changed" in line


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8083",
        "https://localhost/",
        "https://app.localhost",
        "https://[::1]:8443",
        "https://127.1.2.3",
        "https://0.0.0.0",
        "http://hooks.example.com",  # not https: the platforms refuse it
        "hooks.example.com",
        "",
    ],
)
def test_each_kind_of_local_or_plain_url_is_refused(
    url: str, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = _refused(_run(monkeypatch, "start", discord_webhook_url=url))
    assert (
        calls == []
        and "export ASKBASE_DISCORD_WEBHOOK_URL=$(pulumi stack output discordWebhookBaseUrl)" in line
    )


def test_the_local_defaults_name_both_urls_and_the_token_key(
    calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's fresh shell: neither URL nor the key set (the settings' defaults)."""
    defaults = Settings(_env_file=None, project_id="p", token_key="", token_key_secret="")
    monkeypatch.setattr(bots_cli, "get_settings", lambda: defaults)
    line = _refused(CliRunner().invoke(bots_group, ["start", "b1"]))
    assert calls == []
    for wanted in (
        "ASKBASE_TELEGRAM_WEBHOOK_URL",
        "ASKBASE_DISCORD_WEBHOOK_URL",
        "export ASKBASE_TOKEN_KEY_SECRET=askbase-token-key",
    ):
        assert wanted in line


@pytest.mark.parametrize("command", sorted(REGISTERING))
def test_no_token_key_is_refused_before_any_call(
    command: str, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = _refused(_run(monkeypatch, command, token_key_secret=""))
    assert calls == [] and "export ASKBASE_TOKEN_KEY_SECRET=askbase-token-key" in line


@pytest.mark.parametrize("command", sorted(REGISTERING))
def test_deployed_settings_go_through(
    command: str, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(monkeypatch, command)
    assert result.exit_code == 0, result.output
    assert calls[0] == "BotControl" and len(calls) > 1


def test_a_token_key_in_the_environment_is_enough(calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``askbase bots rekey`` is documented with ASKBASE_TOKEN_KEY itself (docs/operations.md)."""
    result = _run(monkeypatch, "start", token_key_secret="", token_key="a" * 44)
    assert result.exit_code == 0, result.output


def test_against_the_emulators_the_local_defaults_are_right(
    calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8686")
    result = _run(
        monkeypatch,
        "start",
        telegram_webhook_url="http://127.0.0.1:8082",
        discord_webhook_url="http://127.0.0.1:8083",
    )
    assert result.exit_code == 0, result.output
    assert calls[:2] == ["BotControl", "start_bot"]


def test_stop_registers_nothing_and_is_not_refused(calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    local = Settings(_env_file=None, project_id="p", token_key="a" * 44)
    monkeypatch.setattr(bots_cli, "get_settings", lambda: local)
    result = CliRunner().invoke(bots_group, ["stop", "b1"])
    assert result.exit_code == 0, result.output
    assert calls == ["BotControl", "stop_bot"]


def test_the_hints_name_what_infra_really_creates() -> None:
    """The stack outputs and the secret id the message tells the operator to use exist in infra."""
    program = (ROOT / "infra" / "program.py").read_text()
    secrets = (ROOT / "infra" / "components" / "secrets.py").read_text()
    for output in bots_cli.WEBHOOK_STACK_OUTPUTS.values():
        assert f'"{output}":' in program, output
    assert f'TOKEN_KEY_SECRET_ID = "{bots_cli.TOKEN_KEY_SECRET_ID}"' in secrets
