"""Webhook ingress, the same for every platform: find the bot, verify, parse, dedupe, publish.

The Cloud Functions (``functions/telegram_webhook.py``, ``functions/discord_interactions.py``) are thin:
each builds one :class:`Ingress` for its platform per process and hands it the request
(:meth:`Ingress.serve`). What differs between platforms (how a request is verified, what an update
means, how to answer) is the platform's (:class:`shared.bots.platforms.base.Platform`); the order of the
steps and the bookkeeping are here. Everything that takes time (asking the Q&A service, sending the
answer, checking admin rights with the platform) happens in the worker behind Pub/Sub: a Cloud
Function's CPU is throttled once it has answered, and Discord wants its first answer within 3 seconds.

Status codes (each rejection logs exactly one line, without tokens or bodies):

========  =====================================================================================
200       accepted (job published), duplicate, or ignored (not for this bot, disabled chat, a group
          message the chat's answer mode does not answer, ...); Discord: also PONG, button answers
          and polite failures (Discord does not retry); Telegram: a button press, answered with
          ``answerCallbackQuery`` in the response body (Telegram runs a method a webhook answers with),
          and a group upgraded to a supergroup, whose chat settings the ingress moves to the new chat
          id itself (``moved``, running or stopped bot; nothing is published)
400       not JSON (also: an integer of more than 4,300 digits, nesting deeper than Python's
          recursion limit) / not an update / not an interaction / ids of a shape the platform
          never sends
401       Discord: missing, malformed or wrong Ed25519 signature, or a stale timestamp
403       Telegram: wrong or missing ``X-Telegram-Bot-Api-Secret-Token``, or no secret hash stored
          for the bot yet (a bot from before hashes: the next reconcile writes it)
404       unknown bot id (or one of another platform, or one no bot can have: ``__x__``, ``..``)
413       body larger than ``settings.max_body_bytes``
503       Telegram: Firestore / Pub/Sub unavailable or too slow, the bot lookup included (Telegram
          retries)
========  =====================================================================================

Discord's deadline: an interaction not answered within 3 seconds fails for the user, and Discord does
not retry it. A platform with such a deadline has a ``response_budget``
(:attr:`shared.bots.platforms.base.Platform.response_budget`): the request is handled on a pool thread
and the function waits that long, then answers the platform's polite :meth:`Platform.unavailable`
instead. The abandoned thread publishes nothing once the answer is given (so the "try again" is
true); if it had started publishing already, the job may still go out, and the worker's edit of the
original response then replaces the apology with the answer.

No token key: the functions read bots through :class:`shared.bots.registry.BotReader` and check the
Telegram secret header against the stored keyed hash (``webhook_secret_hash``), never a decrypted
secret, so they cannot decrypt a bot token.

Dedupe order: an update is recorded as seen (``processed_updates``) only *after* its job is
published. A crash in between leaves no record, so the platform's retry publishes the same job again
(same deterministic job id) and the worker's reply ledger answers it once. Recording first would lose
the update for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Protocol

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import ValidationError

from shared import logs
from shared.bots import chat_switch, dedupe
from shared.bots.answer_modes import answers_unaddressed
from shared.bots.buttons import ButtonStateStore
from shared.bots.chat_switch import ChatSettings
from shared.bots.jobs import Job, JobPublisher
from shared.bots.lookup import BotInfo, BotLookup, CachedLookup, bot_lookup
from shared.bots.platforms import get_platform
from shared.bots.platforms.base import Ack, ChatMoved, Delivery, Platform, Rejection, Reply, Stage
from shared.bots.registry import BotReader
from shared.config import Settings, get_settings
from shared.processes import PerProcess
from shared.request_input import NotJSON, is_document_id, read_json

log = logging.getLogger(__name__)

# How long a side read may take when the platform sets no response budget (Telegram): past it the
# update is answered 503, and Telegram delivers it again.
SIDE_READ_TIMEOUT_S = 30.0
_PAST_DEADLINE_S = 1.0


class Publisher(Protocol):
    """What the ingress publishes jobs with (:class:`shared.bots.jobs.JobPublisher`, or a stand-in)."""

    def publish(self, job: Job) -> str: ...


class Request(Protocol):
    """The parts of a Flask request the ingress reads."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def headers(self) -> Any: ...  # a mapping of header names to values
    @property
    def stream(self) -> Any: ...
    @property
    def content_length(self) -> int | None: ...


