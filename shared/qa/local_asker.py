"""Answering from an index on this machine, without the Q&A service: what ``askbase ask`` and
``askbase eval`` run.

The index is either a directory (an index a scrape built, a restored snapshot) or built from a directory
of HTML files (:mod:`shared.knowledge.file_corpus`) into a cache under ``ASKBASE_DATA_DIR/local-index/``
that later runs update incrementally. Questions go through :func:`shared.qa.ask.answer_question`, the
same retrieval and answering ``/api/ask`` uses; only the conversation store is left out.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shared.qa.answerers import Answer, Answerer, source_link, split_heading_path
from shared.qa.ask import answer_question, source_json
from shared.qa.evaluation import CitedSource, Response

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.knowledge.index import KnowledgeIndex

log = logging.getLogger(__name__)

CACHE_DIR = "local-index"


def corpus_cache_dir(settings: Settings, html_dir: Path, base_url: str) -> Path:
    """Where the index of ``html_dir`` served at ``base_url`` is kept between runs."""
    key = hashlib.sha256(f"{Path(html_dir).resolve()}\n{base_url}".encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(html_dir).name).strip("-") or "corpus"
    return Path(settings.data_dir) / CACHE_DIR / f"{name}-{key}"


def open_corpus_index(
    settings: Settings,
    html_dir: Path,
    base_url: str,
    pattern: str = "*.html",
    progress: Callable[[int, int], None] | None = None,
) -> KnowledgeIndex:
    """The index of the HTML files under ``html_dir``, built or brought up to date in the cache.

    A cached index built with another embedder is rebuilt from scratch (vectors of two models are not
    comparable, so they are never mixed).
    """
    import shutil

    from shared.knowledge.embeddings import load_embedder
    from shared.knowledge.file_corpus import index_html_files
    from shared.knowledge.index import EmbedderMismatch, IndexCorrupt, KnowledgeIndex

    path = corpus_cache_dir(settings, html_dir, base_url)
    embedder = load_embedder(settings.embedder)
    try:
        index = KnowledgeIndex.open(path, embedder, collection=settings.collection)
    except (EmbedderMismatch, IndexCorrupt) as exc:
        log.warning("%s; rebuilding the cached index at %s", exc, path)
        shutil.rmtree(path)
        index = KnowledgeIndex.open(path, embedder, collection=settings.collection)
    try:
        summary = index_html_files(
            index,
            html_dir,
            base_url,
            max_chars=settings.chunk_max_chars,
            overlap=settings.chunk_overlap_chars,
            pattern=pattern,
            progress=progress,
        )
        index.flush()
    except BaseException:
        index.close()
        raise
    log.info(
        "corpus %s: %d pages indexed, %d without main text, %d removed, %d chunks embedded (index %s)",
        html_dir,
        summary.indexed,
        summary.skipped,
        summary.removed,
        summary.embedded,
        path,
    )
    return index


def open_index_dir(settings: Settings, path: Path) -> KnowledgeIndex:
    """An existing index directory, opened with the configured embedder (never created)."""
    from shared.knowledge.embeddings import load_embedder
    from shared.knowledge.index import SIDECAR_NAME, KnowledgeIndex

    if not (Path(path) / SIDECAR_NAME).is_file():
        raise FileNotFoundError(f"{path} is not an askbase index (no {SIDECAR_NAME})")
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
