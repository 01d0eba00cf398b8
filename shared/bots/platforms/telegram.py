"""Telegram: the webhook's secret check and chat rules, answers in HTML, webhooks set with setWebhook.

Answers carry 👍 / 👎 as an inline keyboard (:mod:`shared.bots.buttons`); a press arrives as a
``callback_query`` update and becomes a ``vote`` job, answered with ``answerCallbackQuery`` in the
webhook's response body.

Start = ``setWebhook(url={webhook base}/{bot_id}, secret_token=<per-bot secret>)`` plus the command menu;
stop = ``deleteWebhook``. Telegram sends each update with the secret in
``X-Telegram-Bot-Api-Secret-Token``; the webhook checks it against the stored keyed hash
(:mod:`shared.bots.secrets`), so the function needs no token key. Telegram retries an update it did not
get a 2xx for, so storage and publish failures are 503s.

The webhook parses updates as plain JSON, not with python-telegram-bot's ``Update.de_json``, and this
module imports nothing of PTB or httpx at module level: ``import telegram`` costs 170-230 ms (of it
httpx ~100 ms; ``python -X importtime``, 2-core dev machine) and 7.9 MB, and the webhook functions'
cold start and archive size are tracked targets whose deployable holds neither. The chat rules
(:func:`decide`) read a handful of fields and check each one's type. Everything botrunner does as the
bot (API calls, PTB's constants and types) is in :mod:`shared.bots.platforms.telegram_api`, imported by
the control-plane and worker methods below when they run.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.bots.buttons import Action, custom_id, is_state_id, parse_custom_id
from shared.bots.formatting import SourceRef, pack_blocks, shorten, split_escaped
from shared.bots.job_kinds import JobKind, job_id
from shared.bots.platforms.base import (
    ChatMoved,
    Delivery,
    InvalidField,
    Platform,
    Registration,
    RegistrationField,
    Rejection,
    Reply,
)
from shared.bots.platforms.errors import PlatformError, PlatformUnreachable, Unanswerable
from shared.bots.secrets import webhook_secret_matches

if TYPE_CHECKING:
    from shared.bots.buttons import ButtonStateStore
    from shared.bots.jobs import Job
    from shared.bots.lookup import BotInfo
    from shared.bots.platforms.base import Ack, ApiEndpoint, BotCredentials, Stage
    from shared.bots.platforms.telegram_api import TelegramClient

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
_SECRET_HEADER_KEY = SECRET_HEADER.lower()
_GROUP_CHATS = ("group", "supergroup")
# The Bot API's integers (update, chat, user and message ids) fit in a signed 64-bit integer; a larger
# one is not Telegram's, and would push the job id past its length limit (an update id) or a chat's
# settings document id past Firestore's (a chat id).
_INT64 = 2**63


def _telegram_int(value: Any) -> int | None:
    """``value`` if it is an integer the Bot API could send (not a bool, within int64), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not -_INT64 <= value < _INT64:
        return None
    return value


# --- the chat rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What to do with one update: a job kind and question, or ``None`` with the reason."""

    kind: JobKind | None
    reason: str
    question: str | None = None
    addressed: bool = True  # False: a group message for the bot only in a chat that answers every one


