"""The gaps report for a viewer: who may see which traffic, then the report of it.

An admin sees all traffic (web and every bot); anyone else sees only the traffic of the bots they own,
and nobody else gets a report. Rows carry no identity: the reader never selects the asker, votes are
not read at all, and bot ids are only used as a filter.

The parts: :mod:`shared.qa.gaps_filters` (what a report covers, from query parameters),
:mod:`shared.qa.answer_rows` (the answers read from Firestore), :mod:`shared.qa.question_groups`
(similar questions grouped), :mod:`shared.qa.gaps_report` (the report built from the rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from google.cloud import firestore

from shared.bots.registry import COLLECTION
from shared.qa.answer_rows import read_rows
from shared.qa.gaps_filters import WEB, GapsFilters
from shared.qa.gaps_report import REPORT_GROUPS, GapsReport, build_report


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
        bots: firestore.CollectionReference | firestore.Query = self._db.collection(COLLECTION)
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
            if not self._db.collection(COLLECTION).document(bot).get().exists:
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
