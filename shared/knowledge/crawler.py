"""Crawl one source: take the URLs discovery found, fetch them, follow links, report every URL's outcome.

The crawler only does I/O and reports what happened to every URL it considered; it never extracts,
chunks or indexes. The decisions it makes are pure functions, unit-tested without a network, in the
modules it uses: :mod:`~shared.knowledge.urls` (same site? filtered out?), :mod:`~shared.knowledge.robots`,
:mod:`~shared.knowledge.sitemaps` (sitemap and feed documents), :mod:`~shared.knowledge.links` (links and
page identity) and :mod:`~shared.knowledge.fetching` (retry? HTML?). The seed URLs come from
:mod:`~shared.knowledge.discovery`.

Use :func:`crawl_source` from synchronous code: it runs the async crawl on a private event loop in a
worker thread and hands results over through a bounded buffer, so the caller can index page N while the
crawler fetches page N+8. The event loop never blocks on that buffer: a full buffer makes the workers
*await* room (no new fetch starts) while every request already in flight is read to the end. Blocking
the loop instead froze every open connection for as long as the consumer was busy (an embedding batch
takes seconds), and on a 530-page site 15 requests then timed out and were retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import queue
import re
import threading
import time
import urllib.robotparser
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from shared.config import Source, SourceKind
from shared.knowledge.discovery import SiteWideFailure, feed_pages, load_robots, sitemap_pages
from shared.knowledge.fetching import (
    REFUSAL_BODY_BYTES,
    Fetcher,
    Validators,
    http_client,
    is_html_type,
    should_retry,
)
from shared.knowledge.links import page_identity, parse_links
from shared.knowledge.sitemaps import MAX_SITEMAP_BYTES
from shared.knowledge.urls import (
    binary_extension,
    compile_patterns,
    normalize_url,
    same_site,
    site_of,
    url_filter_reason,
)

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What happened to one URL."""

    FETCHED = "fetched"  # 200 with an HTML body
    UNCHANGED = "unchanged"  # 304 to our conditional GET
    GONE = "gone"  # 404/410 (or an object store's "no such object" 401/403 on a serving site)
    FAILED = "failed"  # trouble (5xx, 429, other 401/403, timeout) after every retry; keep what we had
    SKIPPED = "skipped"  # by a rule: robots.txt, include/exclude, non-HTML, too large, off-site, dup


@dataclass(frozen=True)
class CrawlResult:
    """One URL's outcome. ``url`` is the page identity (canonical URL) for fetched pages."""

    url: str
    outcome: Outcome
    requested_url: str
    reason: str = ""
    status_code: int | None = None
    html: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    elapsed_ms: float = 0.0


@dataclass
class CrawlSummary:
    """Totals for one source. ``complete`` is False after a site-wide failure: the caller must then not
    treat pages it did not see as removed."""

    source: str
    complete: bool = True
    error: str = ""
    discovered: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    over_max_pages: int = 0  # URLs found but not fetched: the source's max_pages was reached
    # Those URLs (normalized). The scrape job removes an indexed page cut by max_pages without counting it
    # as lost: the budget is the operator's explicit choice, not a sign of a broken site.
    cut: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class CrawlConfig:
    """The knobs, normally taken from :class:`~shared.config.Settings` by :meth:`from_settings`."""

    concurrency: int = 8
    timeout_seconds: float = 15.0
    retries: int = 3
    max_page_bytes: int = 2_000_000
    user_agent: str = "askbase-crawler/0.1"
    backoff_base_seconds: float = 0.5
    max_sitemap_bytes: int = MAX_SITEMAP_BYTES  # download and gunzip cap of one sitemap

    @classmethod
    def from_settings(cls, settings: object, **overrides: object) -> CrawlConfig:
        """The crawl knobs of ``settings``, with ``overrides`` (field name → value) applied on top."""
        values = {
            "concurrency": settings.crawl_concurrency,  # type: ignore[attr-defined]
            "timeout_seconds": settings.crawl_timeout_seconds,  # type: ignore[attr-defined]
            "retries": settings.crawl_retries,  # type: ignore[attr-defined]
            "max_page_bytes": settings.crawl_max_page_bytes,  # type: ignore[attr-defined]
            "user_agent": settings.crawl_user_agent,  # type: ignore[attr-defined]
        }
        values.update(overrides)
        return cls(**values)