def read_body(stream: Any, content_length: int | None, limit: int) -> bytes | None:
    """Read at most ``limit`` bytes; ``None`` if the body is larger (without reading all of it)."""
    if content_length is not None and content_length > limit:
        return None
    data = stream.read(limit + 1)
    if len(data) > limit:
        return None
    return bytes(data)


def bot_id_from_path(path: str) -> str | None:
    """The bot id from ``/{bot_id}`` (a trailing slash is tolerated); ``None`` if malformed or one no
    document can have (``__x__``: Firestore refuses it)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) != 1 or not is_document_id(parts[0]):
        return None
    return parts[0]


# Threads for the chat-switch read, run in parallel with a request's own Firestore read (gRPC releases
# the GIL). Per process: a pool inherited across gunicorn's fork has no threads behind it.
_side_reads = PerProcess(lambda: ThreadPoolExecutor(max_workers=8, thread_name_prefix="ingress"))
# Threads that handle the requests of a platform with a response budget (Discord), so the request's
# own thread can stop waiting. Bounded: while Firestore hangs, requests queue here and are answered
# with the fallback when their budget ends, instead of each holding a thread of its own.
_budgeted_runs = PerProcess(lambda: ThreadPoolExecutor(max_workers=32, thread_name_prefix="ingress-budget"))


class _Attempt:
    """One request handled on a pool thread: its deadline, whether the waiting request gave up on it,
    and whether it had started publishing by then (a job on its way cannot be called back)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline  # time.monotonic() value; None: no budget
        self._lock = threading.Lock()
        self._abandoned = False
        self._publishing = False

    def wait_limit(self, default: float) -> float:
        """How long the handling thread may wait on a side read: ``default`` without a deadline, else
        until a little past it, so that the waiting request gives up first (and answers, and logs,
        once) and the thread is free again soon after."""
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - time.monotonic()) + _PAST_DEADLINE_S

    def start_publishing(self) -> bool:
        """Whether to publish: ``False`` once the request was answered without this thread."""
        with self._lock:
            if not self._abandoned:
                self._publishing = True
            return self._publishing

    def abandon(self) -> bool:
        """Stop waiting; whether the job may still go out (publishing had started)."""
        with self._lock:
            self._abandoned = True
            return self._publishing


