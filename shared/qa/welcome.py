"""What the chat's welcome says about the index being served: its sources with page and chunk counts,
the last update, and starter questions made from its own section headings (:func:`knowledge_overview`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.qa.live_index import LiveIndex

log = logging.getLogger(__name__)

STARTER_LIMIT = 4
MIN_STARTERS = 3
_HEADING_CHARS = (3, 60)  # shorter says nothing; longer makes an unreadable button on a phone
# Headings that name a part of every page, not its subject: never offered as a starter question.
_GENERIC_HEADINGS = frozenset(
    {
        "overview",
        "introduction",
        "intro",
        "contents",
        "table of contents",
        "summary",
        "conclusion",
        "see also",
        "next steps",
        "related",
        "related pages",
        "references",
        "further reading",
        "feedback",
        "on this page",
        "navigation",
        "footer",
        "what's next",
        "notes",
    }
)
_QUESTION_WORDS = frozenset(
    {"how", "what", "why", "when", "where", "which", "who", "whom", "can", "could", "do", "does", "is"}
    | {"are", "should", "will"}
)
# "Telegram bots | Example Docs": the site's name after the separator is the same on every page.
_TITLE_SUFFIX = re.compile("\\s+[|\u00b7\u2014\u2013]\\s+.*$")  # bar, middle dot, em and en dash


@dataclass(frozen=True)
class SourceSummary:
    """One source of the served index. ``pages`` is None when the snapshot does not say."""

    name: str
    pages: int | None
    chunks: int


@dataclass(frozen=True)
class KnowledgeOverview:
    """What the chat's welcome state shows about the index being served."""

    state: str  # the index's state: "starting" | "empty" | "ready"
    sources: list[SourceSummary] = field(default_factory=list)
    updated_at: datetime | None = None  # when the served snapshot was published (else loaded)
    starters: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int | None:
        """Pages over every source, or None when any source's page count is unknown."""
        counts = [s.pages for s in self.sources]
        return None if not counts or any(c is None for c in counts) else sum(c or 0 for c in counts)

    @property
    def chunks(self) -> int:
        return sum(s.chunks for s in self.sources)


@dataclass(frozen=True)
class _Outline:
    pages_by_source: dict[str, int]
    sections: list[tuple[str, list[str]]]  # (page title, its section headings in page order)


_outlines: dict[tuple[str, datetime | None], _Outline] = {}
_outlines_lock = threading.Lock()


def knowledge_overview(live: LiveIndex, limit: int = STARTER_LIMIT) -> KnowledgeOverview:
    """Sources with page and chunk counts, the last update and up to ``limit`` starter questions.

    The index's outline (section headings, pages per source) is read once per loaded snapshot and
    cached: the chat's first page after a swap pays for it (a read of the chunk table), later ones not.
    """
    status = live.status()
    if status.state != "ready" or status.snapshot_id is None:
        return KnowledgeOverview(status.state)
    key = (status.snapshot_id, status.loaded_at)
    with _outlines_lock:
        outline = _outlines.get(key)
    if outline is None:
        from shared.qa.live_index import NoIndexYet

        try:
            # A swap between status() and lease() can file the newer snapshot's outline under the older
            # key: harmless, the next call (with the newer key) reads it again.
            with live.lease() as index:
                outline = _read_outline(index)
        except NoIndexYet:
            return KnowledgeOverview("starting")
        with _outlines_lock:
            if len(_outlines) >= 8:  # one entry per loaded snapshot; old ones are never asked for again
                _outlines.clear()
            _outlines[key] = outline
    manifest = status.manifest or {}
    pages_by_source = manifest.get("pages_by_source") or outline.pages_by_source
    sources = [
        SourceSummary(name, _int_or_none(pages_by_source.get(name)), int(chunks))
        for name, chunks in sorted(status.counts_by_source.items())
    ]
    updated = _parse_time(manifest.get("created_at")) or status.loaded_at
    return KnowledgeOverview("ready", sources, updated, starter_questions(outline.sections, limit))


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _read_outline(index: Any) -> _Outline:
    """Pages per source and every page's section headings, from the index's public reading API and
    the chunk table every snapshot carries (``shared.knowledge.chunktable``). Anything missing (an
    older snapshot, a stand-in index) only means fewer starters, never an error on the chat page."""
    pages_by_source: dict[str, int] = {}
    titles: dict[str, str] = {}
    try:
        records = index.pages()
        pages_by_source = dict(Counter(r.source for r in records.values()))
        titles = {url: r.title for url, r in records.items()}
    except Exception as exc:
        log.debug("no page records for the welcome (%s)", type(exc).__name__)
    headings: dict[str, list[str]] = {}
    for chunk in sorted(_chunks(index), key=lambda c: (c.url, c.position)):
        titles.setdefault(chunk.url, chunk.title)
        heading = section_heading(chunk.title, chunk.text)
        page = headings.setdefault(chunk.url, [])
        if heading and heading not in page:
            page.append(heading)
    sections = [(titles.get(url, ""), headings.get(url, [])) for url in sorted(titles)]
    return _Outline(pages_by_source, sections)


