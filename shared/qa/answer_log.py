"""Every answer served, kept for feedback and the gaps report: ``answers/{answer_id}``.

``/api/ask`` records each answer it returns (web and bots alike) after the conversation is written,
and returns its id as ``answer_id``. Votes (:mod:`shared.qa.feedback`) point at it and keep its
``up_votes`` / ``down_votes`` counters; the gaps report (:mod:`shared.qa.answer_rows`) reads it.

Identity. The answer id is derived from the conversation id, the question and the answer text
(:func:`answer_id`), so the chat page can name the answers of a conversation it reloads without a
lookup, and recording the same exchange twice writes one document. The record keeps the asker's owner key
(``asker``: ``user:<email>`` or ``bot:<bot id>:<platform user>``) for two things only: a web vote must
come from the asker, and clearing a history deletes the asker's records. Reports never read it.

Pages. ``cited_pages`` (and, for a refusal, ``closest_pages``) hold one string per page,
``"<source>\t<title>\t<url>"`` (:meth:`PageRef.packed`): the report reads 100,000 records, and one
array of strings per record decodes several times faster than parallel arrays of URLs, titles, sources.

Grouping vector. A refused or low-support answer (best cited passage under ``low_support_score``)
stores a vector of its question, made by the index's own embedder from the question's topic words
(:func:`topic_text`: question filler and the configured ignore words left out), as float16 bytes. A
record that becomes a gap later (a 👎) gets its vector then (:meth:`AnswerLog.ensure_vector`). The
report therefore embeds nothing for data recorded this way; grouping 100,000 questions would otherwise
mean minutes of embedding per view.

Queries without composite indexes. ``created_at`` (all traffic, a period) and ``bot_time`` (one bot's
or the web's traffic, a period: ``"<bot id>|<UTC time>"``, ``"|<time>"`` for the web, ordered as
strings) are single-field ranges, which Firestore indexes automatically.

Retention. ``expire_at`` = recorded + ``conversation_retention_days`` (none when 0), with a TTL
policy on ``answers`` (``infra/components/data.py``); reads treat an expired record as gone.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag

import numpy as np
from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.bots.platform_users import user_platform
from shared.qa.sources import SECTION_SEPARATOR  # how the API's source titles join page and headings
from shared.transactions import retry_aborted

if TYPE_CHECKING:
    from shared.qa.ask import AskResult

log = logging.getLogger(__name__)

ANSWERS = "answers"
VECTOR_DTYPE = np.float16
_ANSWER_ID = re.compile(r"[0-9a-f]{32}")
_WORD = re.compile(r"[\w'\u2019-]+")
# Words that make a question a question but say nothing about its topic. Short questions are mostly
# these, and left in they make "How do I delete my account?" and "How do I embed the chat?" look alike
# to the embedder (tests/test_gaps.py measures the difference on its labelled fixture).
_FILLER = (
    "a an the i we you it its my our your me us is are was be been do does did can could would should "
    "will shall may might must how what where when which who whom why there here this that these those "
    "to for in of on with and or at by from as into about any some please get use using want need "
    "hi hello thanks"
)
QUESTION_WORDS = frozenset(_FILLER.split())


def answer_id(conversation_id: str, question: str, answer: str) -> str:
    """The id of an answer: the same exchange in the same conversation always gets the same id."""
    raw = "\0".join(("answer", conversation_id, question, answer)).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def is_answer_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id :func:`answer_id` makes."""
    return bool(_ANSWER_ID.fullmatch(value))


def conversation_answer_ids(conversation_id: str, messages: Sequence[Any]) -> dict[int, str]:
    """Message index → answer id for each answer of a conversation (objects with ``role`` and ``text``,
    as :class:`shared.qa.conversations.Message`): the question is the message before it."""
    ids: dict[int, str] = {}
    for i, message in enumerate(messages):
        if message.role == "assistant" and i > 0 and messages[i - 1].role == "user":
            ids[i] = answer_id(conversation_id, messages[i - 1].text, message.text)
    return ids