class Ingress:
    """One platform's webhook logic. One instance per process; thread-safe."""

    def __init__(
        self,
        platform: Platform,
        db: firestore.Client,
        bots: BotLookup,
        publisher: Publisher,
        max_body_bytes: int = 65_536,
        clock: Callable[[], float] = time.time,
        response_budget: float | None = None,
        executor: Executor | None = None,
    ) -> None:
        """``response_budget`` (seconds) overrides the platform's; ``executor`` runs budgeted requests
        (default: a pool per process)."""
        self.platform = platform
        self.max_body_bytes = max_body_bytes
        self.response_budget = response_budget if response_budget is not None else platform.response_budget
        self._db = db
        self._bots = bots
        self._publisher = publisher
        self._buttons = ButtonStateStore(db)
        self._clock = clock
        self._executor = executor

    def serve(self, request: Request) -> tuple[dict[str, Any], int]:
        """The function's answer to a POST: path → bot id, bounded body read, :meth:`handle`."""
        body = read_body(request.stream, request.content_length, self.max_body_bytes)
        reply = self.handle(bot_id_from_path(request.path), request.headers, body)
        return reply.body, reply.status

    def handle(self, bot_id: str | None, headers: Mapping[str, str], body: bytes | None) -> Reply:
        """Handle one POST. ``body`` is ``None`` when it exceeded ``max_body_bytes``; header names are
        matched without regard to case. Within :attr:`response_budget`, when there is one."""
        if bot_id is None:
            return self._reject(Rejection(404, "unknown bot", "malformed path"), "?")
        if body is None:
            return self._reject(Rejection(413, "body too large"), bot_id)
        budget = self.response_budget
        if budget is None:
            return self._handle(bot_id, headers, body, _Attempt(None))
        attempt = _Attempt(time.monotonic() + budget)
        runs = self._executor or _budgeted_runs.get()
        future = runs.submit(self._handle, bot_id, headers, body, attempt)
        try:
            return future.result(timeout=budget)
        except TimeoutError:
            future.cancel()  # still queued: it never starts
            stage = Stage.PUBLISH if attempt.abandon() else Stage.STORAGE
            return self._unavailable(stage, bot_id, f"no answer within the {budget:g} s budget")

    def _handle(self, bot_id: str, headers: Mapping[str, str], body: bytes, attempt: _Attempt) -> Reply:
        try:
            bot = self._bots(bot_id)
        except gexc.GoogleAPIError as exc:  # RetryError too, which is no GoogleAPICallError
            return self._unavailable(Stage.STORAGE, bot_id, f"bot lookup: {type(exc).__name__}")
        if bot is None or bot.platform != self.platform.name:
            return self._reject(Rejection(404, "unknown bot"), bot_id)
        lowered = {str(name).lower(): value for name, value in headers.items()}
        refused = self.platform.verify(bot, lowered, body, self._clock())
        if refused is not None:
            return self._reject(refused, bot_id)
        try:
            payload = read_json(body)
        except NotJSON as exc:
            return self._reject(Rejection(400, "not JSON", exc.reason), bot_id)
        try:
            received = self.platform.receive(bot, payload, self._buttons)
            if isinstance(received, Rejection):
                return self._reject(received, bot_id)
            if isinstance(received, ChatMoved):
                return self._move_chat(bot, received, attempt)
            if isinstance(received, Reply):
                return received
            ended = self._check(received, bot, attempt)
        except ValidationError as exc:
            # A field the platform's checks let through that no job can hold: the update's fault.
            rejection = Rejection(400, "malformed update", f"job: {exc.error_count()} errors")
            return self._reject(rejection, bot_id)
        except (gexc.GoogleAPIError, TimeoutError) as exc:
            return self._unavailable(Stage.STORAGE, bot_id, f"firestore: {type(exc).__name__}")
        if ended is Ack.DUPLICATE:
            return received.reply or self.platform.acknowledge(ended)
        if ended is not None:
            return self.platform.acknowledge(ended)
        if not attempt.start_publishing():
            # The request was answered with the fallback ("try again"): publishing now would answer too.
            log.info(
                "%s update %s of bot %s not published: past the budget",
                self.platform.name,
                received.update_id,
                bot_id[:64],
            )
            return Reply(503, {"ok": False, "error": "past the budget"}, "abandoned")  # nobody waits for it
        try:
            self._publisher.publish(received.job)
        except Exception as exc:
            # Nothing was recorded yet: the platform's retry gets in and publishes again.
            return self._unavailable(Stage.PUBLISH, bot_id, f"publish failed: {type(exc).__name__}")
        self._record_seen(bot_id, received.update_id)
        return received.reply or self.platform.acknowledge(Ack.ACCEPTED)

    def _move_chat(self, bot: BotInfo, moved: ChatMoved, attempt: _Attempt) -> Reply:
        """A chat's new id: its settings move to it here, not in the worker, for a running or a stopped
        bot (:class:`shared.bots.platforms.base.ChatMoved`). Idempotent, so a redelivered update moves
        nothing twice. On the side-read pool, to wait no longer than a side read: a Firestore failure or
        a move that outlasts the wait raises out of here (the platform's retry answer, Telegram's 503),
        and a move still running then is finished by it or by the retry, whichever comes second."""
        move = _side_reads.get().submit(
            chat_switch.move_settings, self._db, bot.bot_id, moved.from_chat, moved.to_chat
        )
        if move.result(timeout=attempt.wait_limit(SIDE_READ_TIMEOUT_S)):
            log.info(
                "%s chat %s of bot %s is now %s: its settings moved",
                self.platform.name,
                moved.from_chat,
                bot.bot_id[:64],
                moved.to_chat,
            )
        return moved.reply

    def _check(self, delivery: Delivery, bot: BotInfo, attempt: _Attempt) -> Ack | None:
        """Whether the delivery ends here: its chat switched the bot off, its chat's answer mode does
        not answer a message that is not addressed to the bot, or it was published before. Otherwise the
        job leaves with the chat's effective answer mode in it (the worker needs it for refusals).

        The chat's settings are read while the dedupe record is looked up: two round trips in the time
        of one. The record is written only after publishing (module docstring).
        """
        chat: Future[ChatSettings] | None = None
        if delivery.chat_id is not None:
            chat = _side_reads.get().submit(
                chat_switch.read_settings, self._db, delivery.job.bot_id, delivery.chat_id
            )
        seen = dedupe.update_seen(self._db, self.platform.name, delivery.job.bot_id, delivery.update_id)
        settings = ChatSettings()
        if chat is not None:
            settings = chat.result(timeout=attempt.wait_limit(SIDE_READ_TIMEOUT_S))
        if not settings.enabled:
            return Ack.DISABLED
        mode = settings.answer_mode or bot.answer_mode
        if not delivery.job.addressed and not answers_unaddressed(mode):
            return Ack.NOT_ADDRESSED
        delivery.job.answer_mode = str(mode)
        return Ack.DUPLICATE if seen else None

    def _record_seen(self, bot_id: str, update_id: int | str) -> None:
        """Record a published update. Failing here only means a redelivery publishes the job once more,
        which the worker's ledger answers once: log it, the job is queued."""
        try:
            dedupe.record_update(self._db, self.platform.name, bot_id, update_id)
        except gexc.GoogleAPIError as exc:  # RetryError too: the job is out, a 500 would only re-publish
            log.warning(
                "update %s of bot %s published but not recorded: %s", update_id, bot_id, type(exc).__name__
            )

    def _unavailable(self, stage: Stage, bot_id: str, detail: str) -> Reply:
        """Firestore or Pub/Sub failed: the platform's answer (a retry status or a polite message), logged
        as a WARNING either way: an outage is the operator's business, a bad request is not."""
        answer = self.platform.unavailable(stage, detail)
        if isinstance(answer, Rejection):
            return self._reject(answer, bot_id, level=logging.WARNING)
        log.warning(
            "%s webhook for bot %s answered %s: %s", self.platform.name, bot_id[:64], answer.reason, detail
        )
        return answer

    def _reject(self, rejection: Rejection, bot_id: str, level: int = logging.INFO) -> Reply:
        log.log(
            level,
            "%s webhook rejected %s: bot=%s %s",
            self.platform.name,
            rejection.status,
            bot_id[:64],
            rejection.detail or rejection.reason,
        )
        return Reply(rejection.status, {"ok": False, "error": rejection.reason}, rejection.reason)


