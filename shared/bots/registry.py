"""The bot registry: one Firestore document per bot in ``bots`` (schema in docs/architecture.md).

Public API (used by the control plane, the webhook functions and the worker)::

    from shared.bots.registry import Bot, BotRegistry

    reader = BotReader.from_settings(settings)          # Firestore only: no token key (webhook functions)
    reader.get_bot(bot_id) / list_bots(owner) / find_by_identity(platform, key, value)

    registry = BotRegistry.from_settings(settings)      # a BotReader + the token cipher, per process
    bot = registry.get_bot(bot_id)                      # Bot | None (None also for a malformed id)
    token = registry.decrypt_token(bot)                 # platform token (Telegram / Discord bot token);
                                                        # an old key's ciphertexts move to the current key
    registry.rekey(bot) -> "rekeyed" | "current" | ...  # the same move, on request (askbase bots rekey)
    secret = registry.webhook_secret(bot)               # Telegram secret_token for this bot
    registry.ensure_webhook_secret_hash(bot)            # migration: write the hash of an older bot
    registry.record_activity(bot_id, kind, message)     # best effort, message redacted, 30-day TTL
    registry.begin_registration(bot_id, attempt, secret_enc, secret_hash) -> bool   # before setWebhook
    registry.commit_status(bot_id, generation, status, last_error, attempt=..., registered=...) -> bool
    registry.list_bots(owner=None) -> list[Bot]         # all bots, or one owner's
    registry.activity(bot_id, limit, cursor) -> ActivityPage

    @dataclass(frozen=True)
    class Bot:
        id: str; owner: str; platform: str              # a name of shared.bots.platforms
        name: str; model: str                           # "extractive" | "gemini"
        system_prompt: str
        answer_mode: str                                # shared.bots.answer_modes (default "mentions")
        desired: str                                    # "running" | "stopped"  (what the owner asked)
        status: str                                     # "stopped" | "starting" | "running" | "error"
        last_error: str | None
        platform_info: dict                             # telegram: {"username", "bot_user_id"}
                                                        # discord: {"application_id", "public_key",
                                                        #           "bot_user_id"}
        owner_email: str; created_at; updated_at; generation: int
        is_running -> bool (desired == "running"); to_public() -> dict (no secrets)

Writes that the control plane makes (create, edit, delete, desired state, status) are here too; they are
not for the webhook functions or the worker. ``generation`` increases with every change of the desired
state: :meth:`commit_status` only writes a status computed for the current generation, which is how two
concurrent start/stop calls end in one consistent state (see :mod:`shared.bots.control`).

Secrets: ``token_enc`` and ``webhook_secret_enc`` are AES-GCM ciphertexts bound to the bot id
(:mod:`shared.bots.secrets`); they are held by :class:`Bot` but never shown by its ``repr`` or
``to_public``. Nothing here logs a token. ``webhook_secret_hash`` is a keyed hash of the webhook
secret: all the webhook functions read, so they run without the token key.

Key rotation: a ciphertext sealed by a previous token key (or in the ``v1`` format) still decrypts, and
:meth:`BotRegistry.decrypt_token` then writes both of the bot's ciphertexts back under the current key
(best effort: a failed write only leaves them for the next read). The write is a transaction that
changes a field only while it still holds the ciphertext that was read, so a token replaced meanwhile is
never overwritten with the old one; it touches neither ``generation`` nor ``updated_at`` (nothing the
owner or the control plane acts on changed). ``askbase bots rekey`` does the same for every bot
(:meth:`BotRegistry.rekey`), after which the old key can be dropped (docs/operations.md). Both follow
:mod:`shared.bots.secrets`' re-sealing rule: only a previous key's blobs move, only to the current key,
so a secret moves back to an older key only if a key that is or will be current is configured as a
previous one somewhere, which the recipe forbids. A re-encryption changes ``webhook_secret_enc`` but not
the secret or ``webhook_secret_hash``: :meth:`begin_registration` compares the hash.

Which secret the platform holds: ``webhook_registered_hash`` is the same keyed hash of the secret the
platform was last *given* (Telegram's ``setWebhook``), written only after that call succeeded, "" when
it is not known. Telegram never shows the secret back (getWebhookInfo has no such field), so this
record is the only way to see that a token replacement left the old secret registered: while it
differs from ``webhook_secret_hash`` the control plane registers again (:mod:`shared.bots.control`).
Every registration first records itself in ``webhook_registering`` (attempt id -> the hash it sends and
a lease, :meth:`begin_registration`) and its commit removes it; a record is written as unknown ("")
while another attempt with a *different* secret may still land (its lease has not run out), because
that attempt's call may reach the platform after ours.

Uniqueness: every bot owns ``bot_identities/{platform}:{platform id}`` (Telegram bot user id, Discord
application id), created in the same batch as the bot and deleted with it, so two registrations of one
platform bot cannot both succeed (:class:`IdentityTaken`).
"""

