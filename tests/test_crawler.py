"""Crawler: pure decisions, then real crawls of the fixture site on loopback."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from shared import backoff
from shared.config import Source, SourceKind
from shared.knowledge import fetching, links, robots, sitemaps, urls
from shared.knowledge.crawler import CrawlConfig, CrawlSession, Outcome, SourceCrawler, crawl_source
from tests import sites

# A generous timeout, so a loaded machine's late answer is not retried (exact hit counts). Only
# test_sitemap_crawl_outcomes requests the slow page; it waits 2 x timeout for it.
FAST = CrawlConfig(
    concurrency=4, timeout_seconds=5.0, retries=1, max_page_bytes=1_000_000, backoff_base_seconds=0.05
)
# Twice the timeout, so it always times out; not more, since the site's stop waits for its handlers.
SLOW_SECONDS = 2 * FAST.timeout_seconds


# --- pure decisions ---------------------------------------------------------------------------------
def test_normalize_url() -> None:
    assert urls.normalize_url("HTTP://Example.COM:80/a#frag") == "http://example.com/a"
    assert urls.normalize_url("https://example.com") == "https://example.com/"
    assert urls.normalize_url("../b?x=1", "http://h:8080/a/c") == "http://h:8080/b?x=1"
    assert urls.normalize_url("mailto:a@b.c") is None
    assert urls.normalize_url("javascript:void(0)") is None
    assert urls.normalize_url("http://[bad") is None
    assert urls.normalize_url("   ") is None


def test_same_site() -> None:
    assert urls.same_site("https://a.com/x", "http://a.com/")
    assert not urls.same_site("https://b.a.com/x", "https://a.com/")
    assert not urls.same_site("http://127.0.0.1:2/x", "http://127.0.0.1:1/")


def test_filters_and_extensions() -> None:
    inc = urls.compile_patterns([r"/docs/"], "include")
    exc = urls.compile_patterns([r"/docs/internal"], "exclude")
    assert urls.url_filter_reason("http://h/docs/a", inc, exc) is None
    assert "include" in urls.url_filter_reason("http://h/blog/a", inc, exc)
    assert "exclude" in urls.url_filter_reason("http://h/docs/internal/x", inc, exc)
    with pytest.raises(ValueError, match="invalid include regex"):
        urls.compile_patterns(["("], "include")
    assert urls.binary_extension("http://h/a/manual.PDF") == ".pdf"
    assert urls.binary_extension("http://h/v1.2/page") is None
    assert fetching.is_html_type("text/html; charset=utf-8")
    assert not fetching.is_html_type("application/pdf")


def test_retry_decisions() -> None:
    assert fetching.should_retry(429) and fetching.should_retry(503)
    assert not fetching.should_retry(404)
    assert backoff.parse_retry_after("7") == 7.0
    assert backoff.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert backoff.parse_retry_after("soon") is None
    assert fetching.backoff_delay(0, 0.5, None) == 0.5
    assert fetching.backoff_delay(3, 0.5, None) == 4.0
    assert fetching.backoff_delay(3, 0.5, 2.0) == 2.0
    assert fetching.backoff_delay(0, 0.5, 10_000) == 60.0  # a hostile Retry-After can't stall the run


@dataclass
class _Prev:
    etag: str | None
    last_modified: str | None


def test_conditional_headers() -> None:
    assert fetching.conditional_headers(None) == {}
    assert fetching.conditional_headers(_Prev('"x"', "Mon, 01 Jan 2024 00:00:00 GMT")) == {
        "If-None-Match": '"x"',
        "If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT",
    }


def test_robots_rules() -> None:
    assert robots.robots_url("https://h:8080") == "https://h:8080/robots.txt"
    rules = robots.robots_rules(200, "User-agent: *\nDisallow: /private\nSitemap: https://h/s.xml\n")
    assert rules.can_fetch("askbase", "https://h/docs") and not rules.can_fetch(
        "askbase", "https://h/private/x"
    )
    assert rules.site_maps() == ["https://h/s.xml"]
    assert not robots.robots_rules(403, None).can_fetch("askbase", "https://h/")
    assert robots.robots_rules(404, None).can_fetch("askbase", "https://h/")
    assert robots.robots_rules(200, None).can_fetch("askbase", "https://h/")  # over the size cap: allow
    # RFC 9309: unreachable (5xx, no answer) means complete disallow, which the crawl reports site-wide.
    assert robots.robots_unreachable(503) and robots.robots_unreachable(0)
    assert not robots.robots_unreachable(404)
    assert not robots.robots_rules(503, None).can_fetch("askbase", "https://h/")


def test_parse_links_canonical_and_feeds() -> None:
    html = (
        '<html><head><link rel="canonical" href="/docs/a"><link rel="alternate" '
        'type="application/atom+xml" href="/atom.xml"></head><body><a href="b#x">b</a>'
        '<a href="mailto:x@y">m</a><a rel="nofollow" href="/n">n</a><a href="/docs/">d</a></body></html>'
    )
    page = links.parse_links(html, "http://h/docs/index")
    assert page.links == ["http://h/docs/b", "http://h/docs/"]
    assert page.canonical == "http://h/docs/a"
    assert page.feeds == ["http://h/atom.xml"]
    assert links.page_identity("http://h/x?ref=1", page.canonical) == "http://h/docs/a"
    assert links.page_identity("http://h/x", "http://other/x") == "http://h/x"
    assert links.parse_links("<<<not html", "http://h/").links == []


def test_parse_sitemap_feed_and_refusals() -> None:
    urls, subs = sitemaps.parse_sitemap(
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc> http://h/a </loc>'
        b"</url></urlset>"
    )
    assert (urls, subs) == (["http://h/a"], [])
    urls, subs = sitemaps.parse_sitemap(
        b"<sitemapindex><sitemap><loc>http://h/s1.xml</loc></sitemap></sitemapindex>"
    )
    assert (urls, subs) == ([], ["http://h/s1.xml"])
    assert sitemaps.parse_feed(b"<rss><channel><item><link>http://h/p</link></item></channel></rss>") == [
        "http://h/p"
    ]
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><link rel="self" href="http://h/s"/>'
        b'<link href="http://h/post"/></entry></feed>'
    )
    assert sitemaps.parse_feed(atom) == ["http://h/post"]
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><urlset>&a;</urlset>'
    with pytest.raises(sitemaps.FeedError, match="DOCTYPE"):
        sitemaps.parse_sitemap(bomb)
    with pytest.raises(sitemaps.FeedError, match="not well-formed"):
        sitemaps.parse_sitemap(b"<urlset><url>")
    with pytest.raises(sitemaps.FeedError, match="not a sitemap"):
        sitemaps.parse_sitemap(b"<html></html>")
    with pytest.raises(sitemaps.FeedError, match="not an RSS"):
        sitemaps.parse_feed(b"<urlset/>")


def _gzip_bomb(mebibytes: int) -> bytes:
    """A gzipped sitemap that unpacks to ``mebibytes`` MiB (well-formed XML: <urlset>, spaces, </urlset>).

    Built from concatenated gzip members (legal gzip) so it costs about 1 KB per MiB and no time.
    """
    spaces = gzip.compress(b" " * (1 << 20), mtime=0)
    return gzip.compress(b"<urlset>", mtime=0) + spaces * mebibytes + gzip.compress(b"</urlset>", mtime=0)


def test_gzipped_sitemap_unpacks_under_a_cap() -> None:
    small = gzip.compress(b"<urlset><url><loc>http://h/a</loc></url></urlset>")
    assert sitemaps.parse_sitemap(small) == (["http://h/a"], [])
    assert sitemaps.gunzip_capped(gzip.compress(b"ab") + gzip.compress(b"cd"), 4) == b"abcd"
    with pytest.raises(sitemaps.DocumentTooLarge, match="more than 1000 bytes"):
        sitemaps.parse_sitemap(gzip.compress(b"<urlset>" + b" " * 2000 + b"</urlset>"), max_bytes=1000)
    with pytest.raises(sitemaps.FeedError, match="bad gzip data"):
        sitemaps.parse_sitemap(small[:-12])
    with pytest.raises(sitemaps.DocumentTooLarge):
        sitemaps.parse_feed(gzip.compress(b"<rss>" + b" " * 2000 + b"</rss>"), max_bytes=1000)
    # A 1 GiB bomb stops at the cap: memory stays near the cap, never near the bomb's size.
    bomb = _gzip_bomb(1024)
    assert len(bomb) < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(sitemaps.DocumentTooLarge):
            sitemaps.parse_sitemap(bomb, max_bytes=4_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000
    assert CrawlConfig().max_sitemap_bytes == sitemaps.MAX_SITEMAP_BYTES == 50 * 1024 * 1024


# --- real crawls -------------------------------------------------------------------------------------
@pytest.fixture
def site() -> Iterator[sites.FixtureSite]:
    with sites.standard_site(slow_seconds=SLOW_SECONDS, big_bytes=1_500_000) as s:
        yield s


def _crawl(source: Source, previous: dict | None = None, config: CrawlConfig = FAST):
    session = crawl_source(source, config, previous)
    results = list(session)
    return {r.url if r.outcome is Outcome.FETCHED else r.requested_url: r for r in results}, session.summary


def test_sitemap_crawl_outcomes(site: sites.FixtureSite) -> None:
    source = Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/"))
    results, summary = _crawl(source)
    u = site.url
    assert summary.complete, summary.error
    for path in sites.DOC_PAGES:
        assert results[u(path)].outcome is Outcome.FETCHED
        assert "<h2" in results[u(path)].html
    assert results[u(sites.FLAKY)].outcome is Outcome.FETCHED  # 500 then 200: retried
    assert site.hits[sites.FLAKY] == 2
    assert results[u(sites.PRIVATE)].outcome is Outcome.SKIPPED
    assert "robots" in results[u(sites.PRIVATE)].reason
    assert site.hits[sites.PRIVATE] == 0  # never requested
    assert results[u(sites.BIG)].outcome is Outcome.SKIPPED and "larger" in results[u(sites.BIG)].reason
    assert results[u(sites.PDF)].outcome is Outcome.SKIPPED and site.hits[sites.PDF] == 0
    assert results[u(sites.PDF_NO_EXT)].outcome is Outcome.SKIPPED
    assert "application/pdf" in results[u(sites.PDF_NO_EXT)].reason
    assert results[u(sites.MISSING)].outcome is Outcome.GONE
    assert results[u(sites.SLOW)].outcome is Outcome.FAILED and "timeout" in results[u(sites.SLOW)].reason
    assert results[u(sites.DUPLICATE)].outcome is Outcome.FETCHED  # content dedupe is the caller's job
    assert results[u(sites.DOC_PAGES[0])].etag


def test_second_crawl_is_conditional(site: sites.FixtureSite) -> None:
    source = Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/"), exclude=["slow"])
    first, _ = _crawl(source)
    previous = {url: r for url, r in first.items() if r.outcome is Outcome.FETCHED}
    site.edit_page("/docs/faq", sites.page_for("/docs/faq", version=2))
    site.reset_hits()
    second, summary = _crawl(source, previous)
    assert summary.complete
    assert second[site.url("/docs/install")].outcome is Outcome.UNCHANGED
    assert second[site.url("/docs/faq")].outcome is Outcome.FETCHED
    assert ("/docs/install", 304) in site.statuses


def test_link_crawl_follows_redirect_and_stays_on_site(site: sites.FixtureSite) -> None:
    source = Source(name="site", kind=SourceKind.CRAWL, url=site.url("/"), exclude=["slow"])
    results, summary = _crawl(source)
    assert summary.complete
    fetched = {url for url, r in results.items() if r.outcome is Outcome.FETCHED}
    assert site.url("/docs/install") in fetched
    # /docs/old-install redirects to /docs/install: reported once under its final identity.
    assert not any("example.com" in url for url in results)
    assert results[site.url(sites.IMAGE)].outcome is Outcome.SKIPPED


def test_feed_source(site: sites.FixtureSite) -> None:
    # The start page is HTML advertising the feed: discovery follows <link rel=alternate>.
    source = Source(name="blog", kind=SourceKind.FEED, url=site.url("/"))
    results, summary = _crawl(source)
    assert summary.complete, summary.error
    assert {url for url, r in results.items() if r.outcome is Outcome.FETCHED} == {
        site.url(p) for p in sites.BLOG_POSTS
    }


def test_max_pages_and_include(site: sites.FixtureSite) -> None:
    source = Source(
        name="docs",
        kind=SourceKind.SITEMAP,
        url=site.url("/"),
        include=[r"/docs/"],
        exclude=["slow"],
        max_pages=3,
    )
    results, summary = _crawl(source)
    assert summary.discovered == 3
    requested = [r for r in results.values() if "match" not in r.reason]  # not filtered by a pattern
    assert len(requested) == 3
    assert all("/docs/" in url or r.outcome is Outcome.SKIPPED for url, r in results.items())


def test_site_down_is_incomplete() -> None:
    source = Source(name="down", kind=SourceKind.SITEMAP, url="http://127.0.0.1:9/")
    results, summary = _crawl(source, config=CrawlConfig(timeout_seconds=0.5, retries=0))
    assert not summary.complete
    assert "robots.txt" in summary.error
    assert results == {}


def test_retry_after_is_honoured(site: sites.FixtureSite) -> None:
    site.set_page("/docs/busy", sites.page_for("/docs/busy"), fail_times=2)
    source = Source(name="d", kind=SourceKind.SITEMAP, url=site.url("/"), include=["busy"])
    results, _ = _crawl(source, config=CrawlConfig(retries=2, backoff_base_seconds=0.01))
    assert results[site.url("/docs/busy")].outcome is Outcome.FETCHED
    assert site.hits["/docs/busy"] == 3
    site.set_page("/docs/busy", sites.page_for("/docs/busy"), fail_times=5)
    results, _ = _crawl(source, config=CrawlConfig(retries=1, backoff_base_seconds=0.01))
    assert results[site.url("/docs/busy")].outcome is Outcome.FAILED


def test_bad_source_is_a_clear_error() -> None:
    # Refused with the source, before any crawl starts.
    with pytest.raises(ValueError, match=r"exclude: pattern 0 \('\[a'\) is not a valid regex"):
        Source(name="x", kind=SourceKind.CRAWL, url="http://h/", exclude=["[a"])


def test_sample_site_crawls_and_extracts() -> None:
    """The docs site ``askbase dev`` serves: every page is fetched, extracted, then 304 on a re-crawl."""
    from shared.devstack.site_server import SAMPLE_SITE, serve_sample_site
    from shared.knowledge.extract import extract_page

    server = serve_sample_site()
    try:
        source = Source(name="sample-docs", kind=SourceKind.SITEMAP, url=server.url("/sitemap.xml"))
        results, summary = _crawl(source)
        fetched = {url: r for url, r in results.items() if r.outcome is Outcome.FETCHED}
        assert summary.complete, summary.error
        assert len(fetched) == len(list(SAMPLE_SITE.glob("*.html"))) >= 8
        for url, result in fetched.items():
            page = extract_page(result.html, url)
            assert page is not None and len(page.sections) >= 3, url
        again, _ = _crawl(source, previous=fetched)
        assert {r.outcome for r in again.values()} == {Outcome.UNCHANGED}
    finally:
        server.stop()


def test_redirects_stay_on_site_and_revalidate(site: sites.FixtureSite) -> None:
    with sites.FixtureSite() as other:
        other.set_page("/landing", sites.page_for("/landing"))
        site.redirects["/docs/away"] = other.url("/landing")
        site.redirects["/docs/loop"] = "/docs/loop"
        results, _ = _crawl(Source(name="d", kind=SourceKind.CRAWL, url=site.url("/docs/away")))
        assert other.hits["/landing"] == 0  # never requested: same-site only
        assert results[site.url("/docs/away")].outcome is Outcome.SKIPPED
        assert "off-site" in results[site.url("/docs/away")].reason
        site.redirects["/docs/sneaky"] = sites.PRIVATE
        results, _ = _crawl(Source(name="d", kind=SourceKind.CRAWL, url=site.url("/docs/sneaky")))
        assert "robots" in results[site.url("/docs/sneaky")].reason
        assert site.hits[sites.PRIVATE] == 0
        results, _ = _crawl(Source(name="d", kind=SourceKind.CRAWL, url=site.url("/docs/loop")))
        assert results[site.url("/docs/loop")].outcome is Outcome.FAILED
        assert "redirects" in results[site.url("/docs/loop")].reason
        # A redirecting URL still ends in a 304 for its target's stored validators.
        first, _ = _crawl(Source(name="d", kind=SourceKind.CRAWL, url=site.url(sites.REDIRECT)))
        install = first[site.url("/docs/install")]
        assert install.outcome is Outcome.FETCHED and install.requested_url == site.url(sites.REDIRECT)
        site.reset_hits()
        again, _ = _crawl(
            Source(name="d", kind=SourceKind.CRAWL, url=site.url(sites.REDIRECT)),
            previous={install.url: install},
        )
        # Both the redirect and the stored URL itself were checked; both ended in 304, reported once.
        unchanged = [r for r in again.values() if r.outcome is Outcome.UNCHANGED]
        assert [r.url for r in unchanged] == [site.url("/docs/install")]
        assert ("/docs/install", 200) not in site.statuses
        assert ("/docs/install", 304) in site.statuses


def test_gzip_bomb_sitemap_is_skipped_and_the_rest_crawled(site: sites.FixtureSite, caplog) -> None:
    # A sitemap index listing the normal sitemap and a .xml.gz that unpacks to 64 MiB, past the default
    # cap (the sitemap protocol's 50 MiB).
    site.set_page("/bomb.xml.gz", _gzip_bomb(64), content_type="application/gzip", in_sitemap=False)
    index = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{site.url('/bomb.xml.gz')}</loc></sitemap>"
        f"<sitemap><loc>{site.url('/sitemap-pages.xml')}</loc></sitemap></sitemapindex>"
    )
    site.set_page("/sitemaps.xml", index, content_type="application/xml", in_sitemap=False)
    source = Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/sitemaps.xml"), exclude=["slow"])
    with caplog.at_level(logging.WARNING, logger="shared.knowledge.discovery"):
        results, summary = _crawl(source)
    assert site.hits["/bomb.xml.gz"] == 1
    # The other sitemap's pages were still crawled...
    for path in sites.DOC_PAGES:
        assert results[site.url(path)].outcome is Outcome.FETCHED
    # ...but the crawl is incomplete, so the caller removes no page the skipped sitemap might list.
    assert not summary.complete
    assert "bomb.xml.gz" in summary.error and "more than 52428800 bytes" in summary.error
    assert any(
        "bomb.xml.gz skipped" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )


def _feed_page(*feeds: str) -> str:
    links = "".join(f'<link rel="alternate" type="application/rss+xml" href="{f}">' for f in feeds)
    return f"<!doctype html><html><head><title>News</title>{links}</head><body><p>news</p></body></html>"


def test_feed_discovery_never_leaves_the_site(site: sites.FixtureSite, caplog) -> None:
    with sites.FixtureSite() as other:
        other.set_page("/elsewhere/post", sites.page_for("/elsewhere/post"))
        other.feed_paths = ["/elsewhere/post"]
        # Only an off-site feed advertised: ignored (never requested), the source reports no feed.
        site.set_page("/news", _feed_page(other.url("/feed.xml")), in_sitemap=False)
        with caplog.at_level(logging.WARNING, logger="shared.knowledge.discovery"):
            results, summary = _crawl(Source(name="blog", kind=SourceKind.FEED, url=site.url("/news")))
        assert other.hits.total() == 0
        assert not summary.complete and "no RSS/Atom feed on its own site" in summary.error
        assert results == {}
        assert any(f"ignoring feed link {other.url('/feed.xml')}" in r.getMessage() for r in caplog.records)
        # An off-site feed listed before the site's own: the site's own is used.
        site.set_page("/news2", _feed_page(other.url("/feed.xml"), "/feed.xml"), in_sitemap=False)
        results, summary = _crawl(Source(name="blog", kind=SourceKind.FEED, url=site.url("/news2")))
        assert summary.complete, summary.error
        assert other.hits.total() == 0
        assert {url for url, r in results.items() if r.outcome is Outcome.FETCHED} == {
            site.url(p) for p in sites.BLOG_POSTS
        }


# --- the crawl loop while the consumer is busy ------------------------------------------------------
class _WatchedTransport(httpx.AsyncBaseTransport):
    """The real loopback transport, plus two hooks for the test: a request for ``held`` waits (with
    ``await``, so the loop stays free) until :attr:`release` is set, and :meth:`wait_read` waits until
    the paths whose response bodies the crawl loop has read to the end satisfy a condition."""

    def __init__(self, held: str) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._held = held
        self.held_requested = threading.Event()
        self.release = threading.Event()
        self._state = threading.Condition()
        self._read: set[str] = set()

    def wait_read(self, condition: Callable[[set[str]], bool]) -> bool:
        """Whether ``condition(paths read)`` became true before the failure guard ran out."""
        with self._state:
            return self._state.wait_for(lambda: condition(self._read), GUARD)

    def mark_read(self, path: str) -> None:
        with self._state:
            self._read.add(path)
            self._state.notify_all()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == self._held:
            self.held_requested.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_MarkEnd(response.stream, lambda: self.mark_read(path)),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _MarkEnd(httpx.AsyncByteStream):
    """A response body that calls ``done`` once it has been read to the end."""

    def __init__(self, inner: httpx.AsyncByteStream, done: Callable[[], None]) -> None:
        self._inner = inner
        self._done = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part
        self._done()

    async def aclose(self) -> None:
        await self._inner.aclose()


GUARD = 60.0  # only a failure guard: every wait below ends on an event long before it


def test_the_crawl_loop_keeps_reading_responses_while_the_consumer_is_busy() -> None:
    # The consumer (the scrape job, busy embedding) takes one result and then nothing more. With room
    # for 2 results in the buffer, a 4th page read in full has nowhere to go: its worker is waiting
    # for room. A request that was still in flight then must still be answered and read to the end:
    # the loop waits for room with `await`, it does not block. (Blocking it froze every open
    # connection until the consumer came back, and requests timed out.) Counted, not timed: the
    # held response is released only once a result is known to be waiting for room.
    with sites.generated_site(12) as site:
        held = "/gen/page-0000"  # first in the sitemap: the first worker takes it
        transport = _WatchedTransport(held)
        source = Source(name="gen", kind=SourceKind.SITEMAP, url=site.url("/sitemap.xml"))
        session = CrawlSession(SourceCrawler(source, FAST, transport=transport), buffer=2)
        results = iter(session)
        try:
            first = next(results)  # starts the crawl; then the consumer is "busy": it takes nothing more
            assert transport.held_requested.wait(GUARD)
            assert transport.wait_read(lambda read: len(read - {held}) >= 1 + 2 + 1)
            transport.release.set()
            assert transport.wait_read(lambda read: held in read), (
                "the held response was not read while the consumer was busy"
            )
        finally:
            transport.release.set()  # never leave the executor thread waiting, whatever failed
        rest = [first, *results]
    assert session.summary.complete
    fetched = {r.url for r in rest if r.outcome is Outcome.FETCHED}
    assert fetched == {site.url(f"/gen/page-{i:04d}") for i in range(12)}
    assert not [r for r in rest if r.outcome is Outcome.FAILED]


def test_a_consumer_that_gives_up_stops_the_crawl() -> None:
    with sites.generated_site(30) as site:
        source = Source(name="gen", kind=SourceKind.SITEMAP, url=site.url("/sitemap.xml"))
        session = CrawlSession(SourceCrawler(source, FAST), buffer=1)
        results = iter(session)
        next(results)
        session.close()
        session._thread.join(GUARD)
        assert not session._thread.is_alive()
        assert site.hits.total() < 30 + 2  # it did not go on to fetch the whole site for nobody