class SourceCrawler:
    """Crawls one source with an :class:`httpx.AsyncClient`.

    ``previous`` maps page identity → the validators stored at the last fetch; those pages are also
    re-checked (crawl and feed kinds) because an unchanged page answers 304 without a body, so links
    would not be rediscovered from it, and feeds drop old posts that still exist.
    """

    def __init__(
        self,
        source: Source,
        config: CrawlConfig,
        previous: Mapping[str, Validators] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        self.source = source
        #: Turns true at the run's deadline: discovery checks it between sitemaps (see sitemap_pages).
        self.stop = stop
        self.config = config
        self.previous = dict(previous or {})
        self.include = compile_patterns(source.include, "include")
        self.exclude = compile_patterns(source.exclude, "exclude")
        start = normalize_url(source.url)
        if start is None:
            raise ValueError(f"source {source.name!r}: start URL {source.url!r} is not an http(s) URL")
        self.start = start
        self.site = site_of(start)
        self._transport = transport
        self.summary = CrawlSummary(source=source.name)
        self._robots: urllib.robotparser.RobotFileParser | None = None
        self._queued: set[str] = set()
        self._identities: set[str] = set()
        self._fetch_budget = source.max_pages
        # Parts of discovery that were skipped (a sitemap over its cap): the crawl goes on without them
        # but is reported incomplete, so the caller removes nothing it did not see.
        self._discovery_problems: list[str] = []
        # URLs whose 401/403 is an object store's answer for a missing object (see _NO_SUCH_OBJECT).
        self._no_such_object: set[str] = set()

    # --- robots.txt ------------------------------------------------------------------------------
    def _allowed_by_robots(self, url: str) -> bool:
        return self._robots is None or self._robots.can_fetch(self.config.user_agent, url)

    # --- the crawl ----------------------------------------------------------------------------------
    def _screen(self, url: str) -> CrawlResult | None:
        """A SKIPPED result when a rule rules the URL out before fetching, else None."""
        if not same_site(url, self.start):
            return CrawlResult(url, Outcome.SKIPPED, url, "off-site")
        reason = url_filter_reason(url, self.include, self.exclude)
        if reason:
            return CrawlResult(url, Outcome.SKIPPED, url, reason)
        ext = binary_extension(url)
        if ext:
            return CrawlResult(url, Outcome.SKIPPED, url, f"non-HTML ({ext})")
        if not self._allowed_by_robots(url):
            return CrawlResult(url, Outcome.SKIPPED, url, "disallowed by robots.txt")
        return None

    async def _fetch_page(self, fetcher: Fetcher, url: str) -> tuple[CrawlResult, list[str]]:
        started = time.perf_counter()
        resp = await fetcher.get(url, conditional=True, html_only=True)
        ms = (time.perf_counter() - started) * 1000
        final = normalize_url(resp.url) or url
        previous = self.previous.get(final)
        etag = resp.headers.get("etag")
        modified = resp.headers.get("last-modified")
        if resp.error:
            return CrawlResult(url, Outcome.FAILED, url, resp.error, None, elapsed_ms=ms), []
        if resp.skip_reason:
            return CrawlResult(
                url, Outcome.SKIPPED, url, resp.skip_reason, resp.status_code, elapsed_ms=ms
            ), []
        if resp.status_code == 304:
            return CrawlResult(
                final,
                Outcome.UNCHANGED,
                url,
                "not modified",
                304,
                etag=etag or (previous.etag if previous else None),
                last_modified=modified or (previous.last_modified if previous else None),
                elapsed_ms=ms,
            ), []
        if not same_site(final, self.start):
            return CrawlResult(
                url, Outcome.SKIPPED, url, f"redirected off-site to {final}", resp.status_code, elapsed_ms=ms
            ), []
        if final != url and (reason := url_filter_reason(final, self.include, self.exclude)):
            # The source's patterns bound what it indexes wherever a link leads, not just where it points.
            return CrawlResult(
                url, Outcome.SKIPPED, url, f"redirected to {final}: {reason}", resp.status_code, elapsed_ms=ms
            ), []
        if resp.status_code in (404, 410):
            return CrawlResult(
                url, Outcome.GONE, url, f"HTTP {resp.status_code}", resp.status_code, elapsed_ms=ms
            ), []
        if resp.status_code in _REFUSALS and _NO_SUCH_OBJECT.match(resp.body[:REFUSAL_BODY_BYTES]):
            self._no_such_object.add(url)
        if resp.status_code != 200:
            outcome = Outcome.FAILED if _says_nothing_about_the_page(resp.status_code) else Outcome.GONE
            return CrawlResult(
                url, outcome, url, f"HTTP {resp.status_code}", resp.status_code, elapsed_ms=ms
            ), []
        if resp.too_large:
            return CrawlResult(
                url,
                Outcome.SKIPPED,
                url,
                f"larger than {self.config.max_page_bytes} bytes",
                200,
                elapsed_ms=ms,
            ), []
        content_type = resp.headers.get("content-type")
        if not is_html_type(content_type):
            return CrawlResult(
                url, Outcome.SKIPPED, url, f"non-HTML ({content_type})", 200, elapsed_ms=ms
            ), []
        html = resp.body.decode(resp.encoding, errors="replace")
        parsed = parse_links(html, final)
        identity = page_identity(final, parsed.canonical)
        if identity != final and url_filter_reason(identity, self.include, self.exclude):
            # A canonical URL the source's patterns rule out cannot name a page of this source: the page
            # is known by the URL it was reached at (which passed them).
            identity = final
        return (
            CrawlResult(identity, Outcome.FETCHED, url, "", 200, html, etag, modified, ms),
            parsed.links,
        )

    async def run(self, emit: _Emitter) -> CrawlSummary:
        """Crawl the source, calling ``emit(result)`` for every URL considered."""
        started = time.perf_counter()
        config = self.config
        async with http_client(
            config.concurrency, config.timeout_seconds, config.user_agent, self._transport
        ) as client:
            fetcher = Fetcher(
                client,
                self.start,
                retries=config.retries,
                backoff_base_seconds=config.backoff_base_seconds,
                max_bytes=config.max_page_bytes,
                validators=self.previous,
                allowed=self._allowed_by_robots,
            )
            try:
                await self._crawl(fetcher, emit)
            except SiteWideFailure as exc:
                self.summary.complete = False
                self.summary.error = str(exc)
                log.warning("source %s: %s", self.source.name, exc)
            else:
                if self._discovery_problems:
                    self.summary.complete = False
                    self.summary.error = "; ".join(
                        [*self._discovery_problems, *([self.summary.error] if self.summary.error else [])]
                    )
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    async def _crawl(self, fetcher: Fetcher, emit: _Emitter) -> None:
        self._robots = await load_robots(fetcher, self.site)
        kind = self.source.kind
        if kind is SourceKind.SITEMAP:
            robots_sitemaps = list(self._robots.site_maps() or [])
            gone_sitemaps: list[str] = []
            seeds, self._discovery_problems = await sitemap_pages(
                fetcher,
                self.start,
                robots_sitemaps,
                self.config.max_sitemap_bytes,
                self.source.name,
                self.stop,
                gone_sitemaps,
            )
            if gone_sitemaps:
                # A sitemap answering 404/410 may only be missing for this run: the pages it listed are
                # re-checked with the indexed ones, and only those answering 404/410 themselves go.
                log.info(
                    "source %s: %s gone; re-checking its %d indexed pages",
                    self.source.name,
                    ", ".join(gone_sitemaps),
                    len(self.previous),
                )
                seeds = seeds + sorted(self.previous)
        elif kind is SourceKind.FEED:
            seeds = await feed_pages(fetcher, self.start, self.source.name) + sorted(self.previous)
        else:
            seeds = [self.start, *sorted(self.previous)]
        follow_links = kind is SourceKind.CRAWL
        # The pages already indexed come first for the max_pages budget: a sitemap or feed listing the
        # newest first would otherwise push different pages in and out of the index on every run. A link
        # crawl's start URL goes before them all (max_pages is at least 1, so it is never cut): the crawl
        # stands on it, and it need not be an indexed page itself (/ redirecting to /en/, http to https,
        # a landing page without main text), so ranking it with the unknown URLs cut it on every run and
        # left the source incomplete for ever.
        known = [s for s in seeds if normalize_url(s, self.start) in self.previous]
        seeds = known + [s for s in seeds if normalize_url(s, self.start) not in self.previous]
        if follow_links:
            seeds = [self.start, *(s for s in seeds if normalize_url(s, self.start) != self.start)]

        frontier: asyncio.Queue[str] = asyncio.Queue()
        failures = 0
        fetched_ok = 0
        # A link crawl stands on its start page, a sitemap or feed on the pages it lists: when none of
        # those was seen, the pages not seen are not known to be gone (a WAF answering 403 everywhere, a
        # maintenance redirect off the site, a 404 for a moved docs root).
        anchors = (
            {self.start} if follow_links else {u for u in (normalize_url(s, self.start) for s in seeds) if u}
        )
        anchors_seen = 0
        queued_anchors = 0  # anchors put in the frontier (not filtered out, off-site or over max_pages)
        anchor_misses: list[str] = []
        refused: list[CrawlResult] = []  # 401/403 answers, held until the crawl is over

        async def count(result: CrawlResult) -> None:
            self.summary.counts[result.outcome.value] = self.summary.counts.get(result.outcome.value, 0) + 1
            await emit(result)

        def enqueue(raw: str, skipped_out: list[CrawlResult], base: str | None = None) -> None:
            nonlocal queued_anchors
            url = normalize_url(raw, base)
            if url is None or url in self._queued:
                return
            self._queued.add(url)
            skipped = self._screen(url)
            if skipped is not None:
                # Off-site links are noise in a crawl; report only what the source itself listed.
                if skipped.reason != "off-site" or not follow_links:
                    skipped_out.append(skipped)
                return
            if self._fetch_budget <= 0:
                self.summary.over_max_pages += 1
                self.summary.cut.add(url)
                return
            self._fetch_budget -= 1
            self.summary.discovered += 1
            queued_anchors += url in anchors
            frontier.put_nowait(url)

        skipped: list[CrawlResult] = []
        for seed in seeds:
            enqueue(seed, skipped, self.start)
        for result in skipped:
            if result.requested_url in anchors:
                anchor_misses.append(f"{result.requested_url}: {result.reason}")
            await count(result)

        async def worker() -> None:
            nonlocal failures, fetched_ok, anchors_seen
            while True:
                url = await frontier.get()
                try:
                    try:
                        result, links = await self._fetch_page(fetcher, url)
                    except Exception as exc:  # one odd page must not stall the crawl
                        log.warning("%s: unexpected %s: %s", url, type(exc).__name__, exc)
                        result, links = (
                            CrawlResult(url, Outcome.FAILED, url, f"{type(exc).__name__}: {exc}"),
                            [],
                        )
                    if url in anchors:
                        if result.outcome in (Outcome.FETCHED, Outcome.UNCHANGED):
                            anchors_seen += 1
                        else:
                            anchor_misses.append(f"{url}: {result.reason}")
                    if result.outcome in (Outcome.FETCHED, Outcome.UNCHANGED):
                        if result.url in self._identities:
                            result = CrawlResult(
                                result.url, Outcome.SKIPPED, url, f"same canonical URL as {result.url}", 200
                            )
                        else:
                            self._identities.add(result.url)
                            self._queued.add(result.url)
                    held = result.outcome is Outcome.FAILED and result.status_code in _REFUSALS
                    if held:
                        refused.append(result)  # gone or failed: told once the crawl is over
                    elif result.outcome is Outcome.FAILED:
                        failures += 1
                    elif result.outcome in (Outcome.FETCHED, Outcome.UNCHANGED):
                        fetched_ok += 1
                    # Links first: the other workers can go on while this one waits for room.
                    skipped_links: list[CrawlResult] = []
                    if follow_links:
                        for link in links:
                            enqueue(link, skipped_links)
                    if not held:
                        await count(result)
                    for skipped_result in skipped_links:
                        await count(skipped_result)
                finally:
                    frontier.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(self.config.concurrency)]
        try:
            await frontier.join()
        finally:
            # Done: every worker waits for a URL that will not come. Cancelled (the consumer gave up):
            # some may wait for room in its buffer instead, which a None in the frontier never reaches.
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        # A 401/403 whose body is an object store's XML error (S3/CloudFront without ListBucket answer
        # AccessDenied for a key that no longer exists, Cloud Storage likewise; NoSuchKey) for one page
        # of a site that plainly serves (its start page, or more than half of the listed pages the crawl
        # queued, and most pages fetched) is a page that no longer exists: it is gone. Any other 401/403
        # (a WAF's rate rule, a login wall, a bot block: some pages now, others next time) stays FAILED,
        # as does every refusal on a site refusing most of it; the start-page check below and the scrape
        # job's removal valve guard against the rest.
        serving = (anchors_seen > 0 if follow_links else anchors_seen * 2 > queued_anchors) and len(
            refused
        ) < fetched_ok
        for result in refused:
            if serving and result.requested_url in self._no_such_object:
                result = CrawlResult(
                    result.url,
                    Outcome.GONE,
                    result.requested_url,
                    f"{result.reason} while the site serves its other pages: taken as gone",
                    result.status_code,
                    elapsed_ms=result.elapsed_ms,
                )
            else:
                failures += 1
            await count(result)
        if self.summary.over_max_pages:
            log.warning(
                "source %s: %d URLs over max_pages (%d) not crawled",
                self.source.name,
                self.summary.over_max_pages,
                self.source.max_pages,
            )
        if anchors and not anchors_seen:
            what = "start page" if follow_links else f"none of the {len(anchors)} listed pages could be read;"
            first = sorted(anchor_misses)[:3]
            more = f" (+{len(anchor_misses) - len(first)} more)" if len(anchor_misses) > len(first) else ""
            self.summary.complete = False
            self.summary.error = f"{what} {'; '.join(first) or 'not crawled'}{more}"
        elif failures and not fetched_ok:
            # Every page failed: the site is down, not the pages gone.
            self.summary.complete = False
            self.summary.error = f"all {failures} page fetches failed"


