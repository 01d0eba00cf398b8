"""The Discord HTTP API as botrunner calls it: a small synchronous client (httpx, pooled keep-alive).

No Discord library: the common ones (discord.py and the like) are gateway clients that keep a websocket
per bot, while askbase receives interactions by webhook and makes a handful of plain JSON calls.

Public API::

    dc = DiscordClient(bot_token, base_url=settings.discord_api_base)
    dc.get_application() -> dict                  # GET /applications/@me: {"id", "verify_key", "name",
                                                  #   "interactions_endpoint_url", "bot": {...}}
    dc.set_interactions_endpoint(url_or_None) -> dict   # PATCH /applications/@me (None clears it)
    dc.register_commands(app_id, commands=ASK_COMMANDS) -> list[dict]  # PUT bulk: /ask, /mode, /forget
    dc.get_commands(app_id) -> list[dict]
    # Interaction webhooks: authorised by the interaction token, not the bot token.
    dc.edit_original(app_id, interaction_token, payload) -> dict   # PATCH .../messages/@original
    dc.followup(app_id, interaction_token, payload) -> dict        # POST /webhooks/{app}/{token}
    dc.delete_original(app_id, interaction_token) -> None          # DELETE .../messages/@original

``payload`` is a Discord message body: ``{"content": ..., "components": [...], "flags": 64}`` etc.
Failures raise :class:`shared.bots.platforms.errors.PlatformError` (``platform="discord"``); 429 waits
``retry_after`` (body or ``Retry-After`` header), 5xx / network errors back off, per
:class:`RetryPolicy`; a 429 longer than ``policy.max_wait`` raises :class:`RateLimited`. Messages never
contain the URL (interaction tokens) or the bot token.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from shared.backoff import parse_retry_after
from shared.bots.platforms.errors import PlatformError, RetryPolicy
from shared.bots.transport import http_client

PLATFORM = "discord"
# An application id: a snowflake (a 64-bit number: at most 20 ASCII digits, as ingress reads ids) of at
# least 15 digits (Discord's have 17-19). \Z, not $: "$" also matches before a trailing newline.
SNOWFLAKE_RE = re.compile(r"^[0-9]{15,20}\Z")
PUBLIC_KEY_RE = re.compile(r"^[0-9a-fA-F]{64}$")  # an application's Ed25519 public key, hex
BOT_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.-]{20,200}$")
INTERACTION_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.-]{1,1000}$")
ASK_COMMANDS: list[dict[str, Any]] = [
    {
        "name": "ask",
        "type": 1,  # CHAT_INPUT
        "description": "Ask a question about the docs",
        "options": [
            {
                "type": 3,  # STRING
                "name": "question",
                "description": "Your question",
                "required": True,
                "max_length": 2000,
            }
        ],
    },
    {
        "name": "mode",
        "type": 1,
        "description": "When the bot answers in this channel (people who manage the channel)",
        "default_member_permissions": str(1 << 4),  # MANAGE_CHANNELS: hidden from everyone else
        "options": [
            {
                "type": 3,
                "name": "mode",
                "description": "mentions or always: every /ask; confident: only when the docs answer",
                "required": False,
                "choices": [{"name": m, "value": m} for m in ("mentions", "always", "confident")],
            }
        ],
    },
    {
        "name": "forget",
        "type": 1,
        "description": "Delete this channel's questions and the bot's answers (people who manage it)",
        "default_member_permissions": str(1 << 4),
    },
]


class DiscordClient:
    """One application's view of the Discord API. Holds the bot token; never shows it."""

    def __init__(
        self,
        bot_token: str | None,
        base_url: str = "https://discord.com/api/v10",
        *,
        http: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._token = bot_token
        self._base = base_url.rstrip("/")
        self._http = http
        self.policy = policy or RetryPolicy()

    def __repr__(self) -> str:
        return f"DiscordClient(base_url={self._base!r})"

    # --- generic request ------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, auth: bool = True, what: str = "") -> Any:
        """Send one API request (retried per policy) and return the decoded JSON (None for 204)."""
        what = what or f"{method} {path.split('?')[0]}"
        return self.policy.run(lambda: self._once(method, path, json, auth, what), PLATFORM, what)

    def _once(self, method: str, path: str, json: Any, auth: bool, what: str) -> Any:
        headers = {}
        if auth:
            if not self._token or not BOT_TOKEN_RE.match(self._token):
                raise PlatformError("Discord rejected this bot token", platform=PLATFORM, status=401)
            headers["Authorization"] = f"Bot {self._token}"
        client = self._http or http_client()
        try:
            response = client.request(method, self._base + path, json=json, headers=headers)
        except httpx.TimeoutException:
            raise PlatformError(f"Discord {what}: timed out", platform=PLATFORM) from None
        except httpx.HTTPError as exc:
            raise PlatformError(
                f"Discord {what}: network error ({type(exc).__name__})", platform=PLATFORM
            ) from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code < 400:
            return body
        message = "unexpected response"
        code = None
        retry_after = None
        if isinstance(body, dict):
            message = str(body.get("message") or message)
            code = body.get("code")
            if body.get("retry_after") is not None:
                retry_after = float(body["retry_after"])
            errors = body.get("errors")
            if errors:
                message += f" {_first_error(errors)}"
        if response.status_code == 429 and retry_after is None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status_code == 401 and auth:
            message = "Discord rejected this bot token"
        raise PlatformError(
            f"Discord {what}: {message[:300]}",
            platform=PLATFORM,
            status=response.status_code,
            code=code,
            retry_after=retry_after,
        )

    # --- application ----------------------------------------------------------------------------

    def get_application(self) -> dict[str, Any]:
        return _object(self.request("GET", "/applications/@me", what="get application"), "get application")

    def set_interactions_endpoint(self, url: str | None) -> dict[str, Any]:
        """Point the application's interactions at ``url``; ``None`` removes the endpoint.

        Discord first PINGs the URL (signed) and refuses the change unless it answers PONG, so the
        interactions function must be deployed and know this bot before start is called.
        """
        what = "set interactions endpoint"
        body = {"interactions_endpoint_url": url}
        return _object(self.request("PATCH", "/applications/@me", json=body, what=what), what)

    def register_commands(
        self, application_id: str, commands: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        _check_snowflake(application_id)
        body = commands if commands is not None else ASK_COMMANDS
        path = f"/applications/{application_id}/commands"
        return _objects(self.request("PUT", path, json=body, what="register commands"), "register commands")

    def get_commands(self, application_id: str) -> list[dict[str, Any]]:
        _check_snowflake(application_id)
        path = f"/applications/{application_id}/commands"
        return _objects(self.request("GET", path, what="get commands"), "get commands")

    # --- interaction responses ------------------------------------------------------------------

    def edit_original(
        self, application_id: str, interaction_token: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace the deferred response (``@original``): idempotent, so safe to repeat."""
        return self._interaction_webhook(
            "PATCH", application_id, interaction_token, "/messages/@original", payload
        )

    def followup(
        self, application_id: str, interaction_token: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """Send one more message in answer to the interaction."""
        return self._interaction_webhook("POST", application_id, interaction_token, "", payload)

    def delete_original(self, application_id: str, interaction_token: str) -> None:
        """Delete the deferred response (``@original``): the bot says nothing after all."""
        _check_snowflake(application_id)
        _check_interaction_token(interaction_token)
        path = f"/webhooks/{application_id}/{interaction_token}/messages/@original"
        self.request("DELETE", path, auth=False, what="delete original response")

    def _interaction_webhook(
        self, method: str, application_id: str, interaction_token: str, suffix: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        _check_snowflake(application_id)
        _check_interaction_token(interaction_token)
        what = "edit original response" if suffix else "send followup"
        path = f"/webhooks/{application_id}/{interaction_token}{suffix}"
        return _object(self.request(method, path, json=payload, auth=False, what=what), what)


def _object(body: Any, what: str) -> dict[str, Any]:
    """A JSON object Discord answered, or a (retryable) error: never a shape the caller did not expect."""
    if not isinstance(body, dict):
        raise PlatformError(f"Discord {what}: unexpected response", platform=PLATFORM, status=502)
    return body


def _objects(body: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise PlatformError(f"Discord {what}: unexpected response", platform=PLATFORM, status=502)
    return body


def _check_snowflake(value: str) -> None:
    if not SNOWFLAKE_RE.match(str(value)):
        raise PlatformError("Discord: not a valid application id", platform=PLATFORM, status=400)


def _check_interaction_token(value: str) -> None:
    if not INTERACTION_TOKEN_RE.match(value or ""):
        raise PlatformError("Discord: not a valid interaction token", platform=PLATFORM, status=400)


def _first_error(errors: Any, path: str = "") -> str:
    """Discord nests field errors ({"field": {"_errors": [{"message": ...}]}}): show the first one."""
    if isinstance(errors, dict):
        if errors.get("_errors"):
            first = errors["_errors"][0]
            return f"({path.strip('.')}: {first.get('message', '')})"
        for key, value in errors.items():
            found = _first_error(value, f"{path}.{key}")
            if found:
                return found
    return ""
