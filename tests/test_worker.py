"""The bot worker: push envelopes, exactly-once replies under redelivery, retries, Discord buttons, OIDC.

Real Firestore and Pub/Sub emulators, the fake Telegram / Discord APIs and a Q&A stand-in on loopback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from google.api_core import exceptions as gexc

from services.botrunner.control_api import SETTINGS_KEY
from services.botrunner.worker import EXTENSION_KEY, bp
from shared import logs
from shared.bots import chat_switch
from shared.bots.answer_modes import AnswerMode
from shared.bots.buttons import INTERACTIONS, ButtonStateStore, state_id_for_job, state_ttl
from shared.bots.dedupe import SENT_REPLIES, ReplyLedger
from shared.bots.jobs import Job, JobKind
from shared.bots.lookup import CachedLookup, bot_lookup
from shared.bots.platforms.errors import RetryPolicy
from shared.bots.qa_client import QaClient
from shared.bots.registry import BotRegistry
from shared.bots.worker import REDELIVERY_WAIT, SEND_ALLOWANCE, BotWorker
from shared.config import Settings
from shared.devstack.issuer import LocalIssuer
from tests.bot_stack import (
    bot_settings,
    discord_job,
    envelope_bytes,
    register_discord_bot,
    register_telegram_bot,
    tg_job,
)
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.qa_api import ANSWER_ID, FakeQA
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.emulators

FAST_RETRIES = RetryPolicy(attempts=3, backoff=0.05, max_backoff=0.2, max_wait=3.0)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTelegram, FakeDiscord, FakeQA]]:
    with FakeTelegram() as tg, FakeDiscord() as dc, FakeQA() as qa:
        yield tg, dc, qa


@pytest.fixture
def env(emulators: Any, settings: Settings, fakes: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    tg, dc, qa = fakes
    settings = bot_settings(
        monkeypatch, telegram_api_base=tg.base_url, discord_api_base=dc.base_url, qa_url=qa.url
    )
    registry = BotRegistry.from_settings(settings)
    worker = BotWorker(
        registry.db,
        bot_lookup(registry, with_token=True),
        QaClient(settings.qa_url),
        settings,
        retry_policy=FAST_RETRIES,
    )
    return {"settings": settings, "tg": tg, "dc": dc, "qa": qa, "registry": registry, "worker": worker}


# --- envelopes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"message": {}}',
        b'{"message": {"data": "%%%not base64"}}',
        b'{"message": {"data": "eyJmb28iOiAxfQ=="}}',  # {"foo": 1}: not a job
    ],
)
def test_malformed_push_is_acked_and_dropped(env: dict[str, Any], body: bytes) -> None:
    outcome = env["worker"].handle_push(body)
    assert outcome.status == 200 and outcome.reason == "malformed"


# --- Telegram replies ------------------------------------------------------------------------------


def test_answer_reaches_telegram_as_a_reply_with_sources(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    outcome = env["worker"].handle_push(envelope_bytes(tg_job(bot_id)))
    assert (outcome.status, outcome.reason) == (200, "sent")
    [sent] = env["tg"].sent_messages(token)
    assert sent["chat_id"] in ("555", 555)
    assert sent["parse_mode"] == "HTML"
    assert sent["reply_parameters"]["message_id"] == 7
    assert "&lt;PROJECT&gt; &amp; region" in sent["text"]
    assert '<a href="https://docs.example.com/deploy#steps">Deploying askbase</a>' in sent["text"]
    [asked] = env["qa"].requests
    assert asked["json"] == {"question": "How do I deploy?", "bot_id": bot_id, "user": "telegram:555"}
    assert asked["headers"]["x-askbase-service"] == "botrunner"
    assert env["registry"].db.collection(SENT_REPLIES).document(f"telegram:{bot_id}:1").get().get(
        "state"
    ) == ("sent")


def test_redelivered_job_replies_once(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    body = envelope_bytes(tg_job(bot_id))
    outcomes = [env["worker"].handle_push(body) for _ in range(5)]
    assert [o.reason for o in outcomes] == ["sent"] + ["duplicate"] * 4
    assert all(o.status == 200 for o in outcomes)
    assert len(env["tg"].sent_messages(token)) == 1
    assert len(env["qa"].requests) == 1


class _Crash(BaseException):
    """The webhook process dying mid-request."""


def test_update_published_twice_after_a_webhook_crash_is_answered_once(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook records an update only after publishing its job. If it dies in between, Telegram's
    retry publishes the same job id again; the worker answers the update exactly once."""
    from shared.bots import dedupe
    from shared.bots.platforms import get_platform
    from shared.bots.platforms.telegram import SECRET_HEADER
    from shared.bots.registry import BotReader
    from shared.bots.webhooks import Ingress

    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    registry: BotRegistry = env["registry"]
    secret = registry.webhook_secret(registry.get_bot(bot_id))
    outcomes: list[str] = []

    class InlinePublisher:  # Pub/Sub delivering each job to the worker at once
        def publish(self, job: Job) -> str:
            outcomes.append(env["worker"].process(job).reason)
            return "1"

    record = dedupe.record_update
    crashes = iter([True])

    def record_or_crash(*args: Any, **kwargs: Any) -> bool:
        if next(crashes, False):
            raise _Crash  # after publishing, before recording
        return record(*args, **kwargs)

    monkeypatch.setattr(dedupe, "record_update", record_or_crash)
    lookup = bot_lookup(BotReader(registry.db))
    ingress = Ingress(get_platform("telegram"), registry.db, lookup, InlinePublisher())
    update = env["tg"].message_update(555, "How do I deploy?", update_id=77)
    body = json.dumps(update).encode()
    headers = {SECRET_HEADER: secret}
    with pytest.raises(_Crash):
        ingress.handle(bot_id, headers, body)
    assert ingress.handle(bot_id, headers, body).reason == "accepted"  # Telegram's retry: published again
    assert ingress.handle(bot_id, headers, body).reason == "duplicate"  # and now recorded
    assert outcomes == ["sent", "duplicate"]
    assert len(env["tg"].sent_messages(token)) == 1
    assert len(env["qa"].requests) == 1


