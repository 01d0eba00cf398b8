"""The platform interface: everything askbase needs from a chat platform, in one typed class.

A :class:`Platform` is one stateless object per chat platform (Telegram, Discord), registered by name in
:mod:`shared.bots.platforms`. Nothing outside ``shared/bots/platforms/`` branches on a platform's name:
the webhooks, the worker, the control plane and the bot pages ask the platform instead. Its methods run
in three places, which is why they come in three groups:

* **ingress** (the webhook functions, :mod:`shared.bots.webhooks`): :meth:`~Platform.verify` a request,
  :meth:`~Platform.receive` its JSON as a job or an immediate reply, :meth:`~Platform.acknowledge`,
  :meth:`~Platform.unavailable`. The functions run without the token key and their deployable holds
  no HTTP client and no python-telegram-bot, so a platform module imports its API client (its
  ``*_api`` module) only inside the methods of the other two groups, never at module level;
* **control plane** (botrunner, :mod:`shared.bots.control`): :meth:`~Platform.check_registration`,
  :meth:`~Platform.check_new_token`, :meth:`~Platform.start` (register the webhook),
  :meth:`~Platform.stop`, both with ``verify=True`` changing only what drifted;
* **worker** (botrunner, :mod:`shared.bots.worker`): :meth:`~Platform.render` an answer into the
  platform's markup and message size, :meth:`~Platform.send` it part by part, :meth:`~Platform.help_text`,
  and the optional :meth:`~Platform.may_switch_chat`, :meth:`~Platform.expired`,
  :meth:`~Platform.notify_stopped`.

The failures a platform reports are in :mod:`shared.bots.platforms.errors`: ``InvalidRegistration``
(what the owner typed is wrong: 400; raised as :class:`InvalidField` when it is about one registration
field, which the control plane passes on so the bot pages put the message beside that field),
``PlatformUnreachable`` (the check could not be made: 502),
``Unanswerable`` (a job that can never be answered: acknowledged and dropped), and ``PlatformError``
from API calls (retried, or stored on the bot, by the callers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from shared.bots.platforms.errors import InvalidRegistration

if TYPE_CHECKING:
    from shared.bots.buttons import ButtonStateStore
    from shared.bots.formatting import SourceRef
    from shared.bots.jobs import Job
    from shared.bots.lookup import BotInfo
    from shared.bots.platforms.errors import RetryPolicy
    from shared.config import Settings


# --- ingress results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What a webhook function answers: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]
    reason: str = ""  # one word for logs and benches: "accepted", "duplicate", "ignored", ...


@dataclass(frozen=True)
class Rejection:
    """A refused request. The ingress logs one line (``detail``, never a secret) and answers
    ``status`` with ``{"ok": false, "error": reason}``."""

    status: int
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Delivery:
    """An update that becomes a job: published once per ``update_id`` (dedupe), unless ``chat_id`` names
    a chat whose per-chat switch (:mod:`shared.bots.chat_switch`) is off, or the job is a message that
    does not address the bot (``job.addressed`` false) in a chat whose answer mode answers only those
    that do (:mod:`shared.bots.answer_modes`)."""

    job: Job
    update_id: int | str
    chat_id: int | str | None = None  # None: no per-chat setting applies (e.g. /enable itself)
    # What to answer once the job is published (or was before) instead of :meth:`Platform.acknowledge`:
    # a button press is thanked at once, its vote is cast behind Pub/Sub.
    reply: Reply | None = None


@dataclass(frozen=True)
class ChatMoved:
    """A chat got a new id (a Telegram group upgraded to a supergroup): the ingress itself moves the
    chat's settings to it (:func:`shared.bots.chat_switch.move_settings`, idempotent: the platform may
    deliver the update again) and answers ``reply``. No job: a worker of an older revision could not
    read one, and a stopped bot's settings must move too (its updates publish nothing)."""

    from_chat: int | str
    to_chat: int | str
    reply: Reply


class Ack(StrEnum):
    """How a :class:`Delivery` ended, for :meth:`Platform.acknowledge`."""

    ACCEPTED = "accepted"  # the job was published
    DUPLICATE = "duplicate"  # published before
    DISABLED = "disabled"  # the chat switched the bot off
    NOT_ADDRESSED = "not addressed"  # a message not for the bot, in a chat that answers only those


class Stage(StrEnum):
    """Where the ingress failed, for :meth:`Platform.unavailable`."""

    STORAGE = "storage"  # Firestore (dedupe, chat switch, button state)
    PUBLISH = "publish"  # Pub/Sub


# --- control plane and worker types ------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrationField:
    """One field the owner fills in to register a bot (the pages' form, the API's JSON)."""

    name: str
    secret: bool = False  # read once, never shown again (tokens)


