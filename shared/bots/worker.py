"""The bot worker: one Pub/Sub push delivery in, at most one reply out.

:meth:`BotWorker.handle_push` takes the raw push body and returns a :class:`JobResult`, whose status the
``/worker/push`` endpoint returns to Pub/Sub. Pub/Sub push treats 2xx as ack and anything else as nack
(redelivered with backoff), so:

==========  ==========================================================================================
200         done, a duplicate of a job already answered, or dropped for good: a malformed envelope,
            an unknown or stopped bot, a bot whose stored token a configured key cannot open (damaged:
            logged as an ERROR and shown on the bot's activity: its owner must enter the token again),
            an expired Discord token, a permanent platform error (bot blocked, chat gone), a retryable
            failure of a job whose reply window (Discord's 15 minutes) closes before Pub/Sub could
            deliver it again (the user is told it was not answered: :meth:`BotWorker._retry`).
            Redelivering any of these would never succeed.
503         retry later: the Q&A service or the platform is down / rate-limits beyond our patience,
            Firestore is unavailable, another delivery of the same job holds a fresh claim, or the
            job needs a token sealed by a key this process does not have (:meth:`BotWorker._undecryptable`).
==========  ==========================================================================================

The bot (with its decrypted token) comes from a lookup cached for 10 s. A platform's 401 (token refused)
therefore first reads the bot again, past the cache, once per delivery: a token replaced since the one
cached is used at once, in the same delivery; the same token again is a revoked one and the job fails.

Exactly once, as far as it can be had (see :mod:`shared.bots.dedupe` for the ledger):

1. claim ``sent_replies/{job_id}`` with a create (state ``sending``, lease 90 s) *before* anything is
   sent. A concurrent duplicate sees the claim: 200 if it was sent, 503 while the claim is fresh, and
   a takeover once the lease ran out (the first worker crashed).
2. render the reply (the platform escapes and splits it) and save the rendered parts on the claim; the
   state of answer buttons (with the answer's ``answer_id``) goes to ``interactions`` before the message
   that carries them is sent. A refusal in a chat whose answer mode is ``confident``
   (:mod:`shared.bots.answer_modes`) renders no parts: the platform takes back its placeholder, if it
   shows one (``Platform.stay_silent``), and nothing is posted.
3. send part by part, recording ``parts_sent`` after each; a takeover resumes at the next part with the
   same text (not a fresh answer).
4. mark the claim ``sent``, which drops its text (:mod:`shared.bots.dedupe`: a receipt keeps none).

The remaining at-least-once window: a crash (or a lost response) *after* the platform accepted a part
and *before* ``parts_sent`` was recorded resends that one part after the lease expires. Neither
platform offers an idempotency key for sendMessage / followups, so this window cannot be closed, only
narrowed: it is one Firestore write wide and covers one part, not the whole answer. Discord's first
part is an edit of ``@original``, which is idempotent, so there it costs nothing. The processing time
is capped well below the lease (:data:`PROCESSING_BUDGET`), so a live worker is never taken over.

A ``vote`` job (a 👍/👎 press) skips the ledger: the Q&A service casts the vote idempotently
(:meth:`shared.bots.qa_client.QaClient.vote`), so every redelivered copy lands on the same vote.

Everything platform-specific (markup, message size, how a part is sent, reply windows, chat admins) is
the platform's (:class:`shared.bots.platforms.base.Platform`); this module never branches on its name.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.bots import chat_switch
from shared.bots.activity import ActivityLog
from shared.bots.answer_modes import DESCRIPTIONS, AnswerMode, parse_mode, posts_refusals
from shared.bots.buttons import ButtonStateStore, state_id_for_job, state_ttl
from shared.bots.dedupe import Claim, ClaimState, ReplyLedger
from shared.bots.jobs import Job, JobKind, MalformedPush, parse_push_envelope
from shared.bots.lookup import BotInfo, BotLookup, CachedLookup, bot_lookup
from shared.bots.platform_users import platform_user, topic_chat
from shared.bots.platforms import find_platform
from shared.bots.platforms.base import ApiEndpoint, Platform
from shared.bots.platforms.errors import PlatformError, RetryPolicy, Unanswerable
from shared.bots.qa_client import QaAnswer, QaClient, QaRejected, QaUnavailable
from shared.bots.registry import COLLECTION, BotReader, BotRegistry
from shared.bots.secrets import DecryptionError

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

PROCESSING_BUDGET = 60.0  # seconds; below the 90 s claim lease and the subscription's ack deadline
# The longest Pub/Sub waits before delivering a nacked job again (the push subscription's
# maximum_backoff, infra/components/messaging.py MAX_BACKOFF_S): a job whose reply window closes sooner
# than that is not handed back (:meth:`BotWorker._retry`).
REDELIVERY_WAIT = timedelta(seconds=300)
# What that next delivery needs of the window besides: asking qa and sending (the processing budget).
NEXT_TRY_NEEDS = timedelta(seconds=PROCESSING_BUDGET)
# ... or only sending, when the reply's parts are rendered and saved on the claim already (the next
# delivery takes them over: no Q&A call). A healthy send is one request of well under a second per part,
# and an answer is a few parts; 30 s also covers one part that meets Discord's trouble (a read timeout,
# 15 s, shared/bots/transport.py, then the in-delivery backoff of at most 4 s) or a 10 s rate limit
# (WORKER_RETRY_POLICY.max_wait). Should that delivery still run out of the window, it gives up in turn,
# keeping what is shown; the 60 s a Q&A call needs would give up now a job that could finish in seconds.
SEND_ALLOWANCE = timedelta(seconds=30)
# Platform retries inside one delivery: short, so the whole job stays within the budget. A longer
# rate limit hands the job back to Pub/Sub (503) instead of holding the request open.
WORKER_RETRY_POLICY = RetryPolicy(attempts=4, backoff=0.5, max_backoff=4.0, max_wait=10.0)
# A bot whose stored token cannot be decrypted is noted in its activity at most this often per process
# (every job of it that needs the token is logged; the owner needs one line, not one per message).
UNDECRYPTABLE_NOTE_SECONDS = 3600.0
# Only what the worker knows: during a rollout a revision without the new key says the same of a token
# the new revision has already moved, and that passes by itself.
UNDECRYPTABLE_NOTE = (
    "The stored token cannot be decrypted with the configured token keys; messages to the bot wait "
    "meanwhile (retried for about 35 minutes). If this persists after a deploy has finished, re-enter the "
    "token with Replace token."
)
# A token a configured key cannot open is damaged: nothing waits, no delivery can succeed.
DAMAGED_NOTE = (
    "The stored token is damaged and cannot be decrypted; messages to the bot are dropped until the token "
    "is re-entered with Replace token."
)


@dataclass(frozen=True)
class JobResult:
    """What the push endpoint returns for one job: an HTTP status (2xx = ack) and a one-word reason."""

    status: int
    reason: str
    job_id: str | None = None


class _Retry(Exception):
    """Internal: give the job back to Pub/Sub."""


class BotWorker:
    """Handles jobs. Thread-safe: the push endpoint may call it from many request threads."""

    def __init__(
        self,
        db: firestore.Client,
        bots: BotLookup,
        qa: QaClient,
        settings: Settings,
        *,
        ledger: ReplyLedger | None = None,
        retry_policy: RetryPolicy = WORKER_RETRY_POLICY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        bots_without_token: BotLookup | None = None,
    ) -> None:
        self._db = db
        self._bots = bots
        # The bot as stored, its token left sealed: read when ``bots`` cannot decrypt it, to tell whether
        # the job needs the token at all (a vote, a stopped bot's or an expired job does not).
        self._bots_without_token = bots_without_token or bot_lookup(BotReader(db))
        self._qa = qa
        self._settings = settings
        self._ledger = ledger or ReplyLedger(db)
        # The state holds the question and the answer: kept no longer than the conversation is.
        self._buttons = ButtonStateStore(db, state_ttl(settings.conversation_retention_days))
        self._policy = retry_policy
        self._clock = clock
        self._activity = ActivityLog(db, COLLECTION)
        self._undecryptable_noted: dict[str, float] = {}  # bot id -> monotonic time of the last note
        self._noted_lock = threading.Lock()

    # --- entry ----------------------------------------------------------------------------------

    def handle_push(self, body: bytes) -> JobResult:
        """Decode a push delivery and process its job."""
        try:
            push = parse_push_envelope(body)
        except MalformedPush as exc:
            # Acked: Pub/Sub would redeliver the same bytes forever.
            log.warning("worker dropped a malformed push: %s", exc)
            return JobResult(200, "malformed")
        return self.process(push.job, delivery_attempt=push.delivery_attempt)

    def process(self, job: Job, *, delivery_attempt: int | None = None) -> JobResult:
        """Handle one delivery of ``job``; ``delivery_attempt`` is Pub/Sub's count (1 = the first
        delivery), None where the subscription gives none."""
        started = time.monotonic()
        sealed: DecryptionError | None = None
        try:
            bot = self._bots(job.bot_id)
        except DecryptionError as exc:
            if exc.key_configured is not False:
                return self._undecryptable(job, exc, delivery_attempt)  # damaged: acked
            # Sealed by a key this process lacks. Whether that matters depends on the job: read the bot
            # without its token and go through the checks that need none; only a job that needs the
            # token and can still be answered is retried (below, after them).
            sealed = exc
            try:
                bot = self._bots_without_token(job.bot_id)
            except Exception as err:
                log.warning("job %s: bot unreadable without its token (%s)", job.job_id, type(err).__name__)
                return self._undecryptable(job, exc, delivery_attempt)
        platform = find_platform(job.platform)
        if bot is None or platform is None or bot.platform != job.platform:
            log.info("job %s dropped: bot unknown", job.job_id)
            return JobResult(200, "unknown bot", job.job_id)
        if job.kind is JobKind.VOTE:
            # A press on an answer sent while the bot ran: counted even if the bot is stopped now, and
            # not bound to the platform's reply window (nothing is sent).
            return self._vote(job)
        api = ApiEndpoint(platform.api_base(self._settings), self._policy)
        if not bot.active:
            return self._stopped(job, platform, api)
        if platform.expired(job, self._clock()):
            log.info("job %s dropped: the platform's reply window has passed", job.job_id)
            return JobResult(200, "expired", job.job_id)
        if sealed is not None:
            return self._undecryptable(job, sealed, delivery_attempt)
        try:
            claim = self._ledger.claim(job.job_id)
        except gexc.GoogleAPICallError as exc:
            log.warning("job %s: cannot claim (%s)", job.job_id, type(exc).__name__)
            return JobResult(503, "firestore unavailable", job.job_id)
        if claim.state is ClaimState.ALREADY_SENT:
            return JobResult(200, "duplicate", job.job_id)
        if claim.state is ClaimState.FAILED:
            return JobResult(200, "failed before", job.job_id)
        if claim.state is ClaimState.IN_PROGRESS:
            return JobResult(503, "in progress", job.job_id)
        refreshed = False
        while True:
            try:
                if claim.parts is None:
                    parts, extra = self._render(job, bot, platform, api)
                    self._ledger.save_parts(claim, parts, extra)
                self._send(job, bot, platform, api, claim, started)
                self._ledger.mark_sent(claim)
            except Unanswerable as exc:
                log.info("job %s dropped: %s", job.job_id, exc)
                self._safe(self._ledger.mark_failed, claim, str(exc))
                return JobResult(200, "dropped", job.job_id)
            except PlatformError as exc:
                if exc.unauthorized and not refreshed:
                    # The token may be one replaced since it was cached (up to the lookup's ttl): read
                    # the bot again, once, and go on with its new token where it has one.
                    refreshed = True
                    try:
                        fresh = self._reread(job.bot_id)
                    except gexc.GoogleAPIError as err:
                        # Whether a new token exists cannot be told now: ask Pub/Sub for another try
                        # rather than fail a job a replaced token might still answer.
                        log.warning(
                            "job %s: token refused, bot unreadable (%s)", job.job_id, type(err).__name__
                        )
                        self._ledger.release(claim)
                        return JobResult(503, "retry", job.job_id)
                    except Exception:
                        log.exception("job %s: the bot could not be read again after a refusal", job.job_id)
                        fresh = None
                    if fresh is not None and fresh.active and fresh.token and fresh.token != bot.token:
                        log.info("job %s: token refused; the bot has a new one, sending again", job.job_id)
                        bot = fresh
                        continue
                if exc.retryable:
                    return self._retry(job, platform, api, claim, exc.message, "platform unavailable")
                log.warning("job %s failed permanently: %s", job.job_id, exc.message)
                self._safe(self._ledger.mark_failed, claim, exc.message)
                return JobResult(200, "platform refused", job.job_id)
            except (_Retry, QaUnavailable, gexc.GoogleAPICallError) as exc:
                return self._retry(job, platform, api, claim, str(exc) or type(exc).__name__, "retry")
            except Exception:
                # A bug: retried (a dead-letter policy bounds it in production), logged with a traceback.
                log.exception("job %s: unexpected error", job.job_id)
                self._ledger.release(claim)
                return JobResult(503, "error", job.job_id)
            break
        log.info(
            "job %s answered (%s, %d parts) in %.0f ms",
            job.job_id,
            job.kind,
            len(claim.parts or []),
            (time.monotonic() - started) * 1000,
        )
        return JobResult(200, "sent", job.job_id)

    def _retry(
        self, job: Job, platform: Platform, api: ApiEndpoint, claim: Claim, why: str, reason: str
    ) -> JobResult:
        """Give the job back to Pub/Sub (503, ``reason``) after a failure another try may not meet.

        Unless the platform's reply window (:meth:`Platform.reply_deadline`) closes before Pub/Sub could
        deliver the job again and that delivery answer it: its backoff reaches :data:`REDELIVERY_WAIT`,
        so the next delivery could find the job expired and drop it, or run out of the window while
        answering, and the user would have waited for nothing. That delivery needs the Q&A call's
        :data:`NEXT_TRY_NEEDS`, or only :data:`SEND_ALLOWANCE` when the parts are saved already. Then the
        user is told now (:meth:`Platform.notify_unanswered`, only while no part of the answer is shown)
        and the job ends failed, so later copies are acknowledged."""
        deadline = platform.reply_deadline(job)
        # Parts saved on the claim (``claim.parts`` is set only once the ledger holds them): the next
        # delivery sends them and asks nothing.
        next_try = SEND_ALLOWANCE if claim.parts is not None else NEXT_TRY_NEEDS
        if deadline is None or deadline - self._clock() > REDELIVERY_WAIT + next_try:
            log.warning("job %s: %s (will retry)", job.job_id, why)
            self._ledger.release(claim)
            return JobResult(503, reason, job.job_id)
        log.warning("job %s: %s; its reply window closes before another try, giving up", job.job_id, why)
        # ``parts_sent`` counts what the platform accepted, recorded in the ledger or not (:meth:`_send`):
        # the apology edits @original, which holds the answer's first part once that was sent.
        if claim.parts_sent == 0:
            try:
                platform.notify_unanswered(api, job)
            except PlatformError as exc:
                log.warning("job %s: could not tell the user (%s)", job.job_id, exc.message)
        self._safe(self._ledger.mark_failed, claim, f"gave up before the reply window closed: {why}")
        return JobResult(200, "gave up", job.job_id)

    def _undecryptable(self, job: Job, exc: DecryptionError, delivery_attempt: int | None) -> JobResult:
        """No configured key decrypts the bot's stored token, and the job needs it. Logged with the
        error's text (the id of the key the token needs, never a key or the token): an ERROR on the
        job's first delivery, a WARNING on its redeliveries (an ERROR on each where the delivery attempt
        is unknown); the owner's note on the bot's activity at most once an hour per process.

        Sealed by a key this process does not have (``key_configured`` False): retried (503), not
        dropped. That is a key rotation's rollout window (this old revision lacks the new key; Pub/Sub
        redelivers, and a new revision answers) or a key removed too early (the job ends in the dead
        letters after the retries, and can be replayed once the key is back: docs/operations.md).
        :meth:`process` gets here with such a job only once it is known to need the token and to be
        answerable still: a vote, a stopped bot's job and one past its reply window never are retried.
        Sealed by a configured key and still unreadable (damaged, or an old format no key opens):
        acked, since no delivery anywhere can succeed."""
        retry = exc.key_configured is False
        first = delivery_attempt is None or delivery_attempt <= 1
        log.log(
            logging.ERROR if first or not retry else logging.WARNING,
            "job %s %s: bot %s: its stored token cannot be decrypted with the configured token keys "
            "(%s); a key missing here must be added, or else the owner must re-enter the token",
            job.job_id,
            "retried" if retry else "dropped",
            job.bot_id,
            exc,
        )
        now = time.monotonic()
        with self._noted_lock:
            last = self._undecryptable_noted.get(job.bot_id)
            due = last is None or now - last >= UNDECRYPTABLE_NOTE_SECONDS
            if due:
                self._undecryptable_noted[job.bot_id] = now
        if due:
            note = UNDECRYPTABLE_NOTE if retry else DAMAGED_NOTE
            self._activity.record(job.bot_id, "error", note)  # best effort, never raises
        if retry:
            return JobResult(503, "token key not configured here", job.job_id)
        return JobResult(200, "undecryptable token", job.job_id)

    def _stopped(self, job: Job, platform: Platform, api: ApiEndpoint) -> JobResult:
        """A job of a stopped bot is dropped. What the user waits on is ended (``notify_stopped``:
        Discord edits its "thinking..." into a notice) only if no delivery of this job got to answer
        it: a redelivery of an answered job (a lost ack) must not overwrite the answer, whose first part
        is that same message. The ledger is read first, and nothing is claimed."""
        try:
            started = self._ledger.started(job.job_id)
        except gexc.GoogleAPICallError as exc:
            log.warning("job %s: cannot read the ledger (%s)", job.job_id, type(exc).__name__)
            return JobResult(503, "firestore unavailable", job.job_id)
        if started:
            log.info("job %s dropped: bot stopped (a delivery answered it, or is answering)", job.job_id)
            return JobResult(200, "bot stopped", job.job_id)
        log.info("job %s dropped: bot stopped", job.job_id)
        with contextlib.suppress(PlatformError):
            platform.notify_stopped(api, job)
        return JobResult(200, "bot stopped", job.job_id)

    def _vote(self, job: Job) -> JobResult:
        """Have the Q&A service cast a button's vote. Idempotent there (one vote per voter per answer),
        so a redelivered job needs no ledger: each copy casts the same vote."""
        if not job.state_id or job.vote not in ("up", "down") or not job.user:
            log.info("job %s dropped: a vote without its button state", job.job_id)
            return JobResult(200, "malformed", job.job_id)
        try:
            self._qa.vote(job.bot_id, job.state_id, platform_user(job.platform, job.user), job.vote)
        except QaRejected as exc:
            # The button's state expired between the press and now: nothing left to vote on.
            log.info("job %s: vote refused by Q&A (%d)", job.job_id, exc.status)
            return JobResult(200, "vote refused", job.job_id)
        except QaUnavailable as exc:
            log.warning("job %s: %s (will retry)", job.job_id, exc)
            return JobResult(503, "retry", job.job_id)
        return JobResult(200, "voted", job.job_id)

    def _reread(self, bot_id: str) -> BotInfo | None:
        """The bot as stored now, past (and into) the lookup's cache."""
        if isinstance(self._bots, CachedLookup):
            return self._bots.refresh(bot_id)
        return self._bots(bot_id)

    @staticmethod
    def _safe(action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except gexc.GoogleAPICallError:
            log.warning("could not record a job's final state")

    # --- rendering ------------------------------------------------------------------------------

    def _render(
        self, job: Job, bot: BotInfo, platform: Platform, api: ApiEndpoint
    ) -> tuple[list[str], dict[str, Any]]:
        """The reply's parts (already escaped for the platform) and extra state for a takeover."""
        if job.kind in (JobKind.ENABLE, JobKind.DISABLE):
            return platform.render(self._switch_chat(job, bot, platform, api)), {}
        if job.kind is JobKind.MODE:
            return platform.render(self._set_mode(job, bot, platform, api)), {}
        if job.kind is JobKind.FORGET:
            return platform.render(self._forget(job, bot, platform, api)), {}
        question = (job.question or "").strip()
        if job.kind is JobKind.HELP or not question:
            return platform.render(platform.help_text(bot)), {}
        user = self._chat(job)
        try:
            answer = self._qa.ask(question, job.bot_id, user)
        except QaRejected as exc:
            log.info("job %s: question refused by Q&A (%d)", job.job_id, exc.status)
            answer = QaAnswer("Sorry, I can't answer that question. Try rephrasing it or making it shorter.")
        if answer.refused and not posts_refusals(self._answer_mode(job, bot)):
            log.info("job %s: refused, and the chat's answer mode stays silent then", job.job_id)
            return [], {"silent": True}
        parts = platform.render(answer.text, answer.sources)
        if not platform.answer_buttons:
            return parts, {}
        state_id = state_id_for_job(job.job_id)
        # The buttons' state is stored before the message that carries them exists; the answer id is
        # what a vote on them points at.
        self._buttons.save(
            state_id,
            job.bot_id,
            question,
            answer.text,
            answer.sources,
            answer_id=answer.answer_id,
            chat=self._chat(job),
        )
        return parts, {"state_id": state_id}

    @staticmethod
    def _chat(job: Job, *, topic: bool = True) -> str:
        """The chat as the Q&A service knows it (its conversation is ``bot:<bot id>:<this>``). A forum
        topic is a chat of its own (``telegram:-100777/55``: :func:`topic_chat`), so a follow-up is read
        against its topic's last question, not another topic's; ``topic=False`` names the whole forum
        (``/forget``)."""
        chat = platform_user(job.platform, job.chat_id or job.user or "unknown")
        return topic_chat(chat, job.thread_id) if topic and job.thread_id is not None else chat

    def _forget(self, job: Job, bot: BotInfo, platform: Platform, api: ApiEndpoint) -> str:
        """``/forget``: the chat's conversation with the bot, its questions in the owners' gaps report,
        every vote on its answers, the sender's votes and the answers' button state are deleted. In a
        private chat the sender's own; in a group only an admin may (the history is the group's).

        The chat's ``sent_replies`` receipts stay their 7 days: they hold no text once a reply is
        finished, and they are what keeps a late copy of an answered job from asking the question again
        (:mod:`shared.bots.dedupe`). The reply says what else stays: Firestore's daily backups (kept at
        most 7 days) and the messages already in the chat, which the bot does not delete."""
        if job.chat_id is None or job.user is None:
            raise Unanswerable("/forget without chat or user")
        if not platform.may_switch_chat(api, bot, job):
            return "Only chat admins can clear this chat's history with me."
        # The whole chat (in a forum, every topic of it), and what was asked under the ids it had before
        # (a group upgraded to a supergroup).
        earlier = chat_switch.previous_chat_ids(self._db, job.bot_id, job.chat_id)
        chats = [self._chat(job, topic=False), *(platform_user(job.platform, chat) for chat in earlier)]
        # Q&A is also given the topic's own key: a qa revision from before topics (a rolling deploy)
        # clears only the key it is given; a current one has already taken it with the forum's. The
        # button store is this process's, and takes a chat's topics with it.
        topic = [self._chat(job)] if job.thread_id is not None else []
        for chat in [*chats, *topic]:
            try:
                self._qa.forget(job.bot_id, chat, platform_user(job.platform, job.user))
            except QaRejected as exc:
                log.warning("job %s: /forget refused by Q&A (%d)", job.job_id, exc.status)
                return "Sorry, I could not clear this chat's history. Please try again later."
        for chat in chats:
            self._buttons.forget_chat(job.bot_id, chat)
        return (
            "Done: I forgot this chat's questions and my answers, and they are gone from reports."
            " Backups keep them for up to 7 days; the messages in this chat stay."
        )

    def _answer_mode(self, job: Job, bot: BotInfo) -> AnswerMode:
        """The chat's effective answer mode: as the ingress found it, else the chat's, else the bot's."""
        mode = parse_mode(job.answer_mode)
        if mode is not None:
            return mode
        if job.chat_id is None:
            return bot.answer_mode
        return chat_switch.read_settings(self._db, job.bot_id, job.chat_id).answer_mode or bot.answer_mode

    def _switch_chat(self, job: Job, bot: BotInfo, platform: Platform, api: ApiEndpoint) -> str:
        """``/enable`` ``/disable``: check the sender may switch the bot here, then persist the switch."""
        enable = job.kind is JobKind.ENABLE
        if job.chat_id is None or job.user is None:
            raise Unanswerable("enable/disable without chat or user")
        if not platform.may_switch_chat(api, bot, job):
            return "Only chat admins can turn me " + ("on" if enable else "off") + " here."
        by_user = platform_user(job.platform, job.user)
        chat_switch.set_enabled(self._db, job.bot_id, job.chat_id, enable, by_user=by_user)
        if enable:
            return "Enabled: I will answer questions in this chat."
        return "Disabled: I will stay quiet in this chat until an admin sends /enable."

    def _set_mode(self, job: Job, bot: BotInfo, platform: Platform, api: ApiEndpoint) -> str:
        """``/mode [mode]``: with a mode, check the sender may set it here, then persist it; without one,
        say which mode the chat has and what the choices are."""
        if job.chat_id is None or job.user is None:
            raise Unanswerable("/mode without chat or user")
        choices = ", ".join(f"{m} ({DESCRIPTIONS[m].lower()})" for m in AnswerMode)
        wanted = (job.question or "").strip()
        if not wanted:
            current = chat_switch.read_settings(self._db, job.bot_id, job.chat_id).answer_mode
            where = "set for this chat" if current else "the bot's default"
            return f"Answer mode: {current or bot.answer_mode} ({where}). Choices: {choices}."
        mode = parse_mode(wanted)
        if mode is None:
            return f"Unknown mode. Choices: {choices}."
        if not platform.may_switch_chat(api, bot, job):
            return "Only chat admins can change when I answer here."
        by_user = platform_user(job.platform, job.user)
        chat_switch.set_answer_mode(self._db, job.bot_id, job.chat_id, mode, by_user=by_user)
        return f"Answer mode for this chat: {mode}. {DESCRIPTIONS[mode]}."

    # --- sending --------------------------------------------------------------------------------

    def _send(
        self, job: Job, bot: BotInfo, platform: Platform, api: ApiEndpoint, claim: Claim, started: float
    ) -> None:
        parts = claim.parts or []
        if not parts and claim.extra.get("silent"):
            platform.stay_silent(api, bot, job)
            return
        for index in range(claim.parts_sent, len(parts)):
            if time.monotonic() - started > PROCESSING_BUDGET:
                raise _Retry("processing budget exhausted")
            # The buttons go under the last part.
            buttons = claim.extra.get("state_id") if index == len(parts) - 1 else None
            platform.send(api, bot, job, parts[index], index=index, buttons=buttons)
            # Counted as soon as the platform accepted it, before (and whether or not) the ledger records
            # it: a failed record must not make :meth:`_retry` take the part for unsent and overwrite it
            # with the apology. The release of the claim then records the count (ReplyLedger.release).
            claim.parts_sent = index + 1
            self._ledger.part_sent(claim, index + 1)


def build_worker(settings: Settings) -> BotWorker:
    """A worker wired to the registry, Firestore, the Q&A service and the platforms from ``settings``."""
    registry = BotRegistry.from_settings(settings)
    # The worker decrypts tokens; 10 s of cache saves a read + decryption per job of a busy bot.
    bots = CachedLookup(bot_lookup(registry, with_token=True), ttl=10.0)
    return BotWorker(
        registry.db,
        bots,
        QaClient(settings.qa_url, internal_auth=settings.internal_auth),
        settings,
        bots_without_token=bot_lookup(registry),
    )
