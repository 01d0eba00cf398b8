"""The worker and a bot whose stored token no configured key decrypts. Sealed by a key this process
lacks (a revision that does not have the new key yet, or a key removed too early): each job is retried
(503: Pub/Sub redelivers it, to a revision with the key, or into the dead letters for a replay), never
dropped. Sealed by a configured key yet unreadable (damaged): acked. Either way one ERROR naming the bot
and the key id, and the owner is told on its activity to enter the token again if it persists."""

from __future__ import annotations

import logging
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
from tests.bot_stack import envelope_bytes, register_telegram_bot
from tests.fakes.qa_api import FakeQA
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.emulators

OTHER = b"x" * 32  # a key nobody configured


def _job(bot_id: str, update_id: int) -> Job:
    return Job(
        job_id=f"telegram:{bot_id}:{update_id}",
        platform="telegram",
        bot_id=bot_id,
        kind=JobKind.ASK,
        chat_id="555",
        chat_type="private",
        message_id=7,
        user="555",
        question="How do I deploy?",
    )


def test_a_token_no_key_decrypts_is_dropped_with_one_error_and_shown_to_the_owner(
    emulators, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeTelegram() as tg, FakeQA() as qa:
        cfg = env_settings(monkeypatch, telegram_api_base=tg.base_url, qa_url=qa.url)
        monkeypatch.setattr(bot_secrets, "_ciphers", {})
        registry = BotRegistry.from_settings(cfg)
        worker = BotWorker(registry.db, bot_lookup(registry, with_token=True), QaClient(cfg.qa_url), cfg)
        bot_id, token = register_telegram_bot(cfg, tg)
        # The key was changed and the old one not kept: nothing configured opens the stored token.
        lost = TokenCipher(OTHER).encrypt(token, f"bots/{bot_id}/token")
        registry.db.collection("bots").document(bot_id).update({"token_enc": lost})

        caplog.set_level(logging.INFO)
        outcomes = [worker.handle_push(envelope_bytes(_job(bot_id, n))) for n in (1, 2)]
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
        assert worker.process(_job(bot_id, 3)).reason == "sent"
        assert len(tg.sent_messages(token)) == 1


def test_a_damaged_token_under_a_configured_key_is_acked(
    emulators, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No delivery anywhere can open a damaged ciphertext: acked, with the ERROR and the owner's note."""
    with FakeTelegram() as tg, FakeQA() as qa:
        cfg = env_settings(monkeypatch, telegram_api_base=tg.base_url, qa_url=qa.url)
        monkeypatch.setattr(bot_secrets, "_ciphers", {})
        registry = BotRegistry.from_settings(cfg)
        worker = BotWorker(registry.db, bot_lookup(registry, with_token=True), QaClient(cfg.qa_url), cfg)
        bot_id, token = register_telegram_bot(cfg, tg)
        stored = registry.db.collection("bots").document(bot_id).get().to_dict()["token_enc"]
        damaged = stored[:-6] + ("AAAAAA" if not stored.endswith("AAAAAA") else "BBBBBB")
        registry.db.collection("bots").document(bot_id).update({"token_enc": damaged})

        caplog.set_level(logging.INFO)
        outcome = worker.handle_push(envelope_bytes(_job(bot_id, 1)))
        assert (outcome.status, outcome.reason) == (200, "undecryptable token")
        assert any(bot_id in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        assert tg.sent_messages(token) == [] and qa.requests == []
