"""When a crawl may not be taken as the source's whole truth: crawls of the fixture site on loopback
that end with the source marked incomplete, so the scrape job removes nothing it did not see."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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


def test_one_refused_page_is_kept_not_gone_and_the_crawl_stays_complete(site) -> None:
    site.set_page("/docs/faq", b"denied", status=403)
    results, summary = _crawl(Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/")))
    assert summary.complete, summary.error
    assert results[site.url("/docs/faq")].outcome is Outcome.FAILED
    assert results[site.url(sites.MISSING)].outcome is Outcome.GONE
