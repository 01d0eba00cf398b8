"""A small synchronous Telegram Bot API client (httpx, pooled keep-alive connections).

Why not python-telegram-bot: PTB is asyncio-only and, inside a Flask worker, needs one event loop per
process kept alive by hand (FIELD-NOTES). The handful of methods the control plane and the worker need
are plain JSON calls, so a thin sync client is simpler and shares one connection pool per process.

Public API::

    tg = TelegramClient(token, base_url=settings.telegram_api_base)   # cheap; shares the pool
    tg.get_me() -> dict                        # {"id", "is_bot", "first_name", "username", ...}
    tg.set_webhook(url, secret_token, allowed_updates=ALLOWED_UPDATES) -> bool
    tg.delete_webhook(drop_pending_updates=False) -> bool
    tg.get_webhook_info() -> dict              # {"url": "" when none, "pending_update_count", ...}
    tg.send_message(chat_id, text, parse_mode=None, reply_to_message_id=None,
                    reply_markup=None, **extra) -> dict   # the sent Message
    tg.set_my_commands(commands) -> bool       # [{"command": "ask", "description": "..."}]
    tg.get_updates(offset=None, timeout=0) -> list[dict]
    tg.call(method, **params) -> Any           # any other Bot API method (answerCallbackQuery, ...)

Every method raises :class:`shared.bots.transport.PlatformError` (``platform="telegram"``) on failure;
429 (``parameters.retry_after``), 5xx and network errors are retried per :class:`RetryPolicy`, and a 429
that asks for a longer wait than ``policy.max_wait`` raises :class:`RateLimited` with ``retry_after``.
Error messages never contain the URL (it contains the token) and the exception chain is cut so a
traceback cannot leak it either.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from shared.backoff import parse_retry_after
from shared.bots.transport import PlatformError, RetryPolicy, http_client

log = logging.getLogger(__name__)

PLATFORM = "telegram"
# What the askbase webhook handles: messages (private chats, mentions, commands), button presses on
# answers, and membership changes (a bot added to / removed from a group).
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
MESSAGE_LIMIT = 4096  # characters per sendMessage text
TOKEN_RE = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{20,80}$")
SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
DEFAULT_COMMANDS = [
    {"command": "ask", "description": "Ask a question about the docs"},
    {"command": "help", "description": "How to use this bot"},
    {"command": "enable", "description": "Let the bot answer in this chat (admins)"},
    {"command": "disable", "description": "Stop the bot answering in this chat (admins)"},
]


def looks_like_token(token: str) -> bool:
    """Shape check before a token goes into a URL path (a '/' or '?' would change the request)."""
    return bool(TOKEN_RE.match(token or ""))


class TelegramClient:
    """One bot's view of the Bot API. Holds the token; never puts it in messages or logs."""

    def __init__(
        self,
        token: str,
        base_url: str = "https://api.telegram.org",
        *,
        http: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        self._token = token
        self._base = base_url.rstrip("/")
        self._http = http
        self.policy = policy or RetryPolicy()
        self._timeout = timeout

    def __repr__(self) -> str:  # the default repr would show nothing secret, but be explicit
        return f"TelegramClient(base_url={self._base!r})"

    # --- generic call ---------------------------------------------------------------------------

    def call(self, method: str, *, _timeout: float | None = None, **params: Any) -> Any:
        """POST ``params`` as JSON to ``{base}/bot{token}/{method}`` and return ``result``."""
        if not looks_like_token(self._token):
            # Also keeps a malformed token (with '/', '?', spaces) out of the URL entirely.
            raise PlatformError("Telegram rejected this token", platform=PLATFORM, status=401)
        payload = {k: v for k, v in params.items() if v is not None}
        return self.policy.run(lambda: self._once(method, payload, _timeout), PLATFORM, method)

    def _once(self, method: str, payload: dict[str, Any], timeout: float | None) -> Any:
        url = f"{self._base}/bot{self._token}/{method}"
        client = self._http or http_client()
        try:
            response = client.post(
                url, json=payload, timeout=timeout or self._timeout or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.TimeoutException:
            raise PlatformError(f"Telegram {method}: timed out", platform=PLATFORM) from None
        except httpx.HTTPError as exc:
            # str(exc) may contain the URL, i.e. the token: report only the exception type.
            raise PlatformError(
                f"Telegram {method}: network error ({type(exc).__name__})", platform=PLATFORM
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        status = response.status_code if response.status_code >= 400 else 500
        description = "unexpected response"
        retry_after = None
        code: int | None = status
        if isinstance(body, dict):
            description = str(body.get("description") or description)
            code = body.get("error_code", status)
            params = body.get("parameters") or {}
            if isinstance(params, dict) and params.get("retry_after") is not None:
                retry_after = float(params["retry_after"])
        if status == 429 and retry_after is None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in (401, 404) and method == "getMe":
            description = "Telegram rejected this token"
        raise PlatformError(
            f"Telegram {method}: {description[:300]}",
            platform=PLATFORM,
            status=status,
            code=code,
            retry_after=retry_after,
        )

    # --- typed methods --------------------------------------------------------------------------

    def get_me(self) -> dict[str, Any]:
        return self.call("getMe")

    def set_webhook(
        self,
        url: str,
        secret_token: str,
        allowed_updates: list[str] | None = None,
        *,
        max_connections: int | None = None,
        drop_pending_updates: bool | None = None,
    ) -> bool:
        return bool(
            self.call(
                "setWebhook",
                url=url,
                secret_token=secret_token,
                allowed_updates=allowed_updates if allowed_updates is not None else ALLOWED_UPDATES,
                max_connections=max_connections,
                drop_pending_updates=drop_pending_updates,
            )
        )

    def delete_webhook(self, drop_pending_updates: bool = False) -> bool:
        return bool(self.call("deleteWebhook", drop_pending_updates=drop_pending_updates or None))

    def get_webhook_info(self) -> dict[str, Any]:
        return self.call("getWebhookInfo") or {}

    def send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        parse_mode: str | None = None,
        reply_to_message_id: int | None = None,
        reply_markup: dict[str, Any] | None = None,
        disable_web_page_preview: bool | None = True,
        **extra: Any,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"chat_id": chat_id, "text": text, "parse_mode": parse_mode}
        if reply_to_message_id is not None:
            # reply_parameters replaces reply_to_message_id; allow_sending_without_reply keeps a reply
            # to a since-deleted message from failing the whole send.
            params["reply_parameters"] = {
                "message_id": reply_to_message_id,
                "allow_sending_without_reply": True,
            }
        if reply_markup is not None:
            params["reply_markup"] = reply_markup
        if disable_web_page_preview:
            params["link_preview_options"] = {"is_disabled": True}
        params.update(extra)
        return self.call("sendMessage", **params)

    def set_my_commands(self, commands: list[dict[str, str]] | None = None) -> bool:
        return bool(self.call("setMyCommands", commands=commands or DEFAULT_COMMANDS))

    def get_updates(
        self, offset: int | None = None, timeout: int = 0, allowed_updates: list[str] | None = None
    ) -> list[dict[str, Any]]:
        # The HTTP timeout must outlast the long-poll timeout.
        return (
            self.call(
                "getUpdates",
                _timeout=timeout + 10,
                offset=offset,
                timeout=timeout,
                allowed_updates=allowed_updates,
            )
            or []
        )
