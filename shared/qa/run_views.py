"""The recent scrape runs as the data-status page shows them (:func:`recent_runs`).

They are read through :func:`shared.knowledge.runs.list_runs` from the ``scrape_runs`` collection the
scrape job writes (docs/architecture.md), each document's fields as stored: its status word whatever it
is, and every count it carries. The next scheduled run is :mod:`shared.knowledge.schedule`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud import firestore

from shared.knowledge.runs import list_runs


@dataclass
class RunView:
    """One scrape run as the page shows it."""

    id: str
    started_at: datetime | None
    ended_at: datetime | None
    status: str
    counts: dict[str, Any]
    snapshot_id: str | None
    error: str | None

    @classmethod
    def from_document(cls, doc_id: str, data: dict[str, Any]) -> RunView:
        """The view of a ``scrape_runs`` document: its counts are its numbers and maps (``sources``)
        other than the fields named here; its error is cut to 2,000 characters."""
        counts = {k: v for k, v in data.items() if k not in _KNOWN and isinstance(v, int | float | dict)}
        error = data.get("error")
        return cls(
            id=doc_id,
            started_at=data.get("started_at"),
            ended_at=data.get("ended_at"),
            status=str(data.get("status", "unknown")),
            counts=counts,
            snapshot_id=data.get("snapshot_id"),
            error=str(error)[:2000] if error else None,
        )

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None


_KNOWN = {
    "started_at",
    "ended_at",
    "status",
    "snapshot_id",
    "parent_snapshot_id",
    "error",
    "expire_at",
    "attempts",
}


def recent_runs(db: firestore.Client, limit: int = 10) -> list[RunView]:
    """The newest scrape runs, newest first."""
    return list_runs(db, limit, read=RunView.from_document)
