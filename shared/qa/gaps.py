"""The gaps report: what users asked that the docs don't answer, grouped by similar question.

Input: the answer records of a period (:mod:`shared.qa.answer_log`), optionally of one source and one
bot. A record is a *gap* when it was refused, when its best cited passage scored under
``gaps_low_support_score`` (low support), or when it got a 👎. Gaps are grouped by similar question
(:func:`group_vectors` over the vectors stored with them); each group has its count, examples, the pages
cited (and, for refusals, the closest pages), and first/last seen. Every answer of the period counts
for the page table: how often each page is cited, and the share of those answers that got a 👎.

Who sees what (:class:`GapsService`): an admin sees all traffic (web and every bot); anyone else sees
only the traffic of the bots they own, and nobody else gets a report. Rows carry no identity: the reader
never selects the asker, votes are not read at all, and bot ids are only used as a filter.

Grouping (:func:`group_vectors`): a leader clustering with centroids, made insensitive to the order
rows arrive in by seeding: the first pass over a sample (at most :data:`SEED_SAMPLE` rows) finds groups;
the sample is then clustered again in the order "largest group first, its most central row first", and
those centroids seed one blocked pass over every row (a block of rows is compared with all centroids in
one matrix product; a row close to none starts a group, up to :data:`MAX_GROUPS`). When every row was in
the sample, a last pass moves each row to its nearest final centroid. Cost: one product of (rows x
groups x 384) beyond the sample's; memory: the float16 vectors plus one block of similarities.
``tests/test_gaps.py`` measures purity and group count on a labelled fixture; ``bench/gaps.py`` the
time and memory at 100,000 rows.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from typing import Any

import numpy as np
from google.cloud import firestore

from shared.qa.answer_log import ANSWERS, VECTOR_DTYPE, PageRef, bot_time_key

BOTS = "bots"
SEED_SAMPLE = 4096  # rows clustered twice to seed the full pass
MAX_GROUPS = 2000  # beyond this many groups, a row close to none stays on its own ("ungrouped")
BLOCK = 4096  # rows compared with the centroids in one matrix product
EXAMPLES = 3  # example questions per group
GROUP_PAGES = 5  # pages listed per group
DEFAULT_DAYS = 30
MAX_DAYS = 366
REPORT_GROUPS = 50  # groups a report lists (the CLI can ask for more)
REPORT_PAGES = 50
WEB = "web"  # the bot filter's value for the web chat's traffic (no bot)
_FIELDS = [
    "question",
    "created_at",
    "refused",
    "top_score",
    "down_votes",
    "cited_pages",
    "closest_pages",
    "vector",
    "expire_at",
]
_BOT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SPACES = re.compile(r"\s+")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


# --- grouping (pure) ------------------------------------------------------------------------------------
def _add_rows(sums: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
    """``sums[labels[i]] += rows[i]`` for every i (``np.add.at``, but one sort and one ``reduceat``)."""
    if not len(labels):
        return
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sums[ordered[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def _normalized(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = rows / np.maximum(norms, 1e-12)
    return unit


class _Leader:
    """Centroids of groups built row by row: a row joins the most similar centroid if its cosine is at
    least ``threshold``, else starts a group (while there is room)."""

    def __init__(self, dim: int, threshold: float, max_groups: int, seeds: np.ndarray | None = None) -> None:
        self.threshold = threshold
        self.max_groups = max_groups
        self.sums = np.zeros((max_groups, dim), dtype=np.float32)
        self.unit = np.zeros((max_groups, dim), dtype=np.float32)
        self.k = 0
        if seeds is not None and len(seeds):
            self.k = min(len(seeds), max_groups)
            self.unit[: self.k] = _normalized(seeds[: self.k].astype(np.float32))

    def run(self, vectors: np.ndarray, order: np.ndarray, weights: np.ndarray, block: int) -> np.ndarray:
        labels = np.full(len(vectors), -1, dtype=np.int64)
        for start in range(0, len(order), block):
            idx = order[start : start + block]
            rows = vectors[idx].astype(np.float32)
            w = weights[idx]
            matched = np.zeros(len(idx), dtype=bool)
            if self.k:
                sims = rows @ self.unit[: self.k].T
                best = sims.argmax(axis=1)
                matched = sims[np.arange(len(idx)), best] >= self.threshold
                labels[idx[matched]] = best[matched]
                _add_rows(self.sums, best[matched], rows[matched] * w[matched, None])
                touched = np.unique(best[matched])
            else:
                touched = np.empty(0, dtype=np.int64)
            first_new = self.k
            for i in np.flatnonzero(~matched):
                labels[idx[i]] = self._place(rows[i], float(w[i]), first_new)
            changed = np.union1d(touched, np.arange(first_new, self.k))
            if len(changed):
                self.unit[changed] = _normalized(self.sums[changed])
        return labels

    def _place(self, row: np.ndarray, weight: float, first_new: int) -> int:
        # Only groups started in this block can take the row: the older ones were just compared.
        if self.k > first_new:
            sims = self.unit[first_new : self.k] @ row
            j = int(sims.argmax())
            if sims[j] >= self.threshold:
                self.sums[first_new + j] += row * weight
                self.unit[first_new + j] = _normalized(self.sums[first_new + j : first_new + j + 1])[0]
                return first_new + j
        if self.k == self.max_groups:
            return -1
        self.sums[self.k] = row * weight
        self.unit[self.k] = _normalized(row[None, :])[0]
        self.k += 1
        return self.k - 1

    def centroids(self) -> np.ndarray:
        return self.unit[: self.k]


def _central_order(vectors: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows of the largest group first, each group's most central row first."""
    valid = labels >= 0
    safe = np.where(valid, labels, 0)
    k = int(safe.max()) + 1 if len(safe) else 0
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float32)
    _add_rows(sums, safe[valid], vectors[valid].astype(np.float32) * weights[valid, None])
    unit = _normalized(sums)
    sizes = np.bincount(safe[valid], weights=weights[valid], minlength=k)
    central = np.einsum("ij,ij->i", vectors.astype(np.float32), unit[safe])
    size = np.where(valid, sizes[safe], 0.0)
    return np.lexsort((-central, -size))


