"""The control-plane service (shared/bots/control.py) against the emulators and the fake platforms."""

from __future__ import annotations

import re
import threading

import pytest

from shared.bots import chat_switch
from shared.bots.answer_modes import AnswerMode
from shared.bots.buttons import INTERACTIONS, ButtonStateStore, state_id_for_job
from shared.bots.control import BadRequest, BotControl, Caller, Conflict, NotFound
from shared.bots.reconcile import reconcile_all
from shared.bots.registry import Bot, BotRegistry
from shared.bots.secrets import webhook_secret_matches
from tests.fakes._server import RecordingEndpoint
from tests.fakes.discord_api import FakeApplication, FakeDiscord
from tests.fakes.telegram_api import SECRET_HEADER, FakeTelegram

pytestmark = pytest.mark.emulators

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings, control.
pytest_plugins = ["tests.fakes.bot_fixtures"]

ANN = Caller(user="ann@example.com", email="ann@example.com")
BOB = Caller(user="bob@example.com", email="bob@example.com")
ADMIN = Caller(user="root@example.com", admin=True)


def _secret_matches(bot: Bot, presented: str) -> bool:
    """Whether ``presented`` is the secret behind the bot's stored hash: the ingress's check."""
    return webhook_secret_matches(bot.id, presented, bot.webhook_secret_hash)


def telegram_bot(control: BotControl, tg: FakeTelegram, caller: Caller = ANN, **extra):
    token = tg.add_bot(username="docs_bot")
    bot = control.create_bot(
        caller, {"platform": "telegram", "name": "Docs", "token": token, "model": "extractive", **extra}
    )
    return bot, token


def discord_bot(
    control: BotControl, dc: FakeDiscord, keys: dict[str, str], caller: Caller = ANN
) -> tuple[object, FakeApplication]:
    app = dc.add_application()
    keys["*"] = app.public_key
    bot = control.create_bot(
        caller,
        {
            "platform": "discord",
            "name": "Docs",
            "application_id": app.id,
            "public_key": app.public_key,
            "bot_token": app.bot_token,
        },
    )
    keys[bot.id] = app.public_key
    return bot, app


# --- registration -----------------------------------------------------------------------------


def test_telegram_bad_token_is_a_clear_400(control: BotControl, tg: FakeTelegram) -> None:
    unknown = "1234567890:AAHk1H6tK7cbbX5fL9m3o0nV8rQ2wYzAbCd"
    with pytest.raises(BadRequest, match="Telegram rejected this token"):
        control.create_bot(ANN, {"platform": "telegram", "name": "x", "token": unknown})
    with pytest.raises(BadRequest, match="Telegram rejected this token"):
        control.create_bot(ANN, {"platform": "telegram", "name": "x", "token": "../../etc?x=1"})
    assert control.registry.list_bots() == []


