"""Reconcile: running bots get their registrations back, stopped bots stay stopped, failures recorded."""

from __future__ import annotations

import pytest

from services.botrunner.app import RECONCILE_THREAD_KEY, create_app
from shared.bots.control import BotControl, Caller
from shared.bots.platforms.telegram_api import TelegramClient
from shared.bots.reconcile import reconcile_all
from shared.bots.registry import BotRegistry
from shared.bots.secrets import webhook_secret_matches
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings, control.
pytest_plugins = ["tests.fakes.bot_fixtures"]
pytestmark = pytest.mark.emulators

ANN = Caller(user="ann@example.com")


def _telegram(control: BotControl, tg: FakeTelegram, start: bool) -> tuple[str, str]:
    token = tg.add_bot()
    bot = control.create_bot(ANN, {"platform": "telegram", "name": "t", "token": token})
    if start:
        assert control.start_bot(ANN, bot.id).status == "running"
    return bot.id, token


def test_lost_webhook_is_restored(control: BotControl, tg: FakeTelegram) -> None:
    bot_id, token = _telegram(control, tg, start=True)
    healthy_id, _ = _telegram(control, tg, start=True)
    tg.lose_webhook(token)
    report = reconcile_all(control)
    assert report.checked == 2 and report.ok == 1
    assert report.repaired == {bot_id: "webhook set"}
    hook = tg.webhook(token)
    assert hook is not None and hook.url.endswith(f"/{bot_id}")
    assert hook.secret_token == control.registry.webhook_secret(control.registry.get_bot(bot_id))
    assert control.activity(ANN, bot_id).items[0].kind == "reconciled"
    # A second run finds nothing to do and makes no platform writes.
    writes = len(tg.calls_for(method="setWebhook"))
    assert reconcile_all(control).ok == 2
    assert len(tg.calls_for(method="setWebhook")) == writes
    assert control.registry.get_bot(healthy_id).status == "running"


def test_a_lost_discord_command_is_registered_again(
    control: BotControl, dc: FakeDiscord, discord_keys: dict[str, str]
) -> None:
    app = dc.add_application()
    discord_keys["*"] = app.public_key
    data = {"platform": "discord", "name": "d", "application_id": app.id, "public_key": app.public_key}
    bot = control.create_bot(ANN, {**data, "bot_token": app.bot_token})
    assert control.start_bot(ANN, bot.id).status == "running"
    assert [c["name"] for c in dc.commands(app.id)] == ["ask", "mode", "forget"]
    dc.lose_commands(app.id)
    endpoint_writes = len([c for c in dc.calls if c.method == "PATCH"])

    report = reconcile_all(control)
    assert report.repaired == {bot.id: "commands registered"}
    assert [c["name"] for c in dc.commands(app.id)] == ["ask", "mode", "forget"]
    assert len([c for c in dc.calls if c.method == "PATCH"]) == endpoint_writes  # the endpoint was fine
    assert reconcile_all(control).ok == 1  # and now there is nothing to do

    # A bot started before /mode existed has /ask only: the next reconcile adds /mode.
    dc.app(app.id).commands = [c for c in dc.commands(app.id) if c["name"] == "ask"]
    assert reconcile_all(control).repaired == {bot.id: "commands registered"}
    assert [c["name"] for c in dc.commands(app.id)] == ["ask", "mode", "forget"]


def test_a_pass_starts_no_check_after_its_budget(control: BotControl, tg: FakeTelegram) -> None:
    """A platform slow to answer makes every check wait on its timeouts; a pass over many bots would
    outlast botrunner's request timeout. Past its budget a pass starts no check and counts the rest."""
    tokens = [_telegram(control, tg, start=True)[1] for _ in range(3)]
    for token in tokens:
        tg.lose_webhook(token)
    times = iter([0.0, 0.0])  # the deadline, then the first check; every later look is past the budget
    report = reconcile_all(control, max_workers=1, budget_seconds=60, clock=lambda: next(times, 61.0))
    assert (report.checked, len(report.repaired), report.unchecked) == (1, 1, 2)
    assert report.to_public()["unchecked"] == 2
    assert sum(tg.webhook(token) is not None for token in tokens) == 1
    # The next pass, within its budget, reaches the two left over.
    report = reconcile_all(control)
    assert (report.checked, len(report.repaired), report.unchecked) == (3, 2, 0)
    assert all(tg.webhook(token) is not None for token in tokens)