def decide(update: Mapping[str, Any], username: str, bot_user_id: int | None) -> Decision:
    """Apply the chat rules to an update (pure: no I/O). ``username`` is the bot's, lower case.

    * private chats: every text message is a question; ``/start`` and ``/help`` get the help text;
    * groups: ``/ask ...``, a message mentioning ``@username``, or a reply to one of the bot's
      messages; ``/start`` ``/help`` ``/enable`` ``/disable`` ``/mode`` ``/forget`` addressed to this bot (or
      unaddressed); any other text message is a question with ``addressed=False``, which the ingress
      publishes only in a chat whose answer mode answers every message (:mod:`shared.bots.answer_modes`);
    * commands addressed to another bot (``/help@other_bot``), messages from bots, channels (a linked
      channel's posts forwarded into its discussion group too), edits and non-text messages are ignored.
    """
    message = update.get("message")
    if not isinstance(message, dict):
        return Decision(None, "not a message")
    chat_type = _dict(message, "chat").get("type")
    if _dict(message, "from").get("is_bot") and not _is_anonymous_admin(message):
        return Decision(None, "from a bot")
    if message.get("is_automatic_forward") is True:
        # A linked channel's post copied into its discussion group, "from" the service user Telegram
        # (not flagged a bot): an announcement, not a question; the comments under it are messages.
        return Decision(None, "channel post")
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return Decision(None, "no text")
    text = text.strip()
    private = chat_type == "private"
    if not private and chat_type not in _GROUP_CHATS:
        return Decision(None, "not a private or group chat")
    if text.startswith("/"):
        return _command(text, username, private)
    if private:
        return Decision(JobKind.ASK, "private", text)
    if username and _mentions(message, text, username, bot_user_id):
        question = re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE)
        question = re.sub(r"[ \t]{2,}", " ", question).strip()
        return (
            Decision(JobKind.ASK, "mention", question) if question else Decision(JobKind.HELP, "bare mention")
        )
    if _replies_to_bot(message, username, bot_user_id):
        return Decision(JobKind.ASK, "reply", text)
    return Decision(JobKind.ASK, "group message", text, addressed=False)


_COMMANDS = {
    "start": JobKind.HELP,
    "help": JobKind.HELP,
    "enable": JobKind.ENABLE,
    "disable": JobKind.DISABLE,
    "forget": JobKind.FORGET,
}


def _command(text: str, username: str, private: bool) -> Decision:
    head, _, rest = text.partition(" ")
    if "\n" in head:  # "/ask\nquestion"
        head, _, more = head.partition("\n")
        rest = (more + " " + rest).strip()
    command, _, target = head[1:].partition("@")
    command = command.lower()
    if target and target.lower() != username:
        return Decision(None, "command for another bot")
    rest = rest.strip()
    if command == "ask":
        return Decision(JobKind.ASK, "ask", rest) if rest else Decision(JobKind.HELP, "empty ask")
    if command == "mode":  # no argument: the worker tells the chat its mode and the choices
        return Decision(JobKind.MODE, "mode", rest)
    if command in _COMMANDS:
        return Decision(_COMMANDS[command], command)
    if private:
        return Decision(JobKind.HELP, "unknown command")
    return Decision(None, "unknown command")