def _nearest(vectors: np.ndarray, centroids: np.ndarray, block: int) -> np.ndarray:
    labels = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block].astype(np.float32) @ centroids.T
        labels[start : start + block] = sims.argmax(axis=1)
    return labels


def group_vectors(
    vectors: np.ndarray,
    threshold: float,
    weights: np.ndarray | None = None,
    *,
    max_groups: int = MAX_GROUPS,
    sample: int = SEED_SAMPLE,
    block: int = BLOCK,
) -> np.ndarray:
    """A group label 0..k-1 for each row of ``vectors`` (unit rows, float16 or float32), similar rows
    together; ``threshold`` is the cosine a row needs with a group's centroid to join it. ``weights``
    (default 1) count a row that stands for several identical questions. Deterministic."""
    n = len(vectors)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    w = np.ones(n, dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
    dim = vectors.shape[1]
    # Seeds: the sample clustered in arrival order, then again largest-and-most-central first.
    picked = np.unique(np.linspace(0, n - 1, num=min(n, sample)).astype(np.int64))
    seed_vectors, seed_weights = vectors[picked], w[picked]
    first = _Leader(dim, threshold, max_groups).run(seed_vectors, np.arange(len(picked)), seed_weights, block)
    second = _Leader(dim, threshold, max_groups)
    second.run(seed_vectors, _central_order(seed_vectors, first, seed_weights), seed_weights, block)
    full = _Leader(dim, threshold, max_groups, seeds=second.centroids())
    labels = full.run(vectors, np.arange(n), w, block)
    # Final pass, while the rows are few (all of them were in the sample): each grouped row to its
    # nearest final centroid. With more rows the sample's centroids have settled the groups already, and
    # another product of every row with every centroid would cost a third of the time (bench/gaps.py).
    grouped = labels >= 0
    if grouped.any() and n <= sample:
        sums = full.sums[: full.k]
        live = np.flatnonzero(np.linalg.norm(sums, axis=1) > 0)
        nearest = live[_nearest(vectors, _normalized(sums[live]), block)]
        labels[grouped] = nearest[grouped]
    # Rows left over once MAX_GROUPS was reached are groups of their own.
    loose = np.flatnonzero(~grouped)
    labels[loose] = (int(labels.max()) + 1 if grouped.any() else 0) + np.arange(len(loose))
    _, compact = np.unique(labels, return_inverse=True)
    return np.asarray(compact.reshape(-1), dtype=np.int64)


def normalize_question(question: str) -> str:
    """A question as compared for "the same question": lower-cased, spaces collapsed, no end marks."""
    return _SPACES.sub(" ", question.lower()).strip().rstrip("?!. ")


# --- the rows a report is made of -----------------------------------------------------------------------
@dataclass(frozen=True)
class PageInfo:
    url: str
    title: str
    source: str


class PageTable:
    """Pages interned: rows refer to them by number. A page is its URL; its title and source are the
    first seen."""

    def __init__(self) -> None:
        self.pages: list[PageInfo] = []
        self._index: dict[str, int] = {}
        self._packed: dict[str, int] = {}

    def intern(self, url: str, title: str, source: str) -> int:
        at = self._index.get(url)
        if at is None:
            at = self._index[url] = len(self.pages)
            self.pages.append(PageInfo(url, title or url, source))
        return at

    def intern_packed(self, value: str) -> int:
        """:meth:`intern` of a stored ``"<source>\t<title>\t<url>"``."""
        at = self._packed.get(value)
        if at is None:
            ref = PageRef.unpack(value)
            at = self._packed[value] = self.intern(ref.url, ref.title, ref.source)
        return at


@dataclass
class AnswerRows:
    """The answers of a report, column by column. Vectors are packed into one buffer as they are read
    (``vector_slot[i]``: the row's place in it, -1 for none), so 100,000 of them cost their 77 MB once."""

    questions: list[str] = field(default_factory=list)
    created: list[float] = field(default_factory=list)  # epoch seconds, UTC
    refused: list[bool] = field(default_factory=list)
    top_score: list[float] = field(default_factory=list)  # nan: nothing cited
    down_votes: list[int] = field(default_factory=list)
    cited: list[tuple[int, ...]] = field(default_factory=list)  # into pages
    related: list[tuple[int, ...]] = field(default_factory=list)
    vector_slot: list[int] = field(default_factory=list)
    pages: PageTable = field(default_factory=PageTable)
    _packed: bytearray = field(default_factory=bytearray)
    _width: int = 0  # bytes per vector: the first one decides

    def __len__(self) -> int:
        return len(self.questions)

    def add(
        self,
        question: str,
        created: float,
        refused: bool,
        top_score: float | None,
        down_votes: int,
        cited: Sequence[tuple[str, str, str]],
        related: Sequence[tuple[str, str, str]] = (),
        vector: bytes | None = None,
    ) -> None:
        """One answer; ``cited`` / ``related`` are ``(url, title, source)`` per page; ``vector`` the
        stored float16 bytes (one of another size than the first is treated as missing)."""
        self._add(
            question,
            created,
            refused,
            top_score,
            down_votes,
            tuple(self.pages.intern(*p) for p in cited),
            tuple(self.pages.intern(*p) for p in related),
            vector,
        )

    def add_stored(
        self,
        question: str,
        created: float,
        refused: bool,
        top_score: float | None,
        down_votes: int,
        cited: Sequence[str],
        related: Sequence[str],
        vector: bytes | None,
    ) -> None:
        """One answer as stored: pages as :meth:`shared.qa.answer_log.PageRef.packed` strings."""
        intern = self.pages.intern_packed
        self._add(
            question,
            created,
            refused,
            top_score,
            down_votes,
            tuple(intern(p) for p in cited),
            tuple(intern(p) for p in related),
            vector,
        )

    def _add(
        self,
        question: str,
        created: float,
        refused: bool,
        top_score: float | None,
        down_votes: int,
        cited: tuple[int, ...],
        related: tuple[int, ...],
        vector: bytes | None,
    ) -> None:
        self.questions.append(question)
        self.created.append(created)
        self.refused.append(refused)
        self.top_score.append(float("nan") if top_score is None else float(top_score))
        self.down_votes.append(down_votes)
        self.cited.append(cited)
        self.related.append(related)
        if vector and (not self._width or len(vector) == self._width):
            self._width = self._width or len(vector)
            self.vector_slot.append(len(self._packed) // self._width)
            self._packed += vector
        else:
            self.vector_slot.append(-1)

    def vector_matrix(self) -> np.ndarray:
        """Every stored vector, one row per slot (a view of the buffer: no copy)."""
        if not self._width:
            return np.empty((0, 0), dtype=VECTOR_DTYPE)
        return np.frombuffer(self._packed, dtype=VECTOR_DTYPE).reshape(
            -1, self._width // VECTOR_DTYPE().itemsize
        )


# --- the report -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageCount:
    url: str
    title: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "title": self.title, "count": self.count}


@dataclass(frozen=True)
class GapGroup:
    """Similar questions the docs did not answer well."""

    count: int
    refused: int
    thumbs_down: int
    low_support: int
    examples: list[str]
    pages: list[PageCount]  # cited by the group's answers
    closest: list[PageCount]  # named by its refusals as the closest pages
    first_seen: datetime
    last_seen: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "refused": self.refused,
            "thumbs_down": self.thumbs_down,
            "low_support": self.low_support,
            "examples": self.examples,
            "pages": [p.to_json() for p in self.pages],
            "closest": [p.to_json() for p in self.closest],
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


@dataclass(frozen=True)
class PageStat:
    """How one page fares: answers citing it, and how many of those got a 👎."""

    url: str
    title: str
    source: str
    cited: int
    thumbs_down: int

    @property
    def down_rate(self) -> float:
        return self.thumbs_down / self.cited if self.cited else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "title": self.title,
            "source": self.source,
            "cited": self.cited,
            "thumbs_down": self.thumbs_down,
            "down_rate": round(self.down_rate, 4),
        }


