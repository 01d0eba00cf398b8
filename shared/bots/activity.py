"""A bot's activity log: ``bots/{bot_id}/activity`` documents, kept 30 days (Firestore TTL on expire_at).

Public API::

    log = ActivityLog(db)
    log.record(bot_id, kind, message)            # never raises: activity is best effort
    page = log.page(bot_id, limit=50, cursor=None)
    page.items      # [ActivityEntry(id, at, kind, message)], newest first
    page.next_cursor  # pass back as ``cursor`` for the next page; None on the last page

Kinds used by askbase: ``created``, ``edited``, ``started``, ``stopped``, ``restarted``, ``error``,
``reconciled``, ``message`` (free-form notes from the worker). Messages pass through
:func:`shared.logs.redact` (the same rules as every log line, tokens inside Bot API URLs included)
before they are stored: they are shown to the bot's owner and a token must never reach them, even by an
accident upstream.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.logs import redact

log = logging.getLogger(__name__)

RETENTION = timedelta(days=30)
MAX_MESSAGE_CHARS = 2000
MAX_PAGE = 200
_CURSOR_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


@dataclass(frozen=True)
class ActivityEntry:
    id: str
    at: datetime
    kind: str
    message: str

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class ActivityPage:
    items: list[ActivityEntry]
    next_cursor: str | None

    def to_public(self) -> dict[str, Any]:
        return {"items": [i.to_public() for i in self.items], "next_cursor": self.next_cursor}


class InvalidCursor(ValueError):
    """The cursor is malformed or points at an entry that no longer exists."""


class ActivityLog:
    def __init__(self, db: firestore.Client, collection: str = "bots") -> None:
        self._db = db
        self._collection = collection

    def _col(self, bot_id: str) -> firestore.CollectionReference:
        entries: firestore.CollectionReference = (
            self._db.collection(self._collection).document(bot_id).collection("activity")
        )
        return entries

    def record(self, bot_id: str, kind: str, message: str) -> None:
        now = datetime.now(UTC)
        try:
            self._col(bot_id).add(
                {
                    "at": now,
                    "kind": kind[:32],
                    "message": redact(message)[:MAX_MESSAGE_CHARS],
                    "expire_at": now + RETENTION,
                }
            )
        except gexc.GoogleAPICallError as exc:
            # Activity is for humans; losing one line must not fail a start/stop or a reply.
            log.warning("could not record activity for bot %s: %s", bot_id, type(exc).__name__)

    def page(self, bot_id: str, limit: int = 50, cursor: str | None = None) -> ActivityPage:
        limit = max(1, min(int(limit), MAX_PAGE))
        query = self._col(bot_id).order_by("at", direction=firestore.Query.DESCENDING)
        if cursor:
            if not _CURSOR_RE.match(cursor):
                raise InvalidCursor("invalid cursor")
            snapshot = self._col(bot_id).document(cursor).get()
            if not snapshot.exists:
                raise InvalidCursor("invalid cursor")
            query = query.start_after(snapshot)
        # One extra document tells whether there is a next page without a second query.
        docs = list(query.limit(limit + 1).stream())
        items = [
            ActivityEntry(
                id=d.id,
                at=d.get("at"),
                kind=d.get("kind") or "",
                message=d.get("message") or "",
            )
            for d in docs[:limit]
        ]
        next_cursor = items[-1].id if len(docs) > limit else None
        return ActivityPage(items=items, next_cursor=next_cursor)

    def delete_all(self, bot_id: str) -> int:
        """Delete every entry of a bot (used when the bot is deleted). Returns the count."""
        deleted = 0
        while True:
            docs = list(self._col(bot_id).limit(200).stream())
            if not docs:
                return deleted
            batch = self._db.batch()
            for doc in docs:
                batch.delete(doc.reference)
            batch.commit()
            deleted += len(docs)
