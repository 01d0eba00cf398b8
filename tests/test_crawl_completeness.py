"""When a crawl may not be taken as the source's whole truth: crawls of the fixture site on loopback
that end with the source marked incomplete, so the scrape job removes nothing it did not see."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from shared.config import Source, SourceKind
from shared.knowledge.crawler import CrawlConfig, Outcome, crawl_source
from tests import sites

FAST = CrawlConfig(
    concurrency=4, timeout_seconds=5.0, retries=1, max_page_bytes=1_000_000, backoff_base_seconds=0.01
)


@pytest.fixture
def site() -> Iterator[sites.FixtureSite]:
    with sites.standard_site(big_bytes=1_500_000) as s:
        s.remove_page(sites.SLOW)
        yield s


def _crawl(source: Source, previous: dict | None = None, config: CrawlConfig = FAST):
    session = crawl_source(source, config, previous)
    results = list(session)
    return {r.requested_url: r for r in results}, session.summary


def _answer_everywhere(site: sites.FixtureSite, status: int) -> None:
    for path in list(site.pages):
        site.set_page(path, b"denied", status=status)


@pytest.mark.parametrize("status", [401, 403, 404, 429])
def test_a_start_page_that_is_not_served_leaves_a_link_crawl_incomplete(site, status: int) -> None:
    _answer_everywhere(site, status)
    results, summary = _crawl(Source(name="site", kind=SourceKind.CRAWL, url=site.url("/")))
    assert not summary.complete
    assert site.url("/") in summary.error and f"HTTP {status}" in summary.error
    # A refusal (401/403) or a rate limit (429) says nothing about whether the page exists.
    if status != 404:
        assert results[site.url("/")].outcome is Outcome.FAILED


def test_a_start_page_redirected_off_site_leaves_the_crawl_incomplete(site) -> None:
    with sites.FixtureSite() as other:
        other.set_page("/maintenance", sites.page_for("/maintenance"))
        site.redirects["/"] = other.url("/maintenance")
        results, summary = _crawl(Source(name="site", kind=SourceKind.CRAWL, url=site.url("/")))
    assert results[site.url("/")].outcome is Outcome.SKIPPED
    assert not summary.complete and "off-site" in summary.error


def test_a_sitemap_whose_every_page_is_refused_is_incomplete(site) -> None:
    _answer_everywhere(site, 403)
    results, summary = _crawl(Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/")))
    assert results and all(r.outcome is not Outcome.FETCHED for r in results.values())
    assert not summary.complete and "HTTP 403" in summary.error


_NO_SUCH_KEY = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code></Error>"


@pytest.mark.parametrize("kind", [SourceKind.SITEMAP, SourceKind.CRAWL])
@pytest.mark.parametrize("status", [401, 403, 429, 503])
@pytest.mark.parametrize("body", [_NO_SUCH_KEY, b"<html><body>Request blocked</body></html>"])
def test_one_refused_page_of_a_serving_site_is_gone(site, kind: SourceKind, status: int, body: bytes) -> None:
    # S3/CloudFront without ListBucket (and Cloud Storage) answer 403 with an XML AccessDenied for a key
    # that no longer exists: when the site plainly serves (its start page, or most listed pages), such a
    # page is gone. Any other refusal (a WAF's rate rule) says nothing, nor do 429/5xx.
    site.set_page("/docs/faq", body, status=status)
    source = Source(name="docs", kind=kind, url=site.url("/"), exclude=["big"])
    results, summary = _crawl(source, {site.url("/docs/faq"): _Stored(None, None)})
    assert summary.complete, summary.error
    expected = Outcome.GONE if status in (401, 403) and body == _NO_SUCH_KEY else Outcome.FAILED
    assert results[site.url("/docs/faq")].outcome is expected


# --- sitemaps -------------------------------------------------------------------------------------------
class _RobotsSite(sites.FixtureSite):
    """The standard site, except that robots.txt lists exactly :attr:`robots_sitemaps`."""

    robots_sitemaps: tuple[str, ...] = ()

    async def _respond(self, request: Request, path: str) -> Response:
        if path == "/robots.txt":
            return PlainTextResponse(
                "User-agent: *\n" + "".join(f"Sitemap: {u}\n" for u in self.robots_sitemaps)
            )
        return await super()._respond(request, path)


def _index_of(*locs: str) -> str:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'


_PAGE = sites.doc_html("Page", [("Part", sites.prose("cdn"))])


def _cdn_site(extra: dict[str, httpx.Response] | None = None) -> httpx.MockTransport:
    """docs.example.com, whose robots.txt names its sitemap index on cdn.example.com (allowed by the
    Sitemaps protocol when robots.txt references it); the index's children are on the CDN too."""
    urlset = '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{}</urlset>'
    answers = {
        "https://docs.example.com/robots.txt": httpx.Response(
            200, text="User-agent: *\nSitemap: https://cdn.example.com/sitemaps/index.xml\n"
        ),
        "https://cdn.example.com/sitemaps/index.xml": httpx.Response(
            200,
            text=_index_of(
                "https://cdn.example.com/sitemaps/pages.xml", "https://elsewhere.example.org/sitemap.xml"
            ),
        ),
        "https://cdn.example.com/sitemaps/pages.xml": httpx.Response(
            200,
            text=urlset.format(
                "".join(
                    f"<url><loc>https://{host}/p{i}</loc></url>"
                    for host in ("docs.example.com", "x.test")
                    for i in range(3)
                )
            ),
        ),
        **{
            f"https://docs.example.com/p{i}": httpx.Response(
                200, text=_PAGE, headers={"content-type": "text/html"}
            )
            for i in range(3)
        },
        **(extra or {}),
    }
    hits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        hits.append(url)
        answer = answers.get(url)
        return (
            httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)
            if answer
            else httpx.Response(404)
        )

    transport = httpx.MockTransport(handler)
    transport.hits = hits  # type: ignore[attr-defined]
    return transport