@dataclass(frozen=True)
class GapsFilters:
    """What a report covers: ``[since, until)``, optionally one source and one bot (or :data:`WEB`)."""

    since: datetime
    until: datetime
    source: str | None = None
    bot: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "source": self.source,
            "bot": self.bot,
        }


@dataclass
class GapsReport:
    filters: GapsFilters
    answers: int  # answers in the period (and source, bot)
    gaps: int  # of which refused, low-support or 👎
    groups: list[GapGroup]
    total_groups: int
    pages: list[PageStat]

    def to_json(self) -> dict[str, Any]:
        return {
            "filters": self.filters.to_json(),
            "answers": self.answers,
            "gaps": self.gaps,
            "total_groups": self.total_groups,
            "groups": [g.to_json() for g in self.groups],
            "pages": [p.to_json() for p in self.pages],
        }

    def to_csv(self, table: str = "groups") -> str:
        """The groups (default) or the pages as CSV; cells a spreadsheet would run as a formula are
        prefixed with ``'`` (questions are user input)."""
        out = io.StringIO()
        writer = csv.writer(out)
        if table == "pages":
            writer.writerow(["page", "title", "source", "cited", "thumbs_down", "down_rate"])
            for p in self.pages:
                writer.writerow(
                    _cells([p.url, p.title, p.source, p.cited, p.thumbs_down, f"{p.down_rate:.4f}"])
                )
            return out.getvalue()
        writer.writerow(
            [
                "group",
                "count",
                "refused",
                "thumbs_down",
                "low_support",
                "first_seen",
                "last_seen",
                "examples",
                "pages_cited",
                "closest_pages",
            ]
        )
        for n, g in enumerate(self.groups, 1):
            writer.writerow(
                _cells(
                    [
                        n,
                        g.count,
                        g.refused,
                        g.thumbs_down,
                        g.low_support,
                        g.first_seen.isoformat(),
                        g.last_seen.isoformat(),
                        " | ".join(g.examples),
                        " | ".join(f"{p.url} ({p.count})" for p in g.pages),
                        " | ".join(f"{p.url} ({p.count})" for p in g.closest),
                    ]
                )
            )
        return out.getvalue()


