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
from pathlib import Path

import httpx
import numpy as np
import pytest

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


def test_the_same_removal_in_three_consecutive_runs_is_applied(crawls: Crawls, big) -> None:
    crawls.run(_sitemap(big))
    for path in _gen(big, 0, 7):
        big.remove_page(path)  # a restructure: most pages gone for good
    held: dict = {}
    for attempt in (1, 2):
        run, job = crawls.run(_sitemap(big), held_back=held)
        assert run.pages_removed == 0 and f"run {attempt} of 3" in run.sources["docs"]["error"]
        held = _held(run)
    # A run that disagrees (another removal) starts the count again.
    big.remove_page(_gen(big, 7, 8)[0])
    run, _ = crawls.run(_sitemap(big), held_back=held)
    assert run.pages_removed == 0 and "run 1 of 3" in run.sources["docs"]["error"]
    held = _held(run)
    for _ in (2, 3):
        run, job = crawls.run(_sitemap(big), held_back=held)
        held = _held(run)
    assert run.pages_removed == 8 and job.changed and run.sources["docs"]["complete"], run.sources
    assert len(crawls.pages()) == 4


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
    assert job.changed and run.pages_removed == 1


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


def test_a_deleted_page_answering_403_is_removed(crawls: Crawls, site) -> None:
    source = Source(name="site", kind=SourceKind.CRAWL, url=site.url("/"))
    crawls.run(source)
    # S3/CloudFront without s3:ListBucket: AccessDenied for a key that no longer exists.
    site.set_page("/docs/faq", b"<Error><Code>AccessDenied</Code></Error>", status=403, in_sitemap=False)
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
