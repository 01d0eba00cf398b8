"""The gaps report: what users asked that the docs don't answer, grouped by similar question.

Input: the answer rows of a period (:mod:`shared.qa.answer_rows`), already filtered to one source and
bot when asked. A row is a *gap* when it was refused, when its best cited passage scored under
``gaps_low_support_score`` (low support), or when it got a 👎. Gaps are grouped by similar question
(:func:`shared.qa.question_groups.group_vectors` over the vectors stored with them); each group has its
count, examples, the pages cited (and, for refusals, the closest pages), and first/last seen. Every
answer of the period counts for the page table: how often each page is cited, and the share of those
answers that got a 👎. Pure: no I/O (who may see which report is :mod:`shared.qa.gaps`).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np

from shared.qa.answer_log import VECTOR_DTYPE
from shared.qa.answer_rows import AnswerRows, PageTable
from shared.qa.gaps_filters import GapsFilters
from shared.qa.question_groups import group_vectors, normalize_question

EXAMPLES = 3  # example questions per group
GROUP_PAGES = 5  # pages listed per group
REPORT_GROUPS = 50  # groups a report lists (the CLI can ask for more)
REPORT_PAGES = 50
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


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