def test_stopped_bots_stay_stopped(control: BotControl, tg: FakeTelegram) -> None:
    ours_id, ours = _telegram(control, tg, start=True)
    control.stop_bot(ANN, ours_id)
    # Someone re-set our webhook behind our back (e.g. a stale instance): it is removed.
    bot = control.registry.get_bot(ours_id)
    TelegramClient(ours, tg.base_url).set_webhook(control.webhook_url(bot), "x")
    # The owner pointed another stopped bot at their own server: left alone.
    foreign_id, foreign = _telegram(control, tg, start=False)
    TelegramClient(foreign, tg.base_url).set_webhook("https://example.org/hook", "x")

    report = reconcile_all(control)
    assert report.repaired == {ours_id: "webhook deleted"}
    assert tg.webhook(ours) is None
    assert tg.webhook(foreign).url == "https://example.org/hook"
    assert control.registry.get_bot(ours_id).status == "stopped"
    assert control.registry.get_bot(foreign_id).status == "stopped"


def test_failures_are_recorded_and_recovered(control: BotControl, tg: FakeTelegram) -> None:
    bot_id, token = _telegram(control, tg, start=True)
    tg.lose_webhook(token)
    tg.fail_next("setWebhook", status=500, times=10)
    report = reconcile_all(control)
    assert bot_id in report.failed
    bot = control.registry.get_bot(bot_id)
    assert bot.status == "error" and bot.desired == "running" and "setWebhook" in bot.last_error
    assert control.activity(ANN, bot_id).items[0].kind == "error"
    # Same failure again: status stays, the activity log is not spammed.
    tg.fail_next("setWebhook", status=500, times=10)
    reconcile_all(control)
    assert [e.kind for e in control.activity(ANN, bot_id).items].count("error") == 1
    # The platform is back: the next run repairs and clears the error.
    tg._failures.clear()
    report = reconcile_all(control)
    assert report.repaired == {bot_id: "webhook set"}
    bot = control.registry.get_bot(bot_id)
    assert bot.status == "running" and bot.last_error is None


def test_full_restart_brings_running_bots_back(
    bot_settings, control: BotControl, tg: FakeTelegram, dc: FakeDiscord, discord_keys: dict[str, str]
) -> None:
    running = [_telegram(control, tg, start=True) for _ in range(2)]
    stopped_id, stopped_token = _telegram(control, tg, start=False)
    app = dc.add_application()
    discord_keys["*"] = app.public_key
    dbot = control.create_bot(
        ANN,
        {
            "platform": "discord",
            "name": "d",
            "application_id": app.id,
            "public_key": app.public_key,
            "bot_token": app.bot_token,
        },
    )
    control.start_bot(ANN, dbot.id)
    # A crash mid-start left one bot "starting"; the platforms lost every registration.
    stuck_id, stuck_token = _telegram(control, tg, start=False)
    control.registry.set_desired(stuck_id, "running")
    for _, token in running:
        tg.lose_webhook(token)
    dc.lose_endpoint(app.id)

    # Every process is gone; a fresh botrunner (new clients, new Firestore connection) starts.
    fresh = BotControl(bot_settings, BotRegistry.from_settings(bot_settings))
    new_app = create_app(bot_settings, control=fresh)
    new_app.extensions[RECONCILE_THREAD_KEY].join(60)

    for bot_id, token in [*running, (stuck_id, stuck_token)]:
        assert tg.webhook(token) is not None and tg.webhook(token).url.endswith(bot_id)
        assert fresh.registry.get_bot(bot_id).status == "running"
    assert app.interactions_endpoint_url and app.interactions_endpoint_url.endswith(dbot.id)
    assert fresh.registry.get_bot(dbot.id).status == "running"
    assert tg.webhook(stopped_token) is None
    assert fresh.registry.get_bot(stopped_id).status == "stopped"
    # Running bots answer again: Telegram can deliver to the restored webhook with the right secret.
    bot_id, token = running[0]
    assert tg.send_update(token, tg.message_update(7, "hi")).status_code == 200


