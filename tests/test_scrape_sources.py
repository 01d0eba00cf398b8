"""What one scrape pass does to the index, source by source: the fixture site on loopback, a real index
in a temporary directory and stand-in vectors (no emulators, no model). Each test runs the job's
:class:`~shared.knowledge.scrape._Attempt` over the index the way ``run_scrape`` does, once per crawl."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.responses import Response

from shared.config import Settings, Source, SourceKind
from shared.knowledge import scrape as scrape_module
from shared.knowledge.crawler import CrawlConfig
from shared.knowledge.index import KnowledgeIndex, PageRecord
from shared.knowledge.runs import RunStatus, ScrapeRun, new_run
from tests import sites

FAST = CrawlConfig(
    concurrency=4, timeout_seconds=5.0, retries=0, max_page_bytes=1_000_000, backoff_base_seconds=0.01
)


class HashEmbedder:
    """Stand-in vectors from a hash of the text: fast, deterministic."""

    id = "hash-32"
    dimension = 32

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = [
            np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8).astype(np.float32) / 255.0
            for t in texts
        ]
        return np.vstack(rows) if rows else np.zeros((0, self.dimension), dtype=np.float32)


class Crawls:
    """Scrape passes over one index directory, each on a freshly opened index (as a restore gives)."""

    def __init__(self, settings: Settings, path: Path) -> None:
        self.settings = settings
        self.path = path

    def run(self, *sources: Source, progress=None, **options) -> tuple[ScrapeRun, scrape_module._Attempt]:
        settings = self.settings.model_copy(update={"sources": list(sources)})
        run = new_run("test")
        job = scrape_module._Attempt(
            settings, run, HashEmbedder(), progress or (lambda *a: None), FAST, **options
        )
        index = KnowledgeIndex.open(self.path, job.vectors, settings.collection)
        try:
            job.scrape_all(index)
        finally:
            index.close()
        return run, job

    def pages(self) -> dict[str, PageRecord]:
        index = KnowledgeIndex.open(self.path, HashEmbedder(), self.settings.collection)
        try:
            return index.pages()
        finally:
            index.close()


@pytest.fixture
def crawls(settings: Settings, tmp_path: Path) -> Crawls:
    return Crawls(settings, tmp_path / "index")


@pytest.fixture
def site() -> Iterator[sites.FixtureSite]:
    s = sites.FixtureSite()
    for path in sites.DOC_PAGES:
        s.set_page(path, sites.page_for(path))
    s.set_page(
        "/", sites.doc_html("Home", [("Welcome", sites.prose("home"))], sites.DOC_PAGES), in_sitemap=False
    )
    with s:
        yield s


def _sitemap(site: sites.FixtureSite, **options) -> Source:
    return Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/"), **options)


def _urls(site: sites.FixtureSite, *paths: str) -> set[str]:
    return {site.url(p) for p in paths}


# --- a site that refuses us is not a site without pages ----------------------------------------------
def test_a_site_refusing_every_page_keeps_its_pages(crawls: Crawls, site) -> None:
    source = Source(name="site", kind=SourceKind.CRAWL, url=site.url("/"))
    first, _ = crawls.run(source)
    assert set(crawls.pages()) == _urls(site, "/", *sites.DOC_PAGES), first.sources
    for path in ["/", *sites.DOC_PAGES]:
        site.set_page(path, b"Attention required", status=403)
    run, job = crawls.run(source)
    assert set(crawls.pages()) == _urls(site, "/", *sites.DOC_PAGES)
    assert run.pages_removed == 0 and not job.changed
    assert not run.sources["site"]["complete"] and "HTTP 403" in run.sources["site"]["error"]


@pytest.fixture
def big() -> Iterator[sites.FixtureSite]:
    """A 12-page sitemap source: large enough for MAX_REMOVED_SHARE to hold removals back."""
    with sites.generated_site(12) as s:
        yield s


def _gen(site: sites.FixtureSite, first: int, last: int) -> list[str]:
    return [f"/gen/page-{i:04d}" for i in range(first, last)]


def _held(run: ScrapeRun) -> dict:
    return {name: stats.get("held_back") for name, stats in run.sources.items()}


def test_a_crawl_that_would_remove_most_of_a_source_removes_nothing(crawls: Crawls, big, caplog) -> None:
    crawls.run(_sitemap(big))
    assert len(crawls.pages()) == 12
    gone = _gen(big, 0, 7)  # 7 of 12: more than MAX_REMOVED_SHARE
    bodies = {path: big.pages[path].body for path in gone}
    for path in gone:
        big.set_page(path, b"", status=404)
    with caplog.at_level(logging.WARNING, logger="shared.knowledge.scrape"):
        run, job = crawls.run(_sitemap(big))
    assert len(crawls.pages()) == 12
    assert run.pages_removed == 0 and not job.changed
    stats = run.sources["docs"]
    assert not stats["complete"] and "would remove 7 of its 12 pages" in stats["error"]
    assert "run 1 of 3" in stats["error"]
    assert any("would remove 7 of its 12 pages" in r.getMessage() for r in caplog.records)

    # Fewer at once is an ordinary removal.
    for path in gone[3:]:
        big.set_page(path, bodies[path])
    run, job = crawls.run(_sitemap(big), held_back=_held(run))
    assert run.pages_removed == 3 and job.changed and run.sources["docs"]["complete"]
    assert run.sources["docs"]["held_back"] is None


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_same_removal_in_three_consecutive_runs_is_applied(crawls: Crawls, big) -> None:
    crawls.run(_sitemap(big))
    for path in _gen(big, 0, 7):
        big.remove_page(path)  # a restructure: most pages gone for good
    held: dict = {}
    now = [T0]
    for attempt in (1, 2):
        run, job = crawls.run(_sitemap(big), held_back=held, now=lambda: now[0])
        assert run.pages_removed == 0 and f"run {attempt} of 3" in run.sources["docs"]["error"]
        held = _held(run)
        now[0] += timedelta(hours=12)
    # A run that disagrees (another removal) starts the count, and the hold's clock, again.
    big.remove_page(_gen(big, 7, 8)[0])
    run, _ = crawls.run(_sitemap(big), held_back=held, now=lambda: now[0])
    assert run.pages_removed == 0 and "run 1 of 3" in run.sources["docs"]["error"]
    assert run.sources["docs"]["held_back"]["since"] == (T0 + timedelta(hours=24)).isoformat()
    held = _held(run)
    for _ in (2, 3):
        now[0] += timedelta(hours=12)
        run, job = crawls.run(_sitemap(big), held_back=held, now=lambda: now[0])
        held = _held(run)
    assert run.pages_removed == 8 and job.changed and run.sources["docs"]["complete"], run.sources
    assert len(crawls.pages()) == 4


def test_a_held_back_removal_waits_a_day_however_many_runs_see_it(crawls: Crawls, big) -> None:
    # A */30 schedule and a broken deploy: 7 of 12 pages answer 404 for two hours.
    crawls.run(_sitemap(big))
    bodies = {path: big.pages[path].body for path in _gen(big, 0, 7)}
    for path in bodies:
        big.set_page(path, b"", status=404)
    held: dict = {}
    now = [T0]
    for attempt in range(1, 6):
        run, _ = crawls.run(_sitemap(big), held_back=held, now=lambda: now[0])
        stats = run.sources["docs"]
        assert run.pages_removed == 0 and not stats["complete"], (attempt, stats)
        assert stats["held_back"]["runs"] == attempt and stats["held_back"]["since"] == T0.isoformat()
        assert "not before 2026-01-02 00:00 UTC" in stats["error"], stats["error"]
        held = _held(run)
        now[0] += timedelta(minutes=30)
    assert len(crawls.pages()) == 12
    for path, body in bodies.items():  # the site is fixed: nothing was lost
        big.set_page(path, body)
    run, _ = crawls.run(_sitemap(big), held_back=held, now=lambda: now[0])
    assert run.sources["docs"]["complete"] and run.sources["docs"]["held_back"] is None
    assert len(crawls.pages()) == 12 and run.pages_changed == 0

    # The same outage lasting a day is applied by the first run past the day.
    for path in bodies:
        big.set_page(path, b"", status=404)
    held, now[0] = {}, T0
    for _ in range(3):
        run, _ = crawls.run(_sitemap(big), held_back=held, now=lambda: now[0])
        held = _held(run)
        now[0] += timedelta(hours=11, minutes=59)
    assert run.pages_removed == 0 and len(crawls.pages()) == 12  # three runs, but 23:58 since the first
    now[0] = T0 + timedelta(hours=24)
    run, _ = crawls.run(_sitemap(big), held_back=held, now=lambda: now[0])
    assert run.pages_removed == 7 and run.sources["docs"]["complete"], run.sources


def test_a_held_back_removal_recorded_without_since_starts_its_day_now(crawls: Crawls, big) -> None:
    crawls.run(_sitemap(big))
    for path in _gen(big, 0, 7):
        big.set_page(path, b"", status=404)
    run, _ = crawls.run(_sitemap(big), now=lambda: T0)
    old = {"docs": {"removal": run.sources["docs"]["held_back"]["removal"], "runs": 5}}  # an older record
    run, _ = crawls.run(_sitemap(big), held_back=old, now=lambda: T0 + timedelta(hours=48))
    assert run.pages_removed == 0 and run.sources["docs"]["held_back"]["runs"] == 6
    assert run.sources["docs"]["held_back"]["since"] == (T0 + timedelta(hours=48)).isoformat()


def test_lowering_max_pages_during_an_outage_does_not_escape_the_valve(crawls: Crawls, big) -> None:
    crawls.run(_sitemap(big))
    for path in [*_gen(big, 0, 5), *_gen(big, 6, 11)]:  # all but two pages answer 404
        big.set_page(path, b"", status=404)
    run, job = crawls.run(_sitemap(big, max_pages=6))
    stats = run.sources["docs"]
    # 5 of the 6 pages the budget keeps are lost: most of them, though not most of all 12.
    assert run.pages_removed == 0 and not job.changed and not stats["complete"], stats
    assert "would remove 5 of its 6 pages" in stats["error"] and len(crawls.pages()) == 12


def test_pages_cut_by_a_lowered_max_pages_are_removed_not_held_back(crawls: Crawls, big) -> None:
    crawls.run(_sitemap(big))
    for _ in range(2):
        run, job = crawls.run(_sitemap(big, max_pages=3))
        stats = run.sources["docs"]
        assert stats["complete"], stats["error"]
        assert len(crawls.pages()) == 3
    assert run.pages_removed == 0 and not job.changed and stats["over_max_pages"] == 9


def test_a_small_source_is_not_held_back(crawls: Crawls, site) -> None:
    crawls.run(_sitemap(site))
    for path in sites.DOC_PAGES[:3]:  # 3 of 5 pages: over half, but a small source loses pages that way
        site.set_page(path, b"", status=404)
    run, _ = crawls.run(_sitemap(site))
    assert run.pages_removed == 3 and run.sources["docs"]["complete"], run.sources
    assert set(crawls.pages()) == _urls(site, *sites.DOC_PAGES[3:])


@pytest.mark.parametrize("outage", ["no main text", "one page everywhere"])
def test_a_small_source_serving_hollow_pages_keeps_them(crawls: Crawls, site, outage: str) -> None:
    # A JS app shell, or a maintenance page served for every URL: answered 200, but not the pages.
    crawls.run(_sitemap(site))
    before = crawls.pages()
    for path in sites.DOC_PAGES:
        if outage == "no main text":
            site.set_page(path, "<html><body><div id=app></div></body></html>")
        else:
            site.set_page(
                path, sites.doc_html("Maintenance", [("Back soon", sites.prose("maintenance"))], [])
            )
    run, _ = crawls.run(_sitemap(site))
    stats = run.sources["docs"]
    assert run.pages_removed == 0 and set(crawls.pages()) == set(before), stats
    assert not stats["complete"] and "no main text or are copies" in stats["error"], stats


def test_the_valve_state_comes_from_the_newest_run_that_crawled_the_source() -> None:
    def record(status: RunStatus, held: dict | None, name: str = "docs") -> ScrapeRun:
        run = new_run()
        run.status = status
        run.sources = {name: {"complete": held is None, "held_back": held}}
        return run

    held = {"removal": "abc", "runs": 2}
    skipped = new_run()
    skipped.status = RunStatus.SKIPPED
    runs = [
        skipped,
        record(RunStatus.UNCHANGED, held),
        record(RunStatus.UNCHANGED, {"removal": "x", "runs": 1}),
    ]
    assert scrape_module.held_back_of(runs) == {"docs": held}
    not_crawled = new_run()
    not_crawled.status = RunStatus.PUBLISHED
    not_crawled.sources = {"docs": {"complete": False, "error": "not crawled: the run's deadline"}}
    assert scrape_module.held_back_of([not_crawled, *runs]) == {"docs": held}
    runs = [record(RunStatus.PUBLISHED, None, "blog"), record(RunStatus.UNCHANGED, None), *runs]
    assert scrape_module.held_back_of(runs) == {"docs": None, "blog": None}


# --- duplicates: only a page seen alive in this run makes another its duplicate ----------------------
@pytest.mark.parametrize("renamed", [False, True], ids=["new-url", "new-name"])
def test_a_source_moved_to_another_host_is_indexed_under_its_new_urls(crawls: Crawls, site, renamed) -> None:
    with sites.FixtureSite() as new:  # the same pages, byte for byte, on the new host
        for path, page in site.pages.items():
            new.set_page(path, page.body, in_sitemap=page.in_sitemap)
        crawls.run(Source(name="docs", kind=SourceKind.CRAWL, url=site.url("/")))
        assert set(crawls.pages()) == _urls(site, "/", *sites.DOC_PAGES)
        moved = Source(name="docs2" if renamed else "docs", kind=SourceKind.CRAWL, url=new.url("/"))
        run, job = crawls.run(moved)
        assert set(crawls.pages()) == _urls(new, "/", *sites.DOC_PAGES), run.sources
        assert job.changed and run.pages_removed == 6 and run.pages_changed == 6
        # The moved pages' chunks are the old ones' text: their stored vectors are reused, none embedded.
        assert run.chunks_added > 0 and run.embeddings == 0
        assert {record.source for record in crawls.pages().values()} == {moved.name}
        run, job = crawls.run(moved)
        assert not job.changed and run.pages_unchanged == 6


def test_a_page_moved_by_a_301_stays_indexed_under_its_new_url(crawls: Crawls, site) -> None:
    source = Source(name="site", kind=SourceKind.CRAWL, url=site.url("/"))
    crawls.run(source)
    install = site.pages.pop("/docs/install")
    site.pages["/guide/install"] = install
    site.redirects["/docs/install"] = "/guide/install"
    run, job = crawls.run(source)
    pages = crawls.pages()
    assert site.url("/guide/install") in pages and site.url("/docs/install") not in pages
    assert job.changed and run.pages_removed == 1 and run.embeddings == 0


def test_a_copy_of_a_page_that_stays_is_indexed_once(crawls: Crawls, site) -> None:
    crawls.run(_sitemap(site))
    site.set_page("/docs/configure-copy", site.pages["/docs/configure"].body)
    run, job = crawls.run(_sitemap(site))
    assert site.url("/docs/configure-copy") not in crawls.pages()
    assert run.pages_skipped == 1 and not job.changed


# --- two sources reaching one page ------------------------------------------------------------------
def test_a_page_two_sources_reach_belongs_to_the_first_and_a_recrawl_changes_nothing(
    crawls: Crawls, site
) -> None:
    site.set_page("/blog/hello", sites.page_for("/blog/hello"), in_sitemap=False)
    site.feed_paths = ["/blog/hello"]
    home = sites.doc_html("Home", [("Welcome", sites.prose("home"))], [*sites.DOC_PAGES, "/blog/hello"])
    site.set_page("/", home, in_sitemap=False)
    both = (
        Source(name="site", kind=SourceKind.CRAWL, url=site.url("/")),
        Source(name="blog", kind=SourceKind.FEED, url=site.url("/feed.xml")),
    )
    first, _ = crawls.run(*both)
    post = site.url("/blog/hello")
    assert crawls.pages()[post].source == "site"
    assert first.sources["blog"]["skipped"] == 1 and first.sources["blog"]["complete"]
    for _ in range(2):
        run, job = crawls.run(*both)
        assert not job.changed and run.pages_changed == 0, run.sources
        assert crawls.pages()[post].source == "site"
    # Listed first, the feed takes the page over: once.
    run, job = crawls.run(*reversed(both))
    assert job.changed and crawls.pages()[post].source == "blog" and run.pages_removed == 0
    run, job = crawls.run(*reversed(both))
    assert not job.changed, run.sources


# --- the run's deadline --------------------------------------------------------------------------------
def test_at_the_deadline_the_crawl_stops_and_removes_nothing(crawls: Crawls, site) -> None:
    blog = Source(name="blog", kind=SourceKind.CRAWL, url=site.url("/docs/faq"))
    crawls.run(_sitemap(site), blog)
    before = crawls.pages()
    for path in sites.DOC_PAGES:
        site.edit_page(path, sites.page_for(path, version=2))
    now = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "crawl docs" and done == 2:
            now[0] = 1000.0  # the clock passes the deadline while the second page is handled

    run, job = crawls.run(_sitemap(site), blog, progress=progress, deadline=999.0, clock=lambda: now[0])
    docs, other = run.sources["docs"], run.sources["blog"]
    assert not docs["complete"] and "deadline" in docs["error"]
    assert docs["fetched"] == 2 and docs["changed"] == 2 and run.pages_removed == 0
    assert not other["complete"] and "not crawled" in other["error"]
    after = crawls.pages()
    assert set(after) == set(before)  # nothing removed, every page whole: old or new
    assert sum(after[u].content_hash != before[u].content_hash for u in after) == 2
    assert job.changed  # what was indexed is published


# --- a page of this source that is no longer indexable leaves the index -------------------------------
@pytest.mark.parametrize("change", ["emptied", "copy"])
def test_a_page_no_longer_indexable_is_removed(crawls: Crawls, site, change: str) -> None:
    crawls.run(_sitemap(site))
    faq = site.url("/docs/faq")
    assert faq in crawls.pages()
    if change == "emptied":
        site.edit_page("/docs/faq", "<html><body></body></html>")
    else:  # now serves exactly another page's content
        site.edit_page("/docs/faq", site.pages["/docs/configure"].body.decode())
    run, job = crawls.run(_sitemap(site))
    assert faq not in crawls.pages(), run.sources
    assert run.pages_removed == 1 and job.changed and run.sources["docs"]["complete"]
    run, job = crawls.run(_sitemap(site))
    assert not job.changed and run.pages_removed == 0


def test_a_deferred_page_that_turns_out_a_copy_is_removed(crawls: Crawls, site) -> None:
    # The page holding its content answers late: the copy is deferred, then skipped as a copy.
    crawls.run(_sitemap(site))
    site.set_page("/docs/aa-copy", sites.page_for("/docs/aa-copy"))
    crawls.run(_sitemap(site))
    copy = site.url("/docs/aa-copy")
    assert copy in crawls.pages()
    site.edit_page("/docs/aa-copy", site.pages["/docs/install"].body.decode())
    site.pages["/docs/install"].delay = 0.5
    run, job = crawls.run(_sitemap(site))
    assert [record.url for _, record, _ in job._deferred] == [copy]
    assert copy not in crawls.pages(), run.sources
    assert site.url("/docs/install") in crawls.pages() and job.changed


NO_SUCH_OBJECT = [
    # S3/CloudFront without s3:ListBucket: AccessDenied for a key that no longer exists.
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied'
    b"</Message><RequestId>X</RequestId><HostId>Y</HostId></Error>",
    b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
    # Cloud Storage.
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access denied."
    b"</Message><Details>Anonymous caller does not have storage.objects.get access</Details></Error>",
]


@pytest.mark.parametrize("body", NO_SUCH_OBJECT)
def test_a_deleted_page_answering_403_is_removed(crawls: Crawls, site, body: bytes) -> None:
    source = Source(name="site", kind=SourceKind.CRAWL, url=site.url("/"))
    crawls.run(source)
    site.set_page("/docs/faq", body, status=403, in_sitemap=False, content_type="application/xml")
    run, job = crawls.run(source)
    assert site.url("/docs/faq") not in crawls.pages() and run.pages_removed == 1, run.sources
    assert run.sources["site"]["complete"] and job.changed


@pytest.mark.parametrize(("lease", "base"), [(600, 600), (1800, 1800), (3000, 1800), (7200, 1800)])
def test_the_run_budget_is_a_share_of_the_shortest_limit(settings: Settings, lease: int, base: int) -> None:
    # The function's timeout is min(lease, 3600 s), the Scheduler's attempt deadline 1800 s.
    cfg = settings.model_copy(update={"scrape_lease_seconds": lease})
    assert scrape_module.run_budget_seconds(cfg) == base * scrape_module.DEADLINE_SHARE


GUARD = 60.0  # only a failure guard: the run below ends on its deadline long before


def test_the_deadline_ends_a_crawl_that_emits_nothing(crawls: Crawls, monkeypatch) -> None:
    # A sitemap that takes for ever to come: the crawl emits no result, and the run's deadline must
    # still end it (a blocking wait for the next result saw the clock only once one came).
    now = [0.0]

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            return httpx.Response(404)
        now[0] = 1000.0
        await asyncio.sleep(GUARD)
        return httpx.Response(404)

    real = scrape_module.crawl_source
    monkeypatch.setattr(
        scrape_module,
        "crawl_source",
        lambda *args, **kwargs: real(*args, **kwargs, transport=httpx.MockTransport(handler)),
    )
    source = Source(name="docs", kind=SourceKind.SITEMAP, url="https://docs.example.com/")
    done: list = []
    started = time.monotonic()
    worker = threading.Thread(
        target=lambda: done.append(crawls.run(source, deadline=999.0, clock=lambda: now[0])), daemon=True
    )
    worker.start()
    worker.join(GUARD)
    assert done and time.monotonic() - started < GUARD / 2, "the run waited for the crawl"
    run, _ = done[0]
    assert not run.sources["docs"]["complete"] and "deadline" in run.sources["docs"]["error"]


def test_at_the_deadline_pages_moved_in_this_run_keep_their_old_urls(crawls: Crawls, site) -> None:
    with sites.FixtureSite() as new, sites.FixtureSite() as blog:
        for path, page in site.pages.items():
            new.set_page(path, page.body, in_sitemap=page.in_sitemap)
        blog.set_page("/blog", sites.page_for("/blog"))
        crawls.run(Source(name="docs", kind=SourceKind.CRAWL, url=site.url("/")))
        before = crawls.pages()
        now = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "crawl blog":
                now[0] = 1000.0  # the deadline passes after the moved source was crawled

        moved = Source(name="docs", kind=SourceKind.CRAWL, url=new.url("/"))
        other = Source(name="blog", kind=SourceKind.CRAWL, url=blog.url("/blog"))
        run, _ = crawls.run(moved, other, progress=progress, deadline=999.0, clock=lambda: now[0])
        # The new URLs were deferred (their content is held by the old ones): with no time left to
        # index them, the old URLs stay, and the source says why.
        after = crawls.pages()
        assert set(before) <= set(after) and run.pages_removed == 0
        assert not any(url.startswith(new.url("/")) for url in after)
        assert not run.sources["docs"]["complete"] and "deadline" in run.sources["docs"]["error"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_rate_limiter_refusing_part_of_a_site_removes_nothing(crawls: Crawls, big, status: int) -> None:
    # An AWS WAF rate-based rule answers 403 once a client made N requests: some pages, not gone.
    crawls.run(_sitemap(big))
    for path in _gen(big, 0, 5):
        big.set_page(path, b"<html><body><h1>403 Forbidden</h1></body></html>", status=status)
    run, _ = crawls.run(_sitemap(big))
    assert run.pages_removed == 0 and run.pages_failed == 5 and len(crawls.pages()) == 12, run.sources


def test_a_deleted_page_of_a_filtered_sitemap_source_answering_403_is_removed(crawls: Crawls, big) -> None:
    # The site serves: judged on the pages the source takes (5 of the 12 its sitemap lists).
    source = _sitemap(big, include=[r"/gen/page-000[0-4]$"])
    crawls.run(source)
    assert len(crawls.pages()) == 5
    big.set_page("/gen/page-0000", NO_SUCH_OBJECT[0], status=403, content_type="application/xml")
    run, _ = crawls.run(source)
    assert run.pages_removed == 1 and run.sources["docs"]["complete"], run.sources
    assert big.url("/gen/page-0000") not in crawls.pages()


class TwoChildSitemaps(sites.FixtureSite):
    """A sitemap index with two children; the second lists CHILD_B and may answer ``b_status``."""

    b_status = 200
    CHILD_B = frozenset(_gen(None, 0, 5))  # type: ignore[arg-type]

    def _child(self, paths: set[str]) -> str:
        locs = "".join(f"<url><loc>{self.url(p)}</loc></url>" for p in sorted(paths))
        return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'

    async def _respond(self, request, path):  # type: ignore[no-untyped-def]
        if path == "/sitemap.xml":
            locs = "".join(f"<sitemap><loc>{self.url(p)}</loc></sitemap>" for p in ("/sm-a.xml", "/sm-b.xml"))
            return Response(
                f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"{locs}</sitemapindex>",
                media_type="application/xml",
            )
        if path == "/sm-a.xml":
            return Response(self._child(set(self.pages) - self.CHILD_B), media_type="application/xml")
        if path == "/sm-b.xml":
            if self.b_status != 200:
                return Response("not found", status_code=self.b_status)
            return Response(self._child(set(self.CHILD_B) & set(self.pages)), media_type="application/xml")
        return await super()._respond(request, path)


@pytest.mark.parametrize("status", [404, 410])
def test_a_child_sitemap_answering_404_once_keeps_the_pages_it_listed(crawls: Crawls, status: int) -> None:
    site = TwoChildSitemaps()
    site.pages = sites.generated_site(12).pages
    with site:
        crawls.run(_sitemap(site))
        assert len(crawls.pages()) == 12
        site.b_status = status  # a deploy briefly 404s one child sitemap
        site.remove_page("/gen/page-0004")  # ...while one page it listed is really gone
        run, _ = crawls.run(_sitemap(site))
        # The pages only that child listed are re-checked: the ones still served stay.
        assert run.pages_removed == 1 and run.sources["docs"]["complete"], run.sources
        assert set(crawls.pages()) == {site.url(p) for p in site.pages}


def test_at_the_deadline_in_deferred_indexing_the_record_says_other_removals_were_applied(
    crawls: Crawls, site
) -> None:
    with sites.FixtureSite() as blog:
        blog.set_page("/blog", sites.page_for("/blog"))
        other = Source(name="blog", kind=SourceKind.CRAWL, url=blog.url("/blog"))
        crawls.run(_sitemap(site), other)
        site.set_page("/docs/install-new", site.pages["/docs/install"].body)  # moved
        site.remove_page("/docs/install")
        site.remove_page("/docs/faq")  # deleted
        now = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "crawl blog":
                now[0] = 1000.0  # the deadline passes before the moved page is indexed

        run, _ = crawls.run(_sitemap(site), other, progress=progress, deadline=999.0, clock=lambda: now[0])
    pages = crawls.pages()
    assert site.url("/docs/faq") not in pages and site.url("/docs/install") in pages, run.sources
    error = run.sources["docs"]["error"]
    assert "moved pages kept at their old URLs; other removals applied" in error
    assert "kept the old ones" not in error
    scrape_module._note_incomplete(run)
    assert "docs: " in run.error and "their pages kept as they were: docs" not in run.error, run.error