_REFUSALS = (401, 403)
# The body of an object store's answer for a missing object behind 401/403: S3 and CloudFront in front of
# S3 (AccessDenied without s3:ListBucket, NoSuchKey), Cloud Storage (AccessDenied, NoSuchKey). An XML
# <Error> document as the whole body, not a page mentioning the words.
_NO_SUCH_OBJECT = re.compile(
    rb"\A\s*(?:<\?xml[^>]*\?>\s*)?<Error>\s*<Code>\s*(?:AccessDenied|NoSuchKey)\s*</Code>"
)


def _says_nothing_about_the_page(status_code: int) -> bool:
    """A status that does not mean the page is gone: 429/5xx (retried first), and 401/403, which a WAF,
    an expired SSO session or a bot block sends for every page of a site that still has them all."""
    return should_retry(status_code) or status_code in (401, 403)


class _Emitter(Protocol):
    """Hands one result to the consumer; awaiting it is how a full buffer slows the crawl down."""

    def __call__(self, result: CrawlResult, /) -> Awaitable[None]: ...


class CrawlSession:
    """Iterator over a source's :class:`CrawlResult` s; :attr:`summary` is final once exhausted.

    At most ``buffer`` results wait for the consumer. The crawl thread's event loop waits for room with
    ``await`` (a semaphore released by the consumer through ``call_soon_threadsafe``), never with a
    blocking call, so requests in flight keep being read however long the consumer takes.
    """

    def __init__(self, crawler: SourceCrawler, buffer: int = 64) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self._crawler = crawler
        self._buffer = buffer
        # Unbounded as a queue: the semaphore below bounds the results in it, the end marker and an
        # error need no room, so the crawl thread never blocks on a put.
        self._queue: queue.Queue[CrawlResult | BaseException | None] = queue.Queue()
        self._lock = threading.Lock()  # publishes _loop/_task to close() and guards _stopped
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[CrawlSummary] | None = None
        self._room: asyncio.Semaphore | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"crawl-{crawler.source.name}", daemon=True)
        self._started = False

    @property
    def summary(self) -> CrawlSummary:
        """The crawl's totals: final once iteration has ended."""
        return self._crawler.summary

    async def _emit(self, result: CrawlResult) -> None:
        assert self._room is not None
        await self._room.acquire()  # released by the consumer as it takes a result
        self._queue.put_nowait(result)

    async def _crawl(self) -> None:
        room = asyncio.Semaphore(self._buffer)
        task = asyncio.ensure_future(self._crawler.run(self._emit))
        with self._lock:
            if self._stopped:
                task.cancel()
            self._loop, self._task, self._room = asyncio.get_running_loop(), task, room
        try:
            await task
        except asyncio.CancelledError:
            if not self._stopped:
                raise  # not our cancel: let asyncio.run see it

    def _run(self) -> None:
        try:
            asyncio.run(self._crawl())
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(None)

    def _release(self) -> None:
        """Give one result's room back to the crawl loop (called from the consumer's thread)."""
        with self._lock:
            loop, room = self._loop, self._room
        if loop is not None and room is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended: nobody waits for room
                loop.call_soon_threadsafe(room.release)

    def __iter__(self) -> Iterator[CrawlResult]:
        # No tick: the queue's get blocks until a result, so results() never yields None here.
        return (result for result in self.results(None) if result is not None)

    def results(self, tick: float | None) -> Iterator[CrawlResult | None]:
        """Like iterating the session, but yields None whenever no result came for ``tick`` seconds, so
        the consumer can look at its clock while the crawl is quiet (discovery reading a large sitemap,
        every worker waiting on a slow server). ``tick`` None waits for each result."""
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=tick)
            except queue.Empty:
                yield None
                continue
            if item is None:
                self._thread.join()
                return
            if isinstance(item, BaseException):
                raise item
            self._release()
            yield item

    def close(self) -> None:
        """Stop early (the consumer gave up): the crawl task is cancelled and its thread ends."""
        with self._lock:
            self._stopped = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(task.cancel)


def crawl_source(
    source: Source,
    config: CrawlConfig,
    previous: Mapping[str, Validators] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    stop: Callable[[], bool] | None = None,
) -> CrawlSession:
    """Start crawling ``source``; iterate the returned session for results, then read its summary.

    ``stop()`` (called from the crawl's thread) turning true ends discovery early, the source then
    incomplete. Raises :class:`ValueError` at once for a bad start URL or include/exclude regex.
    """
    return CrawlSession(SourceCrawler(source, config, previous, transport, stop))
