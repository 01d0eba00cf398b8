"""Webhook ingress for Telegram updates and Discord interactions: verify, parse, dedupe, decide, publish.

The two Cloud Functions are thin: they take the bot id from the path, read the body (bounded), call
:meth:`TelegramIngress.handle` / :meth:`DiscordIngress.handle` and render the :class:`Reply`. Everything
that takes time (asking the Q&A service, sending the answer, checking admin rights with the platform)
happens in the worker behind Pub/Sub: a Cloud Function's CPU is throttled once it has answered, and
Discord wants its first answer within 3 seconds.

Status codes (each rejection logs exactly one line, without tokens or bodies):

========  =====================================================================================
200       accepted (job published), duplicate, or ignored (not for this bot, disabled chat, ...)
400       not JSON / not an update / not an interaction
401       Discord: missing, malformed or wrong Ed25519 signature, or a stale timestamp
403       Telegram: wrong or missing ``X-Telegram-Bot-Api-Secret-Token``, or no secret hash stored
          for the bot yet (a bot from before hashes: the next reconcile writes it)
404       unknown bot id (or one of the other platform)
413       body larger than ``settings.max_body_bytes``
503       Firestore / Pub/Sub unavailable: the platform retries (Telegram does)
========  =====================================================================================

No token key: the functions read bots through :class:`shared.bots.registry.BotReader` and check the
Telegram secret header against the stored keyed hash (``webhook_secret_hash``), never a decrypted
secret, so they cannot decrypt a bot token.

Dedupe order: an update is recorded as seen (``processed_updates``) only *after* its job is
published. A crash in between leaves no record, so the platform's retry publishes the same job again
(same deterministic job id) and the worker's reply ledger answers it once. Recording first would lose
the update for good.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.bots import chats, dedupe
from shared.bots.directory import BotInfo, BotLookup, CachedLookup
from shared.bots.formatting import SourceRef, render_discord_sources
from shared.bots.interactions import Action, InteractionStore, parse_custom_id
from shared.bots.jobs import Job, JobKind, JobPublisher, discord_job_id, telegram_job_id
from shared.bots.registry import BotReader
from shared.bots.secrets import webhook_secret_hash, webhook_secret_matches

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

BOT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
DISCORD_SIGNATURE_HEADER = "X-Signature-Ed25519"
DISCORD_TIMESTAMP_HEADER = "X-Signature-Timestamp"
DISCORD_MAX_CLOCK_SKEW = 300.0  # seconds; a signed request older than this is a replay
EPHEMERAL = 64

TOO_OLD_SOURCES = "This answer is too old to show its sources; ask again with /ask."
TOO_OLD_FEEDBACK = "This answer is too old to rate; ask again with /ask."
THANKS = "Thanks for the feedback!"


# --- replies ---------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the entry point sends back: a status and a JSON body."""

    status: int
    body: dict[str, Any]
    reason: str = ""  # one word for logs and benches: "accepted", "duplicate", "ignored", ...


def _reject(status: int, reason: str, platform: str, bot_id: str, detail: str = "") -> Reply:
    log.info("%s webhook rejected %s: bot=%s %s", platform, status, bot_id[:64], detail or reason)
    return Reply(status, {"ok": False, "error": reason}, reason)


def read_body(stream: Any, content_length: int | None, limit: int) -> bytes | None:
    """Read at most ``limit`` bytes; ``None`` if the body is larger (without reading all of it)."""
    if content_length is not None and content_length > limit:
        return None
    data = stream.read(limit + 1)
    if len(data) > limit:
        return None
    return bytes(data)


def bot_id_from_path(path: str) -> str | None:
    """The bot id from ``/{bot_id}`` (a trailing slash is tolerated); ``None`` if malformed."""
    parts = [p for p in path.split("/") if p]
    if len(parts) != 1 or not BOT_ID_RE.match(parts[0]):
        return None
    return parts[0]


# --- Telegram --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What to do with one Telegram update: a job kind and question, or ``None`` with the reason."""

    kind: JobKind | None
    reason: str
    question: str | None = None