def _cells(values: Iterable[Any]) -> list[Any]:
    return [f"'{v}" if isinstance(v, str) and v.startswith(_CSV_FORMULA) else v for v in values]


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _page_counts(
    pages: Sequence[tuple[int, ...]], members: Iterable[int], table: PageTable
) -> list[PageCount]:
    counts = Counter(chain.from_iterable(pages[i] for i in members))
    return [
        PageCount(table.pages[p].url, table.pages[p].title, c) for p, c in counts.most_common(GROUP_PAGES)
    ]


@dataclass(frozen=True)
class _Columns:
    """The columns a report computes with, as arrays."""

    refused: np.ndarray
    down: np.ndarray
    low_support: np.ndarray
    created: np.ndarray

    @classmethod
    def of(cls, rows: AnswerRows, low_support_score: float) -> _Columns:
        n = len(rows)
        refused = np.fromiter(rows.refused, dtype=bool, count=n)
        score = np.fromiter(rows.top_score, dtype=np.float64, count=n)
        with np.errstate(invalid="ignore"):  # nan (nothing cited) compares False
            low = ~refused & (score < low_support_score)
        return cls(
            refused=refused,
            down=np.fromiter(rows.down_votes, dtype=np.int64, count=n) > 0,
            low_support=low,
            created=np.fromiter(rows.created, dtype=np.float64, count=n),
        )

    @property
    def gaps(self) -> np.ndarray:
        return np.asarray(self.refused | self.down | self.low_support)


