"""``/api/ask`` with every answer recorded: answer, then write its record for feedback and the gaps report.

The answer comes from :class:`shared.qa.ask.AskService`; the record (:class:`shared.qa.answer_log.AnswerLog`)
names each cited page with its knowledge source, which :class:`PageSources` reads from the served index
once per loaded snapshot. Recording never costs the asker the answer: a failure is logged and only the
``answer_id`` is missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from shared.qa.answer_log import AnswerFacts, AnswerLog, page_url

if TYPE_CHECKING:
    from shared.qa.ask import AskResult, AskService
    from shared.qa.bot_profiles import AnswerProfile
    from shared.qa.live_index import LiveIndex

log = logging.getLogger(__name__)


class PageSources:
    """Which knowledge source each page of the served index belongs to (``docs``, ``blog``, ...), read
    once per loaded snapshot from the index's page table."""

    def __init__(self, live_index: LiveIndex) -> None:
        self._live = live_index
        self._key: tuple[Any, ...] | None = None
        self._map: dict[str, str] = {}
        self._only = ""
        self._lock = threading.Lock()

    def resolver(self) -> Callable[[str], str]:
        """url → source name ("" when the page is not in the served index)."""
        status = self._live.status()
        key = (status.snapshot_id, status.loaded_at)
        with self._lock:
            if key != self._key:
                self._map, self._only = self._read(status.counts_by_source)
                self._key = key
            mapping, only = self._map, self._only
        return lambda url: mapping.get(page_url(url), only)

    def _read(self, counts_by_source: Mapping[str, int]) -> tuple[dict[str, str], str]:
        from shared.qa.live_index import NoIndexYet

        only = next(iter(counts_by_source)) if len(counts_by_source) == 1 else ""
        try:
            with self._live.lease() as index:
                pages = getattr(index, "pages", None)
                records = pages() if callable(pages) else {}
        except NoIndexYet:
            return {}, only
        return {page_url(url): str(record.source) for url, record in records.items()}, only


@dataclass
class RecordedAnswer:
    """An ``/api/ask`` result and the id it was recorded under (None if recording failed)."""

    result: AskResult
    answer_id: str | None

    def to_json(self) -> dict[str, Any]:
        return self.result.to_json() | {"answer_id": self.answer_id}


class RecordingAsk:
    """``/api/ask``'s service: answer (:class:`shared.qa.ask.AskService`), then record the answer for
    feedback and the gaps report. A recording failure is logged and costs only the ``answer_id``: the
    answer is already in the conversation and is returned all the same."""

    def __init__(self, ask: AskService, answers: AnswerLog, live_index: LiveIndex) -> None:
        self._ask = ask
        self._answers = answers
        self._live = live_index
        self._sources = PageSources(live_index)

    def ask(
        self,
        owner: str,
        question: str,
        conversation_id: str | None = None,
        bot: AnswerProfile | None = None,
        platform: str = "web",
    ) -> RecordedAnswer:
        """Answer ``question`` for ``owner`` and record it; raises what ``AskService.ask`` raises."""
        result = self._ask.ask(owner, question, conversation_id, bot)
        try:
            facts = AnswerFacts.from_result(
                result, question, self._live.status().snapshot_id, bot.id if bot else None, platform
            )
            recorded = self._answers.record(facts, owner, self._sources.resolver())
        except gexc.GoogleAPIError:
            log.exception("answer not recorded for feedback (conversation %s)", result.conversation_id)
            return RecordedAnswer(result, None)
        return RecordedAnswer(result, self._unless_deleted(owner, result.conversation_id, recorded))

    def _unless_deleted(self, owner: str, conversation_id: str, recorded: str) -> str | None:
        """``recorded``, or None after taking the record back when its conversation is gone.

        The conversation may have been deleted (one conversation, the whole history, a bot chat's
        ``/forget``) while this question was answered: that clearing deleted the answer records it found
        before this one existed, and the record, asker and question included, would have stayed in the
        gaps report. Reads are strongly consistent, and a clearing deletes the conversation before it
        looks for its records: either the conversation is gone by this read, or that search comes later
        and finds this record.
        """
        try:
            if self._ask.conversations.exists(owner, conversation_id):
                return recorded
            self._answers.discard(recorded)
        except gexc.GoogleAPIError:
            log.exception("answer %s: could not check that its conversation still exists", recorded)
            return recorded
        log.info("answer %s not kept: conversation %s was deleted meanwhile", recorded, conversation_id)
        return None
