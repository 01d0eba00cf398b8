"""The buttons under bot answers (Sources, Helpful, Not helpful): their ids and the state they read.

Which platforms show them, and how, is the platform's business (``Platform.answer_buttons``; Discord
draws them as message components). Their state lives in Firestore so buttons work after any restart:
the worker stores one ``interactions/{state_id}`` document per answer *before* sending it, and each
button's id carries the state id (``ab:<action>:<state_id>``). When a button is pressed the webhook reads
the state back: no process memory is involved, so a button pressed on an answer sent before a full
redeploy still works. The TTL field ``expire_at`` (30 days) lets Firestore delete old state; TTL
deletion runs lazily (up to a day late), so reads treat an expired document as missing too.

The state id is derived from the job id (a keyed-free hash, since the id only has to be unique and
stable): a job that is redelivered rewrites the same document instead of leaving an orphan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from shared.bots.formatting import SourceRef

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
    feedback: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    expire_at: datetime | None = None


def state_id_for_job(job_id: str) -> str:
    """The state id of the answer to ``job_id`` (stable across redeliveries)."""
    return hashlib.sha256(job_id.encode()).hexdigest()[:32]


def custom_id(action: Action, state_id: str) -> str:
    """The id a button carries (Discord's ``custom_id``)."""
    return f"{CUSTOM_ID_PREFIX}:{action}:{state_id}"


def parse_custom_id(value: str) -> tuple[Action, str] | None:
    """``(action, state_id)`` from a button's custom_id, or ``None`` if it is not one of ours."""
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
    ) -> None:
        now = now or datetime.now(UTC)
        self._db.collection(INTERACTIONS).document(state_id).set(
            {
                "bot_id": bot_id,
                "question": question,
                "answer": answer,
                "sources": [{"title": s.title, "url": s.url} for s in sources],
                "feedback": {},
                "created_at": now,
                "expire_at": now + self._ttl,
            }
        )

    def get(self, state_id: str, now: datetime | None = None) -> ButtonState | None:
        """The state, or ``None`` if it never existed or has expired (even if not yet deleted)."""
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
            feedback={str(k): str(v) for k, v in (doc.get("feedback") or {}).items()},
            created_at=doc.get("created_at"),
            expire_at=expire_at,
        )

    def record_feedback(self, state_id: str, user_id: str, value: str) -> None:
        """One vote per user per answer; pressing again overwrites (so a double click counts once)."""
        path = FieldPath("feedback", user_id).to_api_repr()  # user ids are digits: quoted segment
        self._db.collection(INTERACTIONS).document(state_id).update(
            {path: value, "feedback_at": datetime.now(UTC)}
        )