def gap_mask(rows: AnswerRows, low_support_score: float) -> np.ndarray:
    """Which rows are gaps: refused, low support (best cited score under ``low_support_score``; the same
    rule as :func:`shared.qa.answer_log.is_low_support`), or voted 👎."""
    return _Columns.of(rows, low_support_score).gaps


def page_stats(rows: AnswerRows, limit: int = REPORT_PAGES) -> list[PageStat]:
    """Every cited page: answers citing it and how many of them got a 👎; most 👎 first."""
    cited = Counter(chain.from_iterable(rows.cited))
    down = Counter(chain.from_iterable(p for p, d in zip(rows.cited, rows.down_votes, strict=True) if d > 0))
    table = rows.pages.pages
    stats = [PageStat(table[p].url, table[p].title, table[p].source, n, down[p]) for p, n in cited.items()]
    stats.sort(key=lambda s: (-s.thumbs_down, -s.down_rate, -s.cited, s.url))
    return stats[:limit]


def build_report(
    rows: AnswerRows,
    filters: GapsFilters,
    *,
    similarity: float,
    low_support_score: float,
    vectors_of: Callable[[Sequence[str]], np.ndarray] | None = None,
    limit: int = REPORT_GROUPS,
) -> GapsReport:
    """The report of ``rows`` (already filtered to the period, source and bot).

    Gaps are grouped by their stored vectors; rows without one are embedded with ``vectors_of``, or,
    without it, grouped only with identical questions. Identical questions are grouped once, weighted.
    """
    columns = _Columns.of(rows, low_support_score)
    gaps = np.flatnonzero(columns.gaps)
    # One entry per distinct question: repeats weigh in instead of being clustered again.
    distinct: dict[str, int] = {}
    first_row: list[int] = []
    of_row = np.empty(len(gaps), dtype=np.int64)
    for j, i in enumerate(gaps.tolist()):
        key = normalize_question(rows.questions[i])
        at = distinct.setdefault(key, len(first_row))
        if at == len(first_row):
            first_row.append(i)
        of_row[j] = at
    weights = np.bincount(of_row, minlength=len(first_row)).astype(np.float32)
    labels = _distinct_labels(rows, first_row, weights, similarity, vectors_of)
    groups = _groups(rows, columns, gaps, of_row, labels, weights, np.array(first_row, dtype=np.int64))
    groups.sort(key=lambda g: (-g.count, -g.last_seen.timestamp(), g.examples[0] if g.examples else ""))
    return GapsReport(
        filters=filters,
        answers=len(rows),
        gaps=len(gaps),
        groups=groups[:limit],
        total_groups=len(groups),
        pages=page_stats(rows),
    )


