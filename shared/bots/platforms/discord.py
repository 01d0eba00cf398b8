"""Discord: signed interactions, ``/ask`` answered by a deferred response, answers with buttons.

Start = register the global ``/ask`` command and set the application's ``interactions_endpoint_url`` to
``{webhook base}/{bot_id}`` (Discord PINGs it, signed, and probes it with a bad signature, before it
accepts); stop = clear the endpoint. Every interaction is signed with Ed25519 over timestamp + body with
the application's public key (stored in ``platform_info``). Discord wants a first answer within 3 s and
does not retry, so ``/ask`` is answered "thinking..." (a deferred response) at once and the worker edits
it within the interaction token's 15 minutes; failures are answered with a message only the user sees.
Buttons (Sources, Helpful, Not helpful) are answered by the webhook itself from their Firestore state;
Helpful / Not helpful also publish a ``vote`` job. ``/mode`` (Manage Channels, from the signed
interaction's member permissions) sets the channel's answer mode through the worker, and ``/forget`` (the
same rule; anyone in a DM) clears the channel's history with the bot.

Like every platform module, this one imports no HTTP client at module level: the webhook functions'
deployable has none. API calls go through :mod:`shared.bots.platforms.discord_api`, imported by the
control-plane and worker methods when they run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.bots.buttons import LABELS, Action, custom_id, is_state_id, parse_custom_id
from shared.bots.formatting import SourceRef, pack_blocks, shorten, split_escaped
from shared.bots.job_kinds import JobKind, job_id
from shared.bots.platforms.base import (
    Delivery,
    InvalidField,
    Platform,
    Registration,
    RegistrationField,
    Rejection,
    Reply,
)
from shared.bots.platforms.errors import PlatformError, PlatformUnreachable, Unanswerable

if TYPE_CHECKING:
    from shared.bots.buttons import ButtonStateStore
    from shared.bots.jobs import Job
    from shared.bots.lookup import BotInfo
    from shared.bots.platforms.base import Ack, ApiEndpoint, BotCredentials, Stage
    from shared.bots.platforms.discord_api import DiscordClient

SIGNATURE_HEADER = "X-Signature-Ed25519"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
MAX_CLOCK_SKEW = 300.0  # seconds; a signed request older than this is a replay
MESSAGE_LIMIT = 2000  # characters of message content
TOKEN_LIFETIME = timedelta(minutes=15)  # of an interaction token: the worker's window to answer
# Discord fails an interaction that has no response within 3 seconds (its "Receiving and Responding"
# docs) and never retries it; half a second is left for the network and the function's own overhead.
RESPONSE_BUDGET_S = 2.5
EPHEMERAL = 64  # message flag: only the user who asked sees it
NO_MENTIONS: dict[str, list[str]] = {"parse": []}

TOO_OLD_SOURCES = "This answer is too old to show its sources; ask again with /ask."
TOO_OLD_FEEDBACK = "This answer is too old to rate; ask again with /ask."
THANKS = "Thanks for the feedback!"
STOPPED_BEFORE_ANSWER = "This bot was stopped before it could answer."
NO_ANSWER_IN_TIME = "Sorry, I couldn't answer this in time. Please try again in a few minutes."
_SORRY = {  # by Stage: what failed
    "publish": "Sorry, I can't answer right now. Please try again.",
    "storage": "Sorry, something went wrong. Please try again.",
}


# --- signatures ------------------------------------------------------------------------------------

_verify_keys: dict[str, Ed25519PublicKey] = {}


def verify_signature(
    public_key: str, signature: str | None, timestamp: str | None, body: bytes, now: float | None = None
) -> bool:
    """Ed25519 over ``timestamp + body`` with the application's public key (hex).

    Anything missing or malformed is simply ``False``: Discord probes the endpoint with bad signatures
    and expects 401, never a 500. A timestamp further than :data:`MAX_CLOCK_SKEW` from now is refused
    too, so a captured request cannot be replayed later.
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
    return abs(now - sent_at) <= MAX_CLOCK_SKEW


# --- rendering -------------------------------------------------------------------------------------

# Discord markdown: emphasis, code, strike, spoiler, quotes, headings, lists, masked links, escapes.
_SPECIAL = frozenset("\\*_~`|>#-[]()<:@")


