"""The buttons under bot answers (Sources, Helpful, Not helpful): their ids and the state they read.

Which platforms show them, and how, is the platform's business (``Platform.answer_buttons``; Discord
draws them as message components, Telegram as an inline keyboard whose ``callback_data`` is the same
id: at most 40 bytes, within Telegram's 64). Their state lives in Firestore so buttons work after any restart:
the worker stores one ``interactions/{state_id}`` document per answer *before* sending it, and each
button's id carries the state id (``ab:<action>:<state_id>``). When a button is pressed the webhook reads
the state back: no process memory is involved, so a button pressed on an answer sent before a full
redeploy still works. The TTL field ``expire_at`` (30 days, or the conversation retention when that is
shorter: :func:`state_ttl`) lets Firestore delete old state; TTL deletion runs lazily (up to a day
late), so reads treat an expired document as missing too.

A 👍/👎 press becomes a ``vote`` job (the webhook answers "thanks" at once); the worker has the Q&A
service cast it (:meth:`shared.bots.qa_client.QaClient.vote`), which reads this state back and votes on
the answer record named by ``answer_id`` (what ``/api/ask`` returned when the answer was made) with
:class:`shared.qa.feedback.FeedbackStore`.

The state id is derived from the job id (a keyed-free hash, since the id only has to be unique and
stable): a job that is redelivered rewrites the same document instead of leaving an orphan.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.bots.formatting import SourceRef
from shared.bots.platform_users import TOPIC_SEPARATOR
from shared.key_prefixes import starts_with
from shared.request_input import firestore_accepts
from shared.transactions import delete_all

INTERACTIONS = "interactions"
STATE_TTL = timedelta(days=30)
CUSTOM_ID_PREFIX = "ab"


class Action(StrEnum):
    """What a button does; the value is what its id carries."""

    SOURCES = "src"  # show the answer's sources (to the presser only)
    HELPFUL = "up"  # feedback
    NOT_HELPFUL = "down"


LABELS = {Action.SOURCES: "Sources", Action.HELPFUL: "Helpful", Action.NOT_HELPFUL: "Not helpful"}


@dataclass
class ButtonState:
    """What a button needs to know about the answer it sits under."""

    state_id: str
    bot_id: str
    question: str
    answer: str
    sources: list[SourceRef]
    answer_id: str | None = None  # the Q&A service's record of the answer (votes point at it)
    created_at: datetime | None = None
    expire_at: datetime | None = None


def state_ttl(retention_days: int) -> timedelta:
    """How long an answer's button state is kept: :data:`STATE_TTL`, or less when conversations are kept
    for less (``conversation_retention_days``; 0 keeps them forever). The state holds the question and
    the answer, so it must not outlive the conversation they came from."""
    if retention_days <= 0:
        return STATE_TTL
    return min(STATE_TTL, timedelta(days=retention_days))


STATE_ID_CHARS = 32
_STATE_ID = re.compile(rf"[0-9a-f]{{{STATE_ID_CHARS}}}")


def state_id_for_job(job_id: str) -> str:
    """The state id of the answer to ``job_id`` (stable across redeliveries)."""
    return hashlib.sha256(job_id.encode()).hexdigest()[:STATE_ID_CHARS]


def is_state_id(value: str) -> bool:
    """Whether ``value`` has the shape of a state id :func:`state_id_for_job` makes. A button's data
    comes from the chat platform's user: anything else names no state (and may be a path, "a/b", or
    an id Firestore refuses, "__x__")."""
    return _STATE_ID.fullmatch(value) is not None


def custom_id(action: Action, state_id: str) -> str:
    """The id a button carries (Discord's ``custom_id``)."""
    return f"{CUSTOM_ID_PREFIX}:{action}:{state_id}"


def parse_custom_id(value: str) -> tuple[Action, str] | None:
    """``(action, state_id)`` from a button's custom_id, or ``None`` if it is not one of ours. The state
    id is as the platform sent it: what reads state with it checks :func:`is_state_id` first (a press
    with any other id is answered like one on an expired answer)."""
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != CUSTOM_ID_PREFIX or not parts[2] or len(parts[2]) > 64:
        return None
    try:
        return Action(parts[1]), parts[2]
    except ValueError:
        return None


class ButtonStateStore:
    """Read and write the ``interactions`` documents behind answer buttons."""

    def __init__(self, db: firestore.Client, ttl: timedelta = STATE_TTL) -> None:
        self._db = db
        self._ttl = ttl

    def save(
        self,
        state_id: str,
        bot_id: str,
        question: str,
        answer: str,
        sources: Sequence[SourceRef],
        now: datetime | None = None,
        answer_id: str | None = None,
        chat: str | None = None,
    ) -> None:
        """Store the state of one answer's buttons; ``chat`` (``telegram:<chat id>``) is what
        :meth:`forget_chat` finds it by."""
        now = now or datetime.now(UTC)
        self._db.collection(INTERACTIONS).document(state_id).set(
            {
                "bot_id": bot_id,
                "question": question,
                "answer": answer,
                "sources": [{"title": s.title, "url": s.url} for s in sources],
                "answer_id": answer_id,
                "chat": chat,
                "created_at": now,
                "expire_at": now + self._ttl,
            }
        )

    def get(self, state_id: str, now: datetime | None = None) -> ButtonState | None:
        """The state, or ``None`` if it never existed or has expired (even if not yet deleted), or if
        ``state_id`` is no id Firestore could hold (it reaches here from requests: qa's bot votes)."""
        if not firestore_accepts(state_id):
            return None
        now = now or datetime.now(UTC)
        snap = self._db.collection(INTERACTIONS).document(state_id).get()
        if not snap.exists:
            return None
        doc = snap.to_dict() or {}
        expire_at = doc.get("expire_at")
        if isinstance(expire_at, datetime) and expire_at <= now:
            return None
        return ButtonState(
            state_id=state_id,
            bot_id=str(doc.get("bot_id", "")),
            question=str(doc.get("question", "")),
            answer=str(doc.get("answer", "")),
            sources=[
                SourceRef(title=str(s.get("title", "")), url=str(s.get("url", "")))
                for s in doc.get("sources") or []
                if isinstance(s, dict)
            ],
            answer_id=str(doc["answer_id"]) if doc.get("answer_id") else None,
            created_at=doc.get("created_at"),
            expire_at=expire_at,
        )

    def forget_bot(self, bot_id: str) -> int:
        """Delete the button state of every answer ``bot_id`` posted (the bot is being deleted: a press
        on one of them finds no bot anyway); returns how many."""
        query = self._db.collection(INTERACTIONS).where(filter=FieldFilter("bot_id", "==", bot_id))
        return delete_all(self._db, (s.reference for s in query.select([]).stream()))

    def forget_chat(self, bot_id: str, chat: str) -> int:
        """Delete the button state of every answer ``bot_id`` posted in ``chat`` and in its topics
        (``<chat>/<topic>``: :func:`shared.bots.platform_users.topic_chat`), their questions and answers;
        returns how many. Single-field queries (an equality, a range), so no composite index."""
        col = self._db.collection(INTERACTIONS)
        queries = [
            col.where(filter=FieldFilter("chat", "==", chat)),
            starts_with(col, "chat", chat + TOPIC_SEPARATOR),
        ]
        refs = [
            s.reference
            for query in queries
            for s in query.select(["bot_id"]).stream()
            if s.get("bot_id") == bot_id
        ]
        return delete_all(self._db, refs)
