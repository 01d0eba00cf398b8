"""Index a directory of saved HTML pages as if they had been crawled from ``base_url``.

``askbase eval`` and ``askbase ask --site`` use it to build the index an eval set is written against (the
bundled sample site, an installed documentation package such as Debian's ``postgresql-doc-15``) without a
web server, a crawl or the emulators. Each page goes through the same extraction and chunking as a
crawled page (:func:`shared.knowledge.extract.extract_page`, :func:`shared.knowledge.chunker.chunk_page`)
and is written with :meth:`KnowledgeIndex.upsert_page`, so an index kept between runs re-embeds only
pages whose chunks changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.knowledge.index import KnowledgeIndex

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FileCorpusSummary:
    """What :func:`index_html_files` did: pages seen, indexed, skipped (no main text), removed; embeddings."""

    pages: int
    indexed: int
    skipped: int
    removed: int
    embedded: int


def page_url(base_url: str, relative: str) -> str:
    """The URL a file at ``relative`` (posix path under the corpus root) is served at below ``base_url``."""
    return base_url.rstrip("/") + "/" + relative.lstrip("/")


def index_html_files(
    index: KnowledgeIndex,
    directory: Path,
    base_url: str,
    *,
    source: str = "docs",
    max_chars: int = 1200,
    overlap: int = 150,
    pattern: str = "*.html",
    progress: Progress | None = None,
) -> FileCorpusSummary:
    """Make ``index`` hold exactly the HTML files under ``directory`` (matching ``pattern``, recursively).

    Files are read in sorted order so two runs build the same index. Pages of ``source`` that are no
    longer on disk are removed; pages of other sources are left alone.
    """
    from datetime import UTC, datetime

    from shared.knowledge.chunker import chunk_page, page_content_hash
    from shared.knowledge.extract import extract_page
    from shared.knowledge.index import PageRecord

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"corpus directory not found: {directory}")
    files = sorted(directory.rglob(pattern))
    seen: set[str] = set()
    indexed = skipped = embedded = 0
    for done, path in enumerate(files, 1):
        url = page_url(base_url, path.relative_to(directory).as_posix())
        page = extract_page(path.read_text(encoding="utf-8", errors="replace"), url)
        chunks = chunk_page(page, source, max_chars, overlap) if page else []
        if not chunks or page is None:
            skipped += 1
            log.debug("%s: no main text; not indexed", url)
        else:
            seen.add(url)
            record = PageRecord(
                url=url,
                source=source,
                content_hash=page_content_hash(chunks),
                title=page.title,
                chunk_count=len(chunks),
                etag=None,
                last_modified=None,
                fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            embedded += index.upsert_page(record, chunks)
            indexed += 1
        if progress is not None:
            progress(done, len(files))
    removed = 0
    for url, record in index.pages().items():
        if record.source == source and url not in seen:
            index.remove_page(url)
            removed += 1
    return FileCorpusSummary(len(files), indexed, skipped, removed, embedded)