def escape_markdown(text: str) -> str:
    """Backslash-escape every character Discord markdown could interpret.

    ``@`` and ``:`` are escaped too so ``@everyone`` and ``<:emoji:id>`` stay literal even if a caller
    forgets ``allowed_mentions``.
    """
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in text)


def render_answer(answer: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Message contents for an answer (its sources live behind the "Sources" button)."""
    return split_escaped(answer, limit, escape_markdown) or ["(no answer)"]


def render_sources(sources: Sequence[SourceRef], limit: int = MESSAGE_LIMIT) -> str:
    """One message listing the sources as masked links (trimmed to fit one message)."""
    if not sources:
        return "This answer has no sources."
    lines = ["**Sources**"]
    for number, source in enumerate(sources, start=1):
        title = escape_markdown(shorten(source.title or source.url, 150))
        url = source.url
        if url.startswith(("https://", "http://")) and not any(c in url for c in " <>()"):
            # <url> suppresses the embed preview; masked links are allowed in interaction responses.
            lines.append(f"{number}. [{title}](<{url}>)")
        else:
            lines.append(f"{number}. {title}")
    return pack_blocks(lines, limit)[0]


_BUTTON_STYLES = {Action.SOURCES: 2, Action.HELPFUL: 3, Action.NOT_HELPFUL: 4}  # grey, green, red


def components(state_id: str) -> list[dict[str, Any]]:
    """The answer's buttons as Discord components: one action row."""
    buttons = [
        {"type": 2, "style": style, "label": LABELS[action], "custom_id": custom_id(action, state_id)}
        for action, style in _BUTTON_STYLES.items()
    ]
    return [{"type": 1, "components": buttons}]


def _ephemeral(content: str, reason: str) -> Reply:
    data = {"content": content, "flags": EPHEMERAL, "allowed_mentions": NO_MENTIONS}
    return Reply(200, {"type": 4, "data": data}, reason)


# A snowflake is a 64-bit number in decimal: at most 20 ASCII digits (str.isdigit() would take "²").
_SNOWFLAKE = re.compile(r"[0-9]{1,20}")


def _snowflake(value: Any) -> str | None:
    """``value`` as a snowflake string (Discord sends them as strings; an int is taken too), or None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if _SNOWFLAKE.fullmatch(text) else None


def _user(interaction: Mapping[str, Any]) -> str | None:
    member = interaction.get("member")
    user = member.get("user") if isinstance(member, dict) else interaction.get("user")
    return _snowflake(user.get("id")) if isinstance(user, dict) else None


_COMMAND_KINDS = {"ask": JobKind.ASK, "mode": JobKind.MODE, "forget": JobKind.FORGET}


def _option(data: Mapping[str, Any], name: str) -> str:
    """The value of a command's string option ``name`` ("" when absent)."""
    options = data.get("options")
    for option in options if isinstance(options, list) else []:
        if isinstance(option, dict) and option.get("name") == name:
            return str(option.get("value") or "").strip()
    return ""


# Discord permission bits (a decimal string in ``member.permissions``): who may set a channel's mode.
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4


# Discord's permission bit set is a decimal string that grows with new permissions (about 50 bits
# today); 100 digits leaves room and keeps int() far from its 4,300-digit limit.
_PERMISSIONS = re.compile(r"[0-9]{1,100}")


def _may_manage_channel(interaction: Mapping[str, Any]) -> bool:
    member = interaction.get("member")
    permissions = member.get("permissions") if isinstance(member, dict) else None
    if not isinstance(permissions, str) or not _PERMISSIONS.fullmatch(permissions):
        return False
    return bool(int(permissions) & (ADMINISTRATOR | MANAGE_CHANNELS))


def _data(interaction: Mapping[str, Any]) -> Mapping[str, Any]:
    data = interaction.get("data")
    return data if isinstance(data, dict) else {}


# The shapes of what the developer portal shows: an Application ID is a snowflake (a 64-bit number
# printed in decimal: at most 20 digits, 17-19 in practice), the Public Key 32 bytes in hex, a bot
# token one run of URL-safe characters and dots.
_APP_ID_DIGITS = (15, 20)  # discord_api.SNOWFLAKE_RE: a 64-bit number has at most 20 digits
_PUBLIC_KEY_CHARS = 64
_HEX = re.compile(r"[0-9a-fA-F]*")
_BOT_TOKEN = re.compile(r"[A-Za-z0-9_.-]{20,200}")


def application_id_problem(value: str) -> str | None:
    """What is wrong with the shape of a Discord Application ID, or None."""
    value = value.strip()
    low, high = _APP_ID_DIGITS
    if not value:
        return "Paste the Application ID from General Information in the Discord developer portal."
    if not value.isascii() or not value.isdigit():
        return (
            "The Application ID is a number, digits only (like 1234567890123456789). Copy it from "
            "General Information: not the application's name or the Public Key."
        )
    if len(value) < low:
        return (
            f"This number is too short for an Application ID: it has {len(value)} digits, and "
            f"Application IDs have at least {low}. Copy the whole ID from General Information."
        )
    if len(value) > high:
        return (
            f"This number is too long for an Application ID: it has {len(value)} digits, and "
            f"Application IDs have at most {high}. Check that only the ID was copied."
        )
    return None


def public_key_problem(value: str) -> str | None:
    """What is wrong with the shape of a Discord application's Public Key, or None."""
    value = value.strip()
    if not value:
        return "Paste the Public Key from General Information (below the Application ID)."
    if not _HEX.fullmatch(value):
        return (
            "The Public Key has only the digits 0 to 9 and the letters a to f, and this one has other "
            "characters: check that you copied the Public Key, not the token or the client secret."
        )
    if len(value) != _PUBLIC_KEY_CHARS:
        return (
            f"The Public Key is {_PUBLIC_KEY_CHARS} characters long; this one has {len(value)}. "
            "Copy the whole key from General Information."
        )
    return None


def bot_token_problem(value: str) -> str | None:
    """What is wrong with the shape of a Discord bot token, or None."""
    value = value.strip()
    if not value:
        return "Paste the bot token: on the Bot page of your application, Reset Token, then copy it."
    if not _BOT_TOKEN.fullmatch(value):
        return (
            "This doesn't look like a Discord bot token (a long run of letters, digits, dots, dashes "
            "and underscores, no spaces). Copy it again from the Bot page."
        )
    return None


# --- the platform ----------------------------------------------------------------------------------


class Discord(Platform):
    """Discord application bots: one per application (Application ID, Public Key, bot token)."""

    name = "discord"
    label = "Discord"
    identity_field = "application_id"
    registration_fields = (
        RegistrationField("application_id"),
        RegistrationField("public_key"),
        RegistrationField("bot_token", secret=True),
    )
    api_base_setting = "discord_api_base"
    webhook_base_setting = "discord_webhook_url"
    duplicate_message = "This Discord application is already registered in askbase."
    answer_buttons = True
    response_budget = RESPONSE_BUDGET_S

    endpoint_label = "Interactions endpoint"
    token_label = "bot token"  # noqa: S105 - words shown to people
    answer_mode_hint = (
        "Discord sends the bot only /ask, so “When addressed” and “Every message” answer alike; "
        "“Only when confident” deletes the “thinking…” reply instead of posting a refusal. People who "
        "manage a channel can choose for it with /mode."
    )
    token_reset_hint = "use Bot › Reset Token in the developer portal and paste the new one"  # noqa: S105, RUF001

    def display_name(self, platform_info: Mapping[str, Any]) -> str:
        return str(platform_info.get("application_name") or "")

    def field_problem(self, field: str, value: str) -> str | None:
        check = {
            "application_id": application_id_problem,
            "public_key": public_key_problem,
            "bot_token": bot_token_problem,
        }.get(field)
        return check(value) if check else None

    def describe(self, platform_info: Mapping[str, Any]) -> str:
        return f"application {platform_info.get('application_id', '')}"

    # --- ingress ---------------------------------------------------------------------------------------

    def verify(self, bot: BotInfo, headers: Mapping[str, str], body: bytes, now: float) -> Rejection | None:
        public_key = bot.platform_info.get("public_key")
        if not public_key:
            return Rejection(404, "unknown bot")
        signature = headers.get(SIGNATURE_HEADER.lower())
        if not verify_signature(str(public_key), signature, headers.get(TIMESTAMP_HEADER.lower()), body, now):
            return Rejection(401, "invalid request signature", "bad or missing signature")
        return None

    def receive(self, bot: BotInfo, payload: Any, buttons: ButtonStateStore) -> Reply | Rejection | Delivery:
        kind = payload.get("type") if isinstance(payload, dict) else None
        if not isinstance(kind, int) or isinstance(kind, bool):
            return Rejection(400, "not an interaction")
        if kind == 1:  # PING: answered even for a stopped bot, it is how Discord checks the URL
            return Reply(200, {"type": 1}, "pong")
        # The id names the job and the dedupe record: only the snowflake Discord sends fits both.
        interaction_id = _snowflake(payload.get("id"))
        if interaction_id is None:
            return Rejection(400, "not an interaction", "no interaction id")
        # The channel names the chat_settings document: a slash in it would be a path.
        channel = payload.get("channel_id")
        if channel is not None and channel != "" and _snowflake(channel) is None:
            return Rejection(400, "not an interaction", "malformed channel id")
        if kind == 2:
            return self._command(bot, payload, interaction_id)
        if kind == 3:
            return self._button(bot, payload, buttons, interaction_id)
        if kind == 4:  # autocomplete: we offer none
            return Reply(200, {"type": 8, "data": {"choices": []}}, "ignored")
        return Rejection(400, "unsupported interaction type")

    def _command(
        self, bot: BotInfo, interaction: Mapping[str, Any], interaction_id: str
    ) -> Reply | Rejection | Delivery:
        data = _data(interaction)
        name = data.get("name")
        if name not in _COMMAND_KINDS:
            return _ephemeral("I only know /ask, /mode and /forget.", "ignored")
        if not bot.active:
            return _ephemeral("This bot is stopped; ask its owner to start it.", "stopped")
        value = _option(data, "question" if name == "ask" else "mode") if name != "forget" else ""
        if name == "ask" and not value:
            return _ephemeral("Usage: /ask question: your question", "ignored")
        token = interaction.get("token")
        application_id = _snowflake(interaction.get("application_id")) or str(
            bot.platform_info.get("application_id") or ""
        )
        if not isinstance(token, str) or not token or not application_id:
            return Rejection(400, "not an interaction", "no token or application id")
        guild = bool(interaction.get("guild_id"))
        from shared.bots.jobs import Job  # pydantic's model: see shared.bots.job_kinds

        job = Job(
            job_id=job_id(self.name, bot.bot_id, interaction_id),
            platform=self.name,
            bot_id=bot.bot_id,
            kind=_COMMAND_KINDS[name],
            chat_id=_snowflake(interaction.get("channel_id")),
            chat_type="guild" if guild else "dm",
            user=_user(interaction),
            # Discord puts the member's permissions in the signed interaction: no API call needed.
            user_is_admin_hint=not guild or _may_manage_channel(interaction),
            question=value,
            interaction_token=token,
            application_id=application_id,
        )
        # Discord does not retry interactions, but a replayed one must not answer twice (and one replayed
        # concurrently is published twice at most: the worker's ledger answers once). The channel's
        # answer mode travels in the job (the ingress reads it), for an /ask; /mode and /forget are
        # answered to their sender alone.
        if name != "ask":
            return Delivery(job, interaction_id, reply=Reply(200, {"type": 5, "data": {"flags": EPHEMERAL}}))
        return Delivery(job, interaction_id, chat_id=job.chat_id)

    def _button(
        self, bot: BotInfo, interaction: Mapping[str, Any], buttons: ButtonStateStore, interaction_id: str
    ) -> Reply | Rejection | Delivery:
        parsed = parse_custom_id(str(_data(interaction).get("custom_id") or ""))
        if parsed is None:
            return _ephemeral("This button is not recognised.", "ignored")
        action, state_id = parsed
        # A state id askbase never makes names no state: too old, like one whose state expired.
        state = buttons.get(state_id) if is_state_id(state_id) else None
        user = _user(interaction)
        if state is None or state.bot_id != bot.bot_id or user is None:
            # Graceful degradation: the answer's state expired (30 days) or never existed.
            return _ephemeral(TOO_OLD_SOURCES if action is Action.SOURCES else TOO_OLD_FEEDBACK, "expired")
        if action is Action.SOURCES:
            return _ephemeral(render_sources(state.sources), "sources")
        # The vote is cast behind Pub/Sub (the Q&A service holds the vote store); the presser is
        # thanked now, within Discord's 3 seconds. The interaction id is the dedupe key: a replayed
        # press publishes once, and casting is idempotent anyway.
        from shared.bots.jobs import Job  # pydantic's model: see shared.bots.job_kinds

        job = Job(
            job_id=job_id(self.name, bot.bot_id, interaction_id),
            platform=self.name,
            bot_id=bot.bot_id,
            kind=JobKind.VOTE,
            chat_id=_snowflake(interaction.get("channel_id")),
            user=user,
            state_id=state_id,
            vote=str(action),
        )
        return Delivery(job, interaction_id, reply=_ephemeral(THANKS, "vote"))

    def acknowledge(self, ack: Ack) -> Reply:
        # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: "thinking..." until the worker edits @original.
        return Reply(200, {"type": 5}, str(ack))

    def unavailable(self, stage: Stage, detail: str) -> Reply:
        # Discord does not retry: tell the user instead of failing the interaction.
        return _ephemeral(_SORRY[stage], "unavailable")

    # --- control plane ---------------------------------------------------------------------------------

    def check_registration(self, api: ApiEndpoint, data: Mapping[str, Any]) -> Registration:
        from shared.bots.platforms.discord_api import PUBLIC_KEY_RE, SNOWFLAKE_RE

        app_id = str(data.get("application_id") or "").strip()
        public_key = str(data.get("public_key") or "").strip().lower()
        if not SNOWFLAKE_RE.match(app_id):
            raise InvalidField(
                "application_id must be the numeric Application ID from the developer portal.",
                "application_id",
            )
        if not PUBLIC_KEY_RE.match(public_key):
            raise InvalidField(
                "public_key must be the 64-character hex Public Key from the developer portal.",
                "public_key",
            )
        bot_token, app = self._check_token(api, data)
        if str(app.get("id")) != app_id:
            raise InvalidField(
                "The bot token belongs to a different application than this application ID.",
                "application_id",
            )
        if str(app.get("verify_key", "")).lower() != public_key:
            raise InvalidField("The public key does not match this application.", "public_key")
        bot_user = app.get("bot") or {}
        info = {
            "application_id": app_id,
            "public_key": public_key,
            "bot_user_id": str(bot_user.get("id", "")),
            "username": bot_user.get("username") or "",
            "application_name": app.get("name") or "",
        }
        return Registration(bot_token, info)

    def check_new_token(
        self, api: ApiEndpoint, data: Mapping[str, Any], platform_info: Mapping[str, Any]
    ) -> str:
        bot_token, app = self._check_token(api, data)
        if str(app.get("id")) != str(platform_info.get("application_id")):
            raise InvalidField(
                "This bot token belongs to another Discord application: register that one as a new bot.",
                self.token_field,
            )
        return bot_token

    def _check_token(self, api: ApiEndpoint, data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """``data["bot_token"]`` (or ``token``, as the token-replacing forms send it) checked with
        Discord: the token and its application."""
        from shared.bots.platforms.discord_api import BOT_TOKEN_RE

        bot_token = str(data.get("bot_token") or data.get("token") or "").strip()
        if not BOT_TOKEN_RE.match(bot_token):
            raise InvalidField(
                "bot_token is required: Bot > Reset Token in the developer portal.", self.token_field
            )
        try:
            return bot_token, self._client(api, bot_token).get_application()
        except PlatformError as exc:
            if exc.unauthorized:
                raise InvalidField("Discord rejected this bot token.", self.token_field) from None
            raise PlatformUnreachable(
                "Could not reach Discord to check the application; try again in a moment."
            ) from None

    def start(
        self,
        api: ApiEndpoint,
        bot: BotCredentials,
        url: str,
        *,
        verify: bool,
        force: bool,
        registering: Callable[[], None] | None = None,  # not called: Discord signs, it holds no secret
    ) -> str | None:
        from shared.bots.platforms.discord_api import ASK_COMMANDS

        client = self._client(api, bot.token)
        app_id = str(bot.platform_info.get("application_id", ""))
        if verify and not force:
            # Both halves can go missing on their own (someone edits the portal, or deletes the command
            # with another tool): without /ask the endpoint receives nothing to answer.
            endpoint_ok = client.get_application().get("interactions_endpoint_url") == url
            commands = client.get_commands(app_id)
            have = {c.get("name") for c in commands or [] if isinstance(c, dict)}
            # /mode and /forget came after /ask: a bot started before them gets them on the next drift.
            ask_ok = {str(c["name"]) for c in ASK_COMMANDS} <= have
            if endpoint_ok and ask_ok:
                return None
            if endpoint_ok:
                client.register_commands(app_id)
                return "commands registered"
        client.register_commands(app_id)
        client.set_interactions_endpoint(url)
        return "commands registered and interactions endpoint set"

    def stop(self, api: ApiEndpoint, bot: BotCredentials, url: str, *, verify: bool) -> str | None:
        client = self._client(api, bot.token)
        if verify and client.get_application().get("interactions_endpoint_url") != url:
            return None
        client.set_interactions_endpoint(None)
        return "interactions endpoint cleared"

    # --- worker ----------------------------------------------------------------------------------------

    def render(self, text: str, sources: Sequence[SourceRef] = ()) -> list[str]:
        return render_answer(text)

    def help_text(self, bot: BotInfo) -> str:
        return (
            "Ask me about the documentation with /ask followed by your question. People who manage a "
            "channel choose how I answer there with /mode: mentions or always (every /ask is answered), "
            "or confident (only when the docs answer it; no refusals). /forget deletes this channel's "
            "questions and my answers."
        )

    def send(
        self, api: ApiEndpoint, bot: BotInfo, job: Job, part: str, *, index: int, buttons: str | None
    ) -> None:
        """Part 0 edits the deferred response (@original); later parts are followups."""
        if not job.interaction_token or not job.application_id:
            raise Unanswerable("discord job without interaction token")
        payload: dict[str, Any] = {"content": part, "allowed_mentions": NO_MENTIONS}
        if buttons:
            payload["components"] = components(buttons)
        client = self._client(api, None)  # interaction webhooks are authorised by the interaction token
        if index == 0:
            client.edit_original(job.application_id, job.interaction_token, payload)
        else:
            client.followup(job.application_id, job.interaction_token, payload)

    def may_switch_chat(self, api: ApiEndpoint, bot: BotInfo, job: Job) -> bool:
        # Set by the ingress from the signed interaction's member permissions (Manage Channels).
        return job.user_is_admin_hint

    def stay_silent(self, api: ApiEndpoint, bot: BotInfo, job: Job) -> None:
        # The channel shows "thinking..." since the ingress deferred the /ask: delete it (a 404 for a
        # second delete after a takeover is the same outcome).
        if job.interaction_token and job.application_id:
            try:
                self._client(api, None).delete_original(job.application_id, job.interaction_token)
            except PlatformError as exc:
                if exc.status != 404:
                    raise

    def reply_deadline(self, job: Job) -> datetime:
        return job.created_at + TOKEN_LIFETIME

    def notify_stopped(self, api: ApiEndpoint, job: Job) -> None:
        # Otherwise the deferred "thinking..." would hang until the token expires. The worker calls this
        # only when no delivery of the job answered it (it reads the ledger first): @original may hold
        # the answer's first part, which this edit would overwrite.
        self._notice(api, job, STOPPED_BEFORE_ANSWER)

    def notify_unanswered(self, api: ApiEndpoint, job: Job) -> None:
        # The "thinking..." would otherwise end, when the token expires, with no word of what happened.
        self._notice(api, job, NO_ANSWER_IN_TIME)

    def _notice(self, api: ApiEndpoint, job: Job, text: str) -> None:
        """Replace the deferred "thinking..." with ``text`` (the interaction's own token: no bot token)."""
        if job.interaction_token and job.application_id:
            payload = {"content": text, "allowed_mentions": NO_MENTIONS}
            self._client(api, None).edit_original(job.application_id, job.interaction_token, payload)

    @staticmethod
    def _client(api: ApiEndpoint, bot_token: str | None) -> DiscordClient:
        from shared.bots.platforms.discord_api import DiscordClient

        return DiscordClient(bot_token, api.base_url, policy=api.policy)