def test_concurrent_deliveries_reply_once(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    body = envelope_bytes(tg_job(bot_id))
    outcomes: list[Any] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        outcomes.append(env["worker"].handle_push(body))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    reasons = sorted(o.reason for o in outcomes)
    assert reasons.count("sent") == 1
    # The others either saw the finished reply or the fresh claim (and asked Pub/Sub to retry later).
    assert all(o.reason in ("sent", "duplicate", "in progress") for o in outcomes)
    assert all(o.status == 503 for o in outcomes if o.reason == "in progress")
    # Pub/Sub redelivers the 503s: they now find the reply sent.
    assert env["worker"].handle_push(body).reason == "duplicate"
    assert len(env["tg"].sent_messages(token)) == 1


def test_fresh_claim_of_another_worker_means_retry_later(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    job = tg_job(bot_id)
    ReplyLedger(env["registry"].db).claim(job.job_id)  # another worker is sending right now
    outcome = env["worker"].process(job)
    assert (outcome.status, outcome.reason) == (503, "in progress")
    assert env["tg"].sent_messages(token) == []


def test_stale_claim_is_taken_over_and_resumes_after_the_sent_parts(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    job = tg_job(bot_id)
    # A worker claimed the job, rendered two parts, sent the first, and crashed 5 minutes ago.
    past = datetime.now(UTC) - timedelta(minutes=5)
    env["registry"].db.collection(SENT_REPLIES).document(job.job_id).set(
        {
            "state": "sending",
            "holder": "crashed-worker",
            "claimed_at": past,
            "lease_until": past + timedelta(seconds=90),
            "parts": ["part one", "part two"],
            "parts_sent": 1,
            "expire_at": past + timedelta(days=7),
        }
    )
    outcome = env["worker"].process(job)
    assert outcome.reason == "sent"
    assert [m["text"] for m in env["tg"].sent_messages(token)] == ["part two"]
    assert env["qa"].requests == []  # the saved parts were sent, not a fresh answer


def test_qa_down_is_retried_and_then_answered_once(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["qa"].fail_next(status=503, times=1)
    body = envelope_bytes(tg_job(bot_id))
    first = env["worker"].handle_push(body)
    assert (first.status, first.reason) == (503, "retry")
    # The claim was released: the redelivery proceeds at once instead of waiting out the lease.
    second = env["worker"].handle_push(body)
    assert second.reason == "sent"
    assert len(env["tg"].sent_messages(token)) == 1


def test_telegram_429_is_retried_after_retry_after(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["tg"].fail_next("sendMessage", status=429, retry_after=1, times=1)
    waits: list[float] = []
    worker = BotWorker(
        env["registry"].db,
        bot_lookup(env["registry"], with_token=True),
        QaClient(env["settings"].qa_url),
        env["settings"],
        retry_policy=dataclasses.replace(FAST_RETRIES, sleep=waits.append),
    )
    outcome = worker.process(tg_job(bot_id))
    assert outcome.reason == "sent"
    assert waits == [1.0]  # waited exactly what Telegram's retry_after said, once
    assert len(env["tg"].sent_messages(token)) == 1


def test_telegram_5xx_beyond_retries_is_nacked_then_delivered(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["tg"].fail_next("sendMessage", status=502, times=FAST_RETRIES.attempts)
    job = tg_job(bot_id)
    assert env["worker"].process(job).status == 503
    assert env["worker"].process(job).reason == "sent"
    assert len(env["tg"].sent_messages(token)) == 1
    assert len(env["qa"].requests) == 1  # the rendered answer was kept for the retry


def test_permanent_platform_error_is_acked(env: dict[str, Any]) -> None:
    bot_id, _token = register_telegram_bot(env["settings"], env["tg"])
    env["tg"].fail_next("sendMessage", status=400, times=1)
    job = tg_job(bot_id)
    outcome = env["worker"].process(job)
    assert (outcome.status, outcome.reason) == (200, "platform refused")
    assert env["worker"].process(job).reason == "failed before"


def test_long_answer_is_split_and_parts_stay_in_order(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["qa"].answer_text = ("Configure <a> & <b> then deploy. " * 40 + "\n\n") * 12
    env["worker"].process(tg_job(bot_id))
    sent = env["tg"].sent_messages(token)
    assert len(sent) >= 3
    assert all(len(m["text"]) <= 4096 for m in sent)
    assert "reply_parameters" in sent[0] and all("reply_parameters" not in m for m in sent[1:])
    assert sent[-1]["text"].rstrip().endswith("</a>")  # sources after the answer


def test_every_part_of_an_answer_in_a_forum_topic_goes_to_that_topic(env: dict[str, Any]) -> None:
    """Only the first part replies to the question; without the topic the later parts (and a first part
    whose question was deleted meanwhile) would land in the forum's General topic."""
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["qa"].answer_text = ("Configure <a> & <b> then deploy. " * 40 + "\n\n") * 12
    job = tg_job(bot_id, chat_id="-100777", chat_type="supergroup", thread_id=55)
    assert env["worker"].process(job).reason == "sent"
    sent = env["tg"].sent_messages(token)
    assert len(sent) >= 3
    assert [str(m.get("message_thread_id")) for m in sent] == ["55"] * len(sent)
    # Outside a topic, no thread is named (Telegram refuses one in a chat without topics).
    env["worker"].process(tg_job(bot_id, update_id=2))
    assert "message_thread_id" not in env["tg"].sent_messages(token)[-1]


def test_each_forum_topic_is_a_conversation_of_its_own(env: dict[str, Any]) -> None:
    """A follow-up in one topic must not be read against the last question of another: qa keeps one
    conversation per chat key, so a topic's key names its topic."""
    bot_id, _ = register_telegram_bot(env["settings"], env["tg"])
    forum = {"chat_id": "-100777", "chat_type": "supergroup"}
    for update_id, topic in enumerate([55, 66, 55, None], start=1):
        assert env["worker"].process(tg_job(bot_id, update_id, thread_id=topic, **forum)).reason == "sent"
    users = [request["json"]["user"] for request in env["qa"].requests]
    assert users == ["telegram:-100777/55", "telegram:-100777/66", "telegram:-100777/55", "telegram:-100777"]


def test_an_answer_to_a_group_upgraded_meanwhile_goes_to_the_supergroup(env: dict[str, Any]) -> None:
    """Asked right before the group became a supergroup: Telegram refuses the old chat id and names the
    new one, where the answer is sent (a permanent 400 otherwise: the answer was lost)."""
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["tg"].migrate_chat(-4001, -1004001)
    job = tg_job(bot_id, chat_id="-4001", chat_type="group")
    assert env["worker"].process(job).reason == "sent"
    [sent] = env["tg"].sent_messages(token)
    assert str(sent["chat_id"]) == "-1004001"


def test_help_job_does_not_ask_qa(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["worker"].process(tg_job(bot_id, kind=JobKind.HELP, question=None))
    [sent] = env["tg"].sent_messages(token)
    assert "@docs_bot" in sent["text"] and "/ask" in sent["text"]
    assert env["qa"].requests == []


def test_enable_disable_needs_a_chat_admin(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    db = env["registry"].db
    group = -100123
    job = tg_job(bot_id, 10, kind=JobKind.DISABLE, chat_id=str(group), chat_type="supergroup", user="42")
    env["worker"].process(job)
    assert chat_switch.is_enabled(db, bot_id, group)  # 42 is not an admin
    assert "Only chat admins" in env["tg"].sent_messages(token)[-1]["text"]
    env["tg"].admins.add((group, 42))
    env["worker"].process(job.model_copy(update={"job_id": f"telegram:{bot_id}:11"}))
    assert not chat_switch.is_enabled(db, bot_id, group)
    assert "Disabled" in env["tg"].sent_messages(token)[-1]["text"]
    env["worker"].process(job.model_copy(update={"job_id": f"telegram:{bot_id}:12", "kind": JobKind.ENABLE}))
    assert chat_switch.is_enabled(db, bot_id, group)
    asked = [int(c.params["user_id"]) for c in env["tg"].calls_for(token, "getChatMember")]
    assert asked == [42, 42, 42]


def test_stopped_or_unknown_bot_jobs_are_dropped(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"], running=False)
    assert env["worker"].process(tg_job(bot_id)).reason == "bot stopped"
    assert env["worker"].process(tg_job("nope")).reason == "unknown bot"
    assert env["tg"].sent_messages(token) == []


def test_telegram_answer_carries_vote_buttons_and_its_answer_id(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    job = tg_job(bot_id, 20)
    assert env["worker"].process(job).reason == "sent"
    [sent] = env["tg"].sent_messages(token)
    state_id = state_id_for_job(job.job_id)
    [row] = sent["reply_markup"]["inline_keyboard"]
    assert [(b["text"], b["callback_data"]) for b in row] == [
        ("👍 Helpful", f"ab:up:{state_id}"),
        ("👎 Not helpful", f"ab:down:{state_id}"),
    ]
    state = ButtonStateStore(env["registry"].db).get(state_id)
    assert state is not None and state.answer_id == ANSWER_ID


def test_button_state_lasts_no_longer_than_conversations(env: dict[str, Any]) -> None:
    """The state holds the question and the answer: with a 7-day conversation retention it expires
    after 7 days, not after the buttons' usual 30 (and 0, keep forever, keeps the 30)."""
    bot_id, _ = register_telegram_bot(env["settings"], env["tg"])
    short = env["settings"].model_copy(update={"conversation_retention_days": 7})
    db = env["registry"].db
    worker = BotWorker(db, bot_lookup(env["registry"], with_token=True), QaClient(short.qa_url), short)
    job = tg_job(bot_id, 21)
    assert worker.process(job).reason == "sent"
    expire_at = db.collection(INTERACTIONS).document(state_id_for_job(job.job_id)).get().get("expire_at")
    assert timedelta(days=6) < expire_at - datetime.now(UTC) <= timedelta(days=7)
    assert state_ttl(0) == state_ttl(365) == timedelta(days=30)


@pytest.mark.parametrize("platform", ["telegram", "discord"])
def test_vote_job_is_cast_by_the_qa_service_on_every_delivery(env: dict[str, Any], platform: str) -> None:
    """A vote job skips the reply ledger: each delivery asks the Q&A service to cast the same vote
    (idempotent there), nothing is sent to the chat, and a stopped bot's answer still takes votes."""
    if platform == "telegram":
        bot_id, _ = register_telegram_bot(env["settings"], env["tg"], running=False)
    else:
        bot_id = register_discord_bot(env["settings"], env["dc"].add_application(), running=False)
    job = Job(
        job_id=f"{platform}:{bot_id}:77",
        platform=platform,
        bot_id=bot_id,
        kind=JobKind.VOTE,
        chat_id="555",
        user="4242",
        state_id="s" * 32,
        vote="down",
    )
    outcomes = [env["worker"].handle_push(envelope_bytes(job, str(n))) for n in range(3)]
    assert [(o.status, o.reason) for o in outcomes] == [(200, "voted")] * 3
    expected = {"bot_id": bot_id, "state_id": "s" * 32, "voter": f"{platform}:4242", "vote": "down"}
    assert [v["json"] for v in env["qa"].votes] == [expected] * 3
    assert env["qa"].requests == []  # nothing asked, so nothing answered
    env["qa"].fail_next(503)
    assert env["worker"].process(job).status == 503  # Pub/Sub redelivers
    env["qa"].fail_next(404)
    assert env["worker"].process(job).reason == "vote refused"  # the state expired meanwhile


@pytest.mark.parametrize(("mode", "posted"), [("mentions", True), ("always", True), ("confident", False)])
def test_a_refusal_is_posted_unless_the_chat_is_confident_only(
    env: dict[str, Any], mode: str, posted: bool
) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["qa"].refused = True
    env["qa"].answer_text = "I could not find this in the documentation."
    chat_switch.set_answer_mode(env["registry"].db, bot_id, 555, AnswerMode(mode), by_user="telegram:1")
    assert env["worker"].process(tg_job(bot_id, 30)).reason == "sent"
    assert len(env["tg"].sent_messages(token)) == (1 if posted else 0)
    # A confident answer is posted in every mode; the job's own mode (from the ingress) is used first.
    env["qa"].refused = False
    assert env["worker"].process(tg_job(bot_id, 31, answer_mode="confident")).reason == "sent"
    assert len(env["tg"].sent_messages(token)) == (2 if posted else 1)


def test_a_bots_own_mode_applies_in_chats_without_one(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    env["registry"].update_bot(bot_id, {"answer_mode": "confident"})
    env["qa"].refused = True
    assert env["worker"].process(tg_job(bot_id, 32)).reason == "sent"
    assert env["tg"].sent_messages(token) == []


def test_mode_command_needs_a_chat_admin_and_persists(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    db, group = env["registry"].db, -100777
    chat_switch.set_enabled(db, bot_id, group, False, by_user="telegram:1")
    job = tg_job(bot_id, 40, kind=JobKind.MODE, chat_id=str(group), chat_type="group", user="42")
    env["worker"].process(job.model_copy(update={"question": "always"}))
    assert "Only chat admins" in env["tg"].sent_messages(token)[-1]["text"]
    assert chat_switch.read_settings(db, bot_id, group).answer_mode is None
    env["tg"].admins.add((group, 42))
    env["worker"].process(job.model_copy(update={"job_id": f"telegram:{bot_id}:41", "question": "Always"}))
    assert "Answer mode for this chat: always" in env["tg"].sent_messages(token)[-1]["text"]
    assert chat_switch.read_settings(db, bot_id, group) == chat_switch.ChatSettings(False, AnswerMode.ALWAYS)
    env["worker"].process(job.model_copy(update={"job_id": f"telegram:{bot_id}:42", "question": "loud"}))
    assert "Unknown mode" in env["tg"].sent_messages(token)[-1]["text"]
    env["worker"].process(job.model_copy(update={"job_id": f"telegram:{bot_id}:43", "question": ""}))
    assert "Answer mode: always (set for this chat)" in env["tg"].sent_messages(token)[-1]["text"]


def test_forget_clears_the_chat_at_qa_and_its_button_state(env: dict[str, Any]) -> None:
    """``/forget`` in a private chat: the Q&A service clears the chat's history and the sender's votes,
    and the worker deletes the button state (question and answer) of the chat's answers. In a group
    only an admin may."""
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    db = env["registry"].db
    env["worker"].process(tg_job(bot_id, 50))  # an answer in chat 555, with its buttons' state
    kept = tg_job(bot_id, 51, chat_id="556", user="556")
    env["worker"].process(kept)
    assert env["worker"].process(tg_job(bot_id, 52, kind=JobKind.FORGET)).reason == "sent"
    assert "I forgot this chat" in env["tg"].sent_messages(token)[-1]["text"]
    [forget] = env["qa"].forgets
    assert forget["json"] == {"bot_id": bot_id, "user": "telegram:555", "voter": "telegram:555"}
    buttons = ButtonStateStore(db)
    assert buttons.get(state_id_for_job(f"telegram:{bot_id}:50")) is None
    assert buttons.get(state_id_for_job(kept.job_id)) is not None  # another chat's answers stay

    group = tg_job(bot_id, 53, kind=JobKind.FORGET, chat_id="-100555", chat_type="group", user="42")
    env["worker"].process(group)
    assert "Only chat admins" in env["tg"].sent_messages(token)[-1]["text"]
    assert len(env["qa"].forgets) == 1


def test_forget_in_a_forum_topic_forgets_the_whole_forum(env: dict[str, Any]) -> None:
    """Each topic is a Q&A conversation of its own, but ``/forget`` clears the forum's history (the
    reply says "this chat"): qa is given the forum's key, which takes its topics, and the button state
    of every topic's answers goes."""
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    forum = {"chat_id": "-100777", "chat_type": "supergroup", "user": "555", "user_is_admin_hint": True}
    env["worker"].process(tg_job(bot_id, 60, thread_id=55, **forum))
    env["worker"].process(tg_job(bot_id, 61, **forum))  # the General topic
    other = tg_job(bot_id, 62, chat_id="-1007770", chat_type="supergroup", thread_id=55, user="555")
    env["worker"].process(other)
    forget = tg_job(bot_id, 63, kind=JobKind.FORGET, thread_id=66, **forum)
    assert env["worker"].process(forget).reason == "sent"
    assert "I forgot this chat" in env["tg"].sent_messages(token)[-1]["text"]
    # The forum (a current qa takes its topics with it), then the topic itself for a qa from before.
    assert [f["json"]["user"] for f in env["qa"].forgets] == ["telegram:-100777", "telegram:-100777/66"]
    buttons = ButtonStateStore(env["registry"].db)
    assert buttons.get(state_id_for_job(f"telegram:{bot_id}:60")) is None
    assert buttons.get(state_id_for_job(f"telegram:{bot_id}:61")) is None
    assert buttons.get(state_id_for_job(other.job_id)) is not None  # a chat whose id starts the same


def test_forget_in_a_group_upgraded_to_a_supergroup_takes_its_history_from_before(
    env: dict[str, Any],
) -> None:
    """Q&A keeps a chat's history under its chat id; a group upgraded to a supergroup has a new one, and
    its /forget must take what was asked under the old one too."""
    bot_id, _ = register_telegram_bot(env["settings"], env["tg"])
    db = env["registry"].db
    group = {"chat_type": "supergroup", "user": "555", "user_is_admin_hint": True}
    env["worker"].process(tg_job(bot_id, 70, chat_id="-4001", **(group | {"chat_type": "group"})))
    chat_switch.move_settings(db, bot_id, -4001, -1004001)
    env["worker"].process(tg_job(bot_id, 71, chat_id="-1004001", **group))
    assert (
        env["worker"].process(tg_job(bot_id, 72, kind=JobKind.FORGET, chat_id="-1004001", **group)).reason
        == "sent"
    )
    assert [f["json"]["user"] for f in env["qa"].forgets] == ["telegram:-1004001", "telegram:-4001"]
    buttons = ButtonStateStore(db)
    assert buttons.get(state_id_for_job(f"telegram:{bot_id}:70")) is None
    assert buttons.get(state_id_for_job(f"telegram:{bot_id}:71")) is None


def test_forget_keeps_the_chats_reply_receipts_which_hold_no_text(env: dict[str, Any]) -> None:
    """The ``sent_replies`` receipts of a chat's answers outlive its ``/forget`` (7 days): they are what
    keeps a copy of an answered job delivered later from being asked and answered again. Once a reply
    is sent, or has failed for good, its receipt holds no text of it, so nothing of the chat stays there."""
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    db = env["registry"].db
    answered = tg_job(bot_id, 60)
    assert env["worker"].process(answered).reason == "sent"
    env["tg"].fail_next("sendMessage", status=400, times=1)  # the chat is gone: failed for good
    refused = tg_job(bot_id, 61)
    assert env["worker"].process(refused).reason == "platform refused"
    assert env["worker"].process(tg_job(bot_id, 62, kind=JobKind.FORGET)).reason == "sent"
    reply = env["tg"].sent_messages(token)[-1]["text"]
    assert "I forgot this chat" in reply and "Backups keep them for up to 7 days" in reply  # says what stays

    receipts = {s.id: s.to_dict() or {} for s in db.collection(SENT_REPLIES).stream()}
    assert {job_id: doc["state"] for job_id, doc in receipts.items()} == {
        answered.job_id: "sent",
        refused.job_id: "failed",
        f"telegram:{bot_id}:62": "sent",
    }
    for doc in receipts.values():
        assert "parts" not in doc and "extra" not in doc, doc
        assert "deploy" not in json.dumps(doc, default=str).lower(), doc  # neither question nor answer
        assert doc["expire_at"] - (doc.get("sent_at") or doc["failed_at"]) <= timedelta(days=7)

    # A copy of the answered job after /forget (a Pub/Sub redelivery, a webhook retry): not asked again,
    # so its question is not recorded anew, and not answered twice.
    messages, asked = len(env["tg"].sent_messages(token)), len(env["qa"].requests)
    assert env["worker"].process(answered).reason == "duplicate"
    assert env["worker"].process(refused).reason == "failed before"
    assert (len(env["tg"].sent_messages(token)), len(env["qa"].requests)) == (messages, asked)


# --- Discord replies -------------------------------------------------------------------------------


def test_discord_answer_edits_original_with_buttons_and_state(env: dict[str, Any]) -> None:
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    job = discord_job(bot_id, app.id, "interaction-token-abc")
    assert env["worker"].process(job).reason == "sent"
    [edit] = env["dc"].edits(app.id)
    payload = edit["payload"]
    assert "\\`askbase deploy\\`" in payload["content"] and "\\<PROJECT\\>" in payload["content"]
    assert payload["allowed_mentions"] == {"parse": []}
    labels = [c["label"] for c in payload["components"][0]["components"]]
    assert labels == ["Sources", "Helpful", "Not helpful"]
    state_id = state_id_for_job(job.job_id)
    assert all(c["custom_id"].endswith(state_id) for c in payload["components"][0]["components"])
    state = ButtonStateStore(env["registry"].db).get(state_id)
    assert state is not None and state.question == "How do I deploy?"
    assert state.sources[0].url == "https://docs.example.com/deploy#steps"
    expire_at = env["registry"].db.collection(INTERACTIONS).document(state_id).get().get("expire_at")
    assert timedelta(days=29) < expire_at - datetime.now(UTC) <= timedelta(days=30)


def test_discord_long_answer_uses_followups_and_buttons_go_last(env: dict[str, Any]) -> None:
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    env["qa"].answer_text = "Use *stars* and _underscores_ freely. " * 150
    env["worker"].process(discord_job(bot_id, app.id, "tok-long"))
    edits, followups = env["dc"].edits(app.id), env["dc"].followups(app.id)
    assert len(edits) == 1 and len(followups) >= 2
    messages = [edits[0]["payload"], *(f["payload"] for f in followups)]
    assert all(len(m["content"]) <= 2000 for m in messages)
    assert "components" not in messages[0] and "components" in messages[-1]


def test_discord_job_older_than_the_token_is_dropped(env: dict[str, Any]) -> None:
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    old = datetime.now(UTC) - timedelta(minutes=20)
    assert env["worker"].process(discord_job(bot_id, app.id, "tok", created_at=old)).reason == "expired"
    assert env["dc"].edits(app.id) == []


def test_a_discord_question_qa_cannot_answer_before_the_token_expires_is_told_so(
    env: dict[str, Any],
) -> None:
    """Q&A down: a young interaction is retried (503), but one whose 15 minutes end before Pub/Sub
    could deliver it again and that delivery answer it (it waits up to 300 s, then needs up to 60 s;
    here 330 s are left) is answered with an apology now, instead of a "thinking..." that never ends;
    its redeliveries are acknowledged."""
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    env["qa"].fail_next(status=503, times=2)
    young = discord_job(bot_id, app.id, "tok-young", interaction_id="1111111111111111111")
    assert (env["worker"].process(young).status, env["dc"].edits(app.id)) == (503, [])
    late = discord_job(
        bot_id,
        app.id,
        "tok-late",
        interaction_id="2222222222222222222",
        created_at=datetime.now(UTC) - timedelta(minutes=9, seconds=30),
    )
    outcome = env["worker"].process(late)
    assert (outcome.status, outcome.reason) == (200, "gave up")
    [edit] = env["dc"].edits(app.id)
    assert edit["token"] == "tok-late" and "try again" in edit["payload"]["content"].lower()
    assert "components" not in edit["payload"]
    assert env["worker"].process(late).reason == "failed before"
    assert len(env["dc"].edits(app.id)) == 1


def test_a_late_discord_answer_cut_short_keeps_the_part_the_user_already_sees(env: dict[str, Any]) -> None:
    """The first part is in @original when a followup fails near the token's end. Its parts are saved
    in the ledger, so the next delivery only sends (no Q&A call): the job is handed back while Pub/Sub's
    longest backoff plus the sends' allowance fit in what is left of the window (340 s here, not the
    360 s a delivery that asks qa needs), and that delivery finishes the answer. With less (240 s) it
    is given up, and the part the user already sees is not overwritten with the apology."""
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    env["qa"].answer_text = "Use *stars* and _underscores_ freely. " * 150
    env["dc"].fail_next("followup", status=500, times=FAST_RETRIES.attempts)
    window = timedelta(minutes=15)
    cut = discord_job(
        bot_id,
        app.id,
        "tok-resumed",
        interaction_id="3333333333333333333",
        created_at=datetime.now(UTC) - window + REDELIVERY_WAIT + SEND_ALLOWANCE + timedelta(seconds=10),
    )
    outcome = env["worker"].process(cut)
    assert (outcome.status, outcome.reason) == (503, "platform unavailable")
    assert len(env["qa"].requests) == 1
    assert env["worker"].process(cut).reason == "sent"
    assert len(env["qa"].requests) == 1  # the saved parts were sent, no second answer
    [edit] = [e for e in env["dc"].edits(app.id) if e["token"] == "tok-resumed"]
    assert "stars" in edit["payload"]["content"]
    followups = [f for f in env["dc"].followups(app.id) if f["token"] == "tok-resumed"]
    assert len(followups) >= 2 and "components" in followups[-1]["payload"]

    env["dc"].fail_next("followup", status=500, times=FAST_RETRIES.attempts)
    late = discord_job(bot_id, app.id, "tok-cut", created_at=datetime.now(UTC) - timedelta(minutes=11))
    assert env["worker"].process(late).reason == "gave up"
    [edit] = [e for e in env["dc"].edits(app.id) if e["token"] == "tok-cut"]
    assert "stars" in edit["payload"]["content"]


class _LedgerDownAfterSend(ReplyLedger):
    """A ledger whose record of a delivered part fails (Firestore unavailable) the first ``times`` times:
    the platform has accepted the part by then."""

    def __init__(self, db: Any, times: int = 1) -> None:
        super().__init__(db)
        self.failures_left = times

    def part_sent(self, claim: Any, count: int, now: datetime | None = None) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise gexc.ServiceUnavailable("firestore unavailable")
        super().part_sent(claim, count, now)


def test_a_delivered_part_the_ledger_failed_to_record_is_never_replaced_by_the_apology(
    env: dict[str, Any],
) -> None:
    """A one-part answer is edited into @original, then recording it fails (Firestore). Near the token's
    end the job is given up, but the answer the user sees stays: no apology over it. With time left the
    job is handed back with the part counted (the release records it), and the next delivery sends
    nothing again."""
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    db = env["registry"].db
    worker = BotWorker(
        db,
        bot_lookup(env["registry"], with_token=True),
        QaClient(env["settings"].qa_url),
        env["settings"],
        ledger=_LedgerDownAfterSend(db, times=2),
        retry_policy=FAST_RETRIES,
    )
    late = discord_job(
        bot_id,
        app.id,
        "tok-late",
        interaction_id="4444444444444444444",
        created_at=datetime.now(UTC) - timedelta(minutes=11),
    )
    assert worker.process(late).reason == "gave up"
    edits = [e for e in env["dc"].edits(app.id) if e["token"] == "tok-late"]
    [edit] = edits  # the answer, with its buttons; no apology edited over it
    assert "deploy" in edit["payload"]["content"] and "components" in edit["payload"]

    young = discord_job(bot_id, app.id, "tok-young", interaction_id="5555555555555555555")
    outcome = worker.process(young)
    assert (outcome.status, outcome.reason) == (503, "retry")
    assert db.collection(SENT_REPLIES).document(young.job_id).get().get("parts_sent") == 1
    assert worker.process(young).reason == "sent"
    assert len([e for e in env["dc"].edits(app.id) if e["token"] == "tok-young"]) == 1
    assert len(env["qa"].requests) == 2


def test_the_worker_knows_the_subscriptions_longest_backoff() -> None:
    from infra.components.messaging import MAX_BACKOFF_S

    assert timedelta(seconds=MAX_BACKOFF_S) == REDELIVERY_WAIT


@pytest.mark.parametrize(("mode", "posted"), [("mentions", True), ("always", True), ("confident", False)])
def test_discord_refusal_is_posted_unless_the_channel_is_confident_only(
    env: dict[str, Any], mode: str, posted: bool
) -> None:
    """Every /ask is addressed, so each mode answers it; a refusal in ``confident`` deletes the deferred
    "thinking..." instead of being posted."""
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    env["qa"].refused = True
    job = discord_job(bot_id, app.id, "tok-refused", answer_mode=mode)
    assert env["worker"].process(job).reason == "sent"
    deleted = [c.path for c in env["dc"].calls if c.method == "DELETE"]
    if posted:
        [edit] = env["dc"].edits(app.id)
        assert "components" in edit["payload"] and deleted == []
    else:
        assert env["dc"].edits(app.id) == [] and env["dc"].followups(app.id) == []
        assert deleted == [f"/webhooks/{app.id}/tok-refused/messages/@original"]
    # A confident answer is posted in every mode.
    env["qa"].refused = False
    env["worker"].process(discord_job(bot_id, app.id, "tok-ok", "1234567890123456780", answer_mode=mode))
    assert env["dc"].edits(app.id)[-1]["token"] == "tok-ok"


def test_discord_mode_is_set_by_a_channel_manager(env: dict[str, Any]) -> None:
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    db, channel = env["registry"].db, "998877665544332211"
    member = discord_job(bot_id, app.id, "tok-m1", kind=JobKind.MODE, question="confident")
    env["worker"].process(member)
    assert "Only chat admins" in env["dc"].edits(app.id)[-1]["payload"]["content"]
    manager = discord_job(
        bot_id,
        app.id,
        "tok-m2",
        "1234567890123456781",
        kind=JobKind.MODE,
        question="confident",
        user_is_admin_hint=True,
    )
    env["worker"].process(manager)
    assert chat_switch.read_settings(db, bot_id, channel).answer_mode is AnswerMode.CONFIDENT
    assert "confident" in env["dc"].edits(app.id)[-1]["payload"]["content"]


# --- the push endpoint -----------------------------------------------------------------------------


def _push_app(settings: Settings, worker: BotWorker | None = None) -> Flask:
    app = Flask("push-test")
    app.extensions[SETTINGS_KEY] = settings
    if worker is not None:
        app.extensions[EXTENSION_KEY] = worker
    app.register_blueprint(bp)
    return app


def test_push_endpoint_without_auth_locally(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    client = _push_app(env["settings"], env["worker"]).test_client()
    response = client.post("/worker/push", data=envelope_bytes(tg_job(bot_id)))
    assert response.status_code == 200 and response.get_json() == {"status": "sent"}
    assert client.post("/worker/push", data=b"garbage").status_code == 200
    assert len(env["tg"].sent_messages(token)) == 1


# --- OIDC ------------------------------------------------------------------------------------------

AUDIENCE = "https://botrunner.example.run.app/worker/push"
PUSH_SA = "pubsub-push@askbase-test.iam.gserviceaccount.com"


def test_push_endpoint_requires_the_push_accounts_token_in_production_mode(
    env: dict[str, Any], issuer: LocalIssuer
) -> None:
    settings = env["settings"].model_copy(
        update={
            "internal_auth": "google-oidc",
            "oidc_certs_url": issuer.certs_url,
            "oidc_issuers": [issuer.issuer],
            "worker_push_audience": AUDIENCE,
            "worker_push_service_account": PUSH_SA,
        }
    )
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    client = _push_app(settings, env["worker"]).test_client()
    body = envelope_bytes(tg_job(bot_id))
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        None: 401,
        "Basic abc": 401,
        "Bearer not-a-jwt": 401,
        "Bearer " + issuer.mint(PUSH_SA, "https://other.example/"): 401,
        "Bearer " + issuer.mint(PUSH_SA, AUDIENCE, lifetime=-600): 401,
        "Bearer " + issuer.mint(PUSH_SA, AUDIENCE, iss="https://evil.example"): 401,
        "Bearer " + issuer.mint(PUSH_SA, AUDIENCE, key=forged): 401,  # right kid, wrong key
        "Bearer " + issuer.mint("intruder@example.com", AUDIENCE): 403,
        "Bearer " + issuer.mint(PUSH_SA, AUDIENCE, email_verified=False): 403,
    }
    for header, status in refused.items():
        headers = {"Authorization": header} if header else {}
        assert client.post("/worker/push", data=body, headers=headers).status_code == status, header
    assert env["tg"].sent_messages(token) == []
    good = {"Authorization": "Bearer " + issuer.mint(PUSH_SA, AUDIENCE)}
    response = client.post("/worker/push", data=body, headers=good)
    assert response.status_code == 200
    assert len(env["tg"].sent_messages(token)) == 1


def test_no_token_in_worker_logs(
    env: dict[str, Any], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("DEBUG")  # the production logging setup, most verbose
    caplog.set_level(logging.INFO)
    try:
        bot_id, token = register_telegram_bot(env["settings"], env["tg"])
        env["tg"].fail_next("sendMessage", status=500, times=FAST_RETRIES.attempts)
        env["worker"].process(tg_job(bot_id))
        app = env["dc"].add_application()
        discord_bot = register_discord_bot(env["settings"], app)
        env["dc"].fail_next("edit_original", status=500, times=FAST_RETRIES.attempts)
        env["worker"].process(discord_job(discord_bot, app.id, "secret-interaction-token-xyz"))
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_askbase", False)]:
            root.removeHandler(handler)
    ours = [
        r.getMessage() for r in caplog.records if r.name.startswith(("shared.", "services.", "functions."))
    ]
    written = capsys.readouterr().out
    assert "will retry" in written
    for text in ("\n".join(ours), written):
        assert token not in text and token.split(":")[1] not in text
        assert "secret-interaction-token-xyz" not in text
        assert app.bot_token not in text


def test_job_of_a_stopped_discord_bot_ends_the_thinking_state(env: dict[str, Any]) -> None:
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app, running=False)
    assert env["worker"].process(discord_job(bot_id, app.id, "tok-stopped")).reason == "bot stopped"
    [edit] = env["dc"].edits(app.id)
    assert "stopped" in edit["payload"]["content"] and "components" not in edit["payload"]
    assert env["qa"].requests == []


def test_a_redelivered_answer_of_a_since_stopped_discord_bot_is_left_as_it_is(env: dict[str, Any]) -> None:
    """Answered, the ack lost, the owner stops the bot, Pub/Sub redelivers: the answer in @original
    stays (the "stopped" notice is for a job nobody answered)."""
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app)
    job = discord_job(bot_id, app.id, "tok-answered")
    assert env["worker"].process(job).reason == "sent"
    [answer] = env["dc"].edits(app.id)
    env["registry"].set_desired(bot_id, "stopped")

    assert env["worker"].process(job).reason == "bot stopped"
    assert env["dc"].edits(app.id) == [answer]
    assert "stopped" not in answer["payload"]["content"]
    assert env["registry"].db.collection(SENT_REPLIES).document(job.job_id).get().get("state") == "sent"


def test_a_stopped_discord_bots_job_another_delivery_holds_is_not_overwritten(env: dict[str, Any]) -> None:
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["settings"], app, running=False)
    ledger = ReplyLedger(env["registry"].db)
    held = discord_job(bot_id, app.id, "tok-held", interaction_id="1111111111111111111")
    ledger.claim(held.job_id)  # another worker is sending it right now
    assert env["worker"].process(held).reason == "bot stopped"
    failed = discord_job(bot_id, app.id, "tok-failed", interaction_id="2222222222222222222")
    ledger.mark_failed(ledger.claim(failed.job_id), "Unknown Webhook")
    assert env["worker"].process(failed).reason == "bot stopped"
    assert env["dc"].edits(app.id) == []
    # A claim whose holder died before sending anything: nobody answered it, so the notice is sent.
    dead = discord_job(bot_id, app.id, "tok-dead", interaction_id="3333333333333333333")
    ledger.claim(dead.job_id, now=datetime.now(UTC) - timedelta(minutes=5))
    assert env["worker"].process(dead).reason == "bot stopped"
    [notice] = env["dc"].edits(app.id)
    assert "stopped" in notice["payload"]["content"]


# --- a token replaced while the worker had the old one cached -------------------------------------


def _cached_worker(env: dict[str, Any], lookups: list[str]) -> BotWorker:
    """The worker as build_worker wires it: bots read through a 10 s cache (``lookups`` counts reads)."""
    read = bot_lookup(env["registry"], with_token=True)

    def counted(bot_id: str) -> Any:
        lookups.append(bot_id)
        return read(bot_id)

    return BotWorker(
        env["registry"].db,
        CachedLookup(counted, ttl=10.0),
        QaClient(env["settings"].qa_url),
        env["settings"],
        retry_policy=FAST_RETRIES,
    )


def test_an_answer_right_after_a_token_replacement_uses_the_new_token(env: dict[str, Any]) -> None:
    bot_id, old = register_telegram_bot(env["settings"], env["tg"])
    lookups: list[str] = []
    worker = _cached_worker(env, lookups)
    assert worker.process(tg_job(bot_id, 1)).reason == "sent"  # the old token is cached now
    new = env["tg"].reissue_token(old)  # @BotFather /revoke, then Replace token on the bot's page
    env["registry"].replace_token(bot_id, new)

    assert worker.process(tg_job(bot_id, 2)).reason == "sent"
    assert len(env["tg"].sent_messages(new)) == 2
    # Job 1's message, then job 2's refused one; job 2 then went out with the new token.
    assert len(env["tg"].calls_for(old, "sendMessage")) == 2
    # The cache holds the new token: the next job is sent at once.
    assert worker.process(tg_job(bot_id, 3)).reason == "sent"
    assert len(env["tg"].calls_for(old, "sendMessage")) == 2 and len(lookups) == 2


def test_a_revoked_token_not_yet_replaced_fails_after_one_fresh_read(env: dict[str, Any]) -> None:
    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    lookups: list[str] = []
    worker = _cached_worker(env, lookups)
    env["tg"].revoke(token)
    job = tg_job(bot_id, 1)
    assert worker.process(job).reason == "platform refused"
    assert len(lookups) == 2  # the cached read, then one past the cache
    assert len(env["tg"].calls_for(token, "sendMessage")) == 1
    receipt = env["registry"].db.collection(SENT_REPLIES).document(job.job_id).get()
    assert receipt.get("state") == "failed"


def test_a_refused_token_whose_bot_cannot_be_read_again_is_retried_not_failed(env: dict[str, Any]) -> None:
    from google.api_core import exceptions as gexc

    bot_id, token = register_telegram_bot(env["settings"], env["tg"])
    lookups: list[str] = []
    worker = _cached_worker(env, lookups)
    env["tg"].revoke(token)
    job = tg_job(bot_id, 1)
    worker.process(tg_job(bot_id, 0))  # fills the cache (and is refused: the token is revoked)
    refresh = worker._bots.refresh  # type: ignore[attr-defined]

    def unavailable(bot_id: str) -> Any:
        raise gexc.ServiceUnavailable("firestore is down")

    worker._bots.refresh = unavailable  # type: ignore[attr-defined]
    result = worker.process(job)
    assert (result.status, result.reason) == (503, "retry")
    # The claim was released: the redelivery answers it once the bot can be read again.
    receipt = env["registry"].db.collection(SENT_REPLIES).document(job.job_id).get()
    assert not receipt.exists or receipt.get("state") != "failed"
    worker._bots.refresh = refresh  # type: ignore[attr-defined]
    new = env["tg"].reissue_token(token)
    env["registry"].replace_token(bot_id, new)
    assert worker.process(job).reason == "sent"
    assert len(env["tg"].sent_messages(new)) == 1
