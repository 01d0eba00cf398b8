"""The bot control plane as a plain service: register, edit, delete, start, stop, restart, activity.

Used by the botrunner HTTP API (``services/botrunner/control_api.py``), the web UI pages
(``services/qa/bots_pages.py``, which calls this module directly: the qa service has the same
Firestore access, so a second HTTP hop would add latency and a failure mode and nothing else) and the
CLI (``askbase bots ...``). Every method takes the :class:`Caller`; a bot that is not the caller's is
reported exactly like a bot that does not exist (:class:`NotFound`), so ids cannot be probed.

Public API::

    control = BotControl(settings)                      # or BotControl(settings, registry=...)
    caller = Caller(user="ann@example.com", admin=False)
    control.create_bot(caller, {"platform": "telegram", "name": ..., "model": "extractive",
                                "system_prompt": "", "token": "123:AA..."})           -> Bot
    control.create_bot(caller, {"platform": "discord", "name": ..., "application_id": ...,
                                "public_key": ..., "bot_token": ...})                  -> Bot
    control.list_bots(caller, all_owners=False) -> list[Bot]
    control.get_bot(caller, bot_id) -> Bot
    control.edit_bot(caller, bot_id, {"name"?, "model"?, "system_prompt"?}) -> Bot
    control.delete_bot(caller, bot_id) -> None
    control.start_bot / stop_bot / restart_bot(caller, bot_id) -> Bot   # status shows the outcome
    control.activity(caller, bot_id, limit=50, cursor=None) -> ActivityPage
    control.apply(bot_id, verify=True) -> ApplyResult   # make the platform match `desired` (reconcile)

Errors are :class:`ControlError` subclasses carrying an HTTP status and a message safe to show:
:class:`BadRequest` 400, :class:`NotFound` 404, :class:`Conflict` 409, :class:`Upstream` 502 (the
platform could not be reached to validate a registration). A platform failure during start/stop is
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from google.api_core import exceptions as gexc

from shared.bots import discord as dc
from shared.bots import telegram as tg
from shared.bots.activity import ActivityPage, InvalidCursor
from shared.bots.registry import PLATFORMS, Bot, BotRegistry, IdentityTaken
from shared.bots.secrets import DecryptionError
from shared.bots.transport import PlatformError, RetryPolicy

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

NAME_MAX = 64
PROMPT_MAX = 4000
EDITABLE = ("name", "model", "system_prompt")
# Control-plane calls are made while a person waits: retry briefly, never sleep for long.
CONTROL_RETRY = RetryPolicy(attempts=3, backoff=0.3, max_wait=5.0)
_APPLY_ROUNDS = 6
_ALREADY_REGISTERED = {
    "telegram": "This Telegram bot is already registered in askbase.",
    "discord": "This Discord application is already registered in askbase.",
}


@dataclass(frozen=True)
class Caller:
    """Who is asking: the signed-in user id (e-mail) as forwarded by the qa service; admins see all."""

    user: str
    admin: bool = False
    email: str = ""


class ControlError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ControlError):
    status = 400


class NotFound(ControlError):
    status = 404


class Conflict(ControlError):
    status = 409


class Upstream(ControlError):
    status = 502


@dataclass(frozen=True)
class ApplyResult:
    bot: Bot | None  # None: the bot was deleted meanwhile
    changed: str | None  # what was done at the platform ("webhook set", ...), None if nothing
    error: str | None  # the platform error stored on the bot, if any


class BotControl:
    def __init__(
        self,
        settings: Settings,
        registry: BotRegistry | None = None,
        *,
        http: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or BotRegistry.from_settings(settings)
        self._http = http
        self._policy = policy or CONTROL_RETRY
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # --- platform clients -----------------------------------------------------------------------

    def telegram(self, token: str) -> tg.TelegramClient:
        return tg.TelegramClient(token, self.settings.telegram_api_base, http=self._http, policy=self._policy)

    def discord(self, bot_token: str) -> dc.DiscordClient:
        return dc.DiscordClient(
            bot_token, self.settings.discord_api_base, http=self._http, policy=self._policy
        )

    def webhook_url(self, bot: Bot) -> str:
        base = (
            self.settings.telegram_webhook_url
            if bot.platform == "telegram"
            else self.settings.discord_webhook_url
        )
        return f"{base.rstrip('/')}/{bot.id}"

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
        platform = data.get("platform")
        if platform not in PLATFORMS:
            raise BadRequest("platform must be 'telegram' or 'discord'.")
        name = _name(data.get("name"))
        allowed = self.settings.allowed_bot_models
        model = _model(data.get("model", "extractive" if "extractive" in allowed else allowed[0]), allowed)
        prompt = _prompt(data.get("system_prompt", ""))
        if platform == "telegram":
            token, info = self._validate_telegram(data)
        else:
            token, info = self._validate_discord(data)
        bot_id = self.registry.new_id()
        try:
            # The identity claim is created with the bot: of two concurrent registrations of one
            # platform bot, both past the checks above, exactly one commits.
            bot = self.registry.create_bot(
                bot_id=bot_id,
                owner=caller.user,
                owner_email=caller.email or (caller.user if "@" in caller.user else ""),
                platform=platform,
                name=name,
                model=model,
                system_prompt=prompt,
                token=token,
                platform_info=info,
            )
        except IdentityTaken:
            raise Conflict(_ALREADY_REGISTERED[platform]) from None
        who = f"@{info['username']}" if platform == "telegram" else f"application {info['application_id']}"
        self.registry.record_activity(bot_id, "created", f"Registered {platform} bot {who}.")
        log.info("bot %s registered (%s) by %s", bot_id, platform, caller.user)
        if data.get("start") is True:
            return self.start_bot(caller, bot_id)
        return bot

    def _validate_telegram(self, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        token, info = self._check_telegram_token(data)
        # A quick, friendly answer (and the only check for bots registered before bot_identities);
        # the identity claim in create_bot is what makes it race-free.
        if self.registry.find_by_identity("telegram", "bot_user_id", info["bot_user_id"]):
            raise Conflict(_ALREADY_REGISTERED["telegram"])
        return token, info

    def _check_telegram_token(self, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``data["token"]`` checked with getMe: (token, {username, bot_user_id})."""
        token = data.get("token")
        if not isinstance(token, str) or not token.strip():
            raise BadRequest("token is required: the bot token @BotFather gave you.")
        token = token.strip()
        if not tg.looks_like_token(token):
            raise BadRequest(
                "Telegram rejected this token: it should look like 123456789:AAE... from @BotFather."
            )
        try:
            me = self.telegram(token).get_me()
        except PlatformError as exc:
            if exc.unauthorized:
                raise BadRequest(
                    "Telegram rejected this token. Copy it again from @BotFather (/token), "
                    "or /revoke and use the new one."
                ) from None
            raise Upstream("Could not reach Telegram to check the token; try again in a moment.") from None
        if not isinstance(me, dict) or not me.get("is_bot") or not me.get("id"):
            raise BadRequest("Telegram rejected this token: it does not belong to a bot.")
        return token, {"username": me.get("username") or "", "bot_user_id": int(me["id"])}

    def _validate_discord(self, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        app_id = str(data.get("application_id") or "").strip()
        public_key = str(data.get("public_key") or "").strip().lower()
        if not dc.SNOWFLAKE_RE.match(app_id):
            raise BadRequest("application_id must be the numeric Application ID from the developer portal.")
        if not dc.PUBLIC_KEY_RE.match(public_key):
            raise BadRequest("public_key must be the 64-character hex Public Key from the developer portal.")
        bot_token, app = self._check_discord_token(data)
        if str(app.get("id")) != app_id:
            raise BadRequest("The bot token belongs to a different application than this application ID.")
        if str(app.get("verify_key", "")).lower() != public_key:
            raise BadRequest("The public key does not match this application.")
        if self.registry.find_by_identity("discord", "application_id", app_id):
            raise Conflict(_ALREADY_REGISTERED["discord"])
        bot_user = app.get("bot") or {}
        return bot_token, {
            "application_id": app_id,
            "public_key": public_key,
            "bot_user_id": str(bot_user.get("id", "")),
            "username": bot_user.get("username") or "",
            "application_name": app.get("name") or "",
        }

    def _check_discord_token(self, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``data["bot_token"]`` (or ``token``, as the token-replacing forms send it) checked with the
        platform: (token, its application)."""
        bot_token = str(data.get("bot_token") or data.get("token") or "").strip()
        if not dc.BOT_TOKEN_RE.match(bot_token):
            raise BadRequest("bot_token is required: Bot > Reset Token in the developer portal.")
        try:
            app = self.discord(bot_token).get_application()
        except PlatformError as exc:
            if exc.unauthorized:
                raise BadRequest("Discord rejected this bot token.") from None
            raise Upstream(
                "Could not reach Discord to check the application; try again in a moment."
            ) from None
        return bot_token, app

    # --- edit / delete --------------------------------------------------------------------------

    def edit_bot(self, caller: Caller, bot_id: str, data: Any) -> Bot:
        self._owned(caller, bot_id)
        if not isinstance(data, dict) or not data:
            raise BadRequest("Expected a JSON object with name, model or system_prompt.")
        unknown = sorted(set(data) - set(EDITABLE))
        if unknown:
            raise BadRequest(
                f"Cannot edit {', '.join(unknown)}: only name, model and system_prompt can change "
                "(a new token for the same bot: POST /api/bots/<id>/token)."
            )
        fields: dict[str, Any] = {}
        if "name" in data:
            fields["name"] = _name(data["name"])
        if "model" in data:
            fields["model"] = _model(data["model"], self.settings.allowed_bot_models)
        if "system_prompt" in data:
            fields["system_prompt"] = _prompt(data["system_prompt"])
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
        if bot.platform == "telegram":
            token, info = self._check_telegram_token(data)
            if info["bot_user_id"] != bot.platform_info.get("bot_user_id"):
                mine = bot.platform_info.get("username")
                raise BadRequest(
                    f"This token belongs to @{info['username']}, not to @{mine}: "
                    "register that bot as a new bot instead."
                )
        else:
            token, app = self._check_discord_token(data)
            if str(app.get("id")) != str(bot.platform_info.get("application_id")):
                raise BadRequest(
                    "This bot token belongs to another Discord application: register that one as a new bot."
                )
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
        ``force`` re-registers even if it matches (restart).
        """
        changed: str | None = None
        for _ in range(_APPLY_ROUNDS):
            bot = self.registry.get_bot(bot_id)
            if bot is None:
                return ApplyResult(None, changed, None)
            error: str | None = None
            with self._lock(bot_id):
                try:
                    # Migration: bots from before webhook_secret_hash get it on their next apply
                    # (start, restart, reconcile); the webhook functions refuse a bot without it.
                    if not bot.webhook_secret_hash and bot.webhook_secret_enc:
                        self.registry.ensure_webhook_secret_hash(bot)
                    if bot.is_running:
                        step = self._platform_start(bot, verify=verify, force=force)
                    else:
                        step = self._platform_stop(bot, verify=verify)
                    changed = step or changed
                except PlatformError as exc:
                    error = exc.message
                except DecryptionError:
                    error = "The stored token cannot be decrypted (was the token key changed?)."
            status = "error" if error else ("running" if bot.is_running else "stopped")
            if self.registry.commit_status(bot_id, bot.generation, status, error):
                self._record(bot, status, error, changed, activity_kind)
                return ApplyResult(self.registry.get_bot(bot_id), changed, error)
            # The desired state moved on while we talked to the platform: look again. Our own call
            # has finished, so checking the platform now sees its effect and can undo it.
            verify, force, activity_kind = True, False, None
        # Pathological contention: leave it to the next reconcile, which will converge.
        log.warning("bot %s: desired state kept changing; leaving it to reconcile", bot_id)
        return ApplyResult(self.registry.get_bot(bot_id), changed, None)

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

    def _platform_start(self, bot: Bot, *, verify: bool, force: bool) -> str | None:
        url = self.webhook_url(bot)
        token = self.registry.decrypt_token(bot)
        if bot.platform == "telegram":
            client = self.telegram(token)
            if verify and not force and client.get_webhook_info().get("url") == url:
                return None
            if force:
                client.delete_webhook()
            client.set_webhook(url, self.registry.webhook_secret(bot), tg.ALLOWED_UPDATES)
            try:
                client.set_my_commands()
            except PlatformError as exc:  # the menu is a nicety; the bot works without it
                log.info("bot %s: setMyCommands failed: %s", bot.id, exc)
            return "webhook set"
        client_d = self.discord(token)
        app_id = str(bot.platform_info.get("application_id", ""))
        if verify and not force:
            # Both halves can go missing on their own (someone edits the portal, or deletes the
            # command with another tool): without /ask the endpoint receives nothing to answer.
            endpoint_ok = client_d.get_application().get("interactions_endpoint_url") == url
            commands = client_d.get_commands(app_id)
            ask_ok = any(isinstance(c, dict) and c.get("name") == "ask" for c in commands or [])
            if endpoint_ok and ask_ok:
                return None
            if endpoint_ok:
                client_d.register_commands(app_id)
                return "/ask registered"
        client_d.register_commands(app_id)
        client_d.set_interactions_endpoint(url)
        return "/ask registered and interactions endpoint set"

    def _platform_stop(self, bot: Bot, *, verify: bool) -> str | None:
        url = self.webhook_url(bot)
        token = self.registry.decrypt_token(bot)
        if bot.platform == "telegram":
            client = self.telegram(token)
            # When verifying, only remove a webhook that points at us: the owner may have pointed a
            # stopped bot somewhere else on purpose.
            if verify and client.get_webhook_info().get("url") != url:
                return None
            client.delete_webhook()
            return "webhook deleted"
        client_d = self.discord(token)
        if verify and client_d.get_application().get("interactions_endpoint_url") != url:
            return None
        client_d.set_interactions_endpoint(None)
        return "interactions endpoint cleared"


# --- input validation ---------------------------------------------------------------------------


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("name is required.")
    value = value.strip()
    if len(value) > NAME_MAX:
        raise BadRequest(f"name must be at most {NAME_MAX} characters.")
    return value


def _model(value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` if the operator lets bots use that answerer (``settings.allowed_bot_models``)."""
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest("model must be one of: " + ", ".join(f"'{m}'" for m in allowed) + ".")
    return value


def _prompt(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("system_prompt must be text.")
    if len(value) > PROMPT_MAX:
        raise BadRequest(f"system_prompt must be at most {PROMPT_MAX} characters.")
    return value.strip()


# Firestore outages surface as these; callers map them to 503 rather than 500.
UNAVAILABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.RetryError)