def test_telegram_registration_records_identity(control: BotControl, tg: FakeTelegram) -> None:
    bot, _ = telegram_bot(control, tg, system_prompt="Answer in French.")
    assert bot.platform_info["username"] == "docs_bot"
    assert bot.status == "stopped" and bot.desired == "stopped"
    assert bot.system_prompt == "Answer in French."
    with pytest.raises(Conflict):
        control.create_bot(
            ANN, {"platform": "telegram", "name": "again", "token": control.registry.decrypt_token(bot)}
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"platform": "irc", "name": "x"}, "platform"),
        ({"platform": "telegram", "name": "", "token": "1:a"}, "name"),
        ({"platform": "telegram", "name": "x" * 65, "token": "1:a"}, "name"),
        ({"platform": "telegram", "name": "x", "model": "gpt", "token": "1:a"}, "model"),
        ({"platform": "telegram", "name": "x"}, "token"),
        ({"platform": "discord", "name": "x", "application_id": "abc"}, "application_id"),
    ],
)
def test_bad_input_is_400(control: BotControl, data: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        control.create_bot(ANN, data)


def test_discord_registration_checks_the_application(control: BotControl, dc: FakeDiscord) -> None:
    app, other = dc.add_application(), dc.add_application()
    base = {"platform": "discord", "name": "d"}
    good = {"application_id": app.id, "public_key": app.public_key, "bot_token": app.bot_token}
    with pytest.raises(BadRequest, match="different application"):
        control.create_bot(ANN, {**base, **good, "application_id": other.id})
    with pytest.raises(BadRequest, match="public key"):
        control.create_bot(ANN, {**base, **good, "public_key": other.public_key})
    with pytest.raises(BadRequest, match="Discord rejected"):
        control.create_bot(ANN, {**base, **good, "bot_token": other.bot_token[:-4] + "AAAA"})
    bot = control.create_bot(ANN, {**base, **good})
    assert bot.platform_info["application_id"] == app.id
    assert bot.platform_info["public_key"] == app.public_key


def test_answer_mode_defaults_to_mentions_and_is_checked(control: BotControl, tg: FakeTelegram) -> None:
    bot, _ = telegram_bot(control, tg)
    assert bot.answer_mode == "mentions" and bot.to_public()["answer_mode"] == "mentions"
    assert control.edit_bot(ANN, bot.id, {"answer_mode": "Confident"}).answer_mode == "confident"
    with pytest.raises(BadRequest, match="answer_mode must be one of: 'mentions', 'always', 'confident'"):
        control.edit_bot(ANN, bot.id, {"answer_mode": "loud"})
    assert control.registry.get_bot(bot.id).answer_mode == "confident"
    with pytest.raises(BadRequest, match="answer_mode"):
        telegram_bot(control, tg, answer_mode=3)
    token = tg.add_bot(username="loud_bot")
    loud = control.create_bot(
        ANN, {"platform": "telegram", "name": "L", "token": token, "answer_mode": "always"}
    )
    assert loud.answer_mode == "always"


def test_model_must_be_one_the_operator_allows(control: BotControl, tg: FakeTelegram) -> None:
    # The test settings run the extractive answerer and set no bot_models: gemini is not on offer.
    assert control.settings.allowed_bot_models == ("extractive",)
    with pytest.raises(BadRequest, match="model must be one of: 'extractive'") as info:
        telegram_bot(control, tg, model="gemini")
    assert "gemini" not in info.value.message
    assert control.registry.list_bots() == []
    bot, _ = telegram_bot(control, tg)
    with pytest.raises(BadRequest, match="'extractive'"):
        control.edit_bot(ANN, bot.id, {"model": "gemini"})
    assert control.registry.get_bot(bot.id).model == "extractive"
    # An operator who enables gemini for bots lets owners pick it.
    both = BotControl(control.settings.model_copy(update={"bot_models": ["extractive", "gemini"]}))
    assert both.edit_bot(ANN, bot.id, {"model": "gemini"}).model == "gemini"
    only_gemini = BotControl(control.settings.model_copy(update={"bot_models": ["gemini"]}))
    with pytest.raises(BadRequest, match="model must be one of: 'gemini'"):
        only_gemini.edit_bot(ANN, bot.id, {"model": "extractive"})
    token = tg.add_bot(username="other_bot")
    assert (
        only_gemini.create_bot(ANN, {"platform": "telegram", "name": "G", "token": token}).model == "gemini"
    )


def test_concurrent_registrations_of_one_bot_one_conflict(
    control: BotControl, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two "Add bot" submissions for one Telegram bot, both past the duplicate check: one wins."""
    token = tg.add_bot(username="docs_bot")
    barrier = threading.Barrier(2, timeout=30)
    check = control.registry.find_by_identity

    def both_check_first(*args: object) -> list:
        found = check(*args)
        barrier.wait()  # neither creates before both have looked: the race, every time
        return found

    monkeypatch.setattr(control.registry, "find_by_identity", both_check_first)
    results: list[object] = []

    def register(name: str) -> None:
        try:
            results.append(control.create_bot(ANN, {"platform": "telegram", "name": name, "token": token}))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=register, args=(name,)) for name in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(results) == 2 and len(conflicts) == 1
    assert conflicts[0].status == 409 and "already registered" in conflicts[0].message
    [bot] = control.registry.list_bots()
    # Deleting the bot releases the identity: the same platform bot can be registered again.
    control.delete_bot(ANN, bot.id)
    monkeypatch.setattr(control.registry, "find_by_identity", check)
    assert control.create_bot(ANN, {"platform": "telegram", "name": "again", "token": token}).name == "again"


def test_discord_identity_is_claimed_too(control: BotControl, dc: FakeDiscord, discord_keys: dict) -> None:
    bot, app = discord_bot(control, dc, discord_keys)
    claim = control.registry.db.collection("bot_identities").document(f"discord:{app.id}").get()
    assert claim.exists and claim.get("bot_id") == bot.id
    control.delete_bot(ANN, bot.id)
    assert not control.registry.db.collection("bot_identities").document(f"discord:{app.id}").get().exists


def test_reconcile_writes_the_secret_hash_of_an_older_bot(
    control: BotControl, tg: FakeTelegram, tg_hook: RecordingEndpoint
) -> None:
    """Bots stored before webhook_secret_hash existed get it from reconcile, without a new secret."""
    from google.cloud import firestore

    from shared.bots.reconcile import reconcile_all

    bot, _ = telegram_bot(control, tg)
    running = control.start_bot(ANN, bot.id)
    secret = control.registry.webhook_secret(running)
    control.registry.db.collection("bots").document(bot.id).update(
        {"webhook_secret_hash": firestore.DELETE_FIELD}
    )
    assert not _secret_matches(control.registry.get_bot(bot.id), secret)
    report = reconcile_all(control)
    assert report.failed == {} and report.ok == 1  # the webhook itself was fine: nothing re-registered
    after = control.registry.get_bot(bot.id)
    assert control.registry.webhook_secret(after) == secret
    assert _secret_matches(after, secret)


# --- start / stop -----------------------------------------------------------------------------


def test_telegram_start_sets_webhook_with_secret_and_stop_deletes(
    control: BotControl, tg: FakeTelegram, tg_hook: RecordingEndpoint
) -> None:
    bot, token = telegram_bot(control, tg)
    started = control.start_bot(ANN, bot.id)
    assert started.status == "running" and started.desired == "running"
    hook = tg.webhook(token)
    assert hook is not None
    assert hook.url == f"{tg_hook.url}/telegram/{bot.id}"
    assert hook.secret_token == control.registry.webhook_secret(started)
    assert "message" in hook.allowed_updates
    assert [c["command"] for c in tg.bots[token].commands][:1] == ["ask"]

    # Telegram now delivers updates there, with the per-bot secret header.
    assert tg.send_update(token, tg.message_update(42, "hello")).status_code == 200
    path, headers, _ = tg_hook.requests[-1]
    assert path == f"/telegram/{bot.id}"
    assert headers[SECRET_HEADER.lower()] == hook.secret_token

    stopped = control.stop_bot(ANN, bot.id)
    assert stopped.status == "stopped" and stopped.desired == "stopped"
    assert tg.webhook(token) is None
    kinds = [e.kind for e in control.activity(ANN, bot.id).items]
    assert kinds[:3] == ["stopped", "started", "created"]


def test_restart_re_registers(control: BotControl, tg: FakeTelegram) -> None:
    bot, token = telegram_bot(control, tg)
    control.start_bot(ANN, bot.id)
    before = len(tg.calls_for(token, "setWebhook"))
    restarted = control.restart_bot(ANN, bot.id)
    assert restarted.status == "running"
    assert len(tg.calls_for(token, "deleteWebhook")) == 1
    assert len(tg.calls_for(token, "setWebhook")) == before + 1
    # Starting a running bot only checks the platform.
    control.start_bot(ANN, bot.id)
    assert len(tg.calls_for(token, "setWebhook")) == before + 1


def test_start_honours_429_and_records_platform_failures(control: BotControl, tg: FakeTelegram) -> None:
    bot, token = telegram_bot(control, tg)
    tg.fail_next("setWebhook", status=429, retry_after=1)
    assert control.start_bot(ANN, bot.id).status == "running"
    assert len(tg.calls_for(token, "setWebhook")) == 2

    control.stop_bot(ANN, bot.id)
    tg.fail_next("setWebhook", status=500, times=5)
    failed = control.start_bot(ANN, bot.id)
    assert failed.status == "error" and failed.desired == "running"
    assert "setWebhook" in failed.last_error
    assert token not in failed.last_error
    entries = control.activity(ANN, bot.id).items
    assert entries[0].kind == "error"

    # Trying again once the platform is healthy clears the error.
    again = control.start_bot(ANN, bot.id)
    assert again.status == "running" and again.last_error is None


def test_revoked_token_puts_the_bot_in_error(control: BotControl, tg: FakeTelegram) -> None:
    bot, token = telegram_bot(control, tg)
    tg.revoke(token)
    failed = control.start_bot(ANN, bot.id)
    assert failed.status == "error"
    assert "Unauthorized" in failed.last_error


def test_discord_start_registers_ask_and_endpoint(
    control: BotControl, dc: FakeDiscord, dc_hook: RecordingEndpoint, discord_keys: dict[str, str]
) -> None:
    bot, app = discord_bot(control, dc, discord_keys)
    started = control.start_bot(ANN, bot.id)
    assert started.status == "running", started.last_error
    assert app.interactions_endpoint_url == f"{dc_hook.url}/discord/{bot.id}"
    assert [c["name"] for c in dc.commands(app.id)] == ["ask", "mode", "forget"]
    # Discord probed the endpoint: one bad signature (401) and one signed PING (PONG).
    assert len(dc_hook.requests) == 2

    response = dc.deliver(app.id, dc.ask_interaction(app.id, "How do I deploy?"))
    assert response.json() == {"type": 5}

    stopped = control.stop_bot(ANN, bot.id)
    assert stopped.status == "stopped"
    assert app.interactions_endpoint_url is None
    # Discord's documented User-Agent for bots (discord.com/developers/docs/reference, "User Agent"):
    # "DiscordBot ($url, $versionNumber)"; a client without one may be blocked at Discord's edge.
    assert dc.calls and all(re.match(r"DiscordBot \(\S+, \S+\)", c.user_agent) for c in dc.calls)


def test_discord_start_fails_when_endpoint_does_not_pong(
    control: BotControl, dc: FakeDiscord, discord_keys: dict[str, str]
) -> None:
    bot, app = discord_bot(control, dc, discord_keys)
    discord_keys.clear()  # the endpoint no longer knows the key: every request gets 401
    discord_keys["*"] = dc.add_application().public_key
    failed = control.start_bot(ANN, bot.id)
    assert failed.status == "error"
    assert "could not be verified" in failed.last_error
    assert app.interactions_endpoint_url is None


# --- edit / delete / isolation ----------------------------------------------------------------


def test_edit_only_editable_fields(control: BotControl, tg: FakeTelegram) -> None:
    control = BotControl(control.settings.model_copy(update={"bot_models": ["extractive", "gemini"]}))
    bot, _ = telegram_bot(control, tg)
    edited = control.edit_bot(ANN, bot.id, {"name": "New", "model": "gemini", "system_prompt": "Short."})
    assert (edited.name, edited.model, edited.system_prompt) == ("New", "gemini", "Short.")
    with pytest.raises(BadRequest, match="token"):
        control.edit_bot(ANN, bot.id, {"token": "1:x"})
    with pytest.raises(BadRequest, match="model"):
        control.edit_bot(ANN, bot.id, {"model": "gpt-9"})
    with pytest.raises(BadRequest):
        control.edit_bot(ANN, bot.id, ["name"])


def test_delete_unhooks_and_removes(control: BotControl, tg: FakeTelegram) -> None:
    bot, token = telegram_bot(control, tg)
    control.start_bot(ANN, bot.id)
    control.delete_bot(ANN, bot.id)
    assert tg.webhook(token) is None
    assert control.registry.get_bot(bot.id) is None
    with pytest.raises(NotFound):
        control.get_bot(ANN, bot.id)


def test_delete_takes_the_bots_chat_settings_and_button_state_with_it(
    control: BotControl, tg: FakeTelegram
) -> None:
    """What the bot kept per chat (on/off, mode, and who set them) and under its answers (question and
    answer text) goes with it, like its activity: chat settings have no expiry of their own. Another
    bot's stay."""
    db = control.registry.db
    bot, _ = telegram_bot(control, tg)
    other, _ = telegram_bot(control, tg)
    for owner in (bot.id, other.id):
        chat_switch.set_enabled(db, owner, -100, False, by_user="telegram:42")
        chat_switch.set_answer_mode(db, owner, 7, AnswerMode.ALWAYS, by_user="telegram:43")
        ButtonStateStore(db).save(
            state_id_for_job(f"telegram:{owner}:1"), owner, "Q?", "A.", [], chat="telegram:7"
        )
    control.delete_bot(ANN, bot.id)
    left = {d.id for d in db.collection(chat_switch.CHAT_SETTINGS).stream()}
    assert left == {chat_switch.chat_key(other.id, -100), chat_switch.chat_key(other.id, 7)}
    states = {d.get("bot_id") for d in db.collection(INTERACTIONS).stream()}
    assert states == {other.id}


def test_delete_works_even_if_the_token_was_revoked(control: BotControl, tg: FakeTelegram) -> None:
    bot, token = telegram_bot(control, tg)
    tg.revoke(token)
    control.delete_bot(ANN, bot.id)
    assert control.registry.get_bot(bot.id) is None


def test_users_only_see_their_own_bots(control: BotControl, tg: FakeTelegram) -> None:
    bot, token = telegram_bot(control, tg)
    assert control.list_bots(BOB) == []
    for action in (
        lambda: control.get_bot(BOB, bot.id),
        lambda: control.edit_bot(BOB, bot.id, {"name": "mine"}),
        lambda: control.start_bot(BOB, bot.id),
        lambda: control.stop_bot(BOB, bot.id),
        lambda: control.restart_bot(BOB, bot.id),
        lambda: control.activity(BOB, bot.id),
        lambda: control.delete_bot(BOB, bot.id),
    ):
        with pytest.raises(NotFound):
            action()
    assert tg.webhook(token) is None
    assert control.get_bot(ANN, bot.id).name == "Docs"
    # Admins can see and manage every bot.
    assert [b.id for b in control.list_bots(ADMIN, all_owners=True)] == [bot.id]
    assert control.get_bot(ADMIN, bot.id).id == bot.id


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_start_and_stop_end_consistent(control: BotControl, tg: FakeTelegram) -> None:
    bot, token = telegram_bot(control, tg)
    # Two instances (as on two Cloud Run instances): no shared in-process lock between them.
    other = BotControl(control.settings, BotRegistry.from_settings(control.settings))
    for _ in range(3):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(action, barrier=barrier, errors=errors) -> None:
            try:
                barrier.wait()
                action(ANN, bot.id)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(control.start_bot,)),
            threading.Thread(target=run, args=(other.stop_bot,)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        final = control.registry.get_bot(bot.id)
        # Whichever call won, the status, the desired state and the platform agree.
        if final.desired == "running":
            assert final.status == "running"
            assert tg.webhook(token) is not None
        else:
            assert final.status == "stopped"
            assert tg.webhook(token) is None


# --- token replacement ------------------------------------------------------------------------


def test_replacing_a_revoked_telegram_token_keeps_the_bot_and_renews_the_secret(
    control: BotControl, tg: FakeTelegram, tg_hook: RecordingEndpoint
) -> None:
    bot, old_token = telegram_bot(control, tg)
    running = control.start_bot(ANN, bot.id)
    old_secret = control.registry.webhook_secret(running)
    new_token = tg.reissue_token(old_token)  # the owner ran /revoke after a leak
    assert control.start_bot(ANN, bot.id).status == "error"  # the stored token is dead now

    replaced = control.replace_token(ANN, bot.id, {"token": new_token})
    assert replaced.id == bot.id and replaced.status == "running" and replaced.last_error is None
    assert control.registry.decrypt_token(replaced) == new_token
    new_secret = control.registry.webhook_secret(replaced)
    assert new_secret != old_secret
    hook = tg.webhook(new_token)
    assert hook.url == f"{tg_hook.url}/telegram/{bot.id}"  # same URL: nothing to reconfigure
    assert hook.secret_token == new_secret
    assert [e.kind for e in control.activity(ANN, bot.id).items][:2] == ["restarted", "token"]
    # Neither token is stored or shown in plaintext.
    raw = control.registry._ref(bot.id).get().to_dict()
    assert not {old_token, new_token, new_secret} & {str(v) for v in raw.values()}
    assert new_token not in str(replaced.to_public())


def test_a_stopped_bot_gets_its_new_token_without_touching_the_platform(
    control: BotControl, tg: FakeTelegram
) -> None:
    bot, old_token = telegram_bot(control, tg)
    new_token = tg.reissue_token(old_token)
    replaced = control.replace_token(ANN, bot.id, {"token": new_token})
    assert replaced.status == "stopped" and replaced.desired == "stopped"
    assert control.registry.decrypt_token(replaced) == new_token
    assert not tg.calls_for(new_token, "setWebhook")
    assert control.start_bot(ANN, bot.id).status == "running"


def test_a_token_of_another_bot_or_a_bad_token_changes_nothing(control: BotControl, tg: FakeTelegram) -> None:
    bot, token = telegram_bot(control, tg)
    other = tg.add_bot(username="other_bot")
    before = control.registry.get_bot(bot.id)
    with pytest.raises(BadRequest, match="belongs to @other_bot, not to @docs_bot"):
        control.replace_token(ANN, bot.id, {"token": other})
    dead = tg.add_bot(username="dead_bot")
    tg.revoke(dead)
    with pytest.raises(BadRequest, match="rejected this token"):
        control.replace_token(ANN, bot.id, {"token": dead})
    for data in ({}, {"token": ""}, {"token": "not-a-token"}, [1]):
        with pytest.raises(BadRequest):
            control.replace_token(ANN, bot.id, data)
    with pytest.raises(NotFound):
        control.replace_token(BOB, bot.id, {"token": token})  # not Bob's bot
    after = control.registry.get_bot(bot.id)
    assert (after.token_enc, after.webhook_secret_enc, after.generation) == (
        before.token_enc,
        before.webhook_secret_enc,
        before.generation,
    )


def test_replacing_a_discord_bot_token(
    control: BotControl, dc: FakeDiscord, dc_hook: RecordingEndpoint, discord_keys: dict[str, str]
) -> None:
    bot, app = discord_bot(control, dc, discord_keys)
    control.start_bot(ANN, bot.id)
    new_token = dc.reset_token(app.id)
    replaced = control.replace_token(ANN, bot.id, {"bot_token": new_token})
    assert replaced.status == "running"
    assert control.registry.decrypt_token(replaced) == new_token
    assert dc.app(app.id).interactions_endpoint_url == f"{dc_hook.url}/discord/{bot.id}"
    # The page and the CLI send every platform's token as "token".
    newer = dc.reset_token(app.id)
    assert control.registry.decrypt_token(control.replace_token(ANN, bot.id, {"token": newer})) == newer
    other = dc.add_application()
    with pytest.raises(BadRequest, match="another Discord application"):
        control.replace_token(ANN, bot.id, {"bot_token": other.bot_token})


# --- the secret Telegram holds, under concurrent token replacements -------------------------------


class Crash(Exception):
    """Stands in for a botrunner instance dying at that point."""


def _holds_current_secret(control: BotControl, tg: FakeTelegram, token: str, bot_id: str) -> bool:
    hook = tg.webhook(token)
    return hook is not None and _secret_matches(control.registry.get_bot(bot_id), hook.secret_token)


def _other_instance(control: BotControl) -> BotControl:
    """botrunner on another instance: its own registry object and locks, the same Firestore."""
    return BotControl(control.settings, BotRegistry.from_settings(control.settings), policy=control._policy)


def test_a_restart_that_read_the_old_secret_does_not_register_it_after_a_replacement(
    control: BotControl, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance reads the bot, then the owner's replacement runs to the end, then that
    instance's call: it must not leave the old secret at Telegram."""
    bot, token = telegram_bot(control, tg)
    control.start_bot(ANN, bot.id)
    other = _other_instance(control)
    real = other._platform_start

    def replacement_first(*args: object, **kwargs: object) -> object:
        monkeypatch.setattr(other, "_platform_start", real)
        # The same token pasted again renews the secret too (a revoked token could not set anything).
        control.replace_token(ANN, bot.id, {"token": token})
        return real(*args, **kwargs)

    monkeypatch.setattr(other, "_platform_start", replacement_first)
    assert other.restart_bot(ANN, bot.id).status == "running"
    assert _holds_current_secret(control, tg, token, bot.id)
    assert reconcile_all(control).ok == 1


def test_a_late_registration_of_a_crashed_instance_is_repaired_by_reconcile(
    control: BotControl, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other instance's setWebhook with the old secret reaches Telegram after the replacement's,
    and that instance dies before its commit: the replacement cannot vouch for what Telegram holds
    until the other call's lease has run out, so reconcile sets the webhook again."""
    from shared.bots import registry as registry_module

    bot, token = telegram_bot(control, tg)
    control.start_bot(ANN, bot.id)
    other = _other_instance(control)
    begin = other.registry.begin_registration

    def replacement_after_begin(*args: object) -> bool:
        began = begin(*args)  # type: ignore[arg-type]
        control.replace_token(ANN, bot.id, {"token": token})  # runs to the end before our call lands
        return began

    def crash(*args: object, **kwargs: object) -> bool:
        raise Crash

    monkeypatch.setattr(other.registry, "begin_registration", replacement_after_begin)
    monkeypatch.setattr(other.registry, "commit_status", crash)
    with pytest.raises(Crash):
        other.restart_bot(ANN, bot.id)
    assert not _holds_current_secret(control, tg, token, bot.id)

    assert reconcile_all(control).repaired == {bot.id: "webhook set"}
    assert _holds_current_secret(control, tg, token, bot.id)
    # Until the dead call's lease runs out each run sets it again; then it is recorded and left alone.
    later = registry_module._now() + registry_module.REGISTRATION_LEASE
    monkeypatch.setattr(registry_module, "_now", lambda: later)
    assert reconcile_all(control).repaired == {bot.id: "webhook set"}
    assert reconcile_all(control).ok == 1
    assert _holds_current_secret(control, tg, token, bot.id)
    assert control.registry.get_bot(bot.id).status == "running"


# --- a bot deleted while an apply registers it -------------------------------------------------


def test_a_telegram_bot_deleted_while_being_started_is_unhooked_again(
    control: BotControl, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The start has checked the bot and is about to call setWebhook when the owner's delete (on
    another instance) unhooks and removes it; the start's call lands after: it is taken back."""
    bot, token = telegram_bot(control, tg)
    other = _other_instance(control)
    begin = control.registry.begin_registration

    def delete_after_begin(*args: object) -> bool:
        began = begin(*args)  # type: ignore[arg-type]
        monkeypatch.setattr(control.registry, "begin_registration", begin)
        other.delete_bot(ANN, bot.id)
        return began

    monkeypatch.setattr(control.registry, "begin_registration", delete_after_begin)
    with pytest.raises(NotFound):
        control.start_bot(ANN, bot.id)
    assert control.registry.get_bot(bot.id) is None
    assert len(tg.calls_for(token, "setWebhook")) == 1  # the start's call did land...
    assert tg.webhook(token) is None  # ...and was taken back
    assert f"bot {bot.id} was deleted while being started: webhook deleted" in caplog.text


def test_a_discord_bot_deleted_while_being_started_is_unhooked_again(
    control: BotControl,
    dc: FakeDiscord,
    dc_hook: RecordingEndpoint,
    discord_keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot, app = discord_bot(control, dc, discord_keys)
    other = _other_instance(control)
    real = control._platform_start

    def delete_first(*args: object, **kwargs: object) -> object:
        monkeypatch.setattr(control, "_platform_start", real)
        other.delete_bot(ANN, bot.id)  # reads, unhooks (nothing yet) and deletes before our call
        return real(*args, **kwargs)

    monkeypatch.setattr(control, "_platform_start", delete_first)
    with pytest.raises(NotFound):
        control.start_bot(ANN, bot.id)
    assert control.registry.get_bot(bot.id) is None
    endpoints = [c.json.get("interactions_endpoint_url") for c in dc.calls if c.method == "PATCH"]
    assert endpoints == [None, f"{dc_hook.url}/discord/{bot.id}", None]  # delete, our start, the undo
    assert dc.app(app.id).interactions_endpoint_url is None
    assert f"bot {bot.id} was deleted while being started: interactions endpoint cleared" in caplog.text
