"""``askbase bots ...`` and ``askbase bot poll`` on the emulators, the fake Telegram and a stand-in qa."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from shared.bots.control import BotControl, Caller
from shared.cli.bots import bot_group, bots_group, run_poll
from shared.config import get_settings
from tests.fakes._server import RecordingEndpoint
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.emulators

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings, control.
pytest_plugins = ["tests.fakes.bot_fixtures"]

ANN = Caller(user="ann@example.com")


@pytest.fixture
def cli_env(bot_settings, monkeypatch: pytest.MonkeyPatch):
    """Make get_settings() (what the commands read) match bot_settings."""
    for field in ("telegram_api_base", "discord_api_base", "telegram_webhook_url", "discord_webhook_url"):
        monkeypatch.setenv(f"ASKBASE_{field.upper()}", getattr(bot_settings, field))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_list_start_stop_logs(cli_env, control: BotControl, tg: FakeTelegram) -> None:
    token = tg.add_bot(username="cli_bot")
    bot = control.create_bot(ANN, {"platform": "telegram", "name": "Cli", "token": token})
    runner = CliRunner()
    listed = runner.invoke(bots_group, ["list"])
    assert listed.exit_code == 0 and bot.id in listed.output and "stopped" in listed.output
    assert token not in listed.output
    started = runner.invoke(bots_group, ["start", bot.id])
    assert started.exit_code == 0, started.output
    assert tg.webhook(token) is not None
    as_json = json.loads(runner.invoke(bots_group, ["list", "--json", "--owner", "ann@example.com"]).output)
    assert as_json[0]["status"] == "running"
    assert runner.invoke(bots_group, ["stop", bot.id]).exit_code == 0
    assert tg.webhook(token) is None
    logs = runner.invoke(bots_group, ["logs", bot.id, "--all", "--limit", "1"])
    assert logs.exit_code == 0 and [line.split()[1] for line in logs.output.splitlines()] == [
        "stopped",
        "started",
        "created",
    ]
    missing = runner.invoke(bots_group, ["start", "nope"])
    assert missing.exit_code != 0 and "No such bot" in missing.output
    assert runner.invoke(bots_group, ["reconcile"]).exit_code == 0


def test_list_and_logs_need_no_token_key(
    cli_env, control: BotControl, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading shows no secret: an operator without the token key can still list bots and read logs;
    commands that register with the platform still need it (and say so)."""
    bot = control.create_bot(
        ANN, {"platform": "telegram", "name": "Cli", "token": tg.add_bot(username="k_bot")}
    )
    monkeypatch.delenv("ASKBASE_TOKEN_KEY", raising=False)
    monkeypatch.delenv("ASKBASE_TOKEN_KEY_SECRET", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    listed = runner.invoke(bots_group, ["list"])
    assert listed.exit_code == 0 and bot.id in listed.output, listed.output
    logs = runner.invoke(bots_group, ["logs", bot.id])
    assert logs.exit_code == 0 and "created" in logs.output, logs.output
    unknown = runner.invoke(bots_group, ["logs", "nope"])
    assert unknown.exit_code != 0 and "No such bot" in unknown.output
    started = runner.invoke(bots_group, ["start", bot.id])
    assert started.exit_code != 0 and "TOKEN_KEY" in repr(started.exception) + started.output


def test_token_command_reads_the_token_from_a_prompt_never_argv(
    cli_env, control: BotControl, tg: FakeTelegram
) -> None:
    old = tg.add_bot(username="cli_bot")
    bot = control.create_bot(ANN, {"platform": "telegram", "name": "Cli", "token": old})
    control.start_bot(ANN, bot.id)
    new = tg.reissue_token(old)
    result = CliRunner().invoke(bots_group, ["token", bot.id], input=new + "\n")
    assert result.exit_code == 0, result.output
    assert new not in result.output and "running" in result.output
    assert control.registry.decrypt_token(control.registry.get_bot(bot.id)) == new
    assert tg.webhook(new) is not None
    wrong = CliRunner().invoke(bots_group, ["token", bot.id], input=tg.add_bot(username="x_bot") + "\n")
    assert wrong.exit_code != 0 and "belongs to @x_bot" in wrong.output
    missing = CliRunner().invoke(bots_group, ["token", "nope"], input=new + "\n")
    assert missing.exit_code != 0 and "No such bot" in missing.output


def test_poll_refuses_a_running_bot_without_stop(cli_env, control: BotControl, tg: FakeTelegram) -> None:
    token = tg.add_bot()
    bot = control.create_bot(ANN, {"platform": "telegram", "name": "P", "token": token})
    control.start_bot(ANN, bot.id)
    result = CliRunner().invoke(bot_group, ["poll", bot.id])
    assert result.exit_code != 0 and "webhook mode" in result.output


def test_poll_answers_through_the_worker_path(
    cli_env, monkeypatch: pytest.MonkeyPatch, control: BotControl, tg: FakeTelegram
) -> None:
    asked: list[dict] = []

    def qa(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        asked.append({"path": path, "service": headers.get("x-askbase-service"), **json.loads(body)})
        if path == "/api/bot-votes":
            return 200, {"answer_id": "a" * 32, "vote": "up", "comment": None}
        return 200, {"answer": "Deploy with askbase deploy.", "sources": [], "conversation_id": "c1"}

    with RecordingEndpoint(qa) as qa_server:
        monkeypatch.setenv("ASKBASE_QA_URL", qa_server.url)
        get_settings.cache_clear()
        settings = get_settings()
        token = tg.add_bot(username="poll_bot")
        bot = control.create_bot(ANN, {"platform": "telegram", "name": "P", "token": token})
        control.start_bot(ANN, bot.id)
        tg.queue_update(token, tg.message_update(99, "How do I deploy?"))
        done: list[int] = []
        thread = threading.Thread(
            target=lambda: done.append(run_poll(settings, bot.id, stop_webhook=True, max_updates=2)),
            daemon=True,
        )
        thread.start()
        sent = tg.wait_for_messages(token, 1, timeout=30)
        # 👍 under the answer: the vote goes to qa, and the button's spinner is answered by API call.
        [row] = sent[0]["reply_markup"]["inline_keyboard"]
        tg.queue_update(token, tg.callback_update(sent[0], row[0]["callback_data"], user_id=99))
        thread.join(30)
    assert done == [2]
    [vote] = [a for a in asked if a["path"] == "/api/bot-votes"]
    assert (vote["bot_id"], vote["voter"], vote["vote"]) == (bot.id, "telegram:99", "up")
    [answered] = tg.calls_for(token, "answerCallbackQuery")
    assert answered.params["text"] == "Thanks for the feedback!"
    assert asked[0]["path"] == "/api/ask" and asked[0]["service"] == "botrunner"
    assert asked[0]["question"] == "How do I deploy?" and asked[0]["bot_id"] == bot.id
    assert str(sent[0]["chat_id"]) == "99" and "askbase deploy" in sent[0]["text"]
    # --stop really stopped webhook mode, so reconcile will not fight the poller.
    assert control.registry.get_bot(bot.id).desired == "stopped"


def test_poll_takes_over_from_a_webhook_set_elsewhere(cli_env, control: BotControl, tg: FakeTelegram) -> None:
    """Telegram refuses getUpdates while any webhook is set (409 Conflict). A webhook askbase set is
    refused above unless --stop; one set outside askbase is removed by python-telegram-bot's polling
    start-up (deleteWebhook), and the queued update is then answered."""
    from shared.bots.platforms.telegram_api import TelegramClient

    settings = get_settings()
    token = tg.add_bot(username="takeover_bot")
    bot = control.create_bot(ANN, {"platform": "telegram", "name": "T", "token": token})
    TelegramClient(token, settings.telegram_api_base).set_webhook("https://elsewhere.example/hook", "s" * 32)
    tg.queue_update(token, tg.message_update(42, "/help"))
    done: list[int] = []
    thread = threading.Thread(
        target=lambda: done.append(run_poll(settings, bot.id, stop_webhook=False, max_updates=1)), daemon=True
    )
    thread.start()
    sent = tg.wait_for_messages(token, 1, timeout=30)
    thread.join(30)
    assert done == [1] and str(sent[0]["chat_id"]) == "42"
