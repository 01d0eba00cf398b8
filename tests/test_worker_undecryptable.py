"""The worker and a bot whose stored token no configured key decrypts. Sealed by a key this process
lacks (a revision that does not have the new key yet, or a key removed too early): a job that needs the
token and can still be answered is retried (503: Pub/Sub redelivers it, to a revision with the key, or
into the dead letters for a replay), never dropped; a job that needs no token (a vote, a stopped bot's
job) or can no longer be answered (past Discord's reply window) is handled as with a readable token.
Sealed by a configured key yet unreadable (damaged): acked. An ERROR naming the bot and the key id on a
job's first delivery (a WARNING on its redeliveries), and the owner is told on its activity to enter the
token again if it persists."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.bots import secrets as bot_secrets
from shared.bots.jobs import Job, JobKind
from shared.bots.lookup import bot_lookup
from shared.bots.qa_client import QaClient
from shared.bots.registry import BotRegistry
from shared.bots.secrets import TokenCipher, key_id
from shared.bots.worker import BotWorker
from tests.bot_stack import bot_settings as env_settings
from tests.bot_stack import (
    discord_job,
    envelope_bytes,
    push_envelope,
    register_discord_bot,
    register_telegram_bot,
    tg_job,
)
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.qa_api import FakeQA
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.emulators

OTHER = b"x" * 32  # a key nobody configured


def _seal_with_a_missing_key(registry: BotRegistry, bot_id: str) -> None:
    """Store the bot's token sealed by a key nobody configured (what an old revision sees mid-rollout)."""
    lost = TokenCipher(OTHER).encrypt("123:whatever-token", f"bots/{bot_id}/token")
    registry.db.collection("bots").document(bot_id).update({"token_enc": lost})


def _envelope(job: Job, delivery_attempt: int | None) -> bytes:
    """A push body as Pub/Sub sends it from a subscription with a dead-letter policy: the envelope
    carries ``deliveryAttempt`` (1 on the first delivery)."""
    envelope = push_envelope(job, "1", "projects/askbase-test/subscriptions/jobs-push")
    if delivery_attempt is not None:
        envelope["deliveryAttempt"] = delivery_attempt
    return json.dumps(envelope).encode()


