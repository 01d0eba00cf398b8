"""Bot jobs: what a webhook hands to the worker, and how it travels through Pub/Sub.

A webhook turns one platform update into at most one :class:`Job` and publishes it to
``settings.jobs_topic``. A push subscription delivers it to botrunner ``/worker/push`` wrapped in the
Pub/Sub push envelope::

    {"message": {"data": "<base64 job JSON>", "attributes": {...}, "messageId": "..."},
     "subscription": "projects/.../subscriptions/..."}

The job id is deterministic per platform update (:func:`job_id`: ``telegram:{bot}:{update_id}``,
``discord:{bot}:{interaction_id}``): Pub/Sub redelivery and webhook retries both carry the same id, which
is what the worker's exactly-once ledger (:mod:`shared.bots.dedupe`) keys on. Attributes are
informational and ordering-agnostic: no ordering key, because replies to different chats are independent
and one slow chat must not hold up the others.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from shared.bots.job_kinds import JobKind, job_id
from shared.pubsub import TopicPublisher
from shared.request_input import NotJSON, read_json

__all__ = ["Job", "JobKind", "JobPublisher", "MalformedPush", "Push", "job_id", "parse_push_envelope"]

PUBLISH_TIMEOUT_SECONDS = 10.0


class Job(BaseModel):
    """One unit of bot work. Serialised as JSON in the Pub/Sub message data."""

    job_id: str = Field(min_length=3, max_length=300)
    # A platform name (shared.bots.platforms); the worker drops a job whose bot is not of this platform.
    platform: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    bot_id: str = Field(min_length=1, max_length=128)
    kind: JobKind
    chat_id: str | None = None  # Telegram chat id / Discord channel id
    chat_type: str | None = None  # Telegram: private / group / supergroup; Discord: guild / dm
    message_id: int | None = None  # Telegram message to reply to
    # Telegram: the forum topic the question was asked in. Only the first part of an answer replies to
    # the question (which places it in the topic); every part is sent to the topic with this, or the
    # rest land in the forum's General topic.
    thread_id: int | None = None
    user: str | None = None  # the platform user id of the sender
    user_is_admin_hint: bool = False  # Telegram anonymous admin (sender_chat == chat)
    question: str | None = None
    # False for a group message that neither mentions the bot, nor replies to it, nor uses /ask: the
    # ingress publishes it only when the chat's answer mode answers every message.
    addressed: bool = True
    # The effective answer mode (shared.bots.answer_modes), set by the ingress from the chat's and the
    # bot's settings; None: the worker reads them itself.
    answer_mode: str | None = None
    state_id: str | None = None  # vote: the pressed button's state (shared.bots.buttons)
    vote: str | None = None  # vote: "up" or "down"
    # The Discord interaction token is a credential for 15 minutes: kept out of repr (and so out of
    # logs that format a job) and only ever sent to Discord.
    interaction_token: str | None = Field(default=None, repr=False)
    application_id: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Job:
        return cls.model_validate_json(data)

    def attributes(self) -> dict[str, str]:
        """Pub/Sub attributes: for filtering and for reading a message without decoding it."""
        return {"job_id": self.job_id, "platform": self.platform, "bot_id": self.bot_id, "kind": self.kind}


class MalformedPush(ValueError):
    """The push request is not a Pub/Sub envelope carrying a valid job. Permanent: redelivery won't fix it."""


@dataclass(frozen=True)
class Push:
    """One push delivery: its job, and Pub/Sub's delivery attempt (``deliveryAttempt``, beside
    ``message``: set when the subscription has a dead-letter policy, 1 on the first delivery; None when
    absent or not a whole number from 1)."""

    job: Job
    delivery_attempt: int | None


def parse_push_envelope(body: bytes) -> Push:
    """Decode a Pub/Sub push request body into its job and delivery attempt. Raises
    :class:`MalformedPush`."""
    try:
        envelope = read_json(body)
    except NotJSON as exc:
        raise MalformedPush("body is not JSON") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise MalformedPush("no message in envelope")
    message: dict[str, Any] = envelope["message"]
    data = message.get("data")
    if not isinstance(data, str) or not data:
        raise MalformedPush("message has no data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedPush("message data is not base64") from exc
    try:
        job = Job.from_bytes(raw)
    except ValidationError as exc:
        raise MalformedPush(f"message data is not a job ({exc.error_count()} errors)") from exc
    attempt = envelope.get("deliveryAttempt")
    valid = isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 1
    return Push(job, attempt if valid else None)


class JobPublisher:
    """Publishes jobs to one topic (:class:`shared.pubsub.TopicPublisher`, REST). Thread-safe; build one
    per process so its connection and access token are reused."""

    def __init__(self, project: str, topic: str, publisher: TopicPublisher | None = None) -> None:
        self._publisher = publisher or TopicPublisher(project, topic)

    @property
    def topic_path(self) -> str:
        return self._publisher.topic_path

    def publish(self, job: Job, timeout: float = PUBLISH_TIMEOUT_SECONDS) -> str:
        """Publish and wait for the server's ack; return the Pub/Sub message id."""
        return self._publisher.publish(job.to_bytes(), job.attributes(), timeout=timeout)
