"""The bot control plane as a plain service: register, edit, delete, start, stop, restart, activity.

Used by the botrunner HTTP API (``services/botrunner/control_api.py``, which the web UI's bot pages call
through :mod:`shared.bots.control_client`) and the CLI (``askbase bots ...``). Every method takes the
:class:`Caller`; a bot that is not the caller's is reported exactly like a bot that does not exist
(:class:`NotFound`), so ids cannot be probed. What a platform needs checked or done is asked of the
platform (:class:`shared.bots.platforms.base.Platform`); nothing here branches on a platform's name.

Public API::

    control = BotControl(settings)                      # or BotControl(settings, registry=...)
    caller = Caller(user="ann@example.com", admin=False)
    control.create_bot(caller, {"platform": "telegram", "name": ..., "model": "extractive",
                                "system_prompt": "", "token": "123:AA..."})           -> Bot
    control.create_bot(caller, {"platform": "discord", "name": ..., "application_id": ...,
                                "public_key": ..., "bot_token": ...})                  -> Bot
    control.list_bots(caller, all_owners=False) -> list[Bot]
    control.get_bot(caller, bot_id) -> Bot
    control.edit_bot(caller, bot_id, {"name"?, "model"?, "system_prompt"?, "answer_mode"?}) -> Bot
    control.delete_bot(caller, bot_id) -> None
    control.start_bot / stop_bot / restart_bot(caller, bot_id) -> Bot   # status shows the outcome
    control.activity(caller, bot_id, limit=50, cursor=None) -> ActivityPage
    control.apply(bot_id, verify=True) -> ApplyResult   # make the platform match `desired` (reconcile)
    normalize_name(name), NAME_MAX, PROMPT_MAX, default_model(allowed)   # the rules the bot pages share

Errors are :class:`ControlError` subclasses carrying an HTTP status, a message safe to show and, when
the message is about one input, its ``field``:
:class:`BadRequest` 400 (also the platform's ``InvalidRegistration``), :class:`NotFound` 404,
:class:`Conflict` 409, :class:`Upstream` 502 (``PlatformUnreachable``: the platform could not be
reached to validate a registration). A platform failure during start/stop is
not an exception: it is stored on the bot (status ``error`` + ``last_error`` + an activity entry).

Consistency of start/stop: the desired state is written in a Firestore transaction that bumps
``generation``; the platform call then applies the desired state it read, and the resulting status is
committed only if the generation is unchanged. If another start/stop came in meanwhile, the loop
re-reads, checks the platform (our own call has completed by then) and applies the newer desired
state. Whoever commits last therefore did so after the final platform call: one consistent end state.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from shared.bots import chat_switch
from shared.bots.activity import ActivityPage, InvalidCursor
from shared.bots.answer_modes import DEFAULT_MODE, AnswerMode, parse_mode
from shared.bots.buttons import ButtonStateStore
from shared.bots.platforms import PLATFORM_NAMES, find_platform, get_platform
from shared.bots.platforms.base import ApiEndpoint, BotCredentials, InvalidField, Platform
from shared.bots.platforms.errors import InvalidRegistration, PlatformError, PlatformUnreachable, RetryPolicy
from shared.bots.registry import Bot, BotRegistry, IdentityTaken
from shared.bots.secrets import DecryptionError, webhook_secret_hash
from shared.gcp import unavailable_errors

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

NAME_MAX = 64  # characters of a bot's name once normalized (normalize_name)
PROMPT_MAX = 4000  # characters of a bot's instructions (system_prompt)
EDITABLE = ("name", "model", "system_prompt", "answer_mode")
# Control-plane calls are made while a person waits: retry briefly, never sleep for long.
CONTROL_RETRY = RetryPolicy(attempts=3, backoff=0.3, max_wait=5.0)
_APPLY_ROUNDS = 6


@dataclass(frozen=True)
class Caller:
    """Who is asking: the signed-in user id (e-mail) as forwarded by the qa service; admins see all."""

    user: str
    admin: bool = False
    email: str = ""


class ControlError(Exception):
    """A refusal with its HTTP ``status`` and a ``message`` safe to show. ``field`` names the input it is
    about, when it is about one: a setting (``name``, ``model``, ``system_prompt``, ``answer_mode``,
    ``platform``) or one of the platform's registration fields
    (:attr:`~shared.bots.platforms.base.Platform.registration_fields`). The bot pages put the message
    beside that field; the API sends it as ``{"error": message, "field": field}``."""

    status = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(ControlError):
    status = 400


class NotFound(ControlError):
    status = 404


class Conflict(ControlError):
    status = 409


class Upstream(ControlError):
    status = 502


class SecretChanged(Exception):
    """Internal: the bot's webhook secret was replaced after this apply read it (nothing was sent)."""


