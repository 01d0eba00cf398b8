"""A fake Telegram Bot API server on 127.0.0.1 (uvicorn, keep-alive), recording every call.

Usage::

    from tests.fakes.telegram_api import FakeTelegram

    with FakeTelegram() as tg:                       # or fake = FakeTelegram(); fake.start(); fake.stop()
        token = tg.add_bot(username="docs_bot")      # a realistic "1234567890:AA..." token
        settings.telegram_api_base = tg.base_url     # clients call {base_url}/bot{token}/{method}
        ...
        tg.webhook(token)            # WebhookState(url, secret_token, allowed_updates) or None
        tg.send_update(token, {"message": {...}})    # POST to the registered webhook with the
                                                     # X-Telegram-Bot-Api-Secret-Token header; adds
                                                     # update_id if missing; returns httpx.Response;
                                                     # a method in the response is run (calls)
        tg.callback_update(sent_message, "ab:up:…")    # an inline button press on a sent message
        tg.sent_messages(token)      # [{"chat_id", "text", ...}] every sendMessage, in order
        tg.wait_for_messages(token, 1, timeout=5)
        tg.calls / tg.calls_for(token, "setWebhook")   # every request: Call(token, method, params, peer)
        tg.fail_next("sendMessage", status=429, retry_after=1, times=2)   # or status=500
        tg.lose_webhook(token)       # the platform "forgot" the webhook (for reconcile tests)
        tg.revoke(token)             # the token now gets 401 (BotFather /revoke)
        tg.queue_update(token, update)                 # served by getUpdates (polling mode)
        tg.admins.add((chat_id, user_id))              # getChatMember: "administrator" (else "member")
        tg.migrate_chat(old_chat_id, new_chat_id)      # the group became a supergroup: sendMessage to
                                                       # the old id is refused with migrate_to_chat_id
        tg.message_update(chat_id, text, ...)          # build a realistic message update dict

Behaviour follows the real API where tests depend on it: unknown tokens -> 401 "Unauthorized";
getMe returns id, is_bot, first_name, username (PTB needs all four); every result carries the fields
the Bot API marks required, because python-telegram-bot's parsing refuses an object without them (a
chat administrator's rights, for one); setWebhook validates the secret token's characters; getUpdates
-> 409 while a webhook is set; 429 bodies carry ``parameters.retry_after``. Parameters are accepted as
JSON, url-encoded form (what PTB sends: objects JSON-encoded in a field) or query string.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import secrets
import string
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.devstack.site_server import SiteServer
from tests.fakes._server import PlatformFake

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass
class Call:
    token: str
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.time)
    peer: tuple[str, int] | None = None  # the client's address and port: one per TCP connection


@dataclass
class WebhookState:
    url: str
    secret_token: str | None
    allowed_updates: list[str] | None


@dataclass
class FakeBot:
    token: str
    id: int
    username: str
    first_name: str
    webhook: WebhookState | None = None
    revoked: bool = False
    commands: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Failure:
    method: str
    status: int
    retry_after: int | None
    times: int
    token: str | None


class FakeTelegram(PlatformFake):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.bots: dict[str, FakeBot] = {}
        self.calls: list[Call] = []
        self.admins: set[tuple[int, int]] = set()  # (chat_id, user_id) pairs getChatMember calls admins
        self.migrated: dict[int, int] = {}  # old chat id -> supergroup id (migrate_chat)
        self._failures: list[_Failure] = []
        self._message_ids = itertools.count(1)
        self._update_ids = itertools.count(10_000)
        self._server = SiteServer(
            Starlette(routes=[Route("/bot{token}/{method}", self._handle, methods=["GET", "POST"])])
        )

    # --- test controls --------------------------------------------------------------------------

    def add_bot(
        self, username: str | None = None, first_name: str = "Docs Bot", bot_id: int | None = None
    ) -> str:
        """Create a bot and return its token."""
        bot_id = bot_id or random.randint(1_000_000_000, 8_999_999_999)
        alphabet = string.ascii_letters + string.digits + "_-"
        token = f"{bot_id}:AA" + "".join(secrets.choice(alphabet) for _ in range(33))
        with self._lock:
            self.bots[token] = FakeBot(
                token=token, id=bot_id, username=username or f"bot{bot_id}_bot", first_name=first_name
            )
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self.bots[token].revoked = True

    def reissue_token(self, token: str) -> str:
        """@BotFather's /revoke: the same bot (id, webhook, commands) gets a new token; the old one is 401."""
        alphabet = string.ascii_letters + string.digits + "_-"
        with self._lock:
            bot = self.bots[token]
            new = f"{bot.id}:AA" + "".join(secrets.choice(alphabet) for _ in range(33))
            self.bots[token] = FakeBot(token, bot.id, bot.username, bot.first_name, revoked=True)
            bot.token, bot.revoked = new, False
            self.bots[new] = bot
        return new

    def webhook(self, token: str) -> WebhookState | None:
        with self._lock:
            return self.bots[token].webhook

    def migrate_chat(self, old: int, new: int) -> None:
        """The group ``old`` became the supergroup ``new``: sendMessage to ``old`` is refused like
        Telegram does (400 with ``parameters.migrate_to_chat_id``)."""
        with self._lock:
            self.migrated[old] = new

    def lose_webhook(self, token: str) -> None:
        with self._lock:
            self.bots[token].webhook = None

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        token: str | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` (for ``token``, or any) fail with ``status``."""
        with self._lock:
            self._failures.append(
                _Failure(method, status, retry_after if status == 429 else None, times, token)
            )

    def calls_for(self, token: str | None = None, method: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if (token is None or c.token == token) and (method is None or c.method == method)
            ]

    def sent_messages(self, token: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.bots[token].sent)

    def wait_for_messages(self, token: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` messages were sent by this bot; raise AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.bots[token].sent) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} sendMessage calls, got {len(self.bots[token].sent)}"
                    )
                self._cond.wait(left)
            return list(self.bots[token].sent)

    def message_update(
        self,
        chat_id: int,
        text: str,
        *,
        chat_type: str = "private",
        user_id: int | None = None,
        message_id: int | None = None,
        update_id: int | None = None,
        **message_extra: Any,
    ) -> dict[str, Any]:
        """A realistic ``message`` update (entities for a leading /command are filled in)."""
        user_id = user_id or (chat_id if chat_type == "private" else 4242)
        message: dict[str, Any] = {
            "message_id": message_id or next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": chat_type},
            "from": {"id": user_id, "is_bot": False, "first_name": "Tester", "language_code": "en"},
            "text": text,
        }
        if chat_type == "private":
            message["chat"].update(first_name="Tester")
        else:
            message["chat"]["title"] = "Test group"
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        message.update(message_extra)
        return {
            "update_id": update_id if update_id is not None else next(self._update_ids),
            "message": message,
        }

    def callback_update(
        self,
        message: dict[str, Any],
        data: str,
        *,
        user_id: int = 4242,
        update_id: int | None = None,
    ) -> dict[str, Any]:
        """A ``callback_query`` update: user ``user_id`` pressed the inline button carrying ``data``
        under ``message`` (a sent message as :meth:`sent_messages` lists it: its ``chat_id``)."""
        return {
            "update_id": update_id if update_id is not None else next(self._update_ids),
            "callback_query": {
                "id": str(random.randint(10**17, 10**18)),
                "from": {"id": user_id, "is_bot": False, "first_name": "Tester"},
                "chat_instance": "-1",
                "data": data,
                "message": {
                    "message_id": next(self._message_ids),
                    "date": int(time.time()),
                    "chat": {"id": _int_or_str(message["chat_id"]), "type": "private"},
                    "text": str(message.get("text", "")),
                },
            },
        }

    def send_update(
        self, token: str, update: dict[str, Any], *, secret_token: str | None = None, timeout: float = 30.0
    ) -> httpx.Response:
        """Deliver ``update`` to the bot's webhook like Telegram does (the secret in the header).

        ``secret_token`` overrides the registered secret (to test a wrong one). Raises if no webhook.
        Like Telegram, a 2xx response whose JSON names a ``method`` runs that method (recorded in
        :attr:`calls` as the bot's call; its result is not reported back).
        """
        with self._lock:
            hook = self.bots[token].webhook
        if hook is None:
            raise AssertionError("no webhook registered for this bot")
        if "update_id" not in update:
            update = {"update_id": next(self._update_ids), **update}
        headers = {"Content-Type": "application/json"}
        secret = secret_token if secret_token is not None else hook.secret_token
        if secret:
            headers[SECRET_HEADER] = secret
        assert self._http is not None, "start() the fake first"
        response = self._http.post(hook.url, json=update, headers=headers, timeout=timeout)
        try:
            body = response.json() if response.is_success else None
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("method"), str):
            params = {k: v for k, v in body.items() if k != "method"}
            with self._cond:
                self.calls.append(Call(token, body["method"], params))
                self._cond.notify_all()
        return response

    def queue_update(self, token: str, update: dict[str, Any]) -> None:
        """Make ``update`` available to getUpdates (polling mode)."""
        if "update_id" not in update:
            update = {"update_id": next(self._update_ids), **update}
        with self._cond:
            self.bots[token].updates.append(update)
            self._cond.notify_all()

    # --- the API --------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> JSONResponse:
        token = request.path_params["token"]
        method = request.path_params["method"]
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            content_type = request.headers.get("content-type", "")
            if "json" in content_type:
                try:
                    body = await request.json()
                except ValueError:
                    return _error(400, "Bad Request: can't parse JSON")
                if isinstance(body, dict):
                    params.update(body)
            elif "x-www-form-urlencoded" in content_type:
                params.update(_form_params(await request.body()))
        with self._lock:
            peer = (request.client.host, request.client.port) if request.client else None
            self.calls.append(Call(token, method, params, peer=peer))
            bot = self.bots.get(token)
            if bot is None or bot.revoked:
                return _error(401, "Unauthorized")
            failure = self._take_failure(method, token)
        if failure is not None:
            if failure.status == 429:
                return JSONResponse(
                    {
                        "ok": False,
                        "error_code": 429,
                        "description": f"Too Many Requests: retry after {failure.retry_after}",
                        "parameters": {"retry_after": failure.retry_after},
                    },
                    status_code=429,
                    headers={"Retry-After": str(failure.retry_after)},
                )
            return _error(failure.status, "Internal Server Error" if failure.status >= 500 else "Bad Request")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found")
        if method == "getUpdates":
            return await handler(bot, params)
        with self._cond:
            response = handler(bot, params)
            self._cond.notify_all()
            return response

    def _take_failure(self, method: str, token: str) -> _Failure | None:
        for failure in self._failures:
            if failure.method == method and failure.token in (None, token):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _m_getMe(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        return _ok(
            {
                "id": bot.id,
                "is_bot": True,
                "first_name": bot.first_name,
                "username": bot.username,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )

    def _m_setWebhook(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        url = str(params.get("url") or "")
        if not url:
            bot.webhook = None
            return _ok(True, "Webhook was deleted")
        if not url.startswith(("http://", "https://")):
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_RE.match(str(secret)):
            return _error(400, "Bad Request: secret token contains unallowed characters")
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            allowed = json.loads(allowed)
        bot.webhook = WebhookState(url=url, secret_token=secret, allowed_updates=allowed)
        if params.get("drop_pending_updates"):
            bot.updates.clear()
        return _ok(True, "Webhook was set")

    def _m_deleteWebhook(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        existed = bot.webhook is not None
        bot.webhook = None
        if params.get("drop_pending_updates"):
            bot.updates.clear()
        return _ok(True, "Webhook was deleted" if existed else "Webhook is already deleted")

    def _m_getWebhookInfo(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        info: dict[str, Any] = {
            "url": bot.webhook.url if bot.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": 0 if bot.webhook else len(bot.updates),
        }
        if bot.webhook and bot.webhook.allowed_updates is not None:
            info["allowed_updates"] = bot.webhook.allowed_updates
        return _ok(info)

    def _m_setMyCommands(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        commands = params.get("commands") or []
        if isinstance(commands, str):
            commands = json.loads(commands)
        bot.commands = list(commands)
        return _ok(True)

    def _m_getMyCommands(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        return _ok(bot.commands)

    def _m_sendMessage(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        text = params.get("text")
        chat_id = params.get("chat_id")
        if chat_id in (None, ""):
            return _error(400, "Bad Request: chat_id is empty")
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if len(str(text)) > 4096:
            return _error(400, "Bad Request: message is too long")
        moved_to = self.migrated.get(_int_or_str(chat_id))
        if moved_to is not None:
            return JSONResponse(
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": moved_to},
                },
                status_code=400,
            )
        bot.sent.append(dict(params))
        message_id = next(self._message_ids)
        return _ok(
            {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": _int_or_str(chat_id), "type": "private"},
                "from": {
                    "id": bot.id,
                    "is_bot": True,
                    "first_name": bot.first_name,
                    "username": bot.username,
                },
                "text": text,
            }
        )

    def _m_getChatMember(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        user = {"id": user_id, "is_bot": False, "first_name": "Tester"}
        if (chat_id, user_id) not in self.admins:
            return _ok({"status": "member", "user": user})
        rights = [
            "can_manage_chat",
            "can_delete_messages",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_promote_members",
            "can_change_info",
            "can_invite_users",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
        ]
        return _ok(
            {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                **dict.fromkeys(rights, True),
            }
        )

    def _m_answerCallbackQuery(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        return _ok(True)

    def _m_editMessageText(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        bot.sent.append({"edit": True, **params})
        return _ok(
            {"message_id": params.get("message_id"), "date": int(time.time()), "text": params.get("text")}
        )

    def _m_editMessageReplyMarkup(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        return _ok(True)

    async def _m_getUpdates(self, bot: FakeBot, params: dict[str, Any]) -> JSONResponse:
        with self._lock:
            if bot.webhook is not None:
                return _error(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if offset:
                    # Like Telegram: asking with an offset confirms every earlier update.
                    bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
                ready = list(bot.updates)
            if ready or time.monotonic() >= deadline:
                return _ok(ready)
            await asyncio.sleep(0.02)


def _form_params(body: bytes) -> dict[str, Any]:
    """A url-encoded form as the Bot API reads it (python-telegram-bot posts these): objects and arrays
    arrive JSON-encoded, scalars as strings. Parsed with the standard library: starlette's form parser
    needs python-multipart, which nothing else here uses."""
    params: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if value[:1] in ("{", "["):
            try:
                params[key] = json.loads(value)
                continue
            except ValueError:
                pass
        params[key] = value
    return params


def _int_or_str(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _ok(result: Any, description: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return JSONResponse(body)


def _error(status: int, description: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error_code": status, "description": description}, status_code=status)