def _mock_crawl(transport: httpx.MockTransport, url: str = "https://docs.example.com/"):
    session = crawl_source(Source(name="docs", kind=SourceKind.SITEMAP, url=url), FAST, transport=transport)
    return {r.requested_url: r for r in session}, session.summary


def test_a_sitemap_robots_txt_names_on_another_host_is_read(caplog) -> None:
    transport = _cdn_site()
    with caplog.at_level(logging.WARNING, logger="shared.knowledge.discovery"):
        results, summary = _mock_crawl(transport)
    # The pages it lists on the site are crawled; those on other sites are not (same_site).
    assert {u for u, r in results.items() if r.outcome is Outcome.FETCHED} == {
        f"https://docs.example.com/p{i}" for i in range(3)
    }
    assert all(results[f"https://x.test/p{i}"].outcome is Outcome.SKIPPED for i in range(3))
    assert not any("x.test" in hit for hit in transport.hits)  # type: ignore[attr-defined]
    # An index may list children on its own host (the CDN), not on a third one: that is a problem.
    assert "https://elsewhere.example.org/sitemap.xml" not in transport.hits  # type: ignore[attr-defined]
    assert not summary.complete and "elsewhere.example.org" in summary.error
    assert any("elsewhere.example.org" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("status", [404, 410])
def test_a_child_sitemap_that_is_gone_lists_nothing(status: int) -> None:
    missing = httpx.Response(status)
    index = httpx.Response(
        200, text=_index_of("https://cdn.example.com/sitemaps/pages.xml", "https://cdn.example.com/old.xml")
    )
    transport = _cdn_site(
        {"https://cdn.example.com/sitemaps/index.xml": index, "https://cdn.example.com/old.xml": missing}
    )
    results, summary = _mock_crawl(transport)
    assert sum(r.outcome is Outcome.FETCHED for r in results.values()) == 3
    assert summary.complete, summary.error


def test_a_site_wide_discovery_failure_names_the_earlier_problems() -> None:
    transport = _cdn_site({"https://cdn.example.com/sitemaps/index.xml": httpx.Response(503)})
    results, summary = _mock_crawl(transport)
    assert results == {} and not summary.complete
    assert "https://cdn.example.com/sitemaps/index.xml unavailable (503)" in summary.error


def test_a_sitemap_listing_no_page_is_incomplete(site) -> None:
    empty = '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>'
    site.set_page("/empty.xml", empty, content_type="application/xml", in_sitemap=False)
    results, summary = _crawl(Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/empty.xml")))
    assert results == {}
    assert not summary.complete and "no page" in summary.error


@pytest.mark.parametrize("trouble", ["server-error", "not-xml"])
def test_a_broken_child_sitemap_is_skipped_and_the_rest_crawled(site, trouble: str) -> None:
    if trouble == "server-error":
        site.set_page("/sitemap-2019.xml", b"", status=503, in_sitemap=False)
    elif trouble == "not-xml":
        site.set_page("/sitemap-2019.xml", "<html>moved</html>", in_sitemap=False)
    index = _index_of(site.url("/sitemap-pages.xml"), site.url("/sitemap-2019.xml"))
    site.set_page("/sitemaps.xml", index, content_type="application/xml", in_sitemap=False)
    source = Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/sitemaps.xml"), exclude=["big"])
    results, summary = _crawl(source)
    for path in sites.DOC_PAGES:
        assert results[site.url(path)].outcome is Outcome.FETCHED
    assert not summary.complete and site.url("/sitemap-2019.xml") in summary.error


def test_an_unreadable_root_sitemap_is_a_site_wide_failure(site) -> None:
    source = Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/gone.xml"))
    results, summary = _crawl(source)
    assert results == {}
    assert not summary.complete and "gone.xml unavailable (404)" in summary.error


# --- a source's include/exclude hold for where a page leads, too ------------------------------------
def test_a_redirect_out_of_the_sources_patterns_is_skipped(site) -> None:
    site.set_page("/elsewhere/page", sites.page_for("/elsewhere/page"), in_sitemap=False)
    site.redirects["/docs/moved"] = "/elsewhere/page"
    home = sites.doc_html("Home", [("Welcome", sites.prose("home"))], ["/docs/install", "/docs/moved"])
    site.set_page("/docs/", home, in_sitemap=False)
    source = Source(name="docs", kind=SourceKind.CRAWL, url=site.url("/docs/"), include=[r"/docs/"])
    results, summary = _crawl(source)
    moved = results[site.url("/docs/moved")]
    assert (
        moved.outcome is Outcome.SKIPPED and "/elsewhere/page" in moved.reason and "include" in moved.reason
    )
    assert not any(r.url == site.url("/elsewhere/page") for r in results.values())
    assert summary.complete, summary.error


def test_a_canonical_url_out_of_the_sources_patterns_is_not_the_pages_identity(site) -> None:
    html = sites.doc_html("Canon", [("Part", sites.prose("canon"))], canonical=site.url("/blog/canon"))
    site.set_page("/docs/canon", html)
    results, _ = _crawl(_docs_sitemap(site, exclude=[r"/blog/"]))
    assert results[site.url("/docs/canon")].outcome is Outcome.FETCHED
    assert results[site.url("/docs/canon")].url == site.url("/docs/canon")
    # A canonical URL inside the patterns still names the page.
    site.set_page(
        "/docs/canon", sites.doc_html("Canon", [("Part", sites.prose("canon"))], canonical="/docs/install")
    )
    results, _ = _crawl(_docs_sitemap(site, include=[r"/docs/"]))
    assert results[site.url("/docs/canon")].url == site.url("/docs/install")


def _docs_sitemap(site: sites.FixtureSite, **options) -> Source:
    return Source(
        name="docs",
        kind=SourceKind.SITEMAP,
        url=site.url("/"),
        exclude=["big", *options.pop("exclude", [])],
        **options,
    )


# --- max_pages -----------------------------------------------------------------------------------------
def test_max_pages_counts_what_it_cuts_and_keeps_the_indexed_pages_first(site, caplog) -> None:
    source = _docs_sitemap(site, include=[r"/docs/"], exclude=[r"missing|flaky|configure-copy"], max_pages=2)
    indexed = {site.url(p): None for p in ("/docs/faq", "/docs/install")}  # the sitemap lists them apart
    previous = {url: _Stored(None, None) for url in indexed}
    with caplog.at_level(logging.WARNING, logger="shared.knowledge.crawler"):
        results, summary = _crawl(source, previous)
    fetched = {url for url, r in results.items() if r.outcome is Outcome.FETCHED}
    assert fetched == set(indexed)
    assert summary.over_max_pages == len(sites.DOC_PAGES) - 2
    assert any("3 URLs over max_pages (2)" in r.getMessage() for r in caplog.records)


@dataclass
class _Stored:
    etag: str | None
    last_modified: str | None


@pytest.mark.parametrize("max_pages", [1, 3])
def test_the_start_url_goes_first_whatever_max_pages(site, max_pages: int) -> None:
    # The start URL is not itself an indexed page (it redirects to /en/): it must not fall over the budget.
    site.set_page("/en/", sites.page_for("/en/"), in_sitemap=False)
    site.redirects["/"] = "/en/"
    previous = {site.url(p): _Stored(None, None) for p in ["/en/", *sites.DOC_PAGES]}
    source = Source(name="site", kind=SourceKind.CRAWL, url=site.url("/"), max_pages=max_pages)
    results, summary = _crawl(source, previous)
    assert results[site.url("/")].outcome is Outcome.FETCHED
    assert summary.complete, summary.error
    assert summary.discovered == max_pages and len(summary.cut) == summary.over_max_pages
    assert site.url("/") not in summary.cut
    assert len(set(previous) & summary.cut) == len(previous) + 1 - max_pages


def test_discovery_stops_between_child_sitemaps_at_the_deadline() -> None:
    children = [f"https://docs.example.com/sitemap-{i}.xml" for i in range(3)]
    urlset = '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{}</loc></url></urlset>'
    fetched: list[str] = []
    stop = [False]

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        fetched.append(url)
        if url.endswith("/robots.txt"):
            return httpx.Response(200, text="User-agent: *\nSitemap: https://docs.example.com/index.xml\n")
        if url.endswith("/index.xml"):
            return httpx.Response(200, text=_index_of(*children))
        if url in children:
            stop[0] = True  # the run's deadline passes while the first child is read
            return httpx.Response(200, text=urlset.format(url.replace(".xml", "-page")))
        return httpx.Response(200, text=_PAGE, headers={"content-type": "text/html"})

    source = Source(name="docs", kind=SourceKind.SITEMAP, url="https://docs.example.com/")
    session = crawl_source(source, FAST, transport=httpx.MockTransport(handler), stop=lambda: stop[0])
    results = list(session)
    assert results == [] and [u for u in fetched if u in children] == children[:1]
    assert not session.summary.complete and "deadline" in session.summary.error