def _distinct_labels(
    rows: AnswerRows,
    first_row: list[int],
    weights: np.ndarray,
    similarity: float,
    vectors_of: Callable[[Sequence[str]], np.ndarray] | None,
) -> np.ndarray:
    if not first_row:
        return np.empty(0, dtype=np.int64)
    slots = np.array([rows.vector_slot[i] for i in first_row], dtype=np.int64)
    stored = rows.vector_matrix()
    missing = np.flatnonzero(slots < 0)
    have = np.flatnonzero(slots >= 0)
    matrix: np.ndarray | None = None
    if len(have) == len(slots) and len(slots) == len(stored) and np.array_equal(slots, np.arange(len(slots))):
        matrix = stored  # every gap's vector, in order: group the buffer itself
    elif len(have):
        matrix = stored[slots[have]]
    if len(missing) and vectors_of is not None:
        fresh = np.asarray(vectors_of([rows.questions[first_row[k]] for k in missing]), dtype=VECTOR_DTYPE)
        if matrix is None or matrix.shape[1] == fresh.shape[1]:
            matrix = fresh if matrix is None else np.concatenate([matrix, fresh])
            have, missing = np.concatenate([have, missing]), missing[:0]
    labels = np.empty(len(slots), dtype=np.int64)
    if matrix is not None and len(have):
        labels[have] = group_vectors(matrix, similarity, weights[have])
    # Without a vector and without an embedder: a group of its own (identical questions still merged).
    start = int(labels[have].max()) + 1 if len(have) else 0
    labels[missing] = start + np.arange(len(missing))
    return labels


def _groups(
    rows: AnswerRows,
    columns: _Columns,
    gaps: np.ndarray,
    of_row: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    first_row: np.ndarray,
) -> list[GapGroup]:
    if not len(gaps):
        return []
    row_labels = labels[of_row]
    by_label = np.argsort(row_labels, kind="stable")
    bounds = np.flatnonzero(np.diff(row_labels[by_label])) + 1
    # Examples: the group's most asked distinct questions, the first asked first among equals.
    distinct_order = np.lexsort((first_row, -weights, labels))
    distinct_bounds = np.flatnonzero(np.diff(labels[distinct_order])) + 1
    groups = []
    for members_at, distinct_at in zip(
        np.split(by_label, bounds), np.split(distinct_order, distinct_bounds), strict=True
    ):
        members = gaps[members_at]
        created = columns.created[members]
        groups.append(
            GapGroup(
                count=len(members),
                refused=int(columns.refused[members].sum()),
                thumbs_down=int(columns.down[members].sum()),
                low_support=int(columns.low_support[members].sum()),
                examples=[rows.questions[i] for i in first_row[distinct_at[:EXAMPLES]].tolist()],
                pages=_page_counts(rows.cited, members.tolist(), rows.pages),
                closest=_page_counts(rows.related, members.tolist(), rows.pages),
                first_seen=_datetime(float(created.min())),
                last_seen=_datetime(float(created.max())),
            )
        )
    return groups


# --- filters (pure) ---------------------------------------------------------------------------------------
class InvalidFilter(ValueError):
    """A report filter the caller must fix; the message says what."""


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DAYS = re.compile(r"[0-9]{1,3}")
_SOURCE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _parse_date(value: str, name: str) -> datetime:
    if not _DATE.fullmatch(value):
        raise InvalidFilter(f"'{name}' must be a date like 2026-01-31")
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        raise InvalidFilter(f"'{name}' is not a real date") from None


