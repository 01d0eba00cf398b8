"""The index of an HTML corpus on this machine (the one an eval set names, or ``askbase ask
--site-dir``'s), built once into a cache under ``ASKBASE_DATA_DIR/local-index/`` and brought up to date on
later runs (only changed pages are re-embedded).

A corpus is read file by file (:func:`shared.knowledge.file_corpus.index_html_files`, the sample site)
or, with ``"crawl": true``, served on loopback and crawled by the real crawler
(:func:`shared.knowledge.file_corpus.crawl_html_files`, the PostgreSQL documentation). The two are
cached apart, and so are indexes built with another embedder than the configured one (a benchmark
comparing embedders): vectors of two models are never mixed, and switching back and forth costs no
rebuild.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.knowledge.embeddings import Embedder
    from shared.knowledge.index import KnowledgeIndex
    from shared.qa.eval_sets import CorpusSpec

log = logging.getLogger(__name__)

CACHE_DIR = "local-index"


class CorpusMissing(FileNotFoundError):
    """The corpus directory is not there; the message says how to install it."""


def missing_corpus_message(corpus: CorpusSpec) -> str:
    """What to tell someone whose machine lacks the corpus directory."""
    message = f"the eval set's corpus directory {corpus.html_dir} does not exist"
    if corpus.package:
        message += (
            f": install the Debian package {corpus.package} (apt-get install {corpus.package}; "
            "scripts/system-deps.sh does it when run as root)"
        )
    return message


def corpus_index_dir(settings: Settings, corpus: CorpusSpec, embedder_id: str) -> Path:
    """Where the index of ``corpus`` built with the embedder ``embedder_id`` is cached: named for the
    directory and keyed by it and the base URL, so two corpora never share an index."""
    html_dir = Path(corpus.html_dir)
    key = hashlib.sha256(f"{html_dir.resolve()}\n{corpus.base_url}".encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", html_dir.name).strip("-") or "corpus"
    path = Path(settings.data_dir) / CACHE_DIR / f"{name}-{key}"
    suffix = ("-crawl" if corpus.crawl else "") + (
        f"-{embedder_id}" if embedder_id != settings.embedder else ""
    )
    return path.with_name(path.name + suffix)


def open_eval_index(
    settings: Settings,
    corpus: CorpusSpec,
    progress: Callable[[int, int], None] | None = None,
    embedder: Embedder | None = None,
) -> KnowledgeIndex:
    """The index of ``corpus``, built or brought up to date in its cache, searched with ``embedder``
    (default: the configured one). Raises :class:`CorpusMissing` when the directory is not there.

    A cached index built with another embedder, or corrupt, is rebuilt from scratch (vectors of two
    models are not comparable, so they are never mixed)."""
    from shared.knowledge.embeddings import load_embedder
    from shared.knowledge.file_corpus import crawl_html_files, index_html_files
    from shared.knowledge.index import EmbedderMismatch, IndexCorrupt, KnowledgeIndex

    if not corpus.html_dir.is_dir():
        raise CorpusMissing(missing_corpus_message(corpus))
    embedder = embedder or load_embedder(settings.embedder)
    path = corpus_index_dir(settings, corpus, embedder.id)
    try:
        index = KnowledgeIndex.open(path, embedder, collection=settings.collection)
    except (EmbedderMismatch, IndexCorrupt) as exc:
        log.warning("%s; rebuilding the cached index at %s", exc, path)
        shutil.rmtree(path)
        index = KnowledgeIndex.open(path, embedder, collection=settings.collection)
    try:
        build = (
            functools.partial(crawl_html_files, start=corpus.start, concurrency=settings.crawl_concurrency)
            if corpus.crawl
            else functools.partial(index_html_files, pattern=corpus.pattern)
        )
        summary = build(
            index,
            corpus.html_dir,
            corpus.base_url,
            max_chars=settings.chunk_max_chars,
            overlap=settings.chunk_overlap_chars,
            progress=progress,
        )
        index.flush()
    except BaseException:
        index.close()
        raise
    log.info(
        "corpus %s (%s): %d pages, %d indexed, %d without main text or duplicate, %d removed, "
        "%d chunks embedded, %d chunks in the index %s",
        corpus.html_dir,
        "crawled over loopback" if corpus.crawl else "read from files",
        summary.pages,
        summary.indexed,
        summary.skipped,
        summary.removed,
        summary.embedded,
        index.chunk_count(),
        path,
    )
    return index
