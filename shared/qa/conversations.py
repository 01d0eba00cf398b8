"""Conversations in Firestore, isolated per owner.

Layout (docs/architecture.md): ``conversations/{id}`` holds ``owner``, ``title``, ``created_at``,
``updated_at``, ``message_count``, ``expire_at``, ``messages_expire_at`` and a lower-cased
``search_text``; its ``messages`` sub-collection holds one document per question or answer (id and
``seq`` = 0, 1, 2, ...). Every read and write checks ``owner``: a conversation that belongs to somebody
else is indistinguishable from one that does not exist (:class:`ConversationNotFound`).

History is paged in Firestore (:meth:`ConversationStore.page`): ``owner ==``, ordered by ``updated_at``
then document id, both descending, ``limit(n + 1)`` and an opaque cursor (``start_after``). That query
needs the composite index ``conversations: owner ASC, updated_at DESC, __name__ DESC``. A search scans at
most :data:`SEARCH_SCAN_LIMIT` conversations per call (newest first, ``search_text`` projected in) and
returns a cursor to scan the next ones, so no request reads an unbounded number of documents.

Retention. Firestore TTL deletes each document on its own, at any time after its ``expire_at`` (usually
within a day), and never deletes a parent's sub-collection; so messages carry their own ``expire_at``.
A conversation must never show a truncated history, which this guarantees:

1. The conversation's ``expire_at`` is its last activity + ``retention_days``.
2. Invariant: every message's ``expire_at`` is at or after its conversation's ``expire_at``. Messages
   are stamped with last activity + retention + :func:`message_slack` (half the retention, at most 7
   days), and the conversation keeps a lower bound of its messages' expiries in
   ``messages_expire_at``. When an append would move the conversation's expiry past that bound, every
   message is re-stamped first (batched commits), and only then does the append's transaction extend the
   conversation (it re-reads the bound and any message written meanwhile). A crash in between leaves
   messages living longer, never shorter.
3. Reads treat a conversation as gone once ``expire_at`` or ``messages_expire_at`` has passed (TTL may be
   deleting its documents in any order from then on), and :meth:`ConversationStore.get` treats one
   whose messages are not exactly ``seq`` 0..n-1 (written by older code) as gone too.

Cost: an append is 3 writes; a full re-stamp (one write per message) happens at most once per slack
period of activity on a conversation. Re-stamping on every append would be O(n) writes per question;
keeping ``expire_at`` on the conversation alone would need a sweeper for the orphaned messages (TTL
does not cascade); hiding on read alone would make an active conversation vanish. The price of the
slack: messages outlive their conversation's TTL by at most the slack; nothing can read them (every read
goes through the owned parent) and TTL deletes them then.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.key_prefixes import starts_with
from shared.request_input import is_document_id
from shared.transactions import BATCH_WRITES, delete_all, retry_aborted, run_transaction

COLLECTION = "conversations"
MESSAGES = "messages"
TITLE_CHARS = 80
SEARCH_TEXT_CHARS = 20_000  # cap so a long conversation never nears Firestore's 1 MiB document limit
PAGE_SIZE = 50  # default history page
MAX_PAGE_SIZE = 200
SEARCH_SCAN_LIMIT = 200  # conversations one search call reads at most (each up to ~20 KB)
SNIPPET_CONTEXT = 60  # characters either side of a search match shown in the history
MAX_SLACK = timedelta(days=7)
# A re-stamped bound is recorded this much lower than the stamp: two refreshers racing on one
# conversation (clocks and durations differ by seconds) can never make it overestimate.
REFRESH_MARGIN = timedelta(hours=1)
REFRESH_ATTEMPTS = 5
_LIST_FIELDS = ["owner", "title", "created_at", "updated_at", "expire_at", "messages_expire_at"]


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
    snippet: str | None = None  # a search result's matching text (lower-cased, like search_text)

    def summary(self) -> dict[str, Any]:
        """The JSON shape of a history-list entry (with ``snippet`` when it is a search result)."""
        return {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            **({"snippet": self.snippet} if self.snippet else {}),
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


class InvalidTitle(ValueError):
    """A new title that is empty or longer than :data:`TITLE_CHARS`; the message says which."""


def clean_title(title: str) -> str:
    """A title as stored: whitespace collapsed, 1..:data:`TITLE_CHARS` characters, else InvalidTitle."""
    text = " ".join(title.split())
    if not text:
        raise InvalidTitle("the title is empty")
    if len(text) > TITLE_CHARS:
        raise InvalidTitle(f"the title is longer than {TITLE_CHARS} characters")
    return text


def match_snippet(text: str, needle: str, context: int = SNIPPET_CONTEXT) -> str | None:
    """About ``context`` characters either side of the first ``needle`` in ``text``, cut at word
    boundaries, with "…" where text was left out; None when it does not occur."""
    flat = " ".join(text.split())
    at = flat.find(needle)
    if not needle or at < 0:
        return None
    start, end = max(0, at - context), min(len(flat), at + len(needle) + context)
    if start > 0 and " " in flat[start:at]:
        start = flat.index(" ", start) + 1
    if end < len(flat) and " " in flat[at + len(needle) : end]:
        end = flat.rindex(" ", at + len(needle), end)
    return ("…" if start > 0 else "") + flat[start:end] + ("…" if end < len(flat) else "")


def message_slack(retention_days: int) -> timedelta:
    """How much longer than their conversation messages are stamped to live (see the module doc)."""
    return min(timedelta(days=retention_days) / 2, MAX_SLACK)


class InvalidCursor(ValueError):
    """A history cursor this store did not issue."""


@dataclass
class HistoryPage:
    """One page of history: ``next_cursor`` is None when there is nothing older to read."""

    items: list[Conversation]
    next_cursor: str | None


def _encode_cursor(snap: firestore.DocumentSnapshot[Any]) -> str:
    updated = (snap.to_dict() or {})["updated_at"]
    raw = json.dumps([updated.isoformat(), snap.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_iso, doc_id = json.loads(raw)
        updated = datetime.fromisoformat(updated_iso)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidCursor("bad cursor") from exc
    # The id goes into the query's start_after: one Firestore refuses would fail the whole page.
    if not is_document_id(doc_id) or updated.tzinfo is None:
        raise InvalidCursor("bad cursor")
    return {"updated_at": updated, "__name__": doc_id}


def _expired(data: dict[str, Any], now: datetime) -> bool:
    """True once TTL may be deleting this conversation or any of its messages."""
    return any(data.get(key) is not None and data[key] <= now for key in ("expire_at", "messages_expire_at"))


def _min_expiry(values: Iterable[datetime | None]) -> datetime | None:
    """The earliest of some expiries; None (never expires) only when none of them expires."""
    present = [v for v in values if v is not None]
    return min(present) if present else None


@dataclass
class _Refresh:
    """Every message with ``seq < covered`` was re-stamped to ``expire`` (None: expiry removed)."""

    covered: int
    expire: datetime | None


class _NeedsRefresh(Exception):
    """The append would let the conversation outlive some message: re-stamp the messages first."""


@dataclass
class _Turn:
    """One question + answer about to be written, and how to write it onto a conversation."""

    owner: str
    now: datetime
    expire: datetime | None  # the conversation's new expire_at
    message_expire: datetime | None  # the new messages' expire_at (later by the slack)
    question: str
    answer: str
    sources: list[dict[str, Any]]
    answerer: str

    def apply(
        self,
        writer: Any,
        doc: firestore.DocumentReference,
        data: dict[str, Any] | None,
        bound: datetime | None = None,
    ) -> None:
        """Stage the writes on a batch or transaction; ``data`` is the existing conversation or None.

        ``bound``: the lower bound of the existing messages' expiries (None: none of them expires).
        The caller has checked that it is not before ``expire``.
        """
        seq = int(data.get("message_count", 0)) if data else 0
        previous = data.get("search_text", "") if data else ""
        new_bound = _min_expiry([bound, self.message_expire])
        fields: dict[str, Any] = {
            "updated_at": self.now,
            "message_count": seq + 2,
            "last_question": self.question,
            "search_text": (previous + "\n" + self.question + "\n" + self.answer).lower()[
                -SEARCH_TEXT_CHARS:
            ],
            "expire_at": self.expire if self.expire is not None else firestore.DELETE_FIELD,
            "messages_expire_at": new_bound if new_bound is not None else firestore.DELETE_FIELD,
        }
        if data is None:
            fields = {k: v for k, v in fields.items() if v is not firestore.DELETE_FIELD}
            writer.create(
                doc, fields | {"owner": self.owner, "title": _title(self.question), "created_at": self.now}
            )
        else:
            writer.update(doc, fields)
        messages = doc.collection(MESSAGES)
        base: dict[str, Any] = {"created_at": self.now}
        if self.message_expire is not None:
            base["expire_at"] = self.message_expire
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

    def needs_refresh(self, bound: datetime | None) -> bool:
        """Would this append leave a message expiring before the conversation?"""
        if bound is None:
            return False  # no message expires
        return self.expire is None or bound < self.expire

    def append_in_transaction(
        self,
        client: firestore.Client,
        doc: firestore.DocumentReference,
        refreshed: _Refresh | None,
    ) -> None:
        """Append to an existing conversation in one transaction; raises :class:`_NeedsRefresh` before
        writing anything when the messages must be re-stamped first."""

        def run(transaction: firestore.Transaction) -> None:
            # Read inside the transaction: two answers racing on one conversation get distinct seqs.
            snap = doc.get(transaction=transaction)
            data = snap.to_dict() if snap.exists else None
            if data is None or data.get("owner") != self.owner or _expired(data, self.now):
                raise ConversationNotFound(doc.id)
            bound = data.get("messages_expire_at")
            if bound is None and data.get("expire_at") is not None:
                bound = data["expire_at"]  # unknown (older data): assume the worst
            if refreshed is not None:
                # Messages written since the re-stamp began carry their writer's expiry: read them.
                later = doc.collection(MESSAGES).where(
                    filter=firestore.FieldFilter("seq", ">=", refreshed.covered)
                )
                stamped = refreshed.expire - REFRESH_MARGIN if refreshed.expire is not None else None
                bound = _min_expiry(
                    [stamped] + [(s.to_dict() or {}).get("expire_at") for s in transaction.get(later)]
                )
            if self.needs_refresh(bound):
                raise _NeedsRefresh(doc.id)
            self.apply(transaction, doc, data, bound)

        run_transaction(client, run)


class ConversationStore:
    """Per-owner conversation repository. ``owner`` is ``user:<email>`` or ``bot:<bot_id>:<user>``."""

    def __init__(
        self,
        client: firestore.Client,
        retention_days: int,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = client
        self._col = client.collection(COLLECTION)
        self.retention_days = retention_days
        self._clock = clock or (lambda: datetime.now(UTC))

    # --- helpers -------------------------------------------------------------------------------
    def _expiry(self, now: datetime) -> datetime | None:
        return now + timedelta(days=self.retention_days) if self.retention_days > 0 else None

    def _message_expiry(self, now: datetime) -> datetime | None:
        expire = self._expiry(now)
        return expire + message_slack(self.retention_days) if expire is not None else None

    def _owned(self, owner: str, conversation_id: str) -> firestore.DocumentSnapshot[Any]:
        # An id no conversation can have ("..", "__x__", "a/b") is unknown: Firestore would refuse it.
        if not is_document_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        snap = self._col.document(conversation_id).get()
        data = (snap.to_dict() or {}) if snap.exists else {}
        if data.get("owner") != owner or _expired(data, self._clock()):
            raise ConversationNotFound(conversation_id)
        return snap

    @staticmethod
    def _from_snapshot(snap: firestore.DocumentSnapshot[Any]) -> Conversation:
        data = snap.to_dict() or {}
        return Conversation(
            id=snap.id,
            owner=data["owner"],
            title=data.get("title", ""),
            created_at=data["created_at"],
            updated_at=data.get("updated_at", data["created_at"]),
        )

    # --- reads ---------------------------------------------------------------------------------
    def exists(self, owner: str, conversation_id: str) -> bool:
        """Whether ``owner``'s conversation is still there (one read): not deleted, not expired."""
        try:
            self._owned(owner, conversation_id)
        except ConversationNotFound:
            return False
        return True

    def last_question(self, owner: str, conversation_id: str) -> str | None:
        """The conversation's latest question (one read); raises if ``owner`` does not own it."""
        data = self._owned(owner, conversation_id).to_dict() or {}
        return data.get("last_question")

    def page(
        self, owner: str, query: str = "", limit: int = PAGE_SIZE, cursor: str | None = None
    ) -> HistoryPage:
        """One page of the owner's conversations, newest first, starting after ``cursor``.

        Without ``query`` it reads at most ``limit + 1`` documents. With ``query`` it keeps those whose
        title or text contains it, reading at most :data:`SEARCH_SCAN_LIMIT` + 1 documents: the page may
        then hold fewer than ``limit`` (even none) with a ``next_cursor`` to scan further. Conversations
        whose retention has run out are skipped, so a page may be short. Raises :class:`InvalidCursor`.
        """
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        needle = " ".join(query.lower().split())
        scan = SEARCH_SCAN_LIMIT if needle else limit
        ordered = (
            self._col.where(filter=firestore.FieldFilter("owner", "==", owner))
            .order_by("updated_at", direction=firestore.Query.DESCENDING)
            .order_by("__name__", direction=firestore.Query.DESCENDING)
        )
        if cursor:
            ordered = ordered.start_after(_decode_cursor(cursor))
        # Project away search_text (up to 20 KB a conversation) unless this is a search.
        fields = _LIST_FIELDS + (["search_text"] if needle else [])
        now = self._clock()
        items: list[Conversation] = []
        scanned, last, more = 0, None, False
        for snap in ordered.select(fields).limit(scan + 1).stream():
            if scanned == scan or len(items) == limit:
                more = True  # a further document exists
                break
            scanned, last = scanned + 1, snap
            data = snap.to_dict() or {}
            if _expired(data, now):
                continue
            if (
                needle
                and needle not in data.get("search_text", "")
                and needle not in data.get("title", "").lower()
            ):
                continue
            conv = self._from_snapshot(snap)
            if needle and needle not in conv.title.lower():
                # The title shows why a title match matched; anything else gets the text around it.
                conv.snippet = match_snippet(data.get("search_text", ""), needle)
            items.append(conv)
        return HistoryPage(items, _encode_cursor(last) if more and last is not None else None)

    def list(self, owner: str, query: str = "", limit: int = PAGE_SIZE) -> list[Conversation]:
        """The first page of :meth:`page` (bounded: never the whole history)."""
        return self.page(owner, query, limit).items

    def get(self, owner: str, conversation_id: str) -> Conversation:
        """One conversation with its messages, oldest first.

        A conversation missing any message (``seq`` not exactly 0..n-1) is reported as not found:
        never a truncated history.
        """
        snap = self._owned(owner, conversation_id)
        conv = self._from_snapshot(snap)
        count = int((snap.to_dict() or {}).get("message_count", 0))
        msgs = self._col.document(conversation_id).collection(MESSAGES).order_by("seq").stream()
        for i, msg in enumerate(msgs):
            d = msg.to_dict() or {}
            if d.get("seq") != i:
                raise ConversationNotFound(conversation_id)
            conv.messages.append(
                Message(
                    role=d["role"],
                    text=d["text"],
                    created_at=d["created_at"],
                    sources=d.get("sources", []),
                    answerer=d.get("answerer"),
                )
            )
        if len(conv.messages) < count:  # the newest ones are gone
            raise ConversationNotFound(conversation_id)
        return conv

    def recent_turns(self, owner: str, conversation_id: str, limit: int = 6) -> builtins.list[Message]:
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
        sources: builtins.list[dict[str, Any]],
        answerer: str,
    ) -> str:
        """Append a question and its answer (a new conversation when ``conversation_id`` is None).

        Both messages and the conversation are written in one atomic commit: when this returns, the
        exchange is durable, so the caller may show it. Returns the conversation id.
        """
        now = self._clock()
        turn = _Turn(
            owner, now, self._expiry(now), self._message_expiry(now), question, answer, sources, answerer
        )
        if conversation_id is None:
            # A new conversation needs no read: one batched commit (a bot question is always one).
            doc = self._col.document(uuid.uuid4().hex)
            batch = self._db.batch()
            turn.apply(batch, doc, None)
            batch.commit()
            new_id: str = doc.id
            return new_id
        if not is_document_id(conversation_id):
            raise ConversationNotFound(conversation_id)
        doc = self._col.document(conversation_id)
        refreshed: _Refresh | None = None
        for _ in range(REFRESH_ATTEMPTS):
            try:
                turn.append_in_transaction(self._db, doc, refreshed)
                appended_id: str = doc.id
                return appended_id
            except _NeedsRefresh:
                refreshed = self._refresh_message_expiry(owner, doc, turn.message_expire)
        raise RuntimeError(f"conversation {doc.id}: message expiry kept changing; not appended")

    def _refresh_message_expiry(
        self, owner: str, doc: firestore.DocumentReference, expire: datetime | None
    ) -> _Refresh:
        """Re-stamp every message's ``expire_at`` (None: remove it), in batched commits."""
        snap = doc.get()
        data = snap.to_dict() if snap.exists else None
        if data is None or data.get("owner") != owner or _expired(data, self._clock()):
            raise ConversationNotFound(doc.id)
        # Every message with seq < covered was committed with this count, so the query below sees it.
        covered = int(data.get("message_count", 0))
        value = expire if expire is not None else firestore.DELETE_FIELD
        refs = (s.reference for s in doc.collection(MESSAGES).select(["seq"]).stream())
        try:
            for chunk in _chunks(refs, BATCH_WRITES):
                batch = self._db.batch()
                for ref in chunk:
                    batch.update(ref, {"expire_at": value})
                # A turn appended meanwhile holds these messages' locks (read in its transaction).
                retry_aborted(batch.commit)
        except gexc.NotFound as exc:  # deleted meanwhile (by its owner, or by TTL)
            raise ConversationNotFound(doc.id) from exc
        return _Refresh(covered, expire)

    def rename(self, owner: str, conversation_id: str, title: str) -> Conversation:
        """Give ``owner``'s conversation a new title (see :func:`clean_title`); returns it renamed.

        Raises :class:`InvalidTitle` or :class:`ConversationNotFound` (not the owner's, expired,
        deleted meanwhile). ``updated_at`` is left alone: renaming does not move it up the history.
        """
        new_title = clean_title(title)
        snap = self._owned(owner, conversation_id)
        try:
            # Not one transaction with the owner check, and need not be: a conversation's owner never
            # changes, and update() fails on a conversation deleted in between instead of recreating it.
            retry_aborted(lambda: snap.reference.update({"title": new_title}))
        except gexc.NotFound as exc:
            raise ConversationNotFound(conversation_id) from exc
        conv = self._from_snapshot(snap)
        conv.title = new_title
        return conv

    def delete(self, owner: str, conversation_id: str) -> None:
        """Delete one conversation and its messages, and its answers' feedback records (so its questions
        leave the gaps report: :func:`shared.qa.feedback.forget_owner`)."""
        from shared.qa.feedback import forget_owner

        self._owned(owner, conversation_id)
        self._delete_tree(self._col.document(conversation_id))
        forget_owner(self._db, owner, conversation_id)

    def owners_under(self, prefix: str) -> set[str]:
        """The owners of conversations whose owner key starts with ``prefix`` (a range on one field:
        Firestore's automatic index serves it)."""
        owned = starts_with(self._col, "owner", prefix).select(["owner"])
        return {snap.get("owner") for snap in owned.stream()}

    def clear(self, owner: str) -> int:
        """Delete all of the owner's conversations, their answers' feedback records and the owner's
        votes (:func:`shared.qa.feedback.forget_owner`); returns how many conversations."""
        from shared.qa.feedback import forget_owner

        count = 0
        owned = self._col.where(filter=firestore.FieldFilter("owner", "==", owner)).select(["owner"])
        for snap in owned.stream():
            self._delete_tree(snap.reference)
            count += 1
        forget_owner(self._db, owner)
        return count

    def _delete_tree(self, doc: firestore.DocumentReference) -> None:
        # Messages first: if we stop half-way the conversation still lists and can be deleted again.
        self._delete_messages(doc)
        retry_aborted(doc.delete)
        # And once more after it: a turn whose transaction read the conversation before it went may
        # have committed two messages the first pass did not list. A later turn finds no conversation.
        self._delete_messages(doc)

    def _delete_messages(self, doc: firestore.DocumentReference) -> None:
        delete_all(self._db, doc.collection(MESSAGES).list_documents())


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
