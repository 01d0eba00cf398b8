"""What the data-status page shows and the admin's "refresh now" button.

Recent runs come from the ``scrape_runs`` collection the scrape job writes (docs/architecture.md); the
next scheduled run is :mod:`shared.knowledge.schedule`'s.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud import firestore

from shared.config import Settings

log = logging.getLogger(__name__)

RUNS = "scrape_runs"


# --- runs ----------------------------------------------------------------------------------------
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

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "status": self.status,
            "counts": self.counts,
            "snapshot_id": self.snapshot_id,
            "error": self.error,
        }


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
    query = db.collection(RUNS).order_by("started_at", direction=firestore.Query.DESCENDING).limit(limit)
    runs = []
    for snap in query.stream():
        data = snap.to_dict() or {}
        counts = {k: v for k, v in data.items() if k not in _KNOWN and isinstance(v, int | float | dict)}
        error = data.get("error")
        runs.append(
            RunView(
                id=snap.id,
                started_at=data.get("started_at"),
                ended_at=data.get("ended_at"),
                status=str(data.get("status", "unknown")),
                counts=counts,
                snapshot_id=data.get("snapshot_id"),
                error=str(error)[:2000] if error else None,
            )
        )
    return runs


# --- refresh now ---------------------------------------------------------------------------------
_local_run = threading.Lock()


def trigger_refresh(settings: Settings) -> str:
    """Start a scrape now. Returns a message for the admin; raises RuntimeError when it cannot start.

    In production this POSTs to the scrape function with an ID token for its URL (the function is
    private). Locally, with no ``scrape_url``, the scrape runs on a background thread of this process.
    """
    if settings.scrape_url:
        return _call_scrape_function(settings)
    if settings.is_production:
        raise RuntimeError("ASKBASE_SCRAPE_URL is not configured")
    try:
        from shared.knowledge.scrape import run_scrape
    except ImportError as exc:
        raise RuntimeError("the scrape module is not available in this build") from exc
    if not _local_run.acquire(blocking=False):
        return "A refresh is already running in this process."

    def work() -> None:
        try:
            run_scrape(settings)
        except Exception:
            log.exception("local refresh failed")
        finally:
            _local_run.release()

    threading.Thread(target=work, name="local-refresh", daemon=True).start()
    return "Refresh started: new pages appear once the run publishes its snapshot."


def _call_scrape_function(settings: Settings) -> str:
    import httpx

    headers = {"Content-Type": "application/json"}
    if settings.internal_auth == "google-oidc":
        from google.auth.transport import requests as google_requests
        from google.oauth2 import id_token

        token = id_token.fetch_id_token(google_requests.Request(), settings.scrape_url)
        headers["Authorization"] = f"Bearer {token}"
    # The function responds only when its crawl is done, which can take minutes: wait briefly and treat
    # a timeout as "started" (the function keeps running the request it already received).
    try:
        response = httpx.post(settings.scrape_url, json={"trigger": "manual"}, headers=headers, timeout=10)
    except httpx.TimeoutException:
        return "Refresh started (the scrape job is running)."
    except httpx.HTTPError as exc:
        raise RuntimeError(f"could not reach the scrape job: {type(exc).__name__}") from exc
    if response.status_code == 409:
        return "A refresh is already running."
    if response.status_code >= 400:
        raise RuntimeError(f"the scrape job answered HTTP {response.status_code}")
    return "Refresh started."