from __future__ import annotations

import logging
import secrets as pysecrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.bots.activity import ActivityLog, ActivityPage
from shared.bots.answer_modes import DEFAULT_MODE, stored_mode
from shared.bots.platforms import find_platform
from shared.bots.secrets import DecryptionError, TokenCipher, webhook_secret_hash
from shared.logs import register_secret
from shared.request_input import is_document_id
from shared.transactions import run_transaction

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

COLLECTION = "bots"
IDENTITIES = "bot_identities"
DESIRED = ("running", "stopped")
STATUSES = ("stopped", "starting", "running", "error")
# The client's default retries transient errors for up to 300 s: a webhook or a page would hang that
# long while Firestore is unreachable. Give up after 15 s and let the caller answer 503.
READ_RETRY = Retry(initial=0.1, maximum=2.0, multiplier=2.0, timeout=15.0)
REGISTERING = "webhook_registering"  # attempt id -> {"hash", "until"}: registrations that may still land
# How long a registration may still reach the platform after it recorded itself: the control plane's
# calls are 3 attempts of at most ~35 s each (PTB's connect + write + read timeouts) plus waits of at
# most 5 s, about 2 minutes; 5 minutes leaves room and is still shorter than the reconcile interval.
REGISTRATION_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class BotProfile:
    """What an owner may see of a bot: the public part of a ``bots`` document, as botrunner's control API
    sends it (:meth:`Bot.to_public`) and the bot pages read it back
    (:class:`shared.bots.control_client.BotView`)."""

    id: str
    owner: str
    platform: str
    name: str
    model: str
    system_prompt: str
    desired: str
    status: str
    last_error: str | None
    platform_info: dict[str, Any]
    answer_mode: str = str(DEFAULT_MODE)  # shared.bots.answer_modes; a chat's own mode wins

    @staticmethod
    def profile_fields(bot_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """The profile's fields from a stored document or its JSON form, with the defaults of a new bot
        for what is missing."""
        return {
            "id": bot_id,
            "owner": str(data.get("owner") or ""),
            "platform": str(data.get("platform") or ""),
            "name": str(data.get("name") or ""),
            "model": str(data.get("model") or "extractive"),
            "system_prompt": str(data.get("system_prompt") or ""),
            "desired": str(data.get("desired") or "stopped"),
            "status": str(data.get("status") or "stopped"),
            "last_error": data.get("last_error"),
            "platform_info": dict(data.get("platform_info") or {}),
            "answer_mode": str(stored_mode(data.get("answer_mode"))),
        }


@dataclass(frozen=True)
class Bot(BotProfile):
    """A ``bots`` document: the profile, the bookkeeping and the encrypted secrets (never in repr)."""

    owner_email: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    generation: int = 0
    token_enc: str = field(default="", repr=False)
    webhook_secret_enc: str = field(default="", repr=False)
    webhook_secret_hash: str = field(default="", repr=False)
    webhook_registered_hash: str = field(default="", repr=False)  # the secret the platform holds ("" unknown)

    @property
    def is_running(self) -> bool:
        """The owner wants this bot to answer (whatever the platform currently says)."""
        return self.desired == "running"

    def to_public(self) -> dict[str, Any]:
        """Everything an owner may see: never the token or the webhook secret."""
        info = {k: v for k, v in self.platform_info.items() if k in _PUBLIC_INFO}
        return {
            "id": self.id,
            "owner": self.owner,
            "platform": self.platform,
            "name": self.name,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "desired": self.desired,
            "status": self.status,
            "last_error": self.last_error,
            "platform_info": info,
            "answer_mode": self.answer_mode,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_snapshot(cls, snapshot: firestore.DocumentSnapshot[Any]) -> Bot:
        d = snapshot.to_dict() or {}
        return cls(
            **cls.profile_fields(snapshot.id, d),
            owner_email=d.get("owner_email", ""),
            created_at=d.get("created_at"),
            updated_at=d.get("updated_at"),
            generation=int(d.get("generation", 0)),
            token_enc=d.get("token_enc", ""),
            webhook_secret_enc=d.get("webhook_secret_enc", ""),
            webhook_secret_hash=d.get("webhook_secret_hash") or "",
            webhook_registered_hash=d.get("webhook_registered_hash") or "",
        )


_PUBLIC_INFO = ("username", "bot_user_id", "application_id", "public_key", "application_name")


def _token_context(bot_id: str) -> str:
    return f"bots/{bot_id}/token"


def _secret_context(bot_id: str) -> str:
    return f"bots/{bot_id}/webhook_secret"


def identity_key(platform: str, platform_info: dict[str, Any]) -> str | None:
    """``bot_identities`` document id of a platform bot (``telegram:<bot user id>``,
    ``discord:<application id>``: the platform's ``identity_field``); None if there is none."""
    known = find_platform(platform)
    value = platform_info.get(known.identity_field) if known is not None else None
    if value is None or not str(value).strip():
        return None
    return f"{platform}:{value}"


_FIELD_NAMES = {"token_enc": "token", "webhook_secret_enc": "webhook_secret"}


@dataclass(frozen=True)
class FieldFailure:
    """One stored secret of a bot that no configured token key opens: ``field`` is ``"token"`` or
    ``"webhook_secret"``; ``key_id`` / ``key_configured`` as on :class:`DecryptionError`; ``reason`` its
    message (no secret in it)."""

    field: str
    key_id: str | None
    key_configured: bool | None
    reason: str


class UndecryptableSecrets(DecryptionError):
    """:meth:`BotRegistry.rekey` found stored secrets of the bot that no configured key opens."""

    def __init__(self, bot_id: str, failures: list[FieldFailure]) -> None:
        first = failures[0]
        super().__init__(
            f"bot {bot_id}: " + "; ".join(f"{f.field}: {f.reason}" for f in failures),
            key_id=first.key_id,
            key_configured=first.key_configured,
        )
        self.bot_id = bot_id
        self.failures = failures


class IdentityTaken(Exception):
    """Another bot already holds this platform identity (``bot_identities`` create() failed)."""


class BotReader:
    """Reads ``bots`` documents. Needs no token key: what the public webhook functions use."""

    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    @classmethod
    def from_settings(cls, settings: Settings, db: firestore.Client | None = None) -> BotReader:
        """A reader for these settings. Without ``db``, one Firestore client per project is reused."""
        return cls(db or _firestore(settings.project_id))

    def _ref(self, bot_id: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(bot_id)

    # --- reads ----------------------------------------------------------------------------------

    def get_bot(self, bot_id: str) -> Bot | None:
        # A malformed id could name a sub-path ("a/b/c") or one Firestore refuses ("__x__"): unknown.
        if not is_document_id(bot_id):
            return None
        snapshot = self._ref(bot_id).get(retry=READ_RETRY, timeout=10.0)
        return Bot.from_snapshot(snapshot) if snapshot.exists else None

    def list_bots(self, owner: str | None = None) -> list[Bot]:
        query: Any = self.db.collection(COLLECTION)
        if owner is not None:
            query = query.where(filter=FieldFilter("owner", "==", owner))
        # Sorted here rather than with order_by so no composite index is needed.
        bots = [Bot.from_snapshot(s) for s in query.stream(retry=READ_RETRY, timeout=10.0)]
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(bots, key=lambda b: (b.created_at or epoch, b.id))

    def find_by_identity(self, platform: str, key: str, value: Any) -> list[Bot]:
        """Bots of ``platform`` whose ``platform_info[key] == value`` (duplicate registrations)."""
        query = (
            self.db.collection(COLLECTION)
            .where(filter=FieldFilter("platform", "==", platform))
            .where(filter=FieldFilter(f"platform_info.{key}", "==", value))
        )
        return [Bot.from_snapshot(s) for s in query.stream()]


class BotRegistry(BotReader):
    """Reads and writes ``bots`` documents; decrypts their secrets on request."""

    def __init__(self, db: firestore.Client, cipher: TokenCipher) -> None:
        super().__init__(db)
        self._cipher = cipher
        self.activity_log = ActivityLog(db, COLLECTION)

    @classmethod
    def from_settings(cls, settings: Settings, db: firestore.Client | None = None) -> BotRegistry:
        """A registry for these settings. Without ``db``, one Firestore client per project is reused."""
        return cls(db or _firestore(settings.project_id), TokenCipher.from_settings(settings))

    @property
    def key_id(self) -> str:
        """The id of the token key new ciphertexts are sealed with (:func:`shared.bots.secrets.key_id`)."""
        return self._cipher.key_id

    def decrypt_token(self, bot: Bot) -> str:
        """The bot's platform token. A token (or webhook secret) still sealed by an older key is
        written back under the current one, unless it changed since ``bot`` was read."""
        token = self._cipher.decrypt(bot.token_enc, _token_context(bot.id))
        # From now on the log filter scrubs this exact value too, whatever shape it has.
        register_secret(token)
        if not self._is_current(bot):
            try:
                if self._reencrypt(bot) == "rekeyed":
                    log.info(
                        "bot %s: stored token re-encrypted with token key %s", bot.id, self._cipher.key_id
                    )
            except Exception as exc:  # best effort: whatever fails, the token was read
                # Moving it is for later (the next read, or askbase bots rekey). Only the error's type
                # is logged: its message could quote what was being written.
                log.warning("bot %s: stored token not re-encrypted (%s)", bot.id, type(exc).__name__)
        return token

    def rekey(self, bot: Bot, *, attempts: int = 3) -> str:
        """Move the bot's stored token and webhook secret to the current key: ``"rekeyed"`` (written),
        ``"current"`` (nothing to do), ``"gone"`` (deleted), or ``"changed"`` when other writes kept
        coming first (``attempts`` reads). Raises :class:`UndecryptableSecrets` (a
        :class:`~shared.bots.secrets.DecryptionError`) naming each field no configured key opens and the
        key it needs, writing nothing, and Firestore's errors as they come."""
        current: Bot | None = bot
        for _ in range(attempts):
            if current is None:
                return "gone"
            outcome = self._reencrypt(current)
            if outcome != "changed":
                return outcome
            current = self.get_bot(bot.id)
        return "changed"

    def _is_current(self, bot: Bot) -> bool:
        return all(self._cipher.is_current(blob) for blob in (bot.token_enc, bot.webhook_secret_enc) if blob)

    def _reencrypt(self, bot: Bot) -> str:
        """Write ``bot``'s ciphertexts under the current key where the stored field still holds the one
        in ``bot``. ``"current"``: nothing to move; ``"rekeyed"``; ``"changed"``: another write came
        first for at least one field (that field is left as it is); ``"gone"``."""
        moves: dict[str, tuple[str, str]] = {}  # field -> (ciphertext read, the same under the current key)
        failures: list[FieldFailure] = []
        for name, context in (
            ("token_enc", _token_context(bot.id)),
            ("webhook_secret_enc", _secret_context(bot.id)),
        ):
            blob = getattr(bot, name)
            try:
                moved = self._cipher.reencrypt(blob, context) if blob else None
            except DecryptionError as exc:
                failures.append(FieldFailure(_FIELD_NAMES[name], exc.key_id, exc.key_configured, str(exc)))
                continue
            if moved is not None:
                moves[name] = (blob, moved)
        if failures:
            raise UndecryptableSecrets(bot.id, failures)
        if not moves:
            return "current"
        ref = self._ref(bot.id)

        def run(transaction: firestore.Transaction) -> str:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return "gone"
            stored = snapshot.to_dict() or {}
            writes = {name: new for name, (read, new) in moves.items() if stored.get(name) == read}
            if writes:
                transaction.update(ref, writes)
            return "rekeyed" if len(writes) == len(moves) else "changed"

        return str(run_transaction(self.db, run))

    def webhook_secret(self, bot: Bot) -> str:
        return self._cipher.decrypt(bot.webhook_secret_enc, _secret_context(bot.id))

    def _secret_fields(self, bot_id: str, secret: str) -> dict[str, str]:
        return {
            "webhook_secret_enc": self._cipher.encrypt(secret, _secret_context(bot_id)),
            "webhook_secret_hash": webhook_secret_hash(bot_id, secret),
        }

    def ensure_webhook_secret_hash(self, bot: Bot) -> bool:
        """Migration for bots created before ``webhook_secret_hash``: store the hash of the current
        secret. True if it was written. Runs from :meth:`BotControl.apply` (start, reconcile)."""
        if bot.webhook_secret_hash or not bot.webhook_secret_enc:
            return False
        digest = webhook_secret_hash(bot.id, self.webhook_secret(bot))

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            # Only for the secret we hashed: a token replacement meanwhile brought its own hash.
            if (
                current.get("webhook_secret_hash")
                or current.get("webhook_secret_enc") != bot.webhook_secret_enc
            ):
                return None
            return {"webhook_secret_hash": digest}

        after = self._change(bot.id, change)
        return after is not None and after.webhook_secret_hash == digest

    # --- activity -------------------------------------------------------------------------------

    def record_activity(self, bot_id: str, kind: str, message: str) -> None:
        self.activity_log.record(bot_id, kind, message)

    def activity(self, bot_id: str, limit: int = 50, cursor: str | None = None) -> ActivityPage:
        return self.activity_log.page(bot_id, limit=limit, cursor=cursor)

    # --- writes (control plane) -----------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh random document id (Firestore's own 20-character auto-id)."""
        new_id: str = self._ref_collection().document().id
        return new_id

    def _ref_collection(self) -> firestore.CollectionReference:
        return self.db.collection(COLLECTION)

    def create_bot(
        self,
        *,
        bot_id: str,
        owner: str,
        owner_email: str,
        platform: str,
        name: str,
        model: str,
        system_prompt: str,
        token: str,
        platform_info: dict[str, Any],
        answer_mode: str = str(DEFAULT_MODE),
    ) -> Bot:
        """Create the bot and claim its platform identity in one batch.

        Raises :class:`IdentityTaken` if another bot holds the identity (a concurrent registration).
        """
        now = datetime.now(UTC)
        # Telegram allows 1-256 of [A-Za-z0-9_-] for secret_token; 32 random bytes in base64url fit.
        webhook_secret = pysecrets.token_urlsafe(32)
        data = {
            "owner": owner,
            "owner_email": owner_email,
            "platform": platform,
            "name": name,
            "model": model,
            "system_prompt": system_prompt,
            "answer_mode": answer_mode,
            "desired": "stopped",
            "status": "stopped",
            "last_error": None,
            "token_enc": self._cipher.encrypt(token, _token_context(bot_id)),
            **self._secret_fields(bot_id, webhook_secret),
            "platform_info": platform_info,
            "generation": 0,
            "created_at": now,
            "updated_at": now,
        }
        identity = identity_key(platform, platform_info)
        batch = self.db.batch()
        batch.create(self._ref(bot_id), data)  # create(): never overwrite an existing bot
        if identity is not None:
            batch.create(
                self.db.collection(IDENTITIES).document(identity),
                {"bot_id": bot_id, "owner": owner, "created_at": now},
            )
        try:
            batch.commit()
        except (gexc.AlreadyExists, gexc.FailedPrecondition):
            if identity is not None and self.db.collection(IDENTITIES).document(identity).get().exists:
                raise IdentityTaken(identity) from None
            raise
        bot = self.get_bot(bot_id)
        assert bot is not None
        return bot

    def _change(self, bot_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Bot | None:
        """Apply ``change(current fields) → fields to set`` (None: set nothing) in one transaction.

        Returns the bot as it is afterwards, or None if it is gone.
        """
        ref = self._ref(bot_id)

        def run(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return False
            update = change(snapshot.to_dict() or {})
            if update is not None:
                transaction.update(ref, {**update, "updated_at": datetime.now(UTC)})
            return True

        if not run_transaction(self.db, run):
            return None
        return self.get_bot(bot_id)

    def update_bot(self, bot_id: str, fields: dict[str, Any]) -> Bot | None:
        """Set plain fields (name, model, system_prompt, answer_mode, platform_info). None if the bot is
        gone."""
        return self._change(bot_id, lambda current: fields)

    def replace_token(self, bot_id: str, token: str) -> Bot | None:
        """Store a new platform token and a fresh webhook secret; bump ``generation`` so a concurrent
        apply looks again. None if the bot is gone.

        The secret is renewed with the token: whoever had the old token may have read the old secret
        (getWebhookInfo does not show it, but the owner's leak may have been the whole config).
        """
        token_enc = self._cipher.encrypt(token, _token_context(bot_id))
        secret_fields = self._secret_fields(bot_id, pysecrets.token_urlsafe(32))
        return self._change(
            bot_id,
            lambda current: {
                "token_enc": token_enc,
                **secret_fields,
                "generation": int(current.get("generation", 0)) + 1,
            },
        )

    def delete_bot(self, bot_id: str) -> bool:
        """Delete the bot, its activity and its ``bot_identities`` claim (with the bot, atomically)."""
        if not is_document_id(bot_id):
            return False
        ref = self._ref(bot_id)
        self.activity_log.delete_all(bot_id)

        def run(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return False
            d = snapshot.to_dict() or {}
            identity = identity_key(str(d.get("platform", "")), dict(d.get("platform_info") or {}))
            claim_ref = self.db.collection(IDENTITIES).document(identity) if identity else None
            # A bot registered before bot_identities existed may share its identity with a newer
            # one: only remove a claim that is this bot's.
            claim = claim_ref.get(transaction=transaction) if claim_ref is not None else None
            transaction.delete(ref)
            if claim_ref is not None and claim is not None and _claimed_by(claim, bot_id):
                transaction.delete(claim_ref)
            return True

        return bool(run_transaction(self.db, run))

    def set_desired(self, bot_id: str, desired: str, *, force: bool = False) -> Bot | None:
        """Record what the owner wants; bump ``generation``; status becomes ``starting`` for running.

        Returns the bot as written, or None if it is gone. ``force`` bumps the generation even when
        ``desired`` is unchanged (restart). A stop of a stopped bot changes nothing.
        """
        if desired not in DESIRED:
            raise ValueError(f"desired must be one of {DESIRED}")

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            if current.get("desired") == desired and not force and current.get("status") != "error":
                return None
            update: dict[str, Any] = {"desired": desired, "generation": int(current.get("generation", 0)) + 1}
            if desired == "running":
                update["status"] = "starting"
                update["last_error"] = None
            return update

        return self._change(bot_id, change)

    def begin_registration(self, bot_id: str, attempt: str, secret_enc: str, secret_hash: str) -> bool:
        """Record, right before the platform is given a webhook secret, that attempt ``attempt`` may
        register the secret whose hash is ``secret_hash`` until :data:`REGISTRATION_LEASE` has passed.

        False, recording nothing, when the bot is gone or its secret is no longer the one the caller read
        (a token replacement came in since): the caller must not send that secret.

        "The same secret" is decided on the secret, not on its ciphertext: the stored
        ``webhook_secret_hash`` (renewed with every secret, :meth:`replace_token`) must be ``secret_hash``.
        A re-encryption of the same secret under another key (:meth:`decrypt_token`, :meth:`rekey`, run
        by this very start after a rotation) changes ``webhook_secret_enc`` but is no replacement. Only
        a bot with no stored hash yet (from before the hash; :meth:`ensure_webhook_secret_hash` normally
        writes it first) is compared by its ciphertext, ``secret_enc``: a re-encryption then reads as a
        change, and the caller looks again.
        """
        ref = self._ref(bot_id)

        def run(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return False
            current = snapshot.to_dict() or {}
            stored_hash = current.get("webhook_secret_hash")
            if stored_hash:
                if stored_hash != secret_hash:
                    return False
            elif current.get("webhook_secret_enc") != secret_enc:
                return False
            now = _now()
            update: dict[str, Any] = _expired_registrations(current, now)
            update[f"{REGISTERING}.{attempt}"] = {"hash": secret_hash, "until": now + REGISTRATION_LEASE}
            transaction.update(ref, update)
            return True

        return bool(run_transaction(self.db, run))

    def commit_status(
        self,
        bot_id: str,
        generation: int,
        status: str,
        last_error: str | None,
        *,
        attempt: str | None = None,
        registered: str | None = None,
    ) -> bool:
        """Write ``status`` only if no newer desired state was recorded since ``generation``.

        Returns False when the generation moved on (the caller must apply the newer desired state) or
        the bot is gone. With it, attempt ``attempt``'s :meth:`begin_registration` record is removed, and
        ``registered`` (None: leave it) becomes ``webhook_registered_hash``: the hash of the secret the
        platform was just given, or "" (not known, e.g. after a stop). A hash is written as "" while
        another attempt with a different secret may still reach the platform.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        ref = self._ref(bot_id)

        def run(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists or int(snapshot.get("generation") or 0) != generation:
                return False
            current = snapshot.to_dict() or {}
            now = _now()
            update: dict[str, Any] = {
                **_expired_registrations(current, now),
                "status": status,
                "last_error": last_error,
                "updated_at": now,
            }
            pending = _registrations(current)
            if attempt is not None and attempt in pending:
                update[f"{REGISTERING}.{attempt}"] = firestore.DELETE_FIELD
            if registered is not None:
                others = {
                    str(entry.get("hash"))
                    for key, entry in pending.items()
                    if key != attempt and _until(entry) > now
                }
                update["webhook_registered_hash"] = "" if others - {registered} else registered
            transaction.update(ref, update)
            return True

        return bool(run_transaction(self.db, run))


def _now() -> datetime:
    return datetime.now(UTC)


def _registrations(current: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The bot's :meth:`BotRegistry.begin_registration` records, by attempt id."""
    pending = current.get(REGISTERING)
    if not isinstance(pending, dict):
        return {}
    return {str(k): v for k, v in pending.items() if isinstance(v, dict)}


def _until(entry: Mapping[str, Any]) -> datetime:
    until = entry.get("until")
    return until if isinstance(until, datetime) else datetime.min.replace(tzinfo=UTC)


def _expired_registrations(current: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Field deletions for the registration records whose lease has run out (their calls are over)."""
    return {
        f"{REGISTERING}.{key}": firestore.DELETE_FIELD
        for key, entry in _registrations(current).items()
        if _until(entry) <= now
    }


def _claimed_by(claim: firestore.DocumentSnapshot[Any], bot_id: str) -> bool:
    return bool(claim.exists) and (claim.to_dict() or {}).get("bot_id") == bot_id


_db_lock = threading.Lock()
_dbs: dict[str, firestore.Client] = {}


def _firestore(project: str) -> firestore.Client:
    from shared.gcp import firestore_client

    with _db_lock:
        client = _dbs.get(project)
        if client is None:
            client = firestore_client(project)
            _dbs[project] = client
        return client