def platform_of(user: str | None) -> str:
    """Where a question came from: ``web`` for a browser, else the platform a bot user key names
    (``telegram:42`` → ``telegram``: any platform of :mod:`shared.bots.platforms`); ``bot`` for a service
    caller's key of another shape."""
    if user is None:
        return "web"
    return user_platform(user) or "bot"


def topic_text(question: str, ignore_words: Collection[str] = ()) -> str:
    """The words of ``question`` that say what it is about, lower-cased: question filler
    (:data:`QUESTION_WORDS`) and ``ignore_words`` (say, the product's name) left out. The question itself
    when nothing is left."""
    ignore = {w.lower() for w in ignore_words}
    kept = [w for w in _WORD.findall(question.lower()) if w not in QUESTION_WORDS and w not in ignore]
    return " ".join(kept) or " ".join(question.split())


def source_links(sources: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The ``title`` and ``url`` of each cited source, as strings: all a record or a vote keeps of them
    (scores and passages are the retrieval's, not the answer's)."""
    return [{"title": str(s.get("title", "")), "url": str(s.get("url", ""))} for s in sources]


def page_url(url: str) -> str:
    """The page a cited URL points into: the URL without its ``#fragment``."""
    return urldefrag(url)[0]


def page_title(title: str) -> str:
    """The page's own title from a source title "Page > Section"."""
    return title.split(SECTION_SEPARATOR, 1)[0].strip()


def time_key(at: datetime) -> str:
    """A UTC time as a string that sorts like the time (fixed width, microseconds)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bot_time_key(bot_id: str | None, at: datetime) -> str:
    """The ``bot_time`` field: one bot's (or, with ``None``, the web's) records sort by time."""
    return f"{bot_id or ''}|{time_key(at)}"


@dataclass(frozen=True)
class PageRef:
    """A page an answer cites (or, for a refusal, names as the closest): where, what, which source."""

    url: str
    title: str
    source: str

    def packed(self) -> str:
        """How a record stores it: ``"<source>\t<title>\t<url>"`` (one string a report reads fast)."""
        return "\t".join((self.source, " ".join(self.title.split()), self.url))

    @classmethod
    def unpack(cls, value: str) -> PageRef:
        source, title, url = value.split("\t", 2)
        return cls(url, title, source)


def page_refs(items: Sequence[Mapping[str, Any]], source_of: Callable[[str], str]) -> list[PageRef]:
    """One :class:`PageRef` per page of API source dicts (``title``, ``url``), in their order."""
    seen: dict[str, PageRef] = {}
    for item in items:
        url = page_url(str(item.get("url") or ""))
        if url and url not in seen:
            seen[url] = PageRef(url, page_title(str(item.get("title") or "")) or url, source_of(url))
    return list(seen.values())


class QuestionVectors:
    """Questions → the vectors the gaps report groups them by: the index's embedder (loaded on first
    use, offline; the process already holds it for the index) over :func:`topic_text`, as float16."""

    def __init__(
        self,
        embedder: str,
        ignore_words: Collection[str] = (),
        loader: Callable[[str], Any] | None = None,
    ) -> None:
        self.embedder_id = embedder
        self.ignore_words = tuple(ignore_words)
        self._loader = loader

    def __call__(self, questions: Sequence[str]) -> np.ndarray:
        """One float16 row per question, unit length (before rounding)."""
        if self._loader is None:
            from shared.knowledge.embeddings import load_embedder

            self._loader = load_embedder
        embedder = self._loader(self.embedder_id)
        vectors = embedder.embed([topic_text(q, self.ignore_words) for q in questions])
        return np.asarray(vectors, dtype=np.float32).astype(VECTOR_DTYPE)


@dataclass
class AnswerRecord:
    """One stored answer (``answers/{id}``)."""

    id: str
    conversation_id: str
    asker: str
    question: str
    answer: str
    sources: list[dict[str, str]]
    answerer: str
    snapshot_id: str | None
    bot_id: str | None
    platform: str
    refused: bool
    top_score: float | None
    up_votes: int = 0
    down_votes: int = 0
    has_vector: bool = False
    created_at: datetime | None = None
    expire_at: datetime | None = None

    def facts(self) -> AnswerFacts:
        """What was asked and answered, as recorded (what a vote on it copies)."""
        return AnswerFacts(
            self.conversation_id,
            self.question,
            self.answer,
            list(self.sources),
            self.answerer,
            self.refused,
            snapshot_id=self.snapshot_id,
            bot_id=self.bot_id,
            platform=self.platform,
        )


@dataclass(frozen=True)
class AnswerFacts:
    """One exchange, apart from who asked: what :meth:`AnswerLog.document` stores and what a vote
    (:mod:`shared.qa.feedback`) copies, so the two cannot drift apart."""

    conversation_id: str
    question: str
    answer: str
    sources: list[dict[str, Any]]
    answerer: str
    refused: bool
    related: list[dict[str, Any]] = field(default_factory=list)
    snapshot_id: str | None = None
    bot_id: str | None = None
    platform: str = "web"

    @classmethod
    def from_result(
        cls,
        result: AskResult,
        question: str,
        snapshot_id: str | None,
        bot_id: str | None,
        platform: str,
    ) -> AnswerFacts:
        """The facts of an ``/api/ask`` result."""
        return cls(
            conversation_id=result.conversation_id,
            question=question,
            answer=result.answer,
            sources=result.sources,
            answerer=result.answerer,
            refused=result.refused,
            related=result.related,
            snapshot_id=snapshot_id,
            bot_id=bot_id,
            platform=platform,
        )

    @property
    def id(self) -> str:
        return answer_id(self.conversation_id, self.question, self.answer)

    def exchange_fields(self) -> dict[str, Any]:
        """The stored fields of the exchange itself, the same on an answer record and on every vote on
        it (a vote can be read without its record, which may have expired or been cleared)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "sources": source_links(self.sources),
            "answerer": self.answerer,
            "snapshot_id": self.snapshot_id,
            "bot_id": self.bot_id,
            "platform": self.platform,
        }

    @property
    def top_score(self) -> float | None:
        """The best cited passage's retrieval score; None when nothing is cited."""
        scores = [float(s["score"]) for s in self.sources if isinstance(s.get("score"), int | float)]
        return max(scores) if scores else None