def _chunks(index: Any) -> list[Any]:
    try:
        from shared.knowledge import chunktable

        table = chunktable.load(index.path, index.embedder.id, index.chunk_count())
    except Exception as exc:
        log.debug("no chunk table for the welcome (%s)", type(exc).__name__)
        return []
    return table.chunks if table is not None else []


def section_heading(title: str, text: str) -> str | None:
    """The deepest heading of a chunk: chunks start with their heading path, ``Title > Section``
    (``shared.knowledge.chunker``). None for a chunk directly under the title or a truncated path."""
    from shared.knowledge.chunker import PATH_SEPARATOR

    if not title or not text.startswith(title) or "\n\n" not in text:
        return None
    head = text.split("\n\n", 1)[0]
    parts = head.split(PATH_SEPARATOR)
    if "\n" in head or len(parts) < 2:
        return None
    last = parts[-1].strip()
    return None if not last or last.endswith("…") else last


def starter_questions(pages: list[tuple[str, list[str]]], limit: int = STARTER_LIMIT) -> list[str]:
    """Up to ``limit`` questions made from section headings, taking one page's heading at a time so
    they cover several pages (pages with more sections first; ties by title: the same index always
    gives the same questions). Page titles fill in when there are fewer than three usable headings."""
    queues: list[tuple[str, list[str]]] = []
    for raw_title, headings in pages:
        title = _clean_title(raw_title)
        usable = [h for h in dict.fromkeys(h.strip() for h in headings) if _usable(h, title)]
        queues.append((title, usable))
    queues.sort(key=lambda q: (-len(q[1]), q[0].lower()))
    out: list[str] = []

    def add(question: str) -> None:
        if len(out) < limit and question.lower() not in {q.lower() for q in out}:
            out.append(question)

    depth = 0
    while len(out) < limit and any(depth < len(h) for _, h in queues):
        for title, headings in queues:
            if depth < len(headings):
                add(_as_question(headings[depth], title))
        depth += 1
    for title, _ in queues:
        if len(out) >= min(MIN_STARTERS, limit):
            break
        if title and _HEADING_CHARS[0] <= len(title) <= _HEADING_CHARS[1]:
            add(f"What does the {title} page cover?")
    return out


def _clean_title(title: str) -> str:
    title = " ".join((title or "").split())
    return _TITLE_SUFFIX.sub("", title) or title


def _usable(heading: str, title: str) -> bool:
    low = heading.lower().rstrip(":").strip()
    lo, hi = _HEADING_CHARS
    return (
        lo <= len(heading) <= hi
        and any(ch.isalpha() for ch in heading)
        and low not in _GENERIC_HEADINGS
        and low != title.lower()
    )


def _as_question(heading: str, title: str) -> str:
    """ "Rotating the token" on "Telegram bots" → "What should I know about rotating the token in
    Telegram bots?"; a heading that already asks ("How do I …") is kept as it is."""
    heading = heading.rstrip(".:!")
    if heading.endswith("?"):
        return heading
    if heading.split()[0].lower() in _QUESTION_WORDS:
        return heading + "?"
    first, _, rest = heading.partition(" ")
    # "Rotating" → "rotating", but "API", "GitBook" and "iOS" stay as written.
    if first[:1].isupper() and first[1:].islower():
        first = first.lower()
    phrase = f"{first} {rest}".strip()
    if title and title.lower() not in phrase.lower():
        return f"What should I know about {phrase} in {title}?"
    return f"What should I know about {phrase}?"
