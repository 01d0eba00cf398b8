"""Index a directory of saved HTML pages as if it were a docs site at ``base_url``, two ways.

* :func:`index_html_files` reads every file: no web server, no crawl, no emulators. ``askbase ask --site``
  and the sample-site eval set use it.
* :func:`crawl_html_files` serves the directory on loopback (:func:`shared.devstack.site_server.static_app`,
  ETags and 304s like a docs host) and crawls it with the real crawler
  (:func:`shared.knowledge.crawler.crawl_source`, link kind) from a start page. Only pages reachable by
  links are indexed, duplicates by canonical URL or content are indexed once, and a re-run costs one
  conditional GET per page: what a scrape of that site would index. The PostgreSQL eval set
  (Debian's ``postgresql-doc-15``) uses it.

Either way each page goes through the same extraction and chunking as a scrape
(:func:`shared.knowledge.extract.extract_page`, :func:`shared.knowledge.chunker.chunk_page`) and is
written with :meth:`KnowledgeIndex.upsert_page`, so an index kept between runs re-embeds only pages whose
chunks changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

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


def loopback_transport(site_netloc: str, server_netloc: str) -> httpx.AsyncBaseTransport:
    """An httpx transport that sends requests for ``site_netloc`` to ``server_netloc`` on loopback.

    The crawl then records pages under the site's own name (``postgresql.askbase.test``) whatever port
    the server got, like an ``/etc/hosts`` entry: the index cached by one run matches the next run's
    URLs, so an unchanged page costs a 304 instead of a re-embedding. Other hosts are left alone.
    """
    import httpx

    class _Loopback(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self._inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.netloc.decode("ascii") == site_netloc:
                host, _, port = server_netloc.partition(":")
                request.url = request.url.copy_with(host=host, port=int(port) if port else None)
            return await self._inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    return _Loopback()


def crawl_html_files(
    index: KnowledgeIndex,
    directory: Path,
    base_url: str,
    *,
    start: str = "",
    source: str = "docs",
    max_chars: int = 1200,
    overlap: int = 150,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> FileCorpusSummary:
    """Make ``index`` hold what a link crawl of ``directory``, served at ``base_url``, finds.

    The crawl starts at ``start`` (relative to ``base_url``; default the site root) and follows the
    site's links. Pages of ``source`` that the crawl no longer reaches are removed, unless the crawl was
    incomplete (then nothing is removed, as a scrape does). ``pages`` in the summary counts the page
    URLs the crawl fetched or found unchanged.
    """
    from datetime import UTC, datetime

    from shared.config import Source, SourceKind
    from shared.devstack.site_server import SiteServer, static_app
    from shared.knowledge.chunker import chunk_page, page_content_hash
    from shared.knowledge.crawler import CrawlConfig, Outcome, crawl_source
    from shared.knowledge.extract import extract_page
    from shared.knowledge.index import PageRecord

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"corpus directory not found: {directory}")
    site = urlsplit(base_url)
    if site.scheme != "http" or not site.netloc:
        raise ValueError(f"base_url must be an http:// URL with a host, not {base_url!r}")
    previous = {url: record for url, record in index.pages().items() if record.source == source}
    crawl_source_config = Source(
        name=source,
        kind=SourceKind.CRAWL,
        url=page_url(base_url, start),
        max_pages=100_000,
    )
    # A loopback server answers at once or not at all: no point in waiting 15 s or backing off long.
    config = CrawlConfig(concurrency=concurrency, timeout_seconds=30.0, retries=3, backoff_base_seconds=0.05)
    seen: set[str] = set()
    owner_of_content: dict[str, str] = {}
    indexed = skipped = embedded = 0
    with SiteServer(static_app(directory)) as server:
        transport = loopback_transport(site.netloc, f"{server.host}:{server.port}")
        session = crawl_source(crawl_source_config, config, previous, transport)
        try:
            for done, result in enumerate(session, 1):
                if progress is not None:
                    progress(done, max(done, session.summary.discovered))
                if result.outcome is Outcome.UNCHANGED:
                    seen.add(result.url)
                    continue
                if result.outcome is not Outcome.FETCHED:
                    if result.outcome is Outcome.FAILED:
                        seen.add(result.requested_url)  # transient: keep what the index has
                        log.warning("%s: %s", result.requested_url, result.reason)
                    continue
                page = extract_page(result.html or "", result.url)
                chunks = chunk_page(page, source, max_chars, overlap) if page else []
                if not chunks or page is None:
                    skipped += 1
                    log.debug("%s: no main text; not indexed", result.url)
                    continue
                digest = page_content_hash(chunks)
                if owner_of_content.setdefault(digest, result.url) != result.url:
                    skipped += 1  # the same page under a second URL (a scrape indexes it once too)
                    continue
                seen.add(result.url)
                record = PageRecord(
                    url=result.url,
                    source=source,
                    content_hash=digest,
                    title=page.title,
                    chunk_count=len(chunks),
                    etag=result.etag,
                    last_modified=result.last_modified,
                    fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
                )
                embedded += index.upsert_page(record, chunks)
                indexed += 1
        finally:
            session.close()
    summary = session.summary
    removed = 0
    if summary.complete:
        for url in sorted(set(previous) - seen):
            index.remove_page(url)
            removed += 1
    else:
        log.warning("crawl of %s incomplete (%s); no page removed", base_url, summary.error)
    return FileCorpusSummary(len(seen), indexed, skipped, removed, embedded)