def decide_telegram(update: Mapping[str, Any], bot: BotInfo) -> Decision:
    """Apply the chat rules to an update (pure: no I/O).

    * private chats: every text message is a question; ``/start`` and ``/help`` get the help text;
    * groups: only ``/ask ...``, a message mentioning ``@username``, or a reply to one of the bot's
      messages; ``/start`` ``/help`` ``/enable`` ``/disable`` addressed to this bot (or unaddressed);
    * commands addressed to another bot (``/help@other_bot``), messages from bots, channels, edits and
      non-text messages are ignored.
    """
    message = update.get("message")
    if not isinstance(message, dict):
        return Decision(None, "not a message")
    chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
    chat_type = chat.get("type")
    sender = message.get("from") if isinstance(message.get("from"), dict) else {}
    if sender.get("is_bot") and not _is_anonymous_admin(message):
        return Decision(None, "from a bot")
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return Decision(None, "no text")
    text = text.strip()
    username = (bot.username or "").lower()
    private = chat_type == "private"
    if chat_type not in ("private", "group", "supergroup"):
        return Decision(None, "not a private or group chat")

    if text.startswith("/"):
        head, _, rest = text.partition(" ")
        if "\n" in head:  # "/ask\nquestion"
            head, _, more = head.partition("\n")
            rest = (more + " " + rest).strip()
        command, _, target = head[1:].partition("@")
        command = command.lower()
        if target and target.lower() != username:
            return Decision(None, "command for another bot")
        rest = rest.strip()
        if command in ("start", "help"):
            return Decision(JobKind.HELP, "help")
        if command == "ask":
            return Decision(JobKind.ASK, "ask", rest) if rest else Decision(JobKind.HELP, "empty ask")
        if command == "enable":
            return Decision(JobKind.ENABLE, "enable")
        if command == "disable":
            return Decision(JobKind.DISABLE, "disable")
        if private:
            return Decision(JobKind.HELP, "unknown command")
        return Decision(None, "unknown command")

    if private:
        return Decision(JobKind.ASK, "private", text)
    if username and _mentions(message, text, username, bot.telegram_user_id):
        question = re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE)
        question = re.sub(r"[ \t]{2,}", " ", question).strip()
        return (
            Decision(JobKind.ASK, "mention", question) if question else Decision(JobKind.HELP, "bare mention")
        )
    if _replies_to_bot(message, username, bot.telegram_user_id):
        return Decision(JobKind.ASK, "reply", text)
    return Decision(None, "group message not for the bot")


def _mentions(message: Mapping[str, Any], text: str, username: str, bot_user_id: int | None) -> bool:
    entities = message.get("entities")
    if isinstance(entities, list):
        for entity in entities:
            if not isinstance(entity, dict):
                continue
            if entity.get("type") == "mention":
                # Offsets are in UTF-16 code units: slice the UTF-16 encoding, not the str.
                start, length = entity.get("offset", -1), entity.get("length", 0)
                if isinstance(start, int) and isinstance(length, int) and start >= 0:
                    encoded = message.get("text", "").encode("utf-16-le")
                    mention = encoded[2 * start : 2 * (start + length)].decode("utf-16-le", "replace")
                    if mention.lower() == "@" + username:
                        return True
            if entity.get("type") == "text_mention":
                user = entity.get("user") or {}
                if bot_user_id is not None and user.get("id") == bot_user_id:
                    return True
    # Entities are absent when a client or a test sends plain text: fall back to a word match.
    return re.search(rf"(?<![\w@])@{re.escape(username)}\b", text, flags=re.IGNORECASE) is not None


def _replies_to_bot(message: Mapping[str, Any], username: str, bot_user_id: int | None) -> bool:
    replied = message.get("reply_to_message")
    if not isinstance(replied, dict):
        return False
    author = replied.get("from") if isinstance(replied.get("from"), dict) else {}
    if bot_user_id is not None and author.get("id") == bot_user_id:
        return True
    return bool(username) and str(author.get("username", "")).lower() == username


def _is_anonymous_admin(message: Mapping[str, Any]) -> bool:
    """A group admin posting anonymously arrives as a bot user with ``sender_chat`` = the group."""
    sender_chat = message.get("sender_chat")
    chat = message.get("chat")
    return (
        isinstance(sender_chat, dict) and isinstance(chat, dict) and sender_chat.get("id") == chat.get("id")
    )


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """Threads for side lookups run in parallel with a request's own Firestore write (gRPC releases the
    GIL). One pool per process: a pool inherited across gunicorn's fork has no threads behind it."""
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        pool = _pools.setdefault(pid, ThreadPoolExecutor(max_workers=8, thread_name_prefix="ingress"))
    return pool