def _dict(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _mentions(message: Mapping[str, Any], text: str, username: str, bot_user_id: int | None) -> bool:
    entities = message.get("entities")
    for entity in entities if isinstance(entities, list) else []:
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
        if (
            entity.get("type") == "text_mention"
            and bot_user_id is not None
            and _dict(entity, "user").get("id") == bot_user_id
        ):
            return True
    # Entities are absent when a client or a test sends plain text: fall back to a word match.
    return re.search(rf"(?<![\w@])@{re.escape(username)}\b", text, flags=re.IGNORECASE) is not None


def _replies_to_bot(message: Mapping[str, Any], username: str, bot_user_id: int | None) -> bool:
    replied = message.get("reply_to_message")
    if not isinstance(replied, dict):
        return False
    author = _dict(replied, "from")
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


def _username(platform_info: Mapping[str, Any]) -> str:
    return str(platform_info.get("username") or "").lstrip("@").lower()


def _bot_user_id(platform_info: Mapping[str, Any]) -> int | None:
    value = str(platform_info.get("bot_user_id", ""))
    return int(value) if value.isdigit() else None


# --- rendering -------------------------------------------------------------------------------------


def escape_html(text: str) -> str:
    """Escape text for Telegram's HTML parse mode: only ``<``, ``>`` and ``&`` are special.

    The standard library's, as PTB's documentation advises: ``telegram.helpers`` escapes MarkdownV2
    only, and askbase sends HTML (a broken MarkdownV2 escape fails the whole message).
    """
    return html.escape(text, quote=False)


def render_answer(answer: str, sources: Sequence[SourceRef], limit: int) -> list[str]:
    """Messages of at most ``limit`` characters (HTML parse mode): the answer, then numbered source
    links, which share the answer's last message when they fit."""
    messages = split_escaped(answer, limit, escape_html) or [escape_html("(no answer)")]
    if not sources:
        return messages
    lines = ["<b>Sources</b>"]
    for number, source in enumerate(sources, start=1):
        title = escape_html(shorten(source.title or source.url, 200))
        if source.url.startswith(("https://", "http://")) and len(source.url) <= 2000:
            lines.append(f'{number}. <a href="{html.escape(source.url)}">{title}</a>')
        else:
            lines.append(f"{number}. {title}")
    section = "\n".join(lines)
    if len(messages[-1]) + 2 + len(section) <= limit:
        messages[-1] = messages[-1] + "\n\n" + section
    else:
        messages.extend(pack_blocks(lines, limit))
    return messages


# A bot token is "<bot id>:<secret>" (Telegram's Bot API docs: "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11").
_TOKEN_ID = re.compile(r"\d{3,20}")
_TOKEN_SECRET = re.compile(r"[A-Za-z0-9_-]{20,80}")


def token_problem(token: str) -> str | None:
    """What is wrong with the shape of a Telegram bot token, or None."""
    token = token.strip()
    if not token:
        return "Paste the token @BotFather gave you when you created the bot."
    if any(ch.isspace() for ch in token):
        return "The token has spaces or line breaks in it: copy it again from @BotFather, in one piece."
    number, colon, secret = token.partition(":")
    if not colon:
        return (
            "This doesn't look like a Telegram bot token: those have a number, a colon and a long code, "
            "like 123456789:AAE…. Copy the whole token from @BotFather."
        )
    if not _TOKEN_ID.fullmatch(number):
        return (
            "The part before the colon should be the bot's number (digits only): copy the whole token again."
        )
    if len(secret) < 20:
        return (
            "The part after the colon is too short: it looks cut off. Copy the whole token from @BotFather."
        )
    if not _TOKEN_SECRET.fullmatch(secret):
        return (
            "The part after the colon has characters a Telegram token never has (only letters, digits, "
            "- and _). Copy it again from @BotFather."
        )
    return None


# --- the platform ----------------------------------------------------------------------------------


class Telegram(Platform):
    """Telegram bots: one per BotFather token."""

    name = "telegram"
    label = "Telegram"
    identity_field = "bot_user_id"
    registration_fields = (RegistrationField("token", secret=True),)
    api_base_setting = "telegram_api_base"
    webhook_base_setting = "telegram_webhook_url"
    duplicate_message = "This Telegram bot is already registered in askbase."
    answer_buttons = True
    sends_webhook_secret = True  # setWebhook's secret_token, sent back in X-Telegram-Bot-Api-Secret-Token

    endpoint_label = "Webhook"
    token_label = "token"  # noqa: S105 - words shown to people
    token_reset_hint = "send /revoke to @BotFather and paste the new token"  # noqa: S105
    answer_mode_hint = (
        "In groups, “Every message” and “Only when confident” need the bot's privacy mode off "
        "(@BotFather › /setprivacy › Disable), or Telegram sends it only messages that address it. "  # noqa: RUF001
        "Group admins can choose for their group with /mode."
    )

    def display_name(self, platform_info: Mapping[str, Any]) -> str:
        username = platform_info.get("username")
        return f"@{username}" if username else ""

    def field_problem(self, field: str, value: str) -> str | None:
        return token_problem(value) if field == "token" else None

    def describe(self, platform_info: Mapping[str, Any]) -> str:
        return f"@{platform_info.get('username') or ''}"

    # --- ingress ---------------------------------------------------------------------------------------

    def verify(self, bot: BotInfo, headers: Mapping[str, str], body: bytes, now: float) -> Rejection | None:
        if not bot.webhook_secret_hash:
            return Rejection(403, "forbidden", "no webhook secret hash stored (reconcile)")
        # Constant time over the hashes; no TypeError on non-ASCII header values.
        if not webhook_secret_matches(bot.bot_id, headers.get(_SECRET_HEADER_KEY), bot.webhook_secret_hash):
            return Rejection(403, "forbidden", "wrong or missing secret token")
        return None

    def receive(
        self, bot: BotInfo, payload: Any, buttons: ButtonStateStore
    ) -> Reply | Rejection | Delivery | ChatMoved:
        update_id = _telegram_int(payload.get("update_id")) if isinstance(payload, dict) else None
        if update_id is None or update_id < 0:
            return Rejection(400, "not an update")
        if isinstance(payload.get("callback_query"), dict):
            # Pressed on an answer sent while the bot ran: the vote counts even if it is stopped now.
            return self._button(bot, payload["callback_query"], update_id, buttons)
        moved = _chat_moved(payload)
        if moved is not None:
            # Before the stopped check: a stopped bot's chat settings must follow the chat too.
            return moved
        if not bot.active:
            return _ignored("stopped")
        decision = decide(payload, _username(bot.platform_info), _bot_user_id(bot.platform_info))
        if decision.kind is None:
            return _ignored("ignored")
        message = payload["message"]
        chat = message["chat"]
        chat_id = _telegram_int(chat.get("id"))
        if chat_id is None:
            return Rejection(400, "not an update", "chat without id")
        sender = _dict(message, "from")
        sender_id = _telegram_int(sender.get("id"))
        # A supergroup's reply chain has a message_thread_id too, but only a forum topic takes one back
        # in sendMessage (elsewhere: "message thread not found").
        in_topic = message.get("is_topic_message") is True
        topic = _telegram_int(message.get("message_thread_id")) if in_topic else None
        from shared.bots.jobs import Job  # pydantic's model: see shared.bots.job_kinds

        job = Job(
            job_id=job_id(self.name, bot.bot_id, update_id),
            platform=self.name,
            bot_id=bot.bot_id,
            kind=decision.kind,
            chat_id=str(chat_id),
            chat_type=str(chat.get("type")),
            message_id=_telegram_int(message.get("message_id")),
            thread_id=topic,
            user=str(sender_id) if sender_id is not None else None,
            user_is_admin_hint=_is_anonymous_admin(message),
            question=decision.question,
            addressed=decision.addressed,
        )
        # Chat settings and /forget always go through: a disabled chat must be able to switch back on
        # (and to clear its history).
        switching = decision.kind in (JobKind.ENABLE, JobKind.DISABLE, JobKind.MODE, JobKind.FORGET)
        return Delivery(job, update_id, chat_id=None if switching else chat_id)

    def _button(
        self, bot: BotInfo, query: Mapping[str, Any], update_id: int, buttons: ButtonStateStore
    ) -> Reply | Rejection | Delivery:
        """A press of 👍 / 👎 under an answer: a ``vote`` job, thanked at once. The answer to the
        callback query (which ends the button's spinner) goes back in the webhook's response body: the
        Bot API runs a method a webhook answers with, so the function needs no HTTP client for it."""
        query_id = query.get("id")
        if not isinstance(query_id, str) or not query_id:
            return Rejection(400, "not an update", "callback query without id")
        parsed = parse_custom_id(str(query.get("data") or ""))
        if parsed is None or parsed[0] is Action.SOURCES:
            return _answer_callback(query_id, UNKNOWN_BUTTON, "ignored")
        action, state_id = parsed
        # A state id askbase never makes names no state: too old, like one whose state expired (not a
        # 503, which would have Telegram deliver the same bad press again).
        state = buttons.get(state_id) if is_state_id(state_id) else None
        user_id = _telegram_int(_dict(query, "from").get("id"))
        if state is None or state.bot_id != bot.bot_id or user_id is None:
            # The answer's state expired (30 days) or never existed: say so, never an error.
            return _answer_callback(query_id, TOO_OLD_FEEDBACK, "expired")
        chat_id = _telegram_int(_dict(_dict(query, "message"), "chat").get("id"))
        from shared.bots.jobs import Job  # pydantic's model: see shared.bots.job_kinds

        job = Job(
            job_id=job_id(self.name, bot.bot_id, update_id),
            platform=self.name,
            bot_id=bot.bot_id,
            kind=JobKind.VOTE,
            chat_id=str(chat_id) if chat_id is not None else None,
            user=str(user_id),
            state_id=state_id,
            vote=str(action),
        )
        return Delivery(job, update_id, reply=_answer_callback(query_id, THANKS, "vote"))

    def acknowledge(self, ack: Ack) -> Reply:
        return Reply(200, {"ok": True, "status": _ACK_STATUS[ack]}, str(ack))

    def unavailable(self, stage: Stage, detail: str) -> Rejection:
        # Telegram retries a failed delivery: a 503 gets the update another try.
        return Rejection(503, "unavailable", detail)

    # --- control plane ---------------------------------------------------------------------------------

    def check_registration(self, api: ApiEndpoint, data: Mapping[str, Any]) -> Registration:
        return self._check_token(api, data)

    def check_new_token(
        self, api: ApiEndpoint, data: Mapping[str, Any], platform_info: Mapping[str, Any]
    ) -> str:
        checked = self._check_token(api, data)
        if checked.platform_info["bot_user_id"] != platform_info.get("bot_user_id"):
            raise InvalidField(
                f"This token belongs to @{checked.platform_info['username']}, not to "
                f"@{platform_info.get('username')}: register that bot as a new bot instead.",
                self.token_field,
            )
        return checked.token

    def _check_token(self, api: ApiEndpoint, data: Mapping[str, Any]) -> Registration:
        """``data["token"]`` checked with getMe: the token and ``{username, bot_user_id}``."""
        from shared.bots.platforms.telegram_api import looks_like_token

        token = data.get("token")
        if not isinstance(token, str) or not token.strip():
            raise InvalidField("token is required: the bot token @BotFather gave you.", self.token_field)
        token = token.strip()
        if not looks_like_token(token):
            raise InvalidField(
                "Telegram rejected this token: it should look like 123456789:AAE... from @BotFather.",
                self.token_field,
            )
        try:
            me = self._client(api, token).get_me()
        except PlatformError as exc:
            if exc.unauthorized:
                raise InvalidField(
                    "Telegram rejected this token. Copy it again from @BotFather (/token), "
                    "or /revoke and use the new one.",
                    self.token_field,
                ) from None
            raise PlatformUnreachable(
                "Could not reach Telegram to check the token; try again in a moment."
            ) from None
        if not me.is_bot or not me.id:
            raise InvalidField("Telegram rejected this token: it does not belong to a bot.", self.token_field)
        return Registration(token, {"username": me.username or "", "bot_user_id": int(me.id)})

    def start(
        self,
        api: ApiEndpoint,
        bot: BotCredentials,
        url: str,
        *,
        verify: bool,
        force: bool,
        registering: Callable[[], None] | None = None,
    ) -> str | None:
        client = self._client(api, bot.token)
        # getWebhookInfo shows the URL, never the secret: whether Telegram holds the current secret is
        # the control plane's record (it asks with verify=False when that record differs).
        if verify and not force and client.get_webhook_info().url == url:
            return None
        if registering is not None:
            registering()
        if force:
            client.delete_webhook()
        client.set_webhook(url, bot.webhook_secret)
        try:
            client.set_my_commands()
        except PlatformError as exc:  # the menu is a nicety; the bot works without it
            log.info("%s: setMyCommands failed: %s", self.describe(bot.platform_info), exc)
        return "webhook set"

    def stop(self, api: ApiEndpoint, bot: BotCredentials, url: str, *, verify: bool) -> str | None:
        client = self._client(api, bot.token)
        if verify and client.get_webhook_info().url != url:
            return None
        client.delete_webhook()
        return "webhook deleted"

    # --- worker ----------------------------------------------------------------------------------------

    def render(self, text: str, sources: Sequence[SourceRef] = ()) -> list[str]:
        from shared.bots.platforms.telegram_api import MESSAGE_LIMIT

        return render_answer(text, sources, MESSAGE_LIMIT)

    def help_text(self, bot: BotInfo) -> str:
        username = bot.platform_info.get("username")
        mention = f"@{username}" if username else "me"
        return (
            f"Hi! I answer questions from the documentation.\n\n"
            f"• In a private chat, just send your question.\n"
            f"• In a group, mention {mention}, reply to one of my messages, or use /ask followed by your "
            f"question.\n"
            f"• Group admins can turn me off and on in their chat with /disable and /enable, and choose "
            f"when I answer with /mode mentions, /mode always or /mode confident (answer every message, "
            f"but only when the docs answer it).\n"
            f"• /forget deletes this chat's questions and my answers (in a group: admins)."
        )

    def send(
        self, api: ApiEndpoint, bot: BotInfo, job: Job, part: str, *, index: int, buttons: str | None
    ) -> None:
        from shared.bots.platforms.telegram_api import PARSE_MODE, vote_keyboard

        if job.chat_id is None:
            raise Unanswerable("telegram job without chat")
        self._client(api, bot.token).send_message(
            job.chat_id,
            part,
            parse_mode=PARSE_MODE,
            message_thread_id=job.thread_id,
            # Only the first part quotes the question; in a busy group that is what ties them together.
            reply_to_message_id=job.message_id if index == 0 else None,
            # 👍 / 👎 under the last part (the sources are in the message itself).
            reply_markup=vote_keyboard([(label, custom_id(a, buttons)) for label, a in VOTE_BUTTONS])
            if buttons
            else None,
        )

    def may_switch_chat(self, api: ApiEndpoint, bot: BotInfo, job: Job) -> bool:
        from shared.bots.platforms.telegram_api import ADMIN_STATUSES

        if job.chat_type == "private" or job.user_is_admin_hint:
            return True
        if job.chat_id is None or job.user is None or not job.user.lstrip("-").isdigit():
            return False
        member = self._client(api, bot.token).get_chat_member(job.chat_id, int(job.user))
        return member.status in ADMIN_STATUSES

    @staticmethod
    def _client(api: ApiEndpoint, token: str | None) -> TelegramClient:
        from shared.bots.platforms.telegram_api import TelegramClient

        if not token:
            raise Unanswerable("bot has no token")
        return TelegramClient(token, api.base_url, policy=api.policy)


_ACK_STATUS = {  # by Ack
    "accepted": "accepted",
    "duplicate": "duplicate",
    "disabled": "ignored",
    "not addressed": "ignored",
}
VOTE_BUTTONS = (("👍 Helpful", Action.HELPFUL), ("👎 Not helpful", Action.NOT_HELPFUL))
THANKS = "Thanks for the feedback!"
TOO_OLD_FEEDBACK = "This answer is too old to rate; ask again."
UNKNOWN_BUTTON = "This button is not recognised."


def _answer_callback(query_id: str, text: str, reason: str) -> Reply:
    """A webhook response that makes Telegram run answerCallbackQuery (a small note to the presser)."""
    return Reply(200, {"method": "answerCallbackQuery", "callback_query_id": query_id, "text": text}, reason)


def _chat_moved(update: Mapping[str, Any]) -> ChatMoved | None:
    """The service message Telegram posts in a group upgraded to a supergroup (``migrate_from_chat_id``,
    in the new chat): the chat's settings move to its new id. Its twin in the old chat
    (``migrate_to_chat_id``) has no text and is ignored."""
    message = update.get("message")
    if not isinstance(message, dict) or _dict(message, "chat").get("type") != "supergroup":
        return None
    new_id = _telegram_int(_dict(message, "chat").get("id"))
    old_id = _telegram_int(message.get("migrate_from_chat_id"))
    if new_id is None or old_id is None:
        return None
    return ChatMoved(old_id, new_id, Reply(200, {"ok": True, "status": "moved"}, "moved"))


def _ignored(reason: str) -> Reply:
    return Reply(200, {"ok": True, "status": "ignored"}, reason)
