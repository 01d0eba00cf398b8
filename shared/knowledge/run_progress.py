"""A running scrape's progress, kept in its run document so another process can show it.

The scrape job calls its ``progress(stage, done, total)`` callback many times a second; a
:class:`ProgressRecorder` wraps that callback and writes the latest count of every stage to the run's
``scrape_runs`` document as the field ``progress`` (``{stage: [done, total]}``), at most once every
:data:`WRITE_EVERY_SECONDS`. The run's final save replaces the whole document, so the field exists
only while the run is going. ``askbase dev`` reads it (:func:`latest_progress`) to show a long first
crawl moving instead of waiting in silence.

Writing is best effort: a failed write is logged and the run goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

FIELD = "progress"
WRITE_EVERY_SECONDS = 5.0

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RunProgress:
    """What a running scrape last wrote: its run id, status and ``stage → (done, total)``."""

    run_id: str
    status: str
    stages: dict[str, tuple[int, int]]


# The job's stages in the order it goes through them (a stage is "<kind>" or "<kind> <source>").
_STAGE_ORDER = ["restore", "crawl", "index", "publish"]


def describe(stages: Mapping[str, tuple[int, int]]) -> str:
    """One line for a person: ``restore 1/1 · crawl docs 120/500 · index docs 300/900``, in the job's
    order (Firestore hands a map back sorted by key, not in the order it was written)."""

    def order(stage: str) -> tuple[int, str]:
        kind = stage.split(" ", 1)[0]
        return (_STAGE_ORDER.index(kind) if kind in _STAGE_ORDER else len(_STAGE_ORDER), stage)

    parts = [
        f"{stage} {stages[stage][0]}/{stages[stage][1]}" if stages[stage][1] else stage
        for stage in sorted(stages, key=order)
    ]
    return " · ".join(parts) if parts else "starting"


class ProgressRecorder:
    """A progress callback that also writes the counts to ``scrape_runs/<run_id>`` (throttled).

    ``then`` is called with every update, as the job's own callback was. Thread-safe: the scrape's
    indexing pipeline reports from its caller's thread, but nothing forbids another.
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        then: Progress,
        every: float = WRITE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._then = then
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._stages: dict[str, tuple[int, int]] = {}
        self._written_at: float | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Record ``stage``'s counts; write all of them if the last write is old enough."""
        self._then(stage, done, total)
        with self._lock:
            self._stages[stage] = (done, total)
            now = self._clock()
            if self._written_at is not None and now - self._written_at < self._every:
                return
            self._written_at = now
            payload = {stage: [d, t] for stage, (d, t) in self._stages.items()}
        self._write(payload)

    def _write(self, payload: dict[str, list[int]]) -> None:
        from shared.knowledge.runs import COLLECTION

        try:
            self._client.collection(COLLECTION).document(self._run_id).update({FIELD: payload})
        except Exception as exc:  # progress is a courtesy: the run itself must not fail for it
            log.warning("could not record the progress of scrape run %s: %s", self._run_id, exc)


def latest_progress(client: Any) -> RunProgress | None:
    """The newest scrape run's progress, or None when there is no run or it has written none yet."""
    from google.cloud import firestore

    from shared.knowledge.runs import COLLECTION

    query = (
        client.collection(COLLECTION).order_by("started_at", direction=firestore.Query.DESCENDING).limit(1)
    )
    for doc in query.stream():
        data = doc.to_dict() or {}
        stages = {
            str(stage): (int(counts[0]), int(counts[1]))
            for stage, counts in (data.get(FIELD) or {}).items()
            if isinstance(counts, list) and len(counts) == 2
        }
        return RunProgress(str(data.get("id", doc.id)), str(data.get("status", "")), stages)
    return None