def parse_filters(args: Mapping[str, str], now: datetime) -> GapsFilters:
    """Report filters from query parameters: ``since`` / ``until`` (UTC dates, both days included;
    ``since`` alone runs to now, ``until`` alone covers the 30 days up to it), else ``days`` (the last
    N days, default 30); ``source`` (a source name), ``bot`` (a bot id, or ``web`` for the web chat).
    Empty parameters are ignored. Raises :class:`InvalidFilter`."""
    days, since_arg, until_arg = (args.get(k, "").strip() for k in ("days", "since", "until"))
    if since_arg or until_arg:
        days = ""  # explicit dates win (the page's form sends both)
    if days:
        if not _DAYS.fullmatch(days) or not 1 <= int(days) <= MAX_DAYS:
            raise InvalidFilter(f"'days' must be a whole number from 1 to {MAX_DAYS}")
        since, until = now - timedelta(days=int(days)), now
    else:
        until = _parse_date(until_arg, "until") + timedelta(days=1) if until_arg else now
        since = _parse_date(since_arg, "since") if since_arg else until - timedelta(days=DEFAULT_DAYS)
    if since >= until:
        raise InvalidFilter("'since' must be before 'until'")
    if until - since > timedelta(days=MAX_DAYS):
        raise InvalidFilter(f"a report covers at most {MAX_DAYS} days")
    source = args.get("source", "").strip() or None
    if source is not None and not _SOURCE.fullmatch(source):
        raise InvalidFilter("'source' must be a source name (letters, digits, '_', '.', '-')")
    bot = args.get("bot", "").strip() or None
    if bot is not None and bot != WEB and not _BOT_ID.fullmatch(bot):
        raise InvalidFilter(f"'bot' must be a bot id or '{WEB}'")
    return GapsFilters(since=since, until=until, source=source, bot=bot)


# --- reading (Firestore) ----------------------------------------------------------------------------------
def raw_documents(db: firestore.Client, query: firestore.Query) -> Iterator[Any]:
    """The documents of ``query`` as raw protobuf messages.

    ``Query.stream()`` wraps every document in a ``DocumentSnapshot`` decoded through proto-plus, about
    three times the cost of the query itself at 100,000 documents (``bench/gaps.py``); this runs the same
    ``RunQuery`` call and hands back the protobufs. Private client API, pinned by ``requirements.lock``
    and covered by ``tests/test_gaps.py`` against the emulator.
    """
    parent, _ = query._parent._parent_info()
    request = {"parent": parent, "structured_query": query._to_protobuf()}
    for response in db._firestore_api.run_query(request=request, metadata=db._rpc_metadata):
        message = response._pb
        if message.HasField("document"):
            yield message.document


def add_document(rows: AnswerRows, document: Any, source: str | None = None) -> bool:
    """Add one raw answer document to ``rows`` (with only ``source``'s pages when given); False when a
    source is given and the answer touches none of its pages, or when it has expired."""
    fields = document.fields  # a missing field reads as its type's default (the message is ours alone)
    expire = fields["expire_at"]
    if expire.WhichOneof("value_type") == "timestamp_value" and expire.timestamp_value.seconds <= time.time():
        return False  # TTL has not deleted it yet
    cited = [v.string_value for v in fields["cited_pages"].array_value.values]
    related = [v.string_value for v in fields["closest_pages"].array_value.values]
    if source is not None:
        prefix = source + "\t"
        cited = [p for p in cited if p.startswith(prefix)]
        related = [p for p in related if p.startswith(prefix)]
        if not cited and not related:
            return False
    score = fields["top_score"]
    created = fields["created_at"].timestamp_value
    rows.add_stored(
        fields["question"].string_value,
        created.seconds + created.nanos / 1e9,
        fields["refused"].boolean_value,
        score.double_value if score.WhichOneof("value_type") == "double_value" else None,
        fields["down_votes"].integer_value,
        cited,
        related,
        fields["vector"].bytes_value or None,
    )
    return True


