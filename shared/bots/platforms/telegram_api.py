"""The Telegram Bot API as botrunner calls it: python-telegram-bot's ``Bot`` behind a synchronous client.

Public API::

    tg = TelegramClient(token, base_url=settings.telegram_api_base, policy=RetryPolicy())  # cheap
    tg.get_me() -> telegram.User
    tg.set_webhook(url, secret_token, allowed_updates=ALLOWED_UPDATES) -> bool
    tg.delete_webhook(drop_pending_updates=False) -> bool
    tg.get_webhook_info() -> telegram.WebhookInfo      # .url == "" when none is set
    tg.set_my_commands(commands=COMMANDS) -> bool
    tg.send_message(chat_id, text, parse_mode=None, reply_to_message_id=None, reply_markup=None,
                    message_thread_id=None)          # a forum topic
    vote_keyboard([(label, callback_data), ...]) -> telegram.InlineKeyboardMarkup   # one row
    tg.get_chat_member(chat_id, user_id) -> telegram.ChatMember
    tg.answer_callback_query(callback_query_id, text) -> bool
    tg.get_updates(offset=None, timeout=0, allowed_updates=None) -> tuple[telegram.Update, ...]

PTB is asyncio; botrunner's request threads (Flask under gunicorn) are not. Each process runs one event
loop in a daemon thread, built on first use and again in a forked child (gunicorn forks after import:
a thread started in the parent does not exist in the child), and every call is a coroutine handed to
that loop. ``asyncio.run`` per call instead would close the loop under PTB's pooled connections, which
then fail with "Event loop is closed" (and PTB swallows it). The loop's two connection pools (calls, and
long polling for ``askbase bot poll``) are shared by every bot of the process, with TCP_NODELAY.

Why PTB's ``Bot`` and not a hand-written client: it costs little, measured on the 2-core dev machine
with other sessions' tests running. Per call (``bench/platform_calls.py``, loopback fake, keep-alive,
interleaved runs): sendMessage p50 1.2-1.3 ms through this client against 0.5-0.55 ms as a bare httpx
POST (what the hand-written client did), +0.6-0.8 ms, on the one call an answer takes. End to end
(``bench/webhooks.py``, Telegram message → reply p50, five runs of the tree before and after this
client, alternating, load 7-11): 93.5 ms before and 102.2 ms after (medians of the runs; paired
differences -13 to +34 ms, median +0.3 ms), inside the run-to-run spread and the 10 % budget. The price
is the import: ``import telegram`` adds 52-86 ms to a process that has httpx already (``python -X
importtime``), paid by botrunner on its first Telegram call; the webhook functions never import this
module.

Errors: PTB's exceptions become :class:`~shared.bots.platforms.errors.PlatformError` (``platform="telegram"``,
``status`` the HTTP status they stand for; PTB reports 5xx as ``NetworkError`` without the code, so
those are 500), retried per :class:`~shared.bots.platforms.errors.RetryPolicy`: 429 waits ``retry_after``, a
longer wait than ``policy.max_wait`` raises ``RateLimited``. Messages never contain the token or a URL
(Telegram puts the token in the path) and the exception chain is cut, so a traceback cannot show one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from telegram import (
    Bot,
    BotCommand,
    ChatMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
    User,
    WebhookInfo,
)
from telegram.constants import ChatMemberStatus, MessageLimit, ParseMode, UpdateType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from shared.bots.platforms.errors import PlatformError, RetryPolicy
from shared.bots.transport import SOCKET_OPTIONS
from shared.processes import PerProcess

T = TypeVar("T")

PLATFORM = "telegram"
MESSAGE_LIMIT = int(MessageLimit.MAX_TEXT_LENGTH)  # characters of sendMessage text
PARSE_MODE = ParseMode.HTML  # what askbase's answers are written in (escaped by the platform module)
# What the askbase webhook handles: messages (private chats, mentions, commands), button presses on
# answers, and membership changes (a bot added to / removed from a group).
ALLOWED_UPDATES = [UpdateType.MESSAGE, UpdateType.CALLBACK_QUERY, UpdateType.MY_CHAT_MEMBER]
ADMIN_STATUSES = (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
COMMANDS = (
    BotCommand("ask", "Ask a question about the docs"),
    BotCommand("help", "How to use this bot"),
    BotCommand("enable", "Let the bot answer in this chat (admins)"),
    BotCommand("disable", "Stop the bot answering in this chat (admins)"),
    BotCommand("mode", "When the bot answers here: mentions, always or confident (admins)"),
    BotCommand("forget", "Delete this chat's questions and answers (admins in groups)"),
)
TOKEN_RE = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{20,80}$")  # what @BotFather hands out
CALL_TIMEOUT = 60.0  # seconds a thread waits for the loop; PTB's own timeouts end a call well before


def vote_keyboard(buttons: Sequence[tuple[str, str]]) -> InlineKeyboardMarkup:
    """One row of callback buttons, ``(label, callback_data)`` each."""
    row = [InlineKeyboardButton(label, callback_data=data) for label, data in buttons]
    return InlineKeyboardMarkup([row])


def looks_like_token(token: str) -> bool:
    """Shape check before a token goes into a URL path (a '/' or '?' would change the request)."""
    return bool(TOKEN_RE.match(token or ""))


class _EventLoop:
    """This process's event loop, in a daemon thread, and PTB's connection pools bound to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="telegram-api", daemon=True).start()
        self.requests = HTTPXRequest(
            connection_pool_size=64,
            read_timeout=15.0,
            write_timeout=15.0,
            connect_timeout=5.0,
            pool_timeout=5.0,
            socket_options=SOCKET_OPTIONS,
        )
        # PTB adds a long poll's own timeout to this read timeout.
        self.polling = HTTPXRequest(connection_pool_size=4, read_timeout=10.0, socket_options=SOCKET_OPTIONS)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimedOut("no answer from the event loop") from None


