"""Conversations in Firestore, isolated per owner.

Layout (docs/architecture.md): ``conversations/{id}`` holds ``owner``, ``title``, ``created_at``,
``updated_at``, ``expire_at`` and a lower-cased ``search_text``; its ``messages`` sub-collection holds one
document per question or answer. Every read and write checks ``owner``: a conversation that belongs to
somebody else is indistinguishable from one that does not exist (:class:`ConversationNotFound`).

Retention: Firestore TTL deletes documents whose ``expire_at`` has passed, but a TTL deletion of a parent
does not delete its sub-collection, so messages carry their own ``expire_at``. Rewriting every message on
each update would cost one write per message per question; instead the conversation remembers the
earliest expiry among its messages and refreshes them all only when that falls within half the retention
window. An active conversation therefore never loses old messages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

COLLECTION = "conversations"
MESSAGES = "messages"
TITLE_CHARS = 80
SEARCH_TEXT_CHARS = 20_000  # cap so a long conversation never nears Firestore's 1 MiB document limit
LIST_LIMIT = 200


class ConversationNotFound(LookupError):
    """No conversation with that id belongs to this owner."""


@dataclass
class Message:
    """One turn: a ``user`` question or an ``assistant`` answer with its sources."""

    role: str
    text: str
    created_at: datetime
    sources: list[dict[str, Any]] = field(default_factory=list)
    answerer: str | None = None


@dataclass
class Conversation:
    id: str
    owner: str
    title: str
    created_at: datetime
    updated_at: datetime
    messages: list[Message] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON shape of a history-list entry."""
        return {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    def to_json(self) -> dict[str, Any]:
        """The full conversation as JSON-ready data (the export format)."""
        return self.summary() | {
            "messages": [
                {
                    "role": m.role,
                    "text": m.text,
                    "created_at": m.created_at.isoformat(),
                    "sources": m.sources,
                    **({"answerer": m.answerer} if m.answerer else {}),
                }
                for m in self.messages
            ]
        }

    def to_markdown(self) -> str:
        """A readable Markdown export: questions as headings, answers with numbered source links."""
        lines = [f"# {self.title}", "", f"_Started {self.created_at:%Y-%m-%d %H:%M} UTC_", ""]
        for m in self.messages:
            if m.role == "user":
                lines += [f"## {m.text.strip()}", ""]
            else:
                lines += [m.text.strip(), ""]
                for i, s in enumerate(m.sources, 1):
                    lines.append(f"{i}. [{s.get('title') or s.get('url')}]({s.get('url')})")
                if m.sources:
                    lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def _title(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"


@dataclass
class _Turn:
    """One question + answer about to be written, and how to write it onto a conversation."""

    owner: str
    now: datetime
    expire: datetime | None
    question: str
    answer: str
    sources: list[dict[str, Any]]
    answerer: str

    def apply(self, writer: Any, doc: firestore.DocumentReference, data: dict[str, Any] | None) -> bool:
        """Stage the writes on a batch or transaction; ``data`` is the existing conversation or None.

        Returns True when every older message's ``expire_at`` must be refreshed too.
        """
        seq = int(data.get("message_count", 0)) if data else 0
        previous = data.get("search_text", "") if data else ""
        fields: dict[str, Any] = {
            "updated_at": self.now,
            "message_count": seq + 2,
            "last_question": self.question,
            "search_text": (previous + "\n" + self.question + "\n" + self.answer).lower()[
                -SEARCH_TEXT_CHARS:
            ],
        }
        refresh = False
        if self.expire is not None:
            fields["expire_at"] = self.expire
            oldest = data.get("messages_expire_at") if data else None
            if oldest is None:
                fields["messages_expire_at"] = self.expire
            elif oldest - self.now < (self.expire - self.now) / 2:
                # Old messages would outlive their conversation's TTL by less than half the window.
                fields["messages_expire_at"] = self.expire
                refresh = seq > 0
        elif data is not None:
            # Retention switched to "keep forever" since this conversation was written.
            fields["expire_at"] = firestore.DELETE_FIELD
            fields["messages_expire_at"] = firestore.DELETE_FIELD
        if data is None:
            writer.create(
                doc, fields | {"owner": self.owner, "title": _title(self.question), "created_at": self.now}
            )
        else:
            writer.update(doc, fields)
        messages = doc.collection(MESSAGES)
        base: dict[str, Any] = {"created_at": self.now}
        if self.expire is not None:
            base["expire_at"] = self.expire
        writer.set(
            messages.document(f"{seq:06d}"), base | {"seq": seq, "role": "user", "text": self.question}
        )
        writer.set(
            messages.document(f"{seq + 1:06d}"),
            base
            | {
                "seq": seq + 1,
                "role": "assistant",
                "text": self.answer,
                "sources": self.sources,
                "answerer": self.answerer,
            },
        )
        return refresh

    def apply_in_transaction(
        self, transaction: firestore.Transaction, doc: firestore.DocumentReference
    ) -> bool:
        @firestore.transactional
        def run(transaction: firestore.Transaction) -> bool:
            # Read inside the transaction: two answers racing on one conversation get distinct seqs.
            snap = doc.get(transaction=transaction)
            data = snap.to_dict() if snap.exists else None
            if data is None or data.get("owner") != self.owner:
                raise ConversationNotFound(doc.id)
            return self.apply(transaction, doc, data)

        return run(transaction)


class ConversationStore:
    """Per-owner conversation repository. ``owner`` is ``user:<email>`` or ``bot:<bot_id>:<user>``."""

    def __init__(self, client: firestore.Client, retention_days: int) -> None:
        self._db = client
        self._col = client.collection(COLLECTION)
        self.retention_days = retention_days

    # --- helpers -------------------------------------------------------------------------------
    def _expiry(self, now: datetime) -> datetime | None:
        return now + timedelta(days=self.retention_days) if self.retention_days > 0 else None

    def _owned(self, owner: str, conversation_id: str) -> firestore.DocumentSnapshot:
        if not conversation_id or "/" in conversation_id or len(conversation_id) > 128:
            raise ConversationNotFound(conversation_id)
        snap = self._col.document(conversation_id).get()
        if not snap.exists or (snap.to_dict() or {}).get("owner") != owner:
            raise ConversationNotFound(conversation_id)
        return snap

    @staticmethod
    def _from_snapshot(snap: firestore.DocumentSnapshot) -> Conversation:
        data = snap.to_dict() or {}
        return Conversation(
            id=snap.id,
            owner=data["owner"],
            title=data.get("title", ""),
            created_at=data["created_at"],
            updated_at=data.get("updated_at", data["created_at"]),
        )

    # --- reads ---------------------------------------------------------------------------------
    def check_owner(self, owner: str, conversation_id: str) -> None:
        """Raise :class:`ConversationNotFound` unless ``owner`` owns this conversation (one read)."""
        self._owned(owner, conversation_id)

    def last_question(self, owner: str, conversation_id: str) -> str | None:
        """The conversation's latest question (one read); raises if ``owner`` does not own it."""
        data = self._owned(owner, conversation_id).to_dict() or {}
        return data.get("last_question")

    def list(self, owner: str, query: str = "", limit: int = LIST_LIMIT) -> list[Conversation]:
        """The owner's conversations, newest first; with ``query``, only those whose text contains it."""
        # Sorting in Python (not order_by) keeps this to a single-field index on ``owner``; one user's
        # history is small, and LIST_LIMIT bounds the reply.
        needle = " ".join(query.lower().split())
        found = []
        fields = ["owner", "title", "created_at", "updated_at"] + (["search_text"] if needle else [])
        query_ref = self._col.where(filter=firestore.FieldFilter("owner", "==", owner))
        # Project away search_text (up to 20 KB a conversation) unless this is a search.
        for snap in query_ref.select(fields).stream():
            data = snap.to_dict() or {}
            if (
                needle
                and needle not in data.get("search_text", "")
                and needle not in data.get("title", "").lower()
            ):
                continue
            found.append(self._from_snapshot(snap))
        found.sort(key=lambda c: c.updated_at, reverse=True)
        return found[:limit]

    def get(self, owner: str, conversation_id: str) -> Conversation:
        """One conversation with its messages, oldest first."""
        conv = self._from_snapshot(self._owned(owner, conversation_id))
        msgs = self._col.document(conversation_id).collection(MESSAGES).order_by("seq").stream()
        for snap in msgs:
            d = snap.to_dict() or {}
            conv.messages.append(
                Message(
                    role=d["role"],
                    text=d["text"],
                    created_at=d["created_at"],
                    sources=d.get("sources", []),
                    answerer=d.get("answerer"),
                )
            )
        return conv

    def recent_turns(self, owner: str, conversation_id: str, limit: int = 6) -> list[Message]:
        """The last ``limit`` messages (for context); raises if not owned."""
        self._owned(owner, conversation_id)
        col = self._col.document(conversation_id).collection(MESSAGES)
        snaps = list(col.order_by("seq", direction=firestore.Query.DESCENDING).limit(limit).stream())
        return [
            Message(role=d["role"], text=d["text"], created_at=d["created_at"])
            for d in reversed([s.to_dict() or {} for s in snaps])
        ]

    # --- writes --------------------------------------------------------------------------------
    def record_turn(
        self,
        owner: str,
        conversation_id: str | None,
        question: str,
        answer: str,
        sources: list[dict[str, Any]],
        answerer: str,
    ) -> str:
        """Append a question and its answer (a new conversation when ``conversation_id`` is None).

        Both messages and the conversation are written in one atomic commit: when this returns, the
        exchange is durable, so the caller may show it. Returns the conversation id.
        """
        now = datetime.now(UTC)
        expire = self._expiry(now)
        turn = _Turn(owner, now, expire, question, answer, sources, answerer)
        if conversation_id is None:
            # A new conversation needs no read: one batched commit (a bot question is always one).
            doc = self._col.document(uuid.uuid4().hex)
            batch = self._db.batch()
            turn.apply(batch, doc, None)
            batch.commit()
            return doc.id
        doc = self._col.document(conversation_id)
        if turn.apply_in_transaction(self._db.transaction(), doc) and expire is not None:
            self._refresh_message_expiry(doc, expire)
        return doc.id

    def _refresh_message_expiry(self, doc: firestore.DocumentReference, expire: datetime) -> None:
        for chunk in _chunks(doc.collection(MESSAGES).stream(), 400):
            batch = self._db.batch()
            for snap in chunk:
                batch.update(snap.reference, {"expire_at": expire})
            batch.commit()

    def delete(self, owner: str, conversation_id: str) -> None:
        """Delete one conversation and its messages."""
        self._owned(owner, conversation_id)
        self._delete_tree(self._col.document(conversation_id))

    def clear(self, owner: str) -> int:
        """Delete all of the owner's conversations; returns how many."""
        count = 0
        for snap in self._col.where(filter=firestore.FieldFilter("owner", "==", owner)).stream():
            self._delete_tree(snap.reference)
            count += 1
        return count

    def _delete_tree(self, doc: firestore.DocumentReference) -> None:
        # Messages first: if we stop half-way the conversation still lists and can be deleted again.
        for chunk in _chunks(doc.collection(MESSAGES).list_documents(), 400):
            batch = self._db.batch()
            for ref in chunk:
                batch.delete(ref)
            batch.commit()
        doc.delete()


def _chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def export(conversation: Conversation, fmt: str) -> tuple[str, str]:
    """``(body, mimetype)`` of a conversation exported as ``json`` or ``md``."""
    if fmt == "md":
        return conversation.to_markdown(), "text/markdown; charset=utf-8"
    return json.dumps(conversation.to_json(), ensure_ascii=False, indent=2), "application/json"