@dataclass(frozen=True)
class ApplyResult:
    bot: Bot | None  # None: the bot was deleted meanwhile
    changed: str | None  # what was done at the platform ("webhook set", ...), None if nothing
    error: str | None  # the platform error stored on the bot, if any


class BotControl:
    def __init__(
        self, settings: Settings, registry: BotRegistry | None = None, *, policy: RetryPolicy | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry or BotRegistry.from_settings(settings)
        self._policy = policy or CONTROL_RETRY
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _api(self, platform: Platform) -> ApiEndpoint:
        return ApiEndpoint(platform.api_base(self.settings), self._policy)

    def webhook_url(self, bot: Bot) -> str:
        """Where the bot's platform delivers its updates (its webhook function + the bot id)."""
        return get_platform(bot.platform).webhook_url(self.settings, bot.id)

    # --- queries --------------------------------------------------------------------------------

    def _owned(self, caller: Caller, bot_id: str) -> Bot:
        bot = self.registry.get_bot(bot_id)
        if bot is None or (bot.owner != caller.user and not caller.admin):
            raise NotFound("No such bot.")
        return bot

    def list_bots(self, caller: Caller, all_owners: bool = False) -> list[Bot]:
        if all_owners and caller.admin:
            return self.registry.list_bots()
        return self.registry.list_bots(owner=caller.user)

    def get_bot(self, caller: Caller, bot_id: str) -> Bot:
        return self._owned(caller, bot_id)

    def activity(
        self, caller: Caller, bot_id: str, limit: int = 50, cursor: str | None = None
    ) -> ActivityPage:
        self._owned(caller, bot_id)
        try:
            return self.registry.activity(bot_id, limit=limit, cursor=cursor or None)
        except InvalidCursor:
            raise BadRequest("Invalid cursor.") from None

    # --- registration ---------------------------------------------------------------------------

    def create_bot(self, caller: Caller, data: Any) -> Bot:
        if not isinstance(data, dict):
            raise BadRequest("Expected a JSON object.")
        platform = find_platform(data.get("platform"))
        if platform is None:
            raise BadRequest(
                "platform must be " + " or ".join(f"'{n}'" for n in PLATFORM_NAMES) + ".", field="platform"
            )
        name = _name(data.get("name"))
        allowed = self.settings.allowed_bot_models
        model = _model(data.get("model", default_model(allowed)), allowed)
        prompt = _prompt(data.get("system_prompt", ""))
        mode = _answer_mode(data.get("answer_mode", str(DEFAULT_MODE)))
        registration = _checked(lambda: platform.check_registration(self._api(platform), data))
        identity = registration.platform_info.get(platform.identity_field)
        # A quick, friendly answer (and the only check for bots registered before bot_identities); the
        # identity claim in create_bot is what makes it race-free.
        if self.registry.find_by_identity(platform.name, platform.identity_field, identity):
            raise Conflict(platform.duplicate_message)
        bot_id = self.registry.new_id()
        try:
            # The identity claim is created with the bot: of two concurrent registrations of one
            # platform bot, both past the checks above, exactly one commits.
            bot = self.registry.create_bot(
                bot_id=bot_id,
                owner=caller.user,
                owner_email=caller.email or (caller.user if "@" in caller.user else ""),
                platform=platform.name,
                name=name,
                model=model,
                system_prompt=prompt,
                answer_mode=mode,
                token=registration.token,
                platform_info=registration.platform_info,
            )
        except IdentityTaken:
            raise Conflict(platform.duplicate_message) from None
        who = platform.describe(registration.platform_info)
        self.registry.record_activity(bot_id, "created", f"Registered {platform.label} bot {who}.")
        log.info("bot %s registered (%s) by %s", bot_id, platform.name, caller.user)
        if data.get("start") is True:
            return self.start_bot(caller, bot_id)
        return bot

    # --- edit / delete --------------------------------------------------------------------------

    def edit_bot(self, caller: Caller, bot_id: str, data: Any) -> Bot:
        self._owned(caller, bot_id)
        if not isinstance(data, dict) or not data:
            raise BadRequest("Expected a JSON object with name, model, system_prompt or answer_mode.")
        unknown = sorted(set(data) - set(EDITABLE))
        if unknown:
            raise BadRequest(
                f"Cannot edit {', '.join(unknown)}: only name, model, system_prompt and answer_mode can "
                "change "
                "(a new token for the same bot: POST /api/bots/<id>/token)."
            )
        fields: dict[str, Any] = {}
        if "name" in data:
            fields["name"] = _name(data["name"])
        if "model" in data:
            fields["model"] = _model(data["model"], self.settings.allowed_bot_models)
        if "system_prompt" in data:
            fields["system_prompt"] = _prompt(data["system_prompt"])
        if "answer_mode" in data:
            fields["answer_mode"] = _answer_mode(data["answer_mode"])
        bot = self.registry.update_bot(bot_id, fields)
        if bot is None:
            raise NotFound("No such bot.")
        self.registry.record_activity(bot_id, "edited", f"Changed {', '.join(sorted(fields))}.")
        return bot

    def replace_token(self, caller: Caller, bot_id: str, data: Any) -> Bot:
        """Swap in a new token for the *same* bot (after a leak: @BotFather /revoke, or Discord's Reset
        Token), keeping its id, webhook URL, settings and conversations.

        The token is checked with the platform and must belong to the bot already registered. The
        webhook secret is renewed with it; a running bot is registered again with both.
        """
        bot = self._owned(caller, bot_id)
        if not isinstance(data, dict):
            raise BadRequest("Expected a JSON object with the new token.")
        platform = get_platform(bot.platform)
        token = _checked(lambda: platform.check_new_token(self._api(platform), data, bot.platform_info))
        updated = self.registry.replace_token(bot_id, token)
        if updated is None:
            raise NotFound("No such bot.")
        log.info("bot %s: token replaced by %s", bot_id, caller.user)
        self.registry.record_activity(bot_id, "token", "Token and webhook secret replaced.")
        if not updated.is_running:
            return updated
        # Register again: the webhook must carry the new secret (and Telegram's belongs to the new token).
        result = self.apply(bot_id, verify=False, force=True, activity_kind="restarted")
        if result.bot is None:
            raise NotFound("No such bot.")
        return result.bot

    def delete_bot(self, caller: Caller, bot_id: str) -> None:
        bot = self._owned(caller, bot_id)
        # Unhook first so the platform stops sending to a bot that no longer exists. A failure
        # (revoked token, platform down) must not keep the owner from deleting.
        self.registry.set_desired(bot_id, "stopped")
        try:
            with self._lock(bot_id):
                self._platform_stop(bot, verify=False)
        except (PlatformError, DecryptionError) as exc:
            log.warning("bot %s deleted without unhooking: %s", bot_id, exc)
        # What the bot kept per chat (never expires, names who set it) and under its answers (their
        # text) goes with it, before the bot itself: a failure here leaves the bot to delete again.
        chat_switch.delete_bot_settings(self.registry.db, bot_id)
        ButtonStateStore(self.registry.db).forget_bot(bot_id)
        self.registry.delete_bot(bot_id)
        log.info("bot %s deleted by %s", bot_id, caller.user)

    # --- start / stop ---------------------------------------------------------------------------

    def start_bot(self, caller: Caller, bot_id: str) -> Bot:
        return self._change(caller, bot_id, "running", force=False, kind="started")

    def stop_bot(self, caller: Caller, bot_id: str) -> Bot:
        return self._change(caller, bot_id, "stopped", force=False, kind="stopped")

    def restart_bot(self, caller: Caller, bot_id: str) -> Bot:
        return self._change(caller, bot_id, "running", force=True, kind="restarted")

    def _change(self, caller: Caller, bot_id: str, desired: str, *, force: bool, kind: str) -> Bot:
        before = self._owned(caller, bot_id)
        written = self.registry.set_desired(bot_id, desired, force=force)
        if written is None:
            raise NotFound("No such bot.")
        moved = written.generation != before.generation
        # Nothing changed (start of a running bot): just make sure the platform agrees.
        result = self.apply(bot_id, verify=not moved, force=force, activity_kind=kind if moved else None)
        if result.bot is None:
            raise NotFound("No such bot.")
        return result.bot

    def _lock(self, bot_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(bot_id, threading.Lock())

    def apply(
        self,
        bot_id: str,
        *,
        verify: bool = True,
        force: bool = False,
        activity_kind: str | None = None,
    ) -> ApplyResult:
        """Make the platform match the bot's desired state and store the resulting status.

        ``verify`` first asks the platform and changes nothing if it already matches (reconcile);
        ``force`` re-registers even if it matches (restart). A running bot of a platform that holds the
        webhook secret is registered again, verify or not, while the secret the platform was last given
        (``webhook_registered_hash``) is not the bot's current one: the platform never shows it, so a
        token replacement whose re-registration failed or never ran is repaired here.
        """
        changed: str | None = None
        attempt = "a" + uuid.uuid4().hex  # this apply's registrations (registry.begin_registration)
        undo: Callable[[], str | None] | None = None  # takes back what a start of ours registered
        for _ in range(_APPLY_ROUNDS):
            bot = self.registry.get_bot(bot_id)
            if bot is None:
                if undo is not None:
                    # Deleted while we registered it: delete_bot unhooked before our call landed, and
                    # reconcile only walks bots that exist. Unhook again with what we still hold.
                    self._undo(bot_id, undo)
                return ApplyResult(None, changed, None)
            platform = get_platform(bot.platform)
            error: str | None = None
            sent: list[str] = []  # the hash of the secret this round gave the platform
            with self._lock(bot_id):
                try:
                    # Migration: bots from before webhook_secret_hash get it on their next apply
                    # (start, restart, reconcile); the webhook functions refuse a bot without it.
                    if not bot.webhook_secret_hash and bot.webhook_secret_enc:
                        self.registry.ensure_webhook_secret_hash(bot)
                    if bot.is_running:
                        stale = platform.sends_webhook_secret and not self._secret_registered(bot)
                        step, stop_again = self._platform_start(
                            bot, verify=verify and not stale, force=force, attempt=attempt, sent=sent
                        )
                        undo = stop_again if step else undo
                    else:
                        step, undo = self._platform_stop(bot, verify=verify), None
                    changed = step or changed
                except SecretChanged:
                    # A token replacement renewed the secret after we read it: nothing was sent with
                    # the old one; look again (the new secret differs from the record: registered).
                    verify, force, activity_kind = True, False, None
                    continue
                except PlatformError as exc:
                    error = exc.message
                except DecryptionError:
                    error = "The stored token cannot be decrypted (was the token key changed?)."
            status = "error" if error else ("running" if bot.is_running else "stopped")
            registered: str | None = None  # unchanged
            if platform.sends_webhook_secret:
                if not bot.is_running:
                    registered = ""  # stopped: whatever the platform holds is not ours to vouch for
                elif sent and not error:
                    registered = sent[-1]
            if self.registry.commit_status(
                bot_id, bot.generation, status, error, attempt=attempt, registered=registered
            ):
                self._record(bot, status, error, changed, activity_kind)
                return ApplyResult(self.registry.get_bot(bot_id), changed, error)
            # The desired state moved on while we talked to the platform: look again. Our own call
            # has finished, so checking the platform now sees its effect and can undo it. (Had it
            # sent a secret since replaced, the record of our registration makes the next round
            # register the current one.)
            verify, force, activity_kind = True, False, None
        # Pathological contention: leave it to the next reconcile, which will converge.
        log.warning("bot %s: desired state kept changing; leaving it to reconcile", bot_id)
        return ApplyResult(self.registry.get_bot(bot_id), changed, None)

    def _secret_registered(self, bot: Bot) -> bool:
        """Whether the platform was last given the bot's current webhook secret (as far as we know)."""
        current = bot.webhook_secret_hash
        if not current and bot.webhook_secret_enc:  # a bot from before the hash: compute it
            current = webhook_secret_hash(bot.id, self.registry.webhook_secret(bot))
        return bool(current) and bot.webhook_registered_hash == current

    def _record(
        self, bot: Bot, status: str, error: str | None, changed: str | None, kind: str | None
    ) -> None:
        if error:
            if error != bot.last_error or bot.status != "error":
                self.registry.record_activity(bot.id, "error", error)
            log.warning("bot %s: %s", bot.id, error)
        elif kind:
            self.registry.record_activity(
                bot.id, kind, f"Bot is {status}" + (f" ({changed})." if changed else ".")
            )
        elif changed:
            self.registry.record_activity(bot.id, "reconciled", f"Repaired: {changed}.")
        elif bot.status == "error":
            self.registry.record_activity(bot.id, "reconciled", f"Recovered: bot is {status}.")

    def _platform_start(
        self, bot: Bot, *, verify: bool, force: bool, attempt: str, sent: list[str]
    ) -> tuple[str | None, Callable[[], str | None]]:
        """The platform's start, and how to stop the platform delivering there again with the
        credentials read now (if the bot is deleted before the result is committed)."""
        platform = get_platform(bot.platform)
        secret = self.registry.webhook_secret(bot)
        credentials = BotCredentials(self.registry.decrypt_token(bot), bot.platform_info, secret)
        digest = webhook_secret_hash(bot.id, secret)

        def registering() -> None:
            # Right before the platform gets the secret: refuse a secret replaced since we read it,
            # and leave a record that this one may reach the platform (until our commit).
            if not self.registry.begin_registration(bot.id, attempt, bot.webhook_secret_enc, digest):
                raise SecretChanged(bot.id)
            sent.append(digest)

        url = self.webhook_url(bot)
        api = self._api(platform)

        def stop_again() -> str | None:
            # verify: only a registration that still points at this bot's URL (the same platform bot
            # registered again as a new askbase bot has another URL, and is left alone).
            stop_credentials = BotCredentials(credentials.token, bot.platform_info)
            return platform.stop(api, stop_credentials, url, verify=True)

        step = platform.start(api, credentials, url, verify=verify, force=force, registering=registering)
        return step, stop_again

    @staticmethod
    def _undo(bot_id: str, stop_again: Callable[[], str | None]) -> None:
        try:
            done = stop_again()
        except PlatformError as exc:
            # Nothing else will try: the document is gone, and reconcile walks the bots that exist.
            log.error(
                "bot %s was deleted while being started; could not undo the registration: %s", bot_id, exc
            )
            return
        log.warning(
            "bot %s was deleted while being started: %s", bot_id, done or "the registration was already gone"
        )

    def _platform_stop(self, bot: Bot, *, verify: bool) -> str | None:
        platform = get_platform(bot.platform)
        credentials = BotCredentials(self.registry.decrypt_token(bot), bot.platform_info)
        return platform.stop(self._api(platform), credentials, self.webhook_url(bot), verify=verify)


def _checked(check: Callable[[], T]) -> T:
    """``check()``, with the platform's verdict on what the owner typed as a :class:`ControlError` (about
    the registration field the platform names, if it names one)."""
    try:
        return check()
    except InvalidRegistration as exc:
        raise BadRequest(exc.message, field=exc.field if isinstance(exc, InvalidField) else None) from None
    except PlatformUnreachable as exc:
        raise Upstream(exc.message) from None


# --- input validation ---------------------------------------------------------------------------


def normalize_name(value: str) -> str:
    """A bot's name as stored and measured against :data:`NAME_MAX`: without spaces at either end
    (inner spaces are kept, and counted). The bot pages check a typed name by the same rule."""
    return value.strip()


def default_model(allowed: tuple[str, ...]) -> str:
    """The answer model a bot gets when none is chosen: extractive if the operator allows it, else the
    first allowed one (``settings.allowed_bot_models``)."""
    return "extractive" if "extractive" in allowed else allowed[0]


def _name(value: Any) -> str:
    name = normalize_name(value) if isinstance(value, str) else ""
    if not name:
        raise BadRequest("name is required.", field="name")
    if len(name) > NAME_MAX:
        raise BadRequest(f"name must be at most {NAME_MAX} characters.", field="name")
    return name


def _model(value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` if the operator lets bots use that answerer (``settings.allowed_bot_models``)."""
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest("model must be one of: " + ", ".join(f"'{m}'" for m in allowed) + ".", field="model")
    return value


def _answer_mode(value: Any) -> str:
    """A valid answer mode (:mod:`shared.bots.answer_modes`), as stored."""
    mode = parse_mode(value)
    if mode is None:
        raise BadRequest(
            "answer_mode must be one of: " + ", ".join(f"'{m}'" for m in AnswerMode) + ".",
            field="answer_mode",
        )
    return str(mode)


def _prompt(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("system_prompt must be text.", field="system_prompt")
    if len(value) > PROMPT_MAX:
        raise BadRequest(f"system_prompt must be at most {PROMPT_MAX} characters.", field="system_prompt")
    return value.strip()


# Firestore outages and contention surface as these; callers map them to 503 rather than 500.
UNAVAILABLE = unavailable_errors()