def read_rows(
    db: firestore.Client, filters: GapsFilters, bots: Sequence[str | None] | None = None
) -> AnswerRows:
    """The answers of the period (and source). ``bots`` None: all traffic; else only these bots' (None
    in it: the web chat's), one range query each on ``bot_time``. Projected: no asker, no answer text."""
    answers = db.collection(ANSWERS)
    queries: list[firestore.Query]
    if bots is None:
        queries = [
            answers.where(filter=firestore.FieldFilter("created_at", ">=", filters.since)).where(
                filter=firestore.FieldFilter("created_at", "<", filters.until)
            )
        ]
    else:
        queries = [
            answers.where(
                filter=firestore.FieldFilter("bot_time", ">=", bot_time_key(b, filters.since))
            ).where(filter=firestore.FieldFilter("bot_time", "<", bot_time_key(b, filters.until)))
            for b in dict.fromkeys(bots)
        ]
    rows = AnswerRows()
    for query in queries:
        for document in raw_documents(db, query.select(_FIELDS)):
            add_document(rows, document, filters.source)
    return rows


# --- who may see what -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Viewer:
    """Who asks for a report: an admin sees everything, anyone else their own bots' traffic."""

    email: str
    is_admin: bool


@dataclass(frozen=True)
class BotChoice:
    id: str
    name: str
    platform: str


class NoReportAccess(PermissionError):
    """This viewer may not see a report (or not this one); the message says why."""


class UnknownBot(LookupError):
    """No such bot, or not the viewer's."""


class GapsService:
    """The report for a viewer: scope from their rights, rows from Firestore, then :func:`build_report`."""

    def __init__(
        self,
        db: firestore.Client,
        vectors_of: Callable[[Sequence[str]], np.ndarray] | None,
        *,
        similarity: float,
        low_support_score: float,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = db
        self._vectors_of = vectors_of
        self.similarity = similarity
        self.low_support_score = low_support_score
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self._clock()

    def bots_for(self, viewer: Viewer) -> list[BotChoice]:
        """The bots whose traffic ``viewer`` may see (all of them for an admin), by name."""
        bots: firestore.CollectionReference | firestore.Query = self._db.collection(BOTS)
        if not viewer.is_admin:
            bots = bots.where(filter=firestore.FieldFilter("owner_email", "==", viewer.email.lower()))
        choices = [
            BotChoice(
                s.id,
                str((s.to_dict() or {}).get("name") or s.id),
                str((s.to_dict() or {}).get("platform", "")),
            )
            for s in bots.select(["name", "platform"]).stream()
        ]
        return sorted(choices, key=lambda b: (b.name.lower(), b.id))

    def scope(self, viewer: Viewer, bot: str | None) -> list[str | None] | None:
        """Which traffic a report for ``viewer`` reads: None for all, else bot ids (None: the web chat).
        Raises :class:`NoReportAccess` and :class:`UnknownBot`."""
        if viewer.is_admin:
            if bot is None:
                return None
            if bot == WEB:
                return [None]
            if not self._db.collection(BOTS).document(bot).get().exists:
                raise UnknownBot(bot)
            return [bot]
        owned = [b.id for b in self.bots_for(viewer)]
        if not owned:
            raise NoReportAccess("the gaps report shows the traffic of your bots, and you have none")
        if bot == WEB:
            raise NoReportAccess("only admins see the web chat's traffic")
        if bot is not None and bot not in owned:
            raise UnknownBot(bot)
        return [bot] if bot is not None else list(owned)

    def report(self, viewer: Viewer, filters: GapsFilters, limit: int = REPORT_GROUPS) -> GapsReport:
        """The report ``viewer`` may see for ``filters``."""
        rows = read_rows(self._db, filters, self.scope(viewer, filters.bot))
        return build_report(
            rows,
            filters,
            similarity=self.similarity,
            low_support_score=self.low_support_score,
            vectors_of=self._vectors_of,
            limit=limit,
        )