@pytest.fixture
def worker_env(emulators: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A worker on the emulators and the fake platforms, its token ciphers read afresh from settings."""
    with FakeTelegram() as tg, FakeDiscord() as dc, FakeQA() as qa:
        cfg = env_settings(
            monkeypatch, telegram_api_base=tg.base_url, discord_api_base=dc.base_url, qa_url=qa.url
        )
        monkeypatch.setattr(bot_secrets, "_ciphers", {})
        registry = BotRegistry.from_settings(cfg)
        worker = BotWorker(registry.db, bot_lookup(registry, with_token=True), QaClient(cfg.qa_url), cfg)
        yield {"cfg": cfg, "tg": tg, "dc": dc, "qa": qa, "registry": registry, "worker": worker}


def test_a_token_no_key_decrypts_is_dropped_with_one_error_and_shown_to_the_owner(
    worker_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tg, qa, registry, worker = (worker_env[k] for k in ("tg", "qa", "registry", "worker"))
    bot_id, token = register_telegram_bot(worker_env["cfg"], tg)
    # The key was changed and the old one not kept: nothing configured opens the stored token.
    lost = TokenCipher(OTHER).encrypt(token, f"bots/{bot_id}/token")
    registry.db.collection("bots").document(bot_id).update({"token_enc": lost})

    caplog.set_level(logging.INFO)
    outcomes = [worker.handle_push(envelope_bytes(tg_job(bot_id, n))) for n in (1, 2)]
    # Retried, not dropped: a revision with the key (or a replay from the dead letters) answers it.
    assert [(o.status, o.reason) for o in outcomes] == [(503, "token key not configured here")] * 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(bot_id in r.getMessage() for r in errors)  # one per job
    # The operator learns which key the token needs (a key id is no secret).
    assert all(key_id(OTHER) in r.getMessage() and "not configured" in r.getMessage() for r in errors)
    assert all(r.exc_info is None for r in errors)
    for record in caplog.records:
        assert token not in record.getMessage() and lost not in record.getMessage()
    assert tg.sent_messages(token) == [] and qa.requests == []
    # The owner sees it on the bot's page, once, not once per message.
    [entry] = registry.activity(bot_id).items
    assert entry.kind == "error"
    assert "cannot be decrypted" in entry.message and "re-enter" in entry.message.lower()
    # Only what is known: during a rollout a revision without the new key says the same, so the note
    # neither claims the key was changed without keeping the old one nor sends the owner off at once.
    assert "changed" not in entry.message and "after a deploy" in entry.message
    assert token not in entry.message

    # Re-entering the token (Replace token) makes the bot answer again.
    registry.replace_token(bot_id, token)
    assert worker.process(tg_job(bot_id, 3)).reason == "sent"
    assert len(tg.sent_messages(token)) == 1


def test_a_damaged_token_under_a_configured_key_is_acked(
    worker_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No delivery anywhere can open a damaged ciphertext: acked, with the ERROR and the owner's note."""
    tg, qa, registry, worker = (worker_env[k] for k in ("tg", "qa", "registry", "worker"))
    bot_id, token = register_telegram_bot(worker_env["cfg"], tg)
    stored = registry.db.collection("bots").document(bot_id).get().to_dict()["token_enc"]
    prefix, _, payload = stored.rpartition(":")
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[-1] ^= 0x01  # a bit of the sealed bytes (the tag): a configured key, and it fails to open
    damaged = f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    registry.db.collection("bots").document(bot_id).update({"token_enc": damaged})

    caplog.set_level(logging.INFO)
    outcome = worker.handle_push(envelope_bytes(tg_job(bot_id, 1)))
    assert (outcome.status, outcome.reason) == (200, "undecryptable token")
    assert any(bot_id in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    [entry] = registry.activity(bot_id).items  # the note does not promise a retry that never comes
    assert "damaged" in entry.message and "wait" not in entry.message
    assert tg.sent_messages(token) == [] and qa.requests == []


def test_a_vote_needs_no_token_and_is_cast_though_the_key_is_missing(worker_env: Any) -> None:
    env = worker_env
    bot_id, _ = register_telegram_bot(env["cfg"], env["tg"])
    _seal_with_a_missing_key(env["registry"], bot_id)
    vote = Job(
        job_id=f"telegram:{bot_id}:9",
        platform="telegram",
        bot_id=bot_id,
        kind=JobKind.VOTE,
        chat_id="555",
        user="4242",
        state_id="s" * 32,
        vote="up",
    )
    outcome = env["worker"].handle_push(envelope_bytes(vote))
    assert (outcome.status, outcome.reason) == (200, "voted")
    assert [v["json"]["vote"] for v in env["qa"].votes] == ["up"]


def test_a_stopped_bots_job_is_not_retried_and_its_thinking_state_is_ended(worker_env: Any) -> None:
    """The stopped notice needs no bot token (Discord edits the interaction with its own token)."""
    env = worker_env
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["cfg"], app, running=False)
    _seal_with_a_missing_key(env["registry"], bot_id)
    outcome = env["worker"].handle_push(envelope_bytes(discord_job(bot_id, app.id, "tok-101", "101")))
    assert (outcome.status, outcome.reason) == (200, "bot stopped")
    [edit] = env["dc"].edits(app.id)
    assert "stopped" in edit["payload"]["content"]
    assert env["qa"].requests == []


def test_a_discord_job_past_its_reply_window_is_acked_and_a_fresh_one_retried(worker_env: Any) -> None:
    env = worker_env
    app = env["dc"].add_application()
    bot_id = register_discord_bot(env["cfg"], app)
    _seal_with_a_missing_key(env["registry"], bot_id)
    old = discord_job(bot_id, app.id, "tok-201", "201", created_at=datetime.now(UTC) - timedelta(hours=1))
    outcome = env["worker"].handle_push(envelope_bytes(old))
    assert (outcome.status, outcome.reason) == (200, "expired")
    fresh = env["worker"].handle_push(envelope_bytes(discord_job(bot_id, app.id, "tok-202", "202")))
    assert (fresh.status, fresh.reason) == (503, "token key not configured here")
    assert env["dc"].edits(app.id) == [] and env["qa"].requests == []


def test_an_error_on_the_first_delivery_and_a_warning_on_redeliveries(
    worker_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """About 12 deliveries per job: one ERROR per job (the first delivery), WARNINGs after it. Without
    a delivery attempt in the envelope every delivery logs the ERROR."""
    env = worker_env
    bot_id, _ = register_telegram_bot(env["cfg"], env["tg"])
    _seal_with_a_missing_key(env["registry"], bot_id)
    caplog.set_level(logging.INFO)

    def levels(delivery_attempt: int | None) -> list[int]:
        caplog.clear()
        outcome = env["worker"].handle_push(_envelope(tg_job(bot_id, 1), delivery_attempt))
        assert (outcome.status, outcome.reason) == (503, "token key not configured here")
        return [
            r.levelno
            for r in caplog.records
            if r.name == "shared.bots.worker" and "cannot be decrypted" in r.getMessage()
        ]

    assert levels(1) == [logging.ERROR]
    assert levels(2) == [logging.WARNING]
    assert levels(12) == [logging.WARNING]
    assert levels(None) == [logging.ERROR]