class TelegramIngress:
    """The Telegram webhook's logic. One instance per process; thread-safe."""

    def __init__(
        self, db: firestore.Client, bots: BotLookup, publisher: JobPublisher, max_body_bytes: int = 65_536
    ) -> None:
        self._db = db
        self._bots = bots
        self._publisher = publisher
        self.max_body_bytes = max_body_bytes

    def handle(self, bot_id: str | None, secret: str | None, body: bytes | None) -> Reply:
        """Handle one POST. ``body`` is ``None`` when it exceeded ``max_body_bytes``."""
        if bot_id is None:
            return _reject(404, "unknown bot", "telegram", "?", "malformed path")
        if body is None:
            return _reject(413, "body too large", "telegram", bot_id)
        bot = self._bots(bot_id)
        if bot is None or bot.platform != "telegram":
            return _reject(404, "unknown bot", "telegram", bot_id)
        expected = getattr(bot, "webhook_secret_hash", None)
        if not expected and bot.webhook_secret:  # a lookup that holds the plaintext (CLI, benches)
            expected = webhook_secret_hash(bot.bot_id, bot.webhook_secret)
        if not expected:
            return _reject(403, "forbidden", "telegram", bot_id, "no webhook secret hash stored (reconcile)")
        # Constant time over the hashes; no TypeError on non-ASCII header values.
        if not webhook_secret_matches(bot.bot_id, secret, expected):
            return _reject(403, "forbidden", "telegram", bot_id, "wrong or missing secret token")
        try:
            update = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _reject(400, "not JSON", "telegram", bot_id)
        update_id = update.get("update_id") if isinstance(update, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
            return _reject(400, "not an update", "telegram", bot_id)
        if not bot.active:
            return Reply(200, {"ok": True, "status": "ignored"}, "stopped")

        decision = decide_telegram(update, bot)
        if decision.kind is None:
            return Reply(200, {"ok": True, "status": "ignored"}, "ignored")
        message = update["message"]
        chat = message["chat"]
        chat_id = chat.get("id")
        if not isinstance(chat_id, int):
            return _reject(400, "not an update", "telegram", bot_id, "chat without id")
        try:
            # The chat switch is read while the dedupe record is looked up: two round trips in the
            # time of one. /enable and /disable always go through: a disabled chat must be able to
            # switch the bot back on. The record is written only after publishing (module docstring).
            switchable = decision.kind in (JobKind.ENABLE, JobKind.DISABLE)
            enabled = None if switchable else _pool().submit(chats.is_enabled, self._db, bot_id, chat_id)
            seen = dedupe.update_seen(self._db, "telegram", bot_id, update_id)
            if enabled is not None and not enabled.result(timeout=30):
                return Reply(200, {"ok": True, "status": "ignored"}, "disabled")
            if seen:
                return Reply(200, {"ok": True, "status": "duplicate"}, "duplicate")
        except gexc.GoogleAPICallError as exc:
            return _reject(503, "unavailable", "telegram", bot_id, f"firestore: {type(exc).__name__}")
        sender = message.get("from") if isinstance(message.get("from"), dict) else {}
        job = Job(
            job_id=telegram_job_id(bot_id, update_id),
            platform="telegram",
            bot_id=bot_id,
            kind=decision.kind,
            chat_id=str(chat_id),
            chat_type=str(chat.get("type")),
            message_id=message.get("message_id") if isinstance(message.get("message_id"), int) else None,
            user=str(sender.get("id")) if sender.get("id") is not None else None,
            user_is_admin_hint=_is_anonymous_admin(message),
            question=decision.question,
        )
        return self._publish(job, "telegram", bot_id, update_id)

    def _publish(self, job: Job, platform: str, bot_id: str, update_id: int | str) -> Reply:
        try:
            self._publisher.publish(job)
        except Exception as exc:
            # Nothing was recorded yet: the platform's retry gets in and publishes again.
            return _reject(503, "unavailable", platform, bot_id, f"publish failed: {type(exc).__name__}")
        _record_seen(self._db, platform, bot_id, update_id)
        return Reply(200, {"ok": True, "status": "accepted"}, "accepted")


def _record_seen(db: firestore.Client, platform: str, bot_id: str, update_id: int | str) -> None:
    """Record a published update. Failing here only means a redelivery publishes the job once more,
    which the worker's ledger answers once: log it, the job is queued."""
    try:
        dedupe.record_update(db, platform, bot_id, update_id)
    except gexc.GoogleAPIError as exc:  # RetryError too: the job is out, a 500 would only re-publish
        log.warning(
            "update %s of bot %s published but not recorded: %s", update_id, bot_id, type(exc).__name__
        )


# --- Discord ---------------------------------------------------------------------------------------

_verify_keys: dict[str, Ed25519PublicKey] = {}


def verify_discord_signature(
    public_key: str, signature: str | None, timestamp: str | None, body: bytes, now: float | None = None
) -> bool:
    """Ed25519 over ``timestamp + body`` with the application's public key (hex).

    Anything missing or malformed is simply ``False``: Discord probes the endpoint with bad signatures
    and expects 401, never a 500. A timestamp further than :data:`DISCORD_MAX_CLOCK_SKEW` from now is
    refused too, so a captured request cannot be replayed later.
    """
    if not signature or not timestamp or not public_key:
        return False
    try:
        key = _verify_keys.get(public_key)
        if key is None:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
            if len(_verify_keys) < 10_000:
                _verify_keys[public_key] = key
        key.verify(bytes.fromhex(signature), timestamp.encode() + body)
    except (InvalidSignature, ValueError, TypeError):
        return False
    try:
        sent_at = float(timestamp)
    except ValueError:
        return False
    now = time.time() if now is None else now
    return abs(now - sent_at) <= DISCORD_MAX_CLOCK_SKEW


def _ephemeral(content: str) -> dict[str, Any]:
    return {"type": 4, "data": {"content": content, "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}}


class DiscordIngress:
    """The Discord interactions endpoint's logic. One instance per process; thread-safe."""

    def __init__(
        self,
        db: firestore.Client,
        bots: BotLookup,
        publisher: JobPublisher,
        max_body_bytes: int = 65_536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._bots = bots
        self._publisher = publisher
        self._store = InteractionStore(db)
        self._clock = clock
        self.max_body_bytes = max_body_bytes

    def handle(
        self, bot_id: str | None, signature: str | None, timestamp: str | None, body: bytes | None
    ) -> Reply:
        if bot_id is None:
            return _reject(404, "unknown bot", "discord", "?", "malformed path")
        if body is None:
            return _reject(413, "body too large", "discord", bot_id)
        bot = self._bots(bot_id)
        if bot is None or bot.platform != "discord" or not bot.public_key:
            return _reject(404, "unknown bot", "discord", bot_id)
        if not verify_discord_signature(bot.public_key, signature, timestamp, body, self._clock()):
            return _reject(401, "invalid request signature", "discord", bot_id, "bad or missing signature")
        try:
            interaction = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _reject(400, "not JSON", "discord", bot_id)
        if not isinstance(interaction, dict) or not isinstance(interaction.get("type"), int):
            return _reject(400, "not an interaction", "discord", bot_id)
        kind = interaction["type"]
        if kind == 1:  # PING: answered even for a stopped bot, it is how Discord checks the URL
            return Reply(200, {"type": 1}, "pong")
        interaction_id = interaction.get("id")
        if not isinstance(interaction_id, str | int) or not str(interaction_id).isdigit():
            return _reject(400, "not an interaction", "discord", bot_id, "no interaction id")
        try:
            if kind == 2:
                return self._command(bot, interaction, str(interaction_id))
            if kind == 3:
                return self._component(bot, interaction)
        except gexc.GoogleAPICallError as exc:
            log.warning("discord interaction for bot %s failed: %s", bot_id, type(exc).__name__)
            return Reply(200, _ephemeral("Sorry, something went wrong. Please try again."), "unavailable")
        if kind == 4:  # autocomplete: we offer none
            return Reply(200, {"type": 8, "data": {"choices": []}}, "ignored")
        return _reject(400, "unsupported interaction type", "discord", bot_id)

    def _command(self, bot: BotInfo, interaction: Mapping[str, Any], interaction_id: str) -> Reply:
        data = interaction.get("data") if isinstance(interaction.get("data"), dict) else {}
        if data.get("name") != "ask":
            return Reply(200, _ephemeral("I only know /ask."), "ignored")
        if not bot.active:
            return Reply(200, _ephemeral("This bot is stopped; ask its owner to start it."), "stopped")
        question = ""
        options = data.get("options")
        for option in options if isinstance(options, list) else []:
            if isinstance(option, dict) and option.get("name") == "question":
                question = str(option.get("value") or "").strip()
        if not question:
            return Reply(200, _ephemeral("Usage: /ask question: your question"), "ignored")
        token = interaction.get("token")
        application_id = str(interaction.get("application_id") or "")
        if not application_id.isdigit():
            application_id = bot.application_id or ""
        if not isinstance(token, str) or not token or not application_id:
            return _reject(400, "not an interaction", "discord", bot.bot_id, "no token or application id")
        if dedupe.update_seen(self._db, "discord", bot.bot_id, interaction_id):
            # Discord does not retry interactions, but a replayed one must not answer twice (and one
            # replayed concurrently is published twice at most: the worker's ledger answers once).
            return Reply(200, {"type": 5}, "duplicate")
        job = Job(
            job_id=discord_job_id(bot.bot_id, interaction_id),
            platform="discord",
            bot_id=bot.bot_id,
            kind=JobKind.ASK,
            chat_id=str(interaction.get("channel_id") or "") or None,
            chat_type="guild" if interaction.get("guild_id") else "dm",
            user=_discord_user(interaction),
            question=question,
            interaction_token=token,
            application_id=str(application_id),
        )
        try:
            self._publisher.publish(job)
        except Exception as exc:
            log.warning("discord job for bot %s not published: %s", bot.bot_id, type(exc).__name__)
            return Reply(200, _ephemeral("Sorry, I can't answer right now. Please try again."), "unavailable")
        _record_seen(self._db, "discord", bot.bot_id, interaction_id)
        # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: "thinking..." until the worker edits @original.
        return Reply(200, {"type": 5}, "accepted")

    def _component(self, bot: BotInfo, interaction: Mapping[str, Any]) -> Reply:
        data = interaction.get("data") if isinstance(interaction.get("data"), dict) else {}
        parsed = parse_custom_id(str(data.get("custom_id") or ""))
        if parsed is None:
            return Reply(200, _ephemeral("This button is not recognised."), "ignored")
        action, state_id = parsed
        state = self._store.get(state_id)
        if state is None or state.bot_id != bot.bot_id:
            # Graceful degradation: the answer's state expired (30 days) or never existed.
            message = TOO_OLD_SOURCES if action is Action.SOURCES else TOO_OLD_FEEDBACK
            return Reply(200, _ephemeral(message), "expired")
        if action is Action.SOURCES:
            sources = [SourceRef(s.title, s.url) for s in state.sources]
            return Reply(200, _ephemeral(render_discord_sources(sources)), "sources")
        user = _discord_user(interaction) or "unknown"
        self._store.record_feedback(state_id, user, "helpful" if action is Action.HELPFUL else "not_helpful")
        return Reply(200, _ephemeral(THANKS), "feedback")


def _discord_user(interaction: Mapping[str, Any]) -> str | None:
    member = interaction.get("member")
    user = member.get("user") if isinstance(member, dict) else interaction.get("user")
    if isinstance(user, dict) and user.get("id") is not None:
        return str(user["id"])
    return None


# --- wiring ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngressBot(BotInfo):
    """:class:`BotInfo` plus the stored hash of the Telegram webhook secret (no plaintext secret)."""

    webhook_secret_hash: str | None = field(default=None, repr=False)


def ingress_lookup(reader: BotReader) -> BotLookup:
    """A :data:`BotLookup` for the ingress: reads only, decrypts nothing (no token key needed)."""

    def lookup(bot_id: str) -> BotInfo | None:
        bot = reader.get_bot(bot_id)
        if bot is None:
            return None
        info = bot.platform_info
        user_id = info.get("bot_user_id")
        return IngressBot(
            bot_id=bot.id,
            platform=bot.platform,
            active=bot.is_running,
            name=bot.name,
            username=(str(info["username"]).lstrip("@") if info.get("username") else None),
            telegram_user_id=int(user_id) if bot.platform == "telegram" and str(user_id).isdigit() else None,
            public_key=info.get("public_key"),
            application_id=(str(info["application_id"]) if info.get("application_id") else None),
            webhook_secret_hash=bot.webhook_secret_hash or None,
        )

    return lookup


def _wiring(settings: Settings) -> tuple[firestore.Client, BotLookup, JobPublisher]:
    # A reader, not a BotRegistry: the public functions never load the token key.
    reader = BotReader.from_settings(settings)
    bots = CachedLookup(ingress_lookup(reader), ttl=10.0)
    return reader.db, bots, JobPublisher(settings.project_id, settings.jobs_topic)


def build_telegram_ingress(settings: Settings) -> TelegramIngress:
    """The Telegram ingress for ``settings`` (Firestore, registry with cache, Pub/Sub publisher)."""
    db, bots, publisher = _wiring(settings)
    return TelegramIngress(db, bots, publisher, max_body_bytes=settings.max_body_bytes)


def build_discord_ingress(settings: Settings) -> DiscordIngress:
    """The Discord ingress for ``settings``."""
    db, bots, publisher = _wiring(settings)
    return DiscordIngress(db, bots, publisher, max_body_bytes=settings.max_body_bytes)