class InvalidField(InvalidRegistration):
    """An :class:`~shared.bots.platforms.errors.InvalidRegistration` about one registration field:
    ``field`` is its :attr:`RegistrationField.name` (the token's is :attr:`Platform.token_field`, also
    when a token-replacing request sent it as ``token``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Registration:
    """A checked registration: the token to encrypt and what the platform told about the bot."""

    token: str = field(repr=False)
    platform_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BotCredentials:
    """One registered bot as the control plane acts for it (decrypted: repr hides the secrets)."""

    token: str = field(repr=False)
    platform_info: Mapping[str, Any]  # what the platform said about the bot at registration
    webhook_secret: str = field(default="", repr=False)  # what the platform sends with each update


@dataclass(frozen=True)
class ApiEndpoint:
    """Where a platform's API is and how patiently to call it (retries, longest 429 wait)."""

    base_url: str
    policy: RetryPolicy


# --- the interface -------------------------------------------------------------------------------------


class Platform(ABC):
    """One chat platform. Stateless: one instance per process, shared by every thread."""

    name: ClassVar[str]
    """Stored in ``bots.platform``, job ids and dedupe keys: never changes once bots exist."""
    label: ClassVar[str]
    """How people read the name ("Telegram")."""
    identity_field: ClassVar[str]
    """The ``platform_info`` key naming the platform's bot (``bot_identities/{name}:{value}``)."""
    registration_fields: ClassVar[tuple[RegistrationField, ...]]
    """What the owner fills in to register a bot (besides name, model and prompt)."""
    duplicate_message: ClassVar[str]
    """Shown when the platform's bot is registered in askbase already (409)."""
    api_base_setting: ClassVar[str]
    """The :class:`~shared.config.Settings` field with the platform API's base URL."""
    webhook_base_setting: ClassVar[str]
    """The Settings field with the URL of this platform's webhook function (a bot's: ``{url}/{bot_id}``)."""
    response_budget: ClassVar[float | None] = None
    """Seconds the webhook may take before the platform gives up on it, less a margin for the network;
    past it the ingress answers :meth:`unavailable` (:mod:`shared.bots.webhooks`). ``None``: no
    deadline (the platform retries a slow delivery)."""
    sends_webhook_secret: ClassVar[bool] = False
    """Whether :meth:`start` gives the platform the bot's webhook secret, which the platform then sends
    with every update and never shows back. The control plane then records which secret it gave
    (``bots.webhook_registered_hash``) and registers again while that is not the bot's current one."""
    answer_buttons: ClassVar[bool] = False
    """Whether answers carry the Sources / Helpful / Not helpful buttons (their state:
    :mod:`shared.bots.buttons`); the platform's :meth:`send` draws them and its :meth:`receive` turns a
    press of Helpful / Not helpful into a ``vote`` job."""

    @property
    def token_field(self) -> str:
        """The registration field that holds the bot's token."""
        return next(f.name for f in self.registration_fields if f.secret)

    # How the bot pages speak of this platform's parts (services/qa/templates/bots_*.html; the
    # platform's own form fields and facts are templates/platforms/<name>_fields.html and _about.html).
    endpoint_label: str = "Webhook"  # what the platform calls the URL askbase registers with it
    token_label: str = "token"  # noqa: S105 - what people call the bot's secret, not a secret
    token_reset_hint: str = ""  # after a leak: how to get a new token, as an instruction
    answer_mode_hint: str = ""  # what the answer modes mean on this platform (the bot pages' hint)

    def display_name(self, platform_info: Mapping[str, Any]) -> str:
        """The bot's own name on the platform for a list of bots ("@docs_bot"), or "" if unknown."""
        return ""

    def field_problem(self, field: str, value: str) -> str | None:
        """What is wrong with the *shape* of registration field ``field``'s ``value``, in words a person
        uses ("The part after the colon is too short..."), or None when it looks right. Pure: nothing is
        sent to the platform (the bot pages check every field at once before anything leaves the web
        app; whether a well-shaped token is live only the platform can say, in
        :meth:`check_registration`)."""
        return None

    # --- settings and description ---------------------------------------------------------------------

    def api_base(self, settings: Settings) -> str:
        """The platform API's base URL (a fake's in tests)."""
        return str(getattr(settings, self.api_base_setting))

    def webhook_url(self, settings: Settings, bot_id: str) -> str:
        """Where the platform delivers the updates of bot ``bot_id``."""
        base = str(getattr(settings, self.webhook_base_setting))
        return f"{base.rstrip('/')}/{bot_id}"

    @abstractmethod
    def describe(self, platform_info: Mapping[str, Any]) -> str:
        """The platform's name for the bot, for people ("@docs_bot", "application 123")."""

    # --- ingress (webhook functions) -------------------------------------------------------------------

    @abstractmethod
    def verify(self, bot: BotInfo, headers: Mapping[str, str], body: bytes, now: float) -> Rejection | None:
        """Whether the request is the platform's, for this bot: ``None`` if it is. ``headers`` have
        lower-case names; ``now`` is the wall clock (seconds)."""

    @abstractmethod
    def receive(
        self, bot: BotInfo, payload: Any, buttons: ButtonStateStore
    ) -> Reply | Rejection | Delivery | ChatMoved:
        """What to do with a verified request's JSON: answer now, refuse, publish a job, or move a
        chat's settings to its new id (:class:`ChatMoved`, whether the bot runs or not).

        ``buttons`` reads the state behind a pressed button (Firestore: may raise
        ``google.api_core.exceptions.GoogleAPIError``, answered with :meth:`unavailable`).
        """

    @abstractmethod
    def acknowledge(self, ack: Ack) -> Reply:
        """The answer to a :class:`Delivery` that was published, a duplicate, or for a disabled chat."""

    @abstractmethod
    def unavailable(self, stage: Stage, detail: str) -> Reply | Rejection:
        """The answer when Firestore or Pub/Sub failed: a status that makes the platform retry, or a
        polite message where it does not retry."""

    # --- control plane (botrunner) ------------------------------------------------------------------

    @abstractmethod
    def check_registration(self, api: ApiEndpoint, data: Mapping[str, Any]) -> Registration:
        """Check the registration fields with the platform. Raises :class:`InvalidField` (naming the
        field) or ``PlatformUnreachable``."""

    @abstractmethod
    def check_new_token(
        self, api: ApiEndpoint, data: Mapping[str, Any], platform_info: Mapping[str, Any]
    ) -> str:
        """A replacement token from ``data`` (its ``token`` field, or the platform's own name for it),
        checked with the platform to belong to the bot described by ``platform_info``. Raises
        :class:`InvalidField` for :attr:`token_field` or ``PlatformUnreachable``."""

    @abstractmethod
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
        """Make the platform deliver to ``url``; return what was done, ``None`` if nothing was needed.

        ``verify`` reads the platform first and repairs only what drifted (reconcile); ``force``
        registers again even if it matches (restart, a new token). Raises ``PlatformError``. A platform
        that :attr:`sends_webhook_secret` calls ``registering()`` right before it changes the
        registration (before a ``force``'s removal too); what it raises ends the start there.
        """

    @abstractmethod
    def stop(self, api: ApiEndpoint, bot: BotCredentials, url: str, *, verify: bool) -> str | None:
        """Stop the platform delivering to ``url``. With ``verify``, a registration that points
        elsewhere is left alone (the owner may use the stopped bot somewhere else)."""

    # --- worker (botrunner) ----------------------------------------------------------------------------

    @abstractmethod
    def render(self, text: str, sources: Sequence[SourceRef] = ()) -> list[str]:
        """``text`` (and its sources, where the platform shows them inline) as message parts, escaped
        for the platform's markup and within its message size."""

    @abstractmethod
    def help_text(self, bot: BotInfo) -> str:
        """The plain-text help for ``/start``, ``/help`` and empty questions."""

    @abstractmethod
    def send(
        self, api: ApiEndpoint, bot: BotInfo, job: Job, part: str, *, index: int, buttons: str | None
    ) -> None:
        """Send part ``index`` of the reply to ``job``. ``buttons`` is the button state id to attach
        (only to the last part, only where :attr:`answer_buttons`). Raises ``PlatformError`` or
        ``Unanswerable``."""

    def may_switch_chat(self, api: ApiEndpoint, bot: BotInfo, job: Job) -> bool:
        """Whether the sender of an ``/enable`` ``/disable`` job may switch the bot in that chat.
        Platforms without the per-chat switch never publish such jobs."""
        return False

    def reply_deadline(self, job: Job) -> datetime | None:
        """When the platform's window to answer ``job`` closes (Discord: the interaction token's 15
        minutes), or ``None`` where an answer may come any time."""
        return None

    def expired(self, job: Job, now: datetime) -> bool:
        """Whether the job can no longer be answered (the platform's reply window has passed)."""
        deadline = self.reply_deadline(job)
        return deadline is not None and now > deadline

    def stay_silent(self, api: ApiEndpoint, bot: BotInfo, job: Job) -> None:
        """End a job without an answer (a refusal in the ``confident`` answer mode): take back whatever
        the platform already shows the chat for it. Nothing, where nothing is shown before the answer."""
        return None

    def notify_stopped(self, api: ApiEndpoint, job: Job) -> None:
        """End whatever the user is waiting on for a job of a stopped bot (best effort)."""
        return None

    def notify_unanswered(self, api: ApiEndpoint, job: Job) -> None:
        """Tell the user that ``job`` will not be answered: its reply window closes before another try
        could come (only called for a platform with a :meth:`reply_deadline`, and only while nothing of
        the answer was shown). Raises ``PlatformError``."""
        return None
