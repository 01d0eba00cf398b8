"""Scrape run records in Firestore (``scrape_runs/<run id>``), read by the web app's data-status page
through :func:`list_runs` (``shared.qa.run_views``).

A run is written when it starts (status ``running``) and again when it ends, so a crashed run is visible
as one that never finished.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, overload

from google.cloud import firestore

COLLECTION = "scrape_runs"
RunT = TypeVar("RunT")


class RunStatus(StrEnum):
    RUNNING = "running"
    PUBLISHED = "published"  # something changed and a snapshot was published
    UNCHANGED = "unchanged"  # nothing changed: no snapshot needed
    SKIPPED = "skipped"  # another run holds the lease
    # Stopped cleanly without publishing: lost the publish race twice (the other run's snapshot stands),
    # or the pointer was rolled back while the run crawled (the rollback stands; the error says which).
    CONFLICT = "conflict"
    FAILED = "failed"


@dataclass
class ScrapeRun:
    """One scrape run: what it did and how it ended."""

    id: str
    started_at: datetime
    status: RunStatus = RunStatus.RUNNING
    ended_at: datetime | None = None
    holder: str = ""
    pages_fetched: int = 0  # 200 responses with HTML
    pages_unchanged: int = 0  # 304s, or 200s whose content was the same
    pages_changed: int = 0  # new or edited pages (re-chunked)
    pages_removed: int = 0
    pages_failed: int = 0
    pages_skipped: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    embeddings: int = 0
    snapshot_id: str | None = None
    parent_snapshot_id: str | None = None
    attempts: int = 0
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Sources whose crawl was incomplete (site down, refused, a sitemap unreadable, the run's deadline):
    # their pages were kept as they were. The run then also names them in ``error``, whatever its status.
    incomplete_sources: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """Firestore document / JSON-friendly dict (datetimes stay datetimes; use :meth:`to_json`)."""
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        return data

    def to_json(self) -> dict[str, Any]:
        data = self.to_dict()
        for key in ("started_at", "ended_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["seconds"] = round(self.seconds, 3) if self.seconds is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScrapeRun:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["status"] = RunStatus(values.get("status", RunStatus.RUNNING))
        except ValueError:
            values["status"] = RunStatus.FAILED
        return cls(**values)


def new_run(holder: str = "") -> ScrapeRun:
    now = datetime.now(UTC)
    return ScrapeRun(
        id=now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3), started_at=now, holder=holder
    )


def save_run(client: firestore.Client, run: ScrapeRun) -> None:
    """Write (or overwrite) the run's document."""
    client.collection(COLLECTION).document(run.id).set(run.to_dict())


@overload
def list_runs(client: firestore.Client, limit: int = 20) -> list[ScrapeRun]: ...


@overload
def list_runs(
    client: firestore.Client, limit: int = 20, *, read: Callable[[str, dict[str, Any]], RunT]
) -> list[RunT]: ...


def list_runs(
    client: firestore.Client, limit: int = 20, *, read: Callable[[str, dict[str, Any]], Any] | None = None
) -> list[Any]:
    """The most recent runs, newest first: :class:`ScrapeRun` records, or what ``read(document id,
    fields)`` makes of each document (the data-status page shows a document's fields as stored)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    query = (
        client.collection(COLLECTION)
        .order_by("started_at", direction=firestore.Query.DESCENDING)
        .limit(limit)
    )
    if read is None:
        return [ScrapeRun.from_dict(doc.to_dict() or {}) for doc in query.stream()]
    return [read(doc.id, doc.to_dict() or {}) for doc in query.stream()]