def build_ingress(settings: Settings, platform: str) -> Ingress:
    """The ingress of ``platform`` for ``settings``: Firestore, a briefly cached bot lookup, the jobs
    topic. A reader, not a BotRegistry: the public functions never load the token key."""
    reader = BotReader.from_settings(settings)
    bots = CachedLookup(bot_lookup(reader), ttl=10.0)
    publisher = JobPublisher(settings.project_id, settings.jobs_topic)
    return Ingress(get_platform(platform), reader.db, bots, publisher, max_body_bytes=settings.max_body_bytes)


def webhook_function(
    platform: str, not_allowed: dict[str, Any]
) -> Callable[[Request], tuple[dict[str, Any], int]]:
    """A webhook Cloud Function's body: 405 (``not_allowed``) for anything but POST, else the platform's
    :class:`Ingress`, built with logging on the first request, once per process (gunicorn and
    functions-framework may fork after import)."""

    def build() -> Ingress:
        settings = get_settings()
        logs.configure(settings.log_level, json_output=settings.is_production)
        return build_ingress(settings, platform)

    ingress = PerProcess(build)

    def serve(request: Request) -> tuple[dict[str, Any], int]:
        if request.method != "POST":
            log.info("%s webhook rejected 405: %s %s", platform, request.method[:16], request.path[:80])
            return dict(not_allowed), 405
        return ingress.get().serve(request)

    return serve
