"""The Telegram webhook function: secret check, parsing, dedupe, chat rules, publishing a job.

The entry point runs inside functions-framework (as in Cloud Functions) against the Firestore and
Pub/Sub emulators; published jobs are read back from a pull subscription on the jobs topic.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from shared.bots import chat_switch, dedupe, webhooks
from shared.bots.answer_modes import AnswerMode
from shared.bots.buttons import Action, ButtonStateStore, custom_id, state_id_for_job
from shared.bots.dedupe import PROCESSED_UPDATES
from shared.bots.jobs import JobKind, JobPublisher
from shared.bots.lookup import BotInfo, bot_lookup
from shared.bots.platforms import get_platform
from shared.bots.platforms.telegram import SECRET_HEADER, decide
from shared.bots.registry import Bot, BotReader, BotRegistry
from shared.bots.secrets import webhook_secret_hash, webhook_secret_matches
from shared.bots.webhooks import Ingress, build_ingress
from shared.config import Settings
from tests.bot_stack import FIRESTORE_OUTAGES, JobTap, bot_settings, function_app, register_telegram_bot
from tests.fakes.telegram_api import FakeTelegram
from tests.fuzzing import property_settings

pytestmark = pytest.mark.emulators

USERNAME, BOT_USER_ID = "docs_bot", 777  # the bot the chat rules decide for


def _secret_matches(bot: Bot, presented: str) -> bool:
    """Whether ``presented`` is the secret behind the bot's stored hash: the ingress's check."""
    return webhook_secret_matches(bot.id, presented, bot.webhook_secret_hash)


def _message(text: str, chat_type: str = "group", **extra: Any) -> dict[str, Any]:
    message = {
        "message_id": 5,
        "chat": {"id": -100 if chat_type != "private" else 42, "type": chat_type},
        "from": {"id": 42, "is_bot": False, "first_name": "A"},
        "text": text,
    }
    message.update(extra)
    return {"update_id": 1, "message": message}


# --- the chat rules (pure) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "chat_type", "extra", "kind", "question"),
    [
        ("How do I deploy?", "private", {}, JobKind.ASK, "How do I deploy?"),
        ("/start", "private", {}, JobKind.HELP, None),
        ("/help", "group", {}, JobKind.HELP, None),
        ("/whatever", "private", {}, JobKind.HELP, None),
        ("How do I deploy?", "group", {}, None, None),
        ("/ask How do I deploy?", "group", {}, JobKind.ASK, "How do I deploy?"),
        ("/ask@docs_bot How do I deploy?", "supergroup", {}, JobKind.ASK, "How do I deploy?"),
        ("/ask@Other_Bot How do I deploy?", "group", {}, None, None),
        ("/ask", "group", {}, JobKind.HELP, None),
        ("@docs_bot how do I deploy?", "group", {}, JobKind.ASK, "how do I deploy?"),
        ("hey @DOCS_BOT, deploy?", "group", {}, JobKind.ASK, "hey , deploy?"),
        ("mail me at x@docs_bot.com", "group", {}, None, None),
        ("@docs_botty deploy?", "group", {}, None, None),
        (
            "and then?",
            "group",
            {"reply_to_message": {"from": {"id": 777, "is_bot": True}}},
            JobKind.ASK,
            "and then?",
        ),
        ("and then?", "group", {"reply_to_message": {"from": {"id": 9, "is_bot": False}}}, None, None),
        ("/enable", "group", {}, JobKind.ENABLE, None),
        ("/disable@docs_bot", "group", {}, JobKind.DISABLE, None),
        ("/forget", "private", {}, JobKind.FORGET, None),
        ("hi", "channel", {}, None, None),
        ("/start", "private", {"from": {"id": 8, "is_bot": True}}, None, None),
    ],
)
def test_decide(text: str, chat_type: str, extra: dict, kind: JobKind | None, question: str | None) -> None:
    """What the default answer mode (``mentions``) answers: a group message that does not address the
    bot is a question only in a chat that answers every message (``addressed`` false)."""
    decision = decide(_message(text, chat_type, **extra), USERNAME, BOT_USER_ID)
    answered = decision.kind if decision.addressed else None
    assert answered == kind, decision.reason
    if question is not None:
        assert decision.question == question


@pytest.mark.parametrize("text", ["How do I deploy?", "mail me at x@docs_bot.com", "@docs_botty deploy?"])
def test_group_messages_not_for_the_bot_are_unaddressed_questions(text: str) -> None:
    decision = decide(_message(text, "group"), USERNAME, BOT_USER_ID)
    assert (decision.kind, decision.addressed, decision.question) == (JobKind.ASK, False, text)


@pytest.mark.parametrize(
    ("text", "argument"),
    [("/mode always", "always"), ("/mode@docs_bot confident", "confident"), ("/mode", "")],
)
def test_mode_command(text: str, argument: str) -> None:
    decision = decide(_message(text, "group"), USERNAME, BOT_USER_ID)
    assert (decision.kind, decision.question, decision.addressed) == (JobKind.MODE, argument, True)


def test_decide_uses_mention_entities_with_utf16_offsets() -> None:
    text = "😀 @docs_bot deploy?"  # the emoji is two UTF-16 code units
    update = _message(text, entities=[{"type": "mention", "offset": 3, "length": 9}])
    assert decide(update, USERNAME, BOT_USER_ID).kind is JobKind.ASK
    text_mention = _message(
        "Docs deploy?", entities=[{"type": "text_mention", "offset": 0, "length": 4, "user": {"id": 777}}]
    )
    assert decide(text_mention, USERNAME, BOT_USER_ID).kind is JobKind.ASK


@pytest.mark.parametrize("text", ["Release 2.0 is out: how do I upgrade?", "Meet @docs_bot, our helper"])
def test_a_channel_post_forwarded_into_its_discussion_group_is_no_question(text: str) -> None:
    """A linked channel's posts arrive in its discussion group as automatic forwards, from the service
    user "Telegram" (777000, not flagged a bot): the channel announces, nobody asks. A bot that answers
    every message there (``always``, ``confident``) must not reply to each announcement, and one that
    is mentioned in it was not asked anything either; comments under the post are questions as usual."""
    forward = _message(
        text,
        "supergroup",
        **{
            "from": {"id": 777000, "is_bot": False, "first_name": "Telegram"},
            "sender_chat": {"id": -1009, "type": "channel", "title": "News"},
            "is_automatic_forward": True,
        },
    )
    assert decide(forward, USERNAME, BOT_USER_ID).kind is None
    comment = _message(text, "supergroup", reply_to_message=forward["message"])
    assert decide(comment, USERNAME, BOT_USER_ID).kind is JobKind.ASK


def test_non_messages_are_ignored() -> None:
    edited = {"update_id": 1, "edited_message": {"text": "x"}}
    assert decide(edited, USERNAME, BOT_USER_ID).kind is None
    no_text = {"update_id": 1, "message": {"chat": {"type": "private"}}}
    assert decide(no_text, USERNAME, BOT_USER_ID).kind is None


# --- the function ----------------------------------------------------------------------------------


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def stack(emulators: Any, settings: Settings, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> dict:
    settings = bot_settings(monkeypatch, telegram_api_base=tg.base_url)
    bot_id, token = register_telegram_bot(settings, tg)
    registry = BotRegistry.from_settings(settings)
    bot = registry.get_bot(bot_id)
    assert bot is not None
    return {
        "settings": settings,
        "bot_id": bot_id,
        "token": token,
        "secret": registry.webhook_secret(bot),
        "client": function_app("telegram_webhook").test_client(),
        "tap": JobTap(settings),
        "db": registry.db,
    }


def _post(
    stack: dict, update: Any, secret: str | None = "", bot_id: str | None = None, raw: bytes | None = None
):
    headers = {"Content-Type": "application/json"}
    secret = stack["secret"] if secret == "" else secret
    if secret is not None:
        headers[SECRET_HEADER] = secret
    data = raw if raw is not None else json.dumps(update).encode()
    return stack["client"].post(f"/{bot_id or stack['bot_id']}", data=data, headers=headers)


def test_private_message_publishes_one_job(stack: dict, tg: FakeTelegram) -> None:
    update = tg.message_update(42, "How do I deploy?", update_id=1001, message_id=9)
    response = _post(stack, update)
    assert response.status_code == 200 and response.get_json()["status"] == "accepted"
    [job] = stack["tap"].pull(expect=1)
    assert job.job_id == f"telegram:{stack['bot_id']}:1001"
    assert (job.kind, job.question, job.chat_id, job.message_id, job.user) == (
        JobKind.ASK,
        "How do I deploy?",
        "42",
        9,
        "42",
    )
    doc = stack["db"].collection(PROCESSED_UPDATES).document(f"telegram:{stack['bot_id']}:1001").get()
    assert doc.exists
    ttl = doc.get("expire_at") - doc.get("received_at")
    assert ttl.days == 7


def test_same_update_100_times_is_one_job(stack: dict, tg: FakeTelegram) -> None:
    update = tg.message_update(42, "How do I deploy?", update_id=2002)
    statuses = [_post(stack, update).get_json()["status"] for _ in range(100)]
    assert statuses.count("accepted") == 1 and statuses.count("duplicate") == 99
    assert len(stack["tap"].settled()) == 1


@pytest.mark.parametrize("secret", [None, "wrong", "x" * 300, "ünïcode"])
def test_wrong_or_missing_secret_is_403(stack: dict, tg: FakeTelegram, secret: str | None) -> None:
    response = _post(stack, tg.message_update(42, "hi"), secret=secret)
    assert response.status_code == 403
    assert stack["tap"].settled() == []


def test_unknown_bot_is_404(stack: dict, tg: FakeTelegram) -> None:
    assert _post(stack, tg.message_update(42, "hi"), bot_id="no-such-bot").status_code == 404
    assert stack["client"].post("/", data=b"{}").status_code == 404
    assert stack["client"].post("/a/b", data=b"{}").status_code == 404


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"message": {}}',
        b'{"update_id": "7"}',
        b'{"update_id": true}',
        b"null",
    ],
)
def test_malformed_body_is_400(stack: dict, raw: bytes) -> None:
    assert _post(stack, None, raw=raw).status_code == 400


def test_oversized_body_is_413(stack: dict) -> None:
    raw = json.dumps({"update_id": 1, "message": {"text": "x" * stack["settings"].max_body_bytes}}).encode()
    assert _post(stack, None, raw=raw).status_code == 413


def test_get_is_405_with_a_log_line(stack: dict, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shared.bots.webhooks")
    assert stack["client"].get(f"/{stack['bot_id']}").status_code == 405
    [line] = [r.getMessage() for r in caplog.records if r.name == "shared.bots.webhooks"]
    assert "405" in line and "GET" in line


def test_group_rules_through_the_function(stack: dict, tg: FakeTelegram) -> None:
    group = -1001
    plain = tg.message_update(group, "what about deploys", chat_type="group")
    mention = tg.message_update(group, "@docs_bot what about deploys", chat_type="group")
    command = tg.message_update(group, "/ask what about deploys", chat_type="group")
    other = tg.message_update(group, "/ask@other_bot what about deploys", chat_type="group")
    statuses = [_post(stack, u).get_json()["status"] for u in (plain, mention, command, other)]
    assert statuses == ["ignored", "accepted", "accepted", "ignored"]
    jobs = stack["tap"].pull(expect=2)
    assert sorted(j.question or "" for j in jobs) == ["what about deploys", "what about deploys"]


def test_a_question_in_a_forum_topic_names_its_topic_in_the_job(stack: dict, tg: FakeTelegram) -> None:
    """A forum supergroup's message carries its topic (``message_thread_id`` with ``is_topic_message``):
    the job keeps it, so the answer goes to that topic and not to General. A plain supergroup's reply
    chain also has a ``message_thread_id``, but no topic: sending there with it would be refused."""
    forum, plain = -100777, -100778
    in_topic = tg.message_update(
        forum, "/ask what about deploys", chat_type="supergroup", message_thread_id=55, is_topic_message=True
    )
    reply_chain = tg.message_update(
        plain, "/ask what about deploys", chat_type="supergroup", message_thread_id=66
    )
    assert [_post(stack, u).get_json()["status"] for u in (in_topic, reply_chain)] == ["accepted", "accepted"]
    jobs = {job.chat_id: job for job in stack["tap"].pull(expect=2)}
    assert {chat: job.thread_id for chat, job in jobs.items()} == {str(forum): 55, str(plain): None}


def _migration(tg: FakeTelegram, old: int, new: int, update_id: int) -> tuple[dict, dict]:
    """The two service messages of a group upgraded to a supergroup: in the new chat
    (``migrate_from_chat_id``) and its twin in the old one (``migrate_to_chat_id``); neither has text."""
    moved_in = tg.message_update(
        new, "", chat_type="supergroup", migrate_from_chat_id=old, update_id=update_id
    )
    del moved_in["message"]["text"]
    moved_out = tg.message_update(old, "", chat_type="group", migrate_to_chat_id=new, update_id=update_id + 1)
    del moved_out["message"]["text"]
    return moved_in, moved_out


def test_a_group_upgraded_to_a_supergroup_takes_its_settings_along_in_the_webhook(
    stack: dict, tg: FakeTelegram
) -> None:
    """A basic group becomes a supergroup under a new chat id (making it public, enabling topics, ...):
    on the service message Telegram posts in the new chat the webhook itself moves the chat's /disable
    and /mode to the new id and publishes nothing (no job a botrunner revision of another version could
    drop); the twin in the old chat is ignored. A delivery of the same update again changes nothing,
    and settings the new chat has already (an admin was quicker) are kept."""
    db, bot_id = stack["db"], stack["bot_id"]
    old, new = -4001, -1004001
    chat_switch.set_enabled(db, bot_id, old, False, by_user="telegram:42")
    chat_switch.set_answer_mode(db, bot_id, old, AnswerMode.ALWAYS, by_user="telegram:42")
    moved_in, moved_out = _migration(tg, old, new, update_id=8001)
    responses = [_post(stack, u) for u in (moved_in, moved_out, moved_in)]
    assert [(r.status_code, r.get_json()["status"]) for r in responses] == [
        (200, "moved"),
        (200, "ignored"),
        (200, "moved"),
    ]
    assert stack["tap"].settled() == []
    assert chat_switch.read_settings(db, bot_id, new) == chat_switch.ChatSettings(False, AnswerMode.ALWAYS)
    assert chat_switch.read_settings(db, bot_id, old) == chat_switch.ChatSettings()

    chat_switch.set_enabled(db, bot_id, -4002, False, by_user="telegram:42")
    chat_switch.set_enabled(db, bot_id, -1004002, True, by_user="telegram:43")
    moved_in, _ = _migration(tg, -4002, -1004002, update_id=8011)
    assert _post(stack, moved_in).get_json()["status"] == "moved"
    assert chat_switch.read_settings(db, bot_id, -1004002).enabled is True
    assert chat_switch.read_settings(db, bot_id, -4002) == chat_switch.ChatSettings()
    # The new chat remembers its old ids, settings or none, so that its /forget also takes the history
    # Q&A keeps under them.
    assert chat_switch.previous_chat_ids(db, bot_id, new) == ["-4001"]
    assert chat_switch.previous_chat_ids(db, bot_id, -1004002) == ["-4002"]
    moved_in, _ = _migration(tg, -4003, -1004003, update_id=8021)  # a group that never set anything
    assert _post(stack, moved_in).get_json()["status"] == "moved"
    assert chat_switch.previous_chat_ids(db, bot_id, -1004003) == ["-4003"]
    assert chat_switch.read_settings(db, bot_id, -1004003) == chat_switch.ChatSettings()


def test_a_stopped_bots_group_upgraded_to_a_supergroup_keeps_its_settings(
    stack: dict, tg: FakeTelegram
) -> None:
    """A stopped bot's updates publish nothing, but its chats' settings still follow a new chat id: they
    apply again when the bot is started."""
    db, bot_id = stack["db"], stack["bot_id"]
    chat_switch.set_enabled(db, bot_id, -4101, False, by_user="telegram:42")
    BotRegistry.from_settings(stack["settings"]).set_desired(bot_id, "stopped")
    stack["client"] = function_app("telegram_webhook").test_client()  # a fresh instance: no cached bot
    moved_in, _ = _migration(tg, -4101, -1004101, update_id=8101)
    assert _post(stack, moved_in).get_json()["status"] == "moved"
    assert stack["tap"].settled() == []
    assert chat_switch.read_settings(db, bot_id, -1004101).enabled is False


@FIRESTORE_OUTAGES
def test_a_settings_move_firestore_fails_is_503_and_telegrams_retry_moves_them(
    stack: dict, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    db, bot_id = stack["db"], stack["bot_id"]
    chat_switch.set_answer_mode(db, bot_id, -4201, AnswerMode.ALWAYS, by_user="telegram:42")
    real = chat_switch.move_settings
    calls: list[int] = []

    def flaky(*args: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args)

    monkeypatch.setattr(chat_switch, "move_settings", flaky)
    moved_in, _ = _migration(tg, -4201, -1004201, update_id=8201)
    first = _post(stack, moved_in)
    assert first.status_code == 503 and first.get_json() == {"ok": False, "error": "unavailable"}
    assert _post(stack, moved_in).get_json()["status"] == "moved"
    assert chat_switch.read_settings(db, bot_id, -1004201).answer_mode is AnswerMode.ALWAYS
    assert stack["tap"].settled() == []


def test_disabled_chat_is_ignored_except_enable(stack: dict, tg: FakeTelegram) -> None:
    group = -1002
    chat_switch.set_enabled(stack["db"], stack["bot_id"], group, False, by_user="telegram:1")
    ask = tg.message_update(group, "/ask anything", chat_type="group")
    enable = tg.message_update(group, "/enable", chat_type="group", user_id=99)
    assert _post(stack, ask).get_json()["status"] == "ignored"
    assert _post(stack, enable).get_json()["status"] == "accepted"
    [job] = stack["tap"].pull(expect=1)
    assert job.kind is JobKind.ENABLE and job.user == "99"


def test_answer_modes_decide_which_group_messages_become_jobs(stack: dict, tg: FakeTelegram) -> None:
    """``mentions`` (the default) ignores a group message that does not address the bot; a chat set to
    ``always`` or ``confident`` publishes it, with the chat's mode in the job; a bot whose own mode is
    ``always`` does so in every chat without a mode of its own."""
    db, bot_id = stack["db"], stack["bot_id"]
    quiet, always, confident, follows_bot = -2001, -2002, -2003, -2004
    chat_switch.set_answer_mode(db, bot_id, always, AnswerMode.ALWAYS, by_user="telegram:1")
    chat_switch.set_answer_mode(db, bot_id, confident, AnswerMode.CONFIDENT, by_user="telegram:1")
    statuses = [
        _post(stack, tg.message_update(chat, "what about deploys", chat_type="group")).get_json()["status"]
        for chat in (quiet, always, confident)
    ]
    assert statuses == ["ignored", "accepted", "accepted"]
    jobs = {job.chat_id: job for job in stack["tap"].pull(expect=2)}
    assert {c: (j.addressed, j.answer_mode) for c, j in jobs.items()} == {
        str(always): (False, "always"),
        str(confident): (False, "confident"),
    }
    # An addressed message carries the mode too (the worker decides about refusals with it).
    _post(stack, tg.message_update(quiet, "/ask what about deploys", chat_type="group"))
    [asked] = stack["tap"].pull(expect=1)
    assert (asked.addressed, asked.answer_mode) == (True, "mentions")

    BotRegistry.from_settings(stack["settings"]).update_bot(bot_id, {"answer_mode": "always"})
    stack["client"] = function_app("telegram_webhook").test_client()  # no cached bot
    plain = tg.message_update(follows_bot, "what about deploys", chat_type="group")
    assert _post(stack, plain).get_json()["status"] == "accepted"
    [job] = stack["tap"].pull(expect=1)
    assert (job.chat_id, job.answer_mode) == (str(follows_bot), "always")


def test_mode_command_goes_through_in_a_disabled_chat(stack: dict, tg: FakeTelegram) -> None:
    group = -2005
    chat_switch.set_enabled(stack["db"], stack["bot_id"], group, False, by_user="telegram:1")
    mode = tg.message_update(group, "/mode confident", chat_type="group", user_id=99)
    assert _post(stack, mode).get_json()["status"] == "accepted"
    [job] = stack["tap"].pull(expect=1)
    assert (job.kind, job.question, job.user) == (JobKind.MODE, "confident", "99")
    # Setting the mode keeps the switch (and the other way round).
    chat_switch.set_answer_mode(stack["db"], stack["bot_id"], group, AnswerMode.ALWAYS, by_user="x")
    assert chat_switch.read_settings(stack["db"], stack["bot_id"], group) == chat_switch.ChatSettings(
        enabled=False, answer_mode=AnswerMode.ALWAYS
    )


def test_vote_button_is_thanked_in_the_response_and_published_once(stack: dict, tg: FakeTelegram) -> None:
    """A press of 👍 becomes one ``vote`` job however often Telegram delivers it; every delivery is
    answered with answerCallbackQuery in the response body. A press on an unknown or expired answer
    is answered politely and publishes nothing."""
    state_id = state_id_for_job(f"telegram:{stack['bot_id']}:3000")  # the shape the worker makes
    ButtonStateStore(stack["db"]).save(state_id, stack["bot_id"], "Q?", "A.", [], answer_id="a" * 32)
    sent = {"chat_id": 42, "text": "A."}
    press = tg.callback_update(sent, custom_id(Action.HELPFUL, state_id), user_id=4242, update_id=3001)
    replies = [_post(stack, press) for _ in range(3)]
    assert {r.status_code for r in replies} == {200}
    for reply in replies:
        body = reply.get_json()
        assert body["method"] == "answerCallbackQuery"
        assert body["callback_query_id"] == press["callback_query"]["id"]
        assert body["text"] == "Thanks for the feedback!"
    jobs = stack["tap"].pull(expect=1)
    # One job id for the three deliveries (the vote lands once: tests/test_bot_e2e.py counts it).
    assert {(j.job_id, j.kind, j.state_id, j.vote, j.user) for j in jobs} == {
        (f"telegram:{stack['bot_id']}:3001", JobKind.VOTE, state_id, "up", "4242")
    }

    stale = tg.callback_update(sent, custom_id(Action.NOT_HELPFUL, "gone-long-ago"), update_id=3002)
    foreign = tg.callback_update(sent, "something-else", update_id=3003)
    old_answer = _post(stack, stale).get_json()
    assert old_answer["method"] == "answerCallbackQuery" and "too old" in old_answer["text"]
    assert _post(stack, foreign).get_json()["text"] == "This button is not recognised."


def test_stopped_bot_is_acknowledged_without_a_job(stack: dict, tg: FakeTelegram, monkeypatch) -> None:
    BotRegistry.from_settings(stack["settings"]).set_desired(stack["bot_id"], "stopped")
    client = function_app("telegram_webhook").test_client()  # a fresh instance: no cached bot
    stack["client"] = client
    assert _post(stack, tg.message_update(42, "hi")).get_json()["status"] == "ignored"
    assert stack["tap"].settled() == []


def test_publish_failure_is_503_and_the_retry_gets_through(
    stack: dict, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    class FlakyPublisher:
        def __init__(self) -> None:
            self.calls = 0

        def publish(self, job: Any) -> str:
            self.calls += 1
            if self.calls == 1:
                raise TimeoutError("pubsub is slow")
            return "1"

    bots = {
        stack["bot_id"]: BotInfo(
            stack["bot_id"],
            "telegram",
            platform_info={"username": "docs_bot"},
            webhook_secret_hash=webhook_secret_hash(stack["bot_id"], stack["secret"]),
        )
    }
    ingress = Ingress(get_platform("telegram"), stack["db"], bots.get, FlakyPublisher())
    body = json.dumps(tg.message_update(42, "hi", update_id=3003)).encode()
    headers = {SECRET_HEADER: stack["secret"]}
    caplog.set_level(logging.INFO, logger="shared.bots.webhooks")
    assert ingress.handle(stack["bot_id"], headers, body).status == 503
    # An outage is the operator's business, as Discord's polite reply is: a WARNING, not INFO.
    [line] = [r for r in caplog.records if r.name == "shared.bots.webhooks"]
    assert line.levelno == logging.WARNING and "publish failed" in line.getMessage()
    assert ingress.handle(stack["bot_id"], headers, body).reason == "accepted"
    assert ingress.handle(stack["bot_id"], headers, body).reason == "duplicate"


def test_ingress_needs_no_token_key(stack: dict, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    """The function checks the secret header against the stored hash: it runs without the key that
    decrypts bot tokens (and so cannot decrypt one)."""
    keyless = bot_settings(monkeypatch, token_key="", token_key_secret="")
    assert keyless.token_key.get_secret_value() == "" and not keyless.token_key_secret
    build_ingress(keyless, "telegram")  # no TokenKeyError
    stack["client"] = function_app("telegram_webhook").test_client()  # built from the keyless settings
    good = _post(stack, tg.message_update(42, "How do I deploy?", update_id=4004))
    assert good.status_code == 200 and good.get_json()["status"] == "accepted"
    [job] = stack["tap"].pull(expect=1)
    assert job.job_id == f"telegram:{stack['bot_id']}:4004"
    wrong = stack["secret"][:-1] + ("A" if stack["secret"][-1] != "A" else "B")
    assert _post(stack, tg.message_update(42, "hi", update_id=4005), secret=wrong).status_code == 403
    assert _post(stack, tg.message_update(42, "hi", update_id=4006), secret=None).status_code == 403


def test_stored_secret_is_a_hash_not_the_secret(stack: dict) -> None:
    doc = stack["db"].collection("bots").document(stack["bot_id"]).get().to_dict()
    assert doc["webhook_secret_hash"].startswith("h1:")
    assert stack["secret"] not in repr(doc)
    bot = BotReader(stack["db"]).get_bot(stack["bot_id"])
    assert _secret_matches(bot, stack["secret"])
    assert not _secret_matches(bot, stack["secret"] + "x")


def test_bot_without_a_secret_hash_is_403_with_a_log_line(
    stack: dict, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """A bot registered before hashes were stored is refused (never a 500) until reconcile writes it."""
    caplog.set_level(logging.INFO, logger="shared.bots.webhooks")
    stack["db"].collection("bots").document(stack["bot_id"]).update(
        {"webhook_secret_hash": firestore.DELETE_FIELD}
    )
    stack["client"] = function_app("telegram_webhook").test_client()  # no cached bot
    response = _post(stack, tg.message_update(42, "hi", update_id=5005))
    assert response.status_code == 403
    lines = [r.getMessage() for r in caplog.records if r.name == "shared.bots.webhooks"]
    assert len(lines) == 1 and "403" in lines[0] and "hash" in lines[0]
    assert stack["secret"] not in lines[0]


class _Crash(BaseException):
    """The process dying mid-request (not an Exception: nothing in the ingress may handle it)."""


def test_crash_before_publishing_does_not_lose_the_update(stack: dict, tg: FakeTelegram) -> None:
    """The dedupe record is written only after the job is published: an update whose first delivery
    died before publishing is published (same job id) when Telegram delivers it again."""
    real = JobPublisher(stack["settings"].project_id, stack["settings"].jobs_topic)

    class CrashOncePublisher:
        calls = 0

        def publish(self, job: Any) -> str:
            self.calls += 1
            if self.calls == 1:
                raise _Crash
            return real.publish(job)

    publisher = CrashOncePublisher()
    ingress = Ingress(get_platform("telegram"), stack["db"], bot_lookup(BotReader(stack["db"])), publisher)
    body = json.dumps(tg.message_update(42, "How do I deploy?", update_id=6006)).encode()
    headers = {SECRET_HEADER: stack["secret"]}
    with pytest.raises(_Crash):
        ingress.handle(stack["bot_id"], headers, body)
    key = f"telegram:{stack['bot_id']}:6006"
    assert not stack["db"].collection(PROCESSED_UPDATES).document(key).get().exists
    assert ingress.handle(stack["bot_id"], headers, body).reason == "accepted"
    [job] = stack["tap"].pull(expect=1)
    assert (job.job_id, job.question) == (key, "How do I deploy?")
    assert stack["db"].collection(PROCESSED_UPDATES).document(key).get().exists
    assert ingress.handle(stack["bot_id"], headers, body).reason == "duplicate"
    assert publisher.calls == 2


def test_rejections_log_one_line_without_secrets(
    stack: dict, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.bots.webhooks")
    _post(stack, tg.message_update(42, "hi"), secret="wrong-secret-value")
    _post(stack, None, raw=b"garbage")
    lines = [r.getMessage() for r in caplog.records if r.name == "shared.bots.webhooks"]
    assert len(lines) == 2
    assert "403" in lines[0] and "400" in lines[1]
    text = "\n".join(lines)
    assert stack["secret"] not in text and "wrong-secret-value" not in text and stack["token"] not in text


def test_responses_never_contain_secrets(stack: dict, tg: FakeTelegram) -> None:
    bodies = [
        _post(stack, tg.message_update(42, "hi")).get_data(as_text=True),
        _post(stack, tg.message_update(42, "hi"), secret="bad").get_data(as_text=True),
        _post(stack, None, raw=b"garbage").get_data(as_text=True),
    ]
    for body in bodies:
        assert stack["secret"] not in body and stack["token"] not in body


# --- ids, numbers and storage errors a request can provoke --------------------------------------------


@pytest.mark.parametrize("bot_id", ["__x__", "__telegram__", "____"])
def test_reserved_bot_ids_are_404_with_a_log_line(
    stack: dict, tg: FakeTelegram, bot_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Firestore refuses ids matching __.*__ (InvalidArgument): no bot has one, and no secret is needed
    to ask, so the lookup was a 500 anyone could provoke."""
    caplog.set_level(logging.INFO, logger="shared.bots.webhooks")
    response = stack["client"].post(f"/{bot_id}", data=b"{}", content_type="application/json")
    assert response.status_code == 404 and response.get_json() == {"ok": False, "error": "unknown bot"}
    lines = [r.getMessage() for r in caplog.records if r.name == "shared.bots.webhooks"]
    assert len(lines) == 1 and "404" in lines[0]


