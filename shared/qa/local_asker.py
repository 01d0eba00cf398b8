"""Answering from an index on this machine, without the Q&A service: what ``askbase ask`` and
``askbase eval`` run.

The index is either a directory (an index a scrape built, a restored snapshot, :func:`open_index_dir`) or
built from a directory of HTML files into a cache that later runs update incrementally
(:func:`shared.qa.eval_corpus.open_eval_index`). Questions go through
:func:`shared.qa.ask.answer_question`, the same retrieval and answering ``/api/ask`` uses; only the
conversation store is left out.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from shared.qa.answerers import Answer, Answerer
from shared.qa.ask import answer_question, source_json
from shared.qa.evaluation import CitedSource, Response
from shared.qa.sources import source_link, split_heading_path

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.knowledge.index import KnowledgeIndex

log = logging.getLogger(__name__)


class NotAnIndex(FileNotFoundError):
    """The directory given as an index holds no askbase index."""


def open_index_dir(settings: Settings, path: Path) -> KnowledgeIndex:
    """An existing index directory, opened with the configured embedder (never created); raises
    :class:`NotAnIndex` for a directory without an index."""
    from shared.knowledge.embeddings import load_embedder
    from shared.knowledge.index import SIDECAR_NAME, KnowledgeIndex

    if not (Path(path) / SIDECAR_NAME).is_file():
        raise NotAnIndex(f"{path} is not an askbase index (no {SIDECAR_NAME} in it)")
    return KnowledgeIndex.open(Path(path), load_embedder(settings.embedder), collection=settings.collection)


class LocalAsker:
    """Answers questions from ``index`` with ``answerer``, the way ``/api/ask`` does."""

    def __init__(self, index: KnowledgeIndex, answerer: Answerer, top_k: int) -> None:
        self.index = index
        self.answerer = answerer
        self.top_k = top_k

    def ask(
        self, question: str, previous_question: str | None = None, system_prompt: str | None = None
    ) -> tuple[Answer, float]:
        """The answer and the seconds it took (retrieval + answering)."""
        started = time.perf_counter()
        answer = answer_question(
            self.index.search,
            self.answerer,
            question,
            previous_question=previous_question,
            top_k=self.top_k,
            system_prompt=system_prompt,
        )
        return answer, time.perf_counter() - started

    def respond(self, question: str, previous_question: str | None = None) -> Response:
        """One eval case's :class:`~shared.qa.evaluation.Response`."""
        answer, seconds = self.ask(question, previous_question)
        sources = [
            CitedSource(url=source_link(p), title=source_json(p)["title"], text=split_heading_path(p)[1])
            for p in answer.sources
        ]
        return Response(answer=answer.text, refused=answer.refused, sources=sources, seconds=seconds)
