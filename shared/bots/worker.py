"""The bot worker: one Pub/Sub push delivery in, at most one reply out.

:meth:`BotWorker.handle_push` takes the raw push body and returns a :class:`Outcome`, whose status the
``/worker/push`` endpoint returns to Pub/Sub. Pub/Sub push treats 2xx as ack and anything else as nack
(redelivered with backoff), so:

==========  ==========================================================================================
200         done, a duplicate of a job already answered, or dropped for good: a malformed envelope,
            an unknown or stopped bot, an expired Discord token, a permanent platform error (bot
            blocked, chat gone). Redelivering any of these would never succeed.
503         retry later: the Q&A service or the platform is down / rate-limits beyond our patience,
            Firestore is unavailable, or another delivery of the same job holds a fresh claim.
==========  ==========================================================================================

Exactly once, as far as it can be had (see :mod:`shared.bots.dedupe` for the ledger):

1. claim ``sent_replies/{job_id}`` with a create (state ``sending``, lease 90 s) *before* anything is
   sent. A concurrent duplicate sees the claim: 200 if it was sent, 503 while the claim is fresh, and
   a takeover once the lease ran out (the first worker crashed).
2. render the reply and save the rendered parts on the claim; Discord button state goes to
   ``interactions`` before the message that carries the buttons is sent.
3. send part by part, recording ``parts_sent`` after each; a takeover resumes at the next part with the
   same text (not a fresh answer).
4. mark the claim ``sent``.

The remaining at-least-once window: a crash (or a lost response) *after* the platform accepted a part
and *before* ``parts_sent`` was recorded resends that one part after the lease expires. Neither
platform offers an idempotency key for sendMessage / followups, so this window cannot be closed, only
narrowed: it is one Firestore write wide and covers one part, not the whole answer. Discord's first
part is an edit of ``@original``, which is idempotent, so there it costs nothing. The processing time
is capped well below the lease (:data:`PROCESSING_BUDGET`), so a live worker is never taken over.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.bots import chats
from shared.bots.dedupe import Claim, ClaimState, ReplyLedger
from shared.bots.directory import BotInfo, BotLookup, CachedLookup, registry_lookup
from shared.bots.discord import DiscordClient
from shared.bots.formatting import escape_telegram_html, render_discord, render_telegram
from shared.bots.interactions import InteractionStore, buttons_row, state_id_for_job
from shared.bots.jobs import Job, JobKind, MalformedPush, parse_push_envelope
from shared.bots.qa_client import QaAnswer, QaClient, QaRejected, QaUnavailable
from shared.bots.registry import BotRegistry
from shared.bots.telegram import TelegramClient
from shared.bots.transport import PlatformError, RetryPolicy

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

DISCORD_TOKEN_LIFETIME = timedelta(minutes=15)
PROCESSING_BUDGET = 60.0  # seconds; below the 90 s claim lease and the subscription's ack deadline
# Platform retries inside one delivery: short, so the whole job stays within the budget. A longer
# rate limit hands the job back to Pub/Sub (503) instead of holding the request open.
WORKER_RETRY_POLICY = RetryPolicy(attempts=4, backoff=0.5, max_backoff=4.0, max_wait=10.0)
TELEGRAM_ADMIN_STATUSES = ("creator", "administrator")
NO_MENTIONS = {"parse": []}


@dataclass
class Outcome:
    """What the push endpoint returns: an HTTP status (2xx = ack) and a one-word reason."""

    status: int
    reason: str
    job_id: str | None = None

    @property
    def ack(self) -> bool:
        return 200 <= self.status < 300


class _Retry(Exception):
    """Internal: give the job back to Pub/Sub."""


class _Drop(Exception):
    """Internal: acknowledge without replying (permanent)."""


def help_text(bot: BotInfo) -> str:
    mention = f"@{bot.username}" if bot.username else "me"
    return (
        f"Hi! I answer questions from the documentation.\n\n"
        f"• In a private chat, just send your question.\n"
        f"• In a group, mention {mention}, reply to one of my messages, or use /ask followed by your "
        f"question.\n"
        f"• Group admins can turn me off and on in their chat with /disable and /enable."
    )


class BotWorker:
    """Handles jobs. Thread-safe: the push endpoint may call it from many request threads."""

    def __init__(
        self,
        db: firestore.Client,
        bots: BotLookup,
        qa: QaClient,
        telegram_api_base: str,
        discord_api_base: str,
        *,
        ledger: ReplyLedger | None = None,
        retry_policy: RetryPolicy = WORKER_RETRY_POLICY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._bots = bots
        self._qa = qa
        self._telegram_base = telegram_api_base
        self._discord_base = discord_api_base
        self._ledger = ledger or ReplyLedger(db)
        self._store = InteractionStore(db)
        self._policy = retry_policy
        self._clock = clock

    # --- entry ----------------------------------------------------------------------------------

    def handle_push(self, body: bytes) -> Outcome:
        """Decode a push delivery and process its job."""
        try:
            message = parse_push_envelope(body)
        except MalformedPush as exc:
            # Acked: Pub/Sub would redeliver the same bytes forever.
            log.warning("worker dropped a malformed push: %s", exc)
            return Outcome(200, "malformed")
        return self.process(message.job)

    def process(self, job: Job) -> Outcome:
        started = time.monotonic()
        bot = self._bots(job.bot_id)
        if bot is None or bot.platform != job.platform:
            log.info("job %s dropped: bot unknown", job.job_id)
            return Outcome(200, "unknown bot", job.job_id)
        if not bot.active:
            log.info("job %s dropped: bot stopped", job.job_id)
            if job.platform == "discord":
                # Otherwise the deferred "thinking..." would hang until the token expires. Editing
                # @original is idempotent, so redeliveries need no ledger here.
                with contextlib.suppress(PlatformError, _Drop):
                    self._send_discord(job, "This bot was stopped before it could answer.", 0)
            return Outcome(200, "bot stopped", job.job_id)
        if job.platform == "discord" and self._clock() - job.created_at > DISCORD_TOKEN_LIFETIME:
            log.info("job %s dropped: interaction token expired", job.job_id)
            return Outcome(200, "expired", job.job_id)
        try:
            claim = self._ledger.claim(job.job_id)
        except gexc.GoogleAPICallError as exc:
            log.warning("job %s: cannot claim (%s)", job.job_id, type(exc).__name__)
            return Outcome(503, "firestore unavailable", job.job_id)
        if claim.state is ClaimState.ALREADY_SENT:
            return Outcome(200, "duplicate", job.job_id)
        if claim.state is ClaimState.FAILED:
            return Outcome(200, "failed before", job.job_id)
        if claim.state is ClaimState.IN_PROGRESS:
            return Outcome(503, "in progress", job.job_id)
        try:
            if claim.parts is None:
                parts, extra = self._render(job, bot)
                self._ledger.save_parts(claim, parts, extra)
            self._send(job, bot, claim, started)
            self._ledger.mark_sent(claim)
        except _Drop as exc:
            log.info("job %s dropped: %s", job.job_id, exc)
            self._safe(self._ledger.mark_failed, claim, str(exc))
            return Outcome(200, "dropped", job.job_id)
        except PlatformError as exc:
            if exc.retryable:
                log.warning("job %s: %s (will retry)", job.job_id, exc.message)
                self._ledger.release(claim)
                return Outcome(503, "platform unavailable", job.job_id)
            log.warning("job %s failed permanently: %s", job.job_id, exc.message)
            self._safe(self._ledger.mark_failed, claim, exc.message)
            return Outcome(200, "platform refused", job.job_id)
        except (_Retry, QaUnavailable, gexc.GoogleAPICallError) as exc:
            log.warning("job %s: %s (will retry)", job.job_id, exc or type(exc).__name__)
            self._ledger.release(claim)
            return Outcome(503, "retry", job.job_id)
        except Exception:
            # A bug: retried (a dead-letter policy bounds it in production), logged with a traceback.
            log.exception("job %s: unexpected error", job.job_id)
            self._ledger.release(claim)
            return Outcome(503, "error", job.job_id)
        log.info(
            "job %s answered (%s, %d parts) in %.0f ms",
            job.job_id,
            job.kind,
            len(claim.parts or []),
            (time.monotonic() - started) * 1000,
        )
        return Outcome(200, "sent", job.job_id)

    @staticmethod
    def _safe(action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except gexc.GoogleAPICallError:
            log.warning("could not record a job's final state")

    # --- rendering ------------------------------------------------------------------------------

    def _render(self, job: Job, bot: BotInfo) -> tuple[list[str], dict[str, Any]]:
        """The reply's parts (already escaped for the platform) and extra state for a takeover."""
        if job.kind is JobKind.HELP:
            return [escape_telegram_html(help_text(bot))], {}
        if job.kind in (JobKind.ENABLE, JobKind.DISABLE):
            return [escape_telegram_html(self._switch_chat(job, bot))], {}
        question = (job.question or "").strip()
        if not question:
            return [escape_telegram_html(help_text(bot))], {}
        user = f"{job.platform}:{job.chat_id or job.user or 'unknown'}"
        try:
            answer = self._qa.ask(question, job.bot_id, user)
        except QaRejected as exc:
            log.info("job %s: question refused by Q&A (%d)", job.job_id, exc.status)
            answer = QaAnswer("Sorry, I can't answer that question. Try rephrasing it or making it shorter.")
        if job.platform == "telegram":
            return render_telegram(answer.text, answer.sources), {}
        state_id = state_id_for_job(job.job_id)
        # The buttons' state is stored before the message that carries them exists.
        self._store.save(state_id, job.bot_id, question, answer.text, answer.sources)
        return render_discord(answer.text), {"state_id": state_id}

    def _switch_chat(self, job: Job, bot: BotInfo) -> str:
        """``/enable`` ``/disable``: check the sender is a chat admin, then persist the switch."""
        enable = job.kind is JobKind.ENABLE
        if job.chat_id is None or job.user is None:
            raise _Drop("enable/disable without chat or user")
        if job.chat_type != "private" and not job.user_is_admin_hint:
            member = self._telegram(bot).call("getChatMember", chat_id=job.chat_id, user_id=int(job.user))
            status = (member or {}).get("status") if isinstance(member, dict) else None
            if status not in TELEGRAM_ADMIN_STATUSES:
                return "Only chat admins can turn me " + ("on" if enable else "off") + " here."
        chats.set_enabled(self._db, job.bot_id, job.chat_id, enable, by_user=f"telegram:{job.user}")
        if enable:
            return "Enabled: I will answer questions in this chat."
        return "Disabled: I will stay quiet in this chat until an admin sends /enable."

    # --- sending --------------------------------------------------------------------------------

    def _telegram(self, bot: BotInfo) -> TelegramClient:
        if not bot.token:
            raise _Drop("bot has no token")
        return TelegramClient(bot.token, base_url=self._telegram_base, policy=self._policy)

    def _send(self, job: Job, bot: BotInfo, claim: Claim, started: float) -> None:
        parts = claim.parts or []
        for index in range(claim.parts_sent, len(parts)):
            if time.monotonic() - started > PROCESSING_BUDGET:
                raise _Retry("processing budget exhausted")
            if job.platform == "telegram":
                self._send_telegram(job, bot, parts[index], first=index == 0)
            else:
                last = index == len(parts) - 1
                self._send_discord(job, parts[index], index, claim.extra.get("state_id") if last else None)
            self._ledger.part_sent(claim, index + 1)

    def _send_telegram(self, job: Job, bot: BotInfo, text: str, first: bool) -> None:
        if job.chat_id is None:
            raise _Drop("telegram job without chat")
        self._telegram(bot).send_message(
            job.chat_id,
            text,
            parse_mode="HTML",
            # Only the first part quotes the question; in a busy group that is what ties them together.
            reply_to_message_id=job.message_id if first else None,
        )

    def _send_discord(self, job: Job, text: str, index: int, state_id: str | None = None) -> None:
        """Part 0 edits the deferred response (@original); later parts are followups. The buttons
        (``state_id``) go under the last part."""
        if not job.interaction_token or not job.application_id:
            raise _Drop("discord job without interaction token")
        client = DiscordClient(None, base_url=self._discord_base, policy=self._policy)
        payload: dict[str, Any] = {"content": text, "allowed_mentions": NO_MENTIONS}
        if state_id:
            payload["components"] = buttons_row(state_id)
        if index == 0:
            client.edit_original(job.application_id, job.interaction_token, payload)
        else:
            client.followup(job.application_id, job.interaction_token, payload)


def build_worker(settings: Settings) -> BotWorker:
    """A worker wired to the registry, Firestore, the Q&A service and the platforms from ``settings``."""
    registry = BotRegistry.from_settings(settings)
    # The worker decrypts tokens; 10 s of cache saves a read + decryption per job of a busy bot.
    bots = CachedLookup(registry_lookup(registry, with_token=True), ttl=10.0)
    return BotWorker(
        registry.db,
        bots,
        QaClient(settings.qa_url, internal_auth=settings.internal_auth),
        settings.telegram_api_base,
        settings.discord_api_base,
    )