# --- the webhook secret Telegram holds ------------------------------------------------------------
# getWebhookInfo shows the URL, never the secret: after a token replacement whose re-registration did
# not finish, only the record of the secret Telegram was last given shows that it still sends the old
# one (and the webhook refuses every update with 403).


def _holds_current_secret(control: BotControl, tg: FakeTelegram, token: str, bot_id: str) -> bool:
    """Whether Telegram sends the secret the webhook function accepts (its stored hash)."""
    hook = tg.webhook(token)
    bot = control.registry.get_bot(bot_id)
    return hook is not None and webhook_secret_matches(bot_id, hook.secret_token, bot.webhook_secret_hash)


def test_a_replacement_that_died_after_its_commit_is_registered_by_reconcile(
    control: BotControl, tg: FakeTelegram
) -> None:
    bot_id, old = _telegram(control, tg, start=True)
    new = tg.reissue_token(old)  # @BotFather /revoke
    # The owner's replacement stored the new token and secret; botrunner died before setWebhook.
    assert control.registry.replace_token(bot_id, new) is not None
    assert not _holds_current_secret(control, tg, new, bot_id)

    report = reconcile_all(control)
    assert report.repaired == {bot_id: "webhook set"} and report.failed == {}
    assert _holds_current_secret(control, tg, new, bot_id)
    assert control.registry.get_bot(bot_id).status == "running"
    assert tg.send_update(new, tg.message_update(7, "hi")).status_code == 200
    # Recorded: the next run only checks.
    writes = len(tg.calls_for(method="setWebhook"))
    assert reconcile_all(control).ok == 1
    assert len(tg.calls_for(method="setWebhook")) == writes


def test_a_replacement_whose_delete_webhook_failed_is_registered_by_reconcile(
    control: BotControl, tg: FakeTelegram
) -> None:
    bot_id, old = _telegram(control, tg, start=True)
    new = tg.reissue_token(old)
    tg.fail_next("deleteWebhook", status=500, times=3)  # every attempt of the forced re-registration
    replaced = control.replace_token(ANN, bot_id, {"token": new})
    assert replaced.status == "error" and "deleteWebhook" in replaced.last_error
    assert not _holds_current_secret(control, tg, new, bot_id)  # the URL matches; the secret does not

    report = reconcile_all(control)
    assert report.repaired == {bot_id: "webhook set"} and report.failed == {}
    assert _holds_current_secret(control, tg, new, bot_id)
    bot = control.registry.get_bot(bot_id)
    assert bot.status == "running" and bot.last_error is None
    assert control.activity(ANN, bot_id).items[0].message == "Repaired: webhook set."


def test_a_running_bot_without_a_record_is_registered_once(control: BotControl, tg: FakeTelegram) -> None:
    """Bots started before the record existed: the first reconcile sets their webhook again (without
    deleting it first), then leaves them alone."""
    from google.cloud import firestore

    bot_id, token = _telegram(control, tg, start=True)
    control.registry.db.collection("bots").document(bot_id).update(
        {"webhook_registered_hash": firestore.DELETE_FIELD}
    )
    deletes = len(tg.calls_for(token, "deleteWebhook"))
    assert reconcile_all(control).repaired == {bot_id: "webhook set"}
    assert len(tg.calls_for(token, "deleteWebhook")) == deletes
    assert _holds_current_secret(control, tg, token, bot_id)
    assert reconcile_all(control).ok == 1