_event_loop = PerProcess(_EventLoop)


class TelegramClient:
    """One bot's view of the Bot API. Holds the token; never puts it in messages or logs."""

    def __init__(
        self, token: str, base_url: str = "https://api.telegram.org", *, policy: RetryPolicy | None = None
    ) -> None:
        self._token = token
        self._base = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()

    def __repr__(self) -> str:
        return f"TelegramClient(base_url={self._base!r})"

    def _call(self, method: str, call: Callable[[Bot], Coroutine[Any, Any, T]]) -> T:
        """Run ``call(bot)`` on the process's loop, retried per policy; ``method`` names it in errors."""
        if not looks_like_token(self._token):
            # Also keeps a malformed token (with '/', '?', spaces) out of the URL entirely.
            raise PlatformError("Telegram rejected this token", platform=PLATFORM, status=401)
        return self.policy.run(lambda: self._once(method, call), PLATFORM, method)

    def _once(self, method: str, call: Callable[[Bot], Coroutine[Any, Any, T]]) -> T:
        loop = _event_loop.get()
        # A Bot is a few attributes (~6 µs): one per call, over the process's shared pools.
        bot = Bot(
            self._token, base_url=f"{self._base}/bot", request=loop.requests, get_updates_request=loop.polling
        )
        try:
            return loop.run(call(bot))
        except TelegramError as exc:
            raise _platform_error(method, exc) from None

    # --- methods ---------------------------------------------------------------------------------------

    def get_me(self) -> User:
        return self._call("getMe", lambda bot: bot.get_me())

    def set_webhook(self, url: str, secret_token: str, allowed_updates: Sequence[str] | None = None) -> bool:
        updates = list(allowed_updates if allowed_updates is not None else ALLOWED_UPDATES)
        return self._call(
            "setWebhook", lambda bot: bot.set_webhook(url, secret_token=secret_token, allowed_updates=updates)
        )

    def delete_webhook(self, drop_pending_updates: bool = False) -> bool:
        return self._call(
            "deleteWebhook", lambda bot: bot.delete_webhook(drop_pending_updates=drop_pending_updates or None)
        )

    def get_webhook_info(self) -> WebhookInfo:
        return self._call("getWebhookInfo", lambda bot: bot.get_webhook_info())

    def set_my_commands(self, commands: Sequence[BotCommand] = COMMANDS) -> bool:
        return self._call("setMyCommands", lambda bot: bot.set_my_commands(list(commands)))

    def send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        parse_mode: str | None = None,
        reply_to_message_id: int | None = None,
        reply_markup: InlineKeyboardMarkup | None = None,
        message_thread_id: int | None = None,
    ) -> Message:
        """Send ``text`` without a link preview. A reply to a since-deleted message is sent anyway (to the
        forum topic ``message_thread_id``, when the chat is a forum); to a group upgraded to a supergroup
        meanwhile, to the supergroup."""
        reply = (
            ReplyParameters(reply_to_message_id, allow_sending_without_reply=True)
            if reply_to_message_id is not None
            else None
        )

        async def send(bot: Bot) -> Message:
            async def to(chat: int | str) -> Message:
                return await bot.send_message(
                    chat,
                    text,
                    parse_mode=parse_mode,
                    message_thread_id=message_thread_id,
                    reply_parameters=reply,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                    reply_markup=reply_markup,
                )

            try:
                return await to(chat_id)
            except ChatMigrated as moved:
                # The group became a supergroup since the question was asked: Telegram names its new
                # id and delivers nothing to the old one (the question itself may be gone from it: the
                # reply is sent anyway).
                return await to(moved.new_chat_id)

        return self._call("sendMessage", send)

    def answer_callback_query(self, callback_query_id: str, text: str) -> bool:
        """End a pressed inline button's spinner with a short note to the presser (polling mode; a
        webhook answers with the method in its response instead)."""
        return self._call(
            "answerCallbackQuery", lambda bot: bot.answer_callback_query(callback_query_id, text=text)
        )

    def get_chat_member(self, chat_id: int | str, user_id: int) -> ChatMember:
        return self._call("getChatMember", lambda bot: bot.get_chat_member(chat_id, user_id))

    def get_updates(
        self, offset: int | None = None, timeout: int = 0, allowed_updates: Sequence[str] | None = None
    ) -> tuple[Update, ...]:
        updates = list(allowed_updates) if allowed_updates is not None else None
        return self._call(
            "getUpdates",
            lambda bot: bot.get_updates(offset=offset, timeout=timeout, allowed_updates=updates),
        )


def _platform_error(method: str, exc: TelegramError) -> PlatformError:
    """The :class:`PlatformError` for a PTB exception; never carries the token or the URL."""
    status, retry_after = 500, None
    message = exc.message
    if isinstance(exc, RetryAfter):
        status, retry_after = 429, _seconds(exc.retry_after)
    elif isinstance(exc, InvalidToken):  # Telegram answers 401, or 404 for a malformed token
        status = 401
        if method == "getMe":
            message = "Telegram rejected this token"
    elif isinstance(exc, Forbidden):  # e.g. the user blocked the bot
        status = 403
    elif isinstance(exc, BadRequest | ChatMigrated):
        status = 400
    elif isinstance(exc, Conflict):  # getUpdates while a webhook is set
        status = 409
    elif isinstance(exc, TimedOut):
        status, message = 0, "timed out"
    elif isinstance(exc, NetworkError) and isinstance(exc.__cause__, httpx.HTTPError):
        # str() of an httpx error may contain the URL, i.e. the token: report only its type.
        status, message = 0, f"network error ({type(exc.__cause__).__name__})"
    return PlatformError(
        f"Telegram {method}: {message[:300]}", platform=PLATFORM, status=status, retry_after=retry_after
    )


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