def is_low_support(refused: bool, top_score: float | None, threshold: float) -> bool:
    """An answer that cites something, but nothing the retrieval was confident about."""
    return not refused and top_score is not None and top_score < threshold


class AnswerLog:
    """The ``answers`` collection."""

    def __init__(
        self,
        db: firestore.Client,
        retention_days: int,
        vectors: Callable[[Sequence[str]], np.ndarray] | None = None,
        *,
        low_support_score: float = 0.45,
        embedder_id: str = "",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = db
        self._col = db.collection(ANSWERS)
        self.retention_days = retention_days
        self._vectors = vectors
        self.low_support_score = low_support_score
        self.embedder_id = embedder_id or getattr(vectors, "embedder_id", "")
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def collection(self) -> firestore.CollectionReference:
        return self._col

    def expiry(self, now: datetime) -> datetime | None:
        """When a record (or a vote) written at ``now`` expires; None when retention is 0 (forever)."""
        return now + timedelta(days=self.retention_days) if self.retention_days > 0 else None

    def is_gap(self, refused: bool, top_score: float | None) -> bool:
        """Whether an answer belongs in the gaps report before anyone votes on it."""
        return refused or is_low_support(refused, top_score, self.low_support_score)

    def document(
        self,
        facts: AnswerFacts,
        asker: str,
        now: datetime,
        source_of: Callable[[str], str],
        vector: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """The stored fields of one answer (what :meth:`record` writes; ``bench/gaps.py`` writes the same)."""
        pages = page_refs(facts.sources, source_of)
        related = page_refs(facts.related, source_of)
        doc: dict[str, Any] = {
            "conversation_id": facts.conversation_id,
            "asker": asker,
            **facts.exchange_fields(),
            "refused": bool(facts.refused),
            "top_score": facts.top_score,
            "cited_pages": [p.packed() for p in pages],
            "closest_pages": [p.packed() for p in related],
            "created_at": now,
            "bot_time": bot_time_key(facts.bot_id, now),
        }
        expire = self.expiry(now)
        if expire is not None:
            doc["expire_at"] = expire
        if vector is not None:
            doc["vector"] = np.asarray(vector, dtype=VECTOR_DTYPE).tobytes()
            doc["embedder"] = self.embedder_id
        return doc

    def _vector_of(self, question: str) -> np.ndarray | None:
        if self._vectors is None:
            return None
        try:
            vector: np.ndarray = self._vectors([question])[0]
        except Exception:  # the report embeds what is missing; an answer is never lost over this
            log.warning("could not embed a question for the gaps report", exc_info=True)
            return None
        return vector

    def record(self, facts: AnswerFacts, asker: str, source_of: Callable[[str], str] | None = None) -> str:
        """Store one answer; returns its id. Recording the same exchange again rewrites its fields and
        keeps its vote counters (so ``created_at`` becomes the last time it was answered)."""
        now = self._clock()
        vector = self._vector_of(facts.question) if self.is_gap(facts.refused, facts.top_score) else None
        doc = self.document(facts, asker, now, source_of or (lambda url: ""), vector)
        # The same answer asked again is the same document, which a vote's transaction may hold.
        retry_aborted(lambda: self._col.document(facts.id).set(doc, merge=True))
        return facts.id

    def discard(self, answer_id: str) -> None:
        """Delete a record whose answer was never handed out, so nobody can have voted on it."""
        retry_aborted(self._col.document(answer_id).delete)

    def get(self, answer_id: str) -> AnswerRecord | None:
        """The record, or None: unknown, malformed id, or expired (TTL may not have deleted it yet)."""
        if not is_answer_id(answer_id):
            return None
        snap = self._col.document(answer_id).get()
        if not snap.exists:
            return None
        data = snap.to_dict() or {}
        expire = data.get("expire_at")
        if isinstance(expire, datetime) and expire <= self._clock():
            return None
        return record_from(answer_id, data)

    def ensure_vector(self, record: AnswerRecord) -> None:
        """Give a record that has just become a gap (a 👎) its grouping vector, if it has none."""
        if record.has_vector:
            return
        vector = self._vector_of(record.question)
        if vector is None:
            return
        fields = {"vector": np.asarray(vector, dtype=VECTOR_DTYPE).tobytes(), "embedder": self.embedder_id}
        try:
            # A vote's transaction on the same answer may hold its lock (the 👍 beside this 👎).
            retry_aborted(lambda: self._col.document(record.id).update(fields))
        except gexc.NotFound:  # deleted meanwhile (its asker cleared their history)
            return
        record.has_vector = True


def record_from(answer_id: str, data: Mapping[str, Any]) -> AnswerRecord:
    """An :class:`AnswerRecord` from a stored document."""
    score = data.get("top_score")
    return AnswerRecord(
        id=answer_id,
        conversation_id=str(data.get("conversation_id", "")),
        asker=str(data.get("asker", "")),
        question=str(data.get("question", "")),
        answer=str(data.get("answer", "")),
        sources=source_links([s for s in data.get("sources") or [] if isinstance(s, dict)]),
        answerer=str(data.get("answerer", "")),
        snapshot_id=data.get("snapshot_id"),
        bot_id=data.get("bot_id") or None,
        platform=str(data.get("platform") or "web"),
        refused=bool(data.get("refused", False)),
        top_score=float(score) if isinstance(score, int | float) else None,
        up_votes=int(data.get("up_votes", 0) or 0),
        down_votes=int(data.get("down_votes", 0) or 0),
        has_vector=bool(data.get("vector")),
        created_at=data.get("created_at"),
        expire_at=data.get("expire_at"),
    )