@FIRESTORE_OUTAGES
def test_bot_lookup_outage_is_503(
    stack: dict, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """503 is Telegram's retry signal; the lookup sat outside the handled block (a 500). RetryError is a
    GoogleAPIError but no GoogleAPICallError, so catching the latter was not enough."""

    def down(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(BotReader, "get_bot", down)
    stack["client"] = function_app("telegram_webhook").test_client()  # no cached bot
    response = _post(stack, tg.message_update(42, "hi", update_id=7001))
    assert response.status_code == 503 and response.get_json() == {"ok": False, "error": "unavailable"}


def test_dedupe_read_past_its_retry_deadline_is_503(
    stack: dict, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gave_up(*args: object, **kwargs: object) -> bool:
        raise gexc.RetryError("deadline exceeded", None)

    monkeypatch.setattr(dedupe, "update_seen", gave_up)
    assert _post(stack, tg.message_update(42, "hi", update_id=7002)).status_code == 503
    assert stack["tap"].settled() == []


def test_a_chat_settings_read_that_outlasts_its_wait_is_503(
    stack: dict, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The side read's TimeoutError escaped the handler (a 500); Telegram delivers a 503'd update again."""
    release = threading.Event()
    real = chat_switch.read_settings

    def slow(*args: Any) -> Any:
        release.wait(timeout=60)
        return real(*args)

    monkeypatch.setattr(webhooks, "SIDE_READ_TIMEOUT_S", 0.2)
    monkeypatch.setattr(chat_switch, "read_settings", slow)
    try:
        group = tg.message_update(-1001, "/ask how do I deploy?", chat_type="group", update_id=7003)
        assert _post(stack, group).status_code == 503
    finally:
        release.set()
    assert stack["tap"].settled() == []


@pytest.mark.parametrize(
    "data", ["ab:up:a/b", "ab:down:__x__", "ab:up:..", "ab:up:.", "ab:up:" + "0f" * 16 + "/x"]
)
def test_a_press_on_a_state_id_askbase_never_makes_is_too_old(
    stack: dict, tg: FakeTelegram, data: str
) -> None:
    """ "/" made the state id a path (the client's ValueError: a 500), "__x__" one Firestore refuses
    (a 503, so Telegram delivered the same bad press again): both name no state."""
    press = tg.callback_update({"chat_id": 42}, data, update_id=7100)
    response = _post(stack, press)
    assert response.status_code == 200
    assert response.get_json()["method"] == "answerCallbackQuery" and "too old" in response.get_json()["text"]
    assert stack["tap"].settled() == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"update_id": ' + b"1" * 4301 + b"}",  # json.loads: a plain ValueError, not JSONDecodeError
        b'{"update_id": 1, "message": {"message_id": ' + b"9" * 5000 + b"}}",
        b"[" * 5000 + b"]" * 5000,  # RecursionError
        json.dumps(
            {"update_id": 10**290, "message": {"chat": {"id": 1, "type": "private"}, "text": "hi"}}
        ).encode(),
        json.dumps(
            {"update_id": 2**63, "message": {"chat": {"id": 1, "type": "private"}, "text": "hi"}}
        ).encode(),
        json.dumps(
            {"update_id": 1, "message": {"chat": {"id": 10**300, "type": "private"}, "text": "hi"}}
        ).encode(),
        json.dumps(
            {"update_id": 1, "message": {"chat": {"id": True, "type": "private"}, "text": "hi"}}
        ).encode(),
    ],
    ids=[
        "4301-digit integer",
        "5000-digit message id",
        "deep nesting",
        "291-digit update id",
        "update id past int64",
        "chat id past int64",
        "chat id true",
    ],
)
def test_numbers_the_bot_api_never_sends_are_400(stack: dict, raw: bytes) -> None:
    """A 291-digit update id made the job id too long for the Job model (pydantic's ValidationError: a
    500); a 300-digit chat id would name a chat_settings document past Firestore's 1,500 bytes."""
    response = _post(stack, None, raw=raw)
    assert response.status_code == 400, response.get_json()
    assert stack["tap"].settled() == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
_update_like = st.fixed_dictionaries(
    {"update_id": st.integers(min_value=-5, max_value=10**9) | _json},
    optional={
        "message": st.fixed_dictionaries(
            {},
            optional={
                "message_id": _json,
                "chat": st.fixed_dictionaries(
                    {}, optional={"id": _json, "type": st.sampled_from(["private", "group", "x"]) | _json}
                ),
                "from": _json,
                "text": st.text(max_size=40) | _json,
                "entities": _json,
                "reply_to_message": _json,
            },
        )
        | _json
    },
)


@property_settings(150, suppress=[HealthCheck.function_scoped_fixture])
@given(body=_update_like | _json)
def test_arbitrary_json_never_5xx(stack: dict, body: Any) -> None:
    response = _post(stack, body)
    assert response.status_code in (200, 400), (response.status_code, body)
