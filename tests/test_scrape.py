"""The scrape job end to end: fixture site on loopback, Firestore + GCS emulators, the real embedder."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import tarfile
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage

from shared.config import Settings, Source, SourceKind
from shared.gcp import ensure_bucket, firestore_client, storage_client
from shared.knowledge import scrape as scrape_module
from shared.knowledge.crawler import CrawlConfig
from shared.knowledge.embeddings import load_embedder
from shared.knowledge.index import KnowledgeIndex
from shared.knowledge.leases import Lease
from shared.knowledge.run_progress import ProgressRecorder, describe, latest_progress
from shared.knowledge.runs import RunStatus, list_runs
from shared.knowledge.scrape import ScrapeError, run_scrape
from shared.knowledge.snapshots import PublishConflict, SnapshotStore
from tests import sites

pytestmark = pytest.mark.emulators
# The timeout is generous because the fixture site shares the CPU with the embedder: a page answering
# late would be retried and break the exact hit counts.
CRAWL = CrawlConfig(
    concurrency=4, timeout_seconds=5.0, retries=1, max_page_bytes=1_000_000, backoff_base_seconds=0.05
)
# Twice the timeout, so it always times out; not more, since the site's stop waits for its handlers.
SLOW_SECONDS = 2 * CRAWL.timeout_seconds
WITH_SLOW_PAGE = pytest.mark.parametrize("site", ["with-slow-page"], indirect=True)


class CountingEmbedder:
    """The real MiniLM embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self.inner = load_embedder("minilm-l6-v2")
        self.id = self.inner.id
        self.dimension = self.inner.dimension
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.embed(texts)


@pytest.fixture
def site(request: pytest.FixtureRequest) -> Iterator[sites.FixtureSite]:
    with sites.standard_site(slow_seconds=SLOW_SECONDS, big_bytes=1_500_000) as s:
        if getattr(request, "param", None) != "with-slow-page":
            # Each run waits 2 x the crawl timeout for it: only the tests that look at it (WITH_SLOW_PAGE)
            # keep it.
            s.remove_page(sites.SLOW)
        yield s


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


def _settings(settings: Settings, site: sites.FixtureSite, **extra) -> Settings:
    sources = [
        Source(name="docs", kind=SourceKind.SITEMAP, url=site.url("/sitemap.xml"), exclude=[r"/blog/"]),
        Source(name="blog", kind=SourceKind.FEED, url=site.url("/feed.xml")),
    ]
    return settings.model_copy(update={"sources": sources, **extra})


def _restore(settings: Settings, tmp_path: Path, embedder) -> KnowledgeIndex:
    bucket = ensure_bucket(storage_client(settings.project_id), settings.bucket)
    restored = SnapshotStore(bucket).restore(tmp_path / f"check-{datetime.now(UTC).timestamp()}")
    assert restored is not None
    return KnowledgeIndex.open(restored.path, embedder)


@WITH_SLOW_PAGE
def test_build_recrawl_edit_remove(emulators, settings: Settings, site, embedder, tmp_path: Path) -> None:
    cfg = _settings(settings, site)
    stages: list[str] = []
    # --- full build
    run = run_scrape(
        cfg, lambda stage, done, total: stages.append(stage), embedder=embedder, crawl_config=CRAWL
    )
    assert run.status is RunStatus.PUBLISHED, run.error
    assert run.snapshot_id and run.embeddings == len(embedder.texts) > 0
    assert {"restore", "crawl docs", "crawl blog", "publish"} <= set(stages)
    assert site.hits[sites.PRIVATE] == 0  # robots.txt
    assert site.hits[sites.FLAKY] == 2  # 500, then 200
    assert site.hits[sites.PDF] == 0
    assert run.pages_failed == 1  # the slow page timed out
    assert run.sources["docs"]["complete"] and run.sources["blog"]["complete"]
    index = _restore(cfg, tmp_path, embedder)
    pages = index.pages()
    u = site.url
    expected = {u(p) for p in [*sites.DOC_PAGES, *sites.BLOG_POSTS, sites.FLAKY]}
    assert expected <= set(pages)
    assert len({u("/docs/configure"), u(sites.DUPLICATE)} & set(pages)) == 1  # duplicate indexed once
    for path in (sites.BIG, sites.PDF, sites.PDF_NO_EXT, sites.PRIVATE, sites.SLOW, sites.MISSING):
        assert u(path) not in pages
    assert pages[u("/blog/hello")].source == "blog"
    chunk_ids = {url: set(index._by_url[url]) for url in pages}
    total_chunks = index.chunk_count()
    index.close()

    # --- nothing changed: zero embeddings, nothing published
    embedder.texts.clear()
    bucket = ensure_bucket(storage_client(cfg.project_id), cfg.bucket)
    _, generation = SnapshotStore(bucket).read_pointer()
    site.reset_hits()
    run2 = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert run2.status is RunStatus.UNCHANGED, run2.error
    assert embedder.texts == [] and run2.embeddings == 0
    assert run2.pages_changed == 0 and run2.pages_removed == 0
    assert SnapshotStore(bucket).read_pointer()[1] == generation
    assert ("/docs/install", 304) in site.statuses
    assert run2.pages_unchanged >= len(expected) - 1

    # --- one page edited: only its chunks change
    site.edit_page("/docs/faq", sites.page_for("/docs/faq", version=2))
    run3 = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert run3.status is RunStatus.PUBLISHED and run3.pages_changed == 1, run3.error
    assert run3.parent_snapshot_id == run.snapshot_id
    assert embedder.texts and all("Faq" in t or "faq" in t.lower() for t in embedder.texts)
    index = _restore(cfg, tmp_path, embedder)
    after = {url: set(index._by_url[url]) for url in index.pages()}
    assert after[u("/docs/faq")] != chunk_ids[u("/docs/faq")]
    assert {k: v for k, v in after.items() if k != u("/docs/faq")} == {
        k: v for k, v in chunk_ids.items() if k != u("/docs/faq")
    }
    index.close()

    # --- one page removed: its chunks are gone
    embedder.texts.clear()
    site.remove_page("/docs/bots")
    run4 = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert run4.status is RunStatus.PUBLISHED and run4.pages_removed == 1, run4.error
    assert run4.chunks_removed == len(chunk_ids[u("/docs/bots")]) and embedder.texts == []
    index = _restore(cfg, tmp_path, embedder)
    assert u("/docs/bots") not in index.pages()
    assert index.chunk_count() == total_chunks - len(chunk_ids[u("/docs/bots")]) + (
        len(after[u("/docs/faq")]) - len(chunk_ids[u("/docs/faq")])
    )
    index.close()

    # --- the site is down: nothing is removed
    site.stop()
    run5 = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert run5.status is RunStatus.UNCHANGED and run5.pages_removed == 0
    assert not run5.sources["docs"]["complete"]
    recorded = list_runs(firestore_client(cfg.project_id), limit=10)
    assert [r.id for r in recorded][:2] == [run5.id, run4.id]
    assert recorded[1].snapshot_id == run4.snapshot_id


def test_lease_held_skips_and_crashed_lease_is_taken_over(
    emulators, settings, site, embedder, monkeypatch
) -> None:
    cfg = _settings(settings, site, scrape_lease_seconds=60)
    fs = firestore_client(cfg.project_id)
    Lease(fs, ttl_seconds=60, holder="crashed-run").acquire()  # and never released
    skipped = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert skipped.status is RunStatus.SKIPPED and "crashed-run" in skipped.error
    assert site.hits.total() == 0

    # The Cloud Function says the same with a 409.
    import functions.scrape as fn

    monkeypatch.setattr(fn, "get_settings", lambda: cfg)
    body, status = fn.scrape(SimpleNamespace(method="POST", headers={}))
    assert status == 409 and body["status"] == "skipped"
    assert fn.scrape(SimpleNamespace(method="PUT"))[1] == 405

    later = lambda: datetime.now(UTC) + timedelta(seconds=120)  # noqa: E731 - the lease has expired
    run = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL, clock=later)
    assert run.status is RunStatus.PUBLISHED, run.error
    assert Lease(fs).read() is None  # released at the end


def test_publish_conflict_starts_over_once(emulators, settings, site, embedder, monkeypatch) -> None:
    cfg = _settings(settings, site)
    first = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert first.status is RunStatus.PUBLISHED
    original = SnapshotStore.publish
    calls = {"n": 0}
    competitor: dict[str, str] = {}

    def racing_publish(self, index, extra, parent_id, expected_generation):
        calls["n"] += 1
        if calls["n"] == 1:  # another builder publishes first, on the same base
            competitor["id"] = original(self, index, {"who": "competitor"}, parent_id, expected_generation).id
        return original(self, index, extra, parent_id, expected_generation)

    monkeypatch.setattr(SnapshotStore, "publish", racing_publish)
    site.edit_page("/docs/install", sites.page_for("/docs/install", version=3))
    run = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    # The competitor's snapshot already holds the edit: the start-over finds nothing left to do.
    assert run.attempts == 2 and run.status is RunStatus.UNCHANGED, run.error
    assert run.parent_snapshot_id == competitor["id"] == run.snapshot_id
    assert (
        SnapshotStore(ensure_bucket(storage_client(cfg.project_id), cfg.bucket)).read_pointer()[0].snapshot_id
        == competitor["id"]
    )

    # Against a competitor that always wins, the run stops cleanly after the second loss.
    def always_lose(self, index, extra, parent_id, expected_generation):
        raise PublishConflict("simulated: another publisher won")

    monkeypatch.setattr(SnapshotStore, "publish", always_lose)
    site.edit_page("/docs/install", sites.page_for("/docs/install", version=4))
    run = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert run.status is RunStatus.CONFLICT and run.attempts == 2
    assert "lost the publish race twice" in run.error


def _store_of(cfg: Settings) -> SnapshotStore:
    return SnapshotStore(ensure_bucket(storage_client(cfg.project_id), cfg.bucket))


def test_a_rollback_while_a_run_crawls_is_not_undone_by_it(
    emulators, settings, site, embedder, caplog
) -> None:
    cfg = _settings(settings, site)
    store = _store_of(cfg)
    good = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    site.edit_page("/docs/install", sites.page_for("/docs/install", version=2))  # the bad content
    bad = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert good.status is bad.status is RunStatus.PUBLISHED, (good.error, bad.error)
    site.edit_page("/docs/install", sites.page_for("/docs/install", version=3))  # the run has news
    rolled_back: list[str] = []

    def operator_rolls_back(stage: str, done: int, total: int) -> None:
        if stage.startswith("crawl") and not rolled_back:  # the run has restored `bad` and crawls
            store.rollback(good.snapshot_id)
            rolled_back.append(stage)

    with caplog.at_level(logging.WARNING, logger="shared.knowledge.scrape"):
        run = run_scrape(cfg, operator_rolls_back, embedder=embedder, crawl_config=CRAWL)
    assert rolled_back and run.parent_snapshot_id == bad.snapshot_id
    assert run.status is RunStatus.CONFLICT and run.attempts == 1, run.error
    assert f"rolled back to {good.snapshot_id}" in run.error and run.snapshot_id is None
    assert "not publishing over the rollback" in caplog.text
    pointer = store.read_pointer()[0]
    assert pointer.snapshot_id == good.snapshot_id and pointer.rolled_back
    assert {m.id for m in store.list()} == {good.snapshot_id, bad.snapshot_id}  # nothing published
    assert list_runs(firestore_client(cfg.project_id), limit=1)[0].status is RunStatus.CONFLICT

    # The cause fixed and the Scheduler resumed, the next run starts from the rollback and publishes;
    # the publish clears the mark.
    site.edit_page("/docs/install", sites.page_for("/docs/install", version=1))
    site.edit_page("/docs/faq", sites.page_for("/docs/faq", version=2))
    after = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert after.status is RunStatus.PUBLISHED and after.attempts == 1, after.error
    assert after.parent_snapshot_id == good.snapshot_id and after.pages_changed == 1
    pointer = store.read_pointer()[0]
    assert pointer.snapshot_id == after.snapshot_id and not pointer.rolled_back


def test_a_rollback_between_a_lost_race_and_the_start_over_stops_the_run(
    emulators, settings, site, embedder, monkeypatch
) -> None:
    cfg = _settings(settings, site)
    store = _store_of(cfg)
    good = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert good.status is RunStatus.PUBLISHED, good.error
    original = SnapshotStore.publish
    competitor: list[str] = []

    def racing_publish(self, index, extra, parent_id, expected_generation):
        if not competitor:  # an ordinary race first: another publisher wins on the same base
            competitor.append(original(self, index, {"who": "competitor"}, parent_id, expected_generation).id)
        return original(self, index, extra, parent_id, expected_generation)

    real_open = scrape_module._Attempt.open_index

    def open_index(self, snapshots, work):
        if work.name == "attempt-2":  # the operator rolls back just before the start-over restores
            snapshots.rollback(good.snapshot_id)
        return real_open(self, snapshots, work)

    monkeypatch.setattr(SnapshotStore, "publish", racing_publish)
    monkeypatch.setattr(scrape_module._Attempt, "open_index", open_index)
    site.edit_page("/docs/install", sites.page_for("/docs/install", version=2))
    run = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert run.status is RunStatus.CONFLICT and run.attempts == 2, run.error
    assert f"rolled back to {good.snapshot_id}" in run.error
    pointer = store.read_pointer()[0]
    assert pointer.snapshot_id == good.snapshot_id and pointer.rolled_back
    assert {m.id for m in store.list()} == {good.snapshot_id, competitor[0]}


def test_two_concurrent_runs_one_proceeds(emulators, settings, site, embedder) -> None:
    cfg = _settings(settings, site)
    results = []
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        results.append(run_scrape(cfg, embedder=embedder, crawl_config=CRAWL))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status.value for r in results) == ["published", "skipped"]


def test_an_incomplete_source_is_in_the_run_record_and_the_functions_answer(
    emulators, settings, site, monkeypatch
) -> None:
    cfg = _settings(settings, site)
    first = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
    assert first.status is RunStatus.PUBLISHED and first.error is None and first.incomplete_sources == []
    site.remove_page("/docs/faq")  # news, so the run publishes while one source cannot be read
    site.edit_page("/docs/install", sites.page_for("/docs/install", version=2))
    for path in sites.BLOG_POSTS:  # the blog sits behind a login wall now
        site.set_page(path, b"sign in", status=403, in_sitemap=False)

    import functions.scrape as fn

    monkeypatch.setattr(fn, "get_settings", lambda: cfg)
    monkeypatch.setattr(
        fn, "run_scrape", lambda s: run_scrape(s, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
    )
    body, status = fn.scrape(SimpleNamespace(method="POST", headers={}))
    # Deliberately a 2xx: Cloud Scheduler retries any other answer (see functions/scrape.py).
    assert status == 200 and body["ok"] is False and body["status"] == "published"
    assert body["incomplete_sources"] == ["blog"] and "blog" in body["error"] and "HTTP 403" in body["error"]
    recorded = list_runs(firestore_client(cfg.project_id), limit=1)[0]
    assert recorded.incomplete_sources == ["blog"] and recorded.error == body["error"]
    assert not recorded.sources["blog"]["complete"] and recorded.sources["docs"]["complete"]


def test_the_run_deadline_follows_the_function_timeout_and_ends_the_run_recorded(
    emulators, settings, site
) -> None:
    # The function's timeout is min(lease, 3600 s) (infra/config.py): the run stops crawling well before.
    assert scrape_module.run_budget_seconds(settings.model_copy(update={"scrape_lease_seconds": 1800})) == (
        1800 * scrape_module.DEADLINE_SHARE
    )
    assert scrape_module.run_budget_seconds(settings.model_copy(update={"scrape_lease_seconds": 7200})) == (
        1800 * scrape_module.DEADLINE_SHARE  # the Scheduler's attempt deadline
    )
    cfg = _settings(settings, site)
    first = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
    site.edit_page("/docs/faq", sites.page_for("/docs/faq", version=2))
    run = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL, time_budget_seconds=0)
    assert (
        run.status is RunStatus.UNCHANGED and run.snapshot_id == first.snapshot_id and run.pages_removed == 0
    )
    assert run.incomplete_sources == ["blog", "docs"] and "deadline" in run.error
    recorded = list_runs(firestore_client(cfg.project_id), limit=1)[0]
    assert recorded.id == run.id and recorded.status is RunStatus.UNCHANGED and recorded.ended_at


def test_a_held_back_removal_seen_in_three_consecutive_runs_is_applied(emulators, settings) -> None:
    # The valve's count lives in the scrape_runs documents: each run reads what the newest one held back.
    with sites.generated_site(12) as big:
        cfg = settings.model_copy(
            update={"sources": [Source(name="gen", kind=SourceKind.SITEMAP, url=big.url("/"))]}
        )
        first = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
        assert first.status is RunStatus.PUBLISHED and first.sources["gen"]["fetched"] == 12
        for i in range(7):
            big.remove_page(f"/gen/page-{i:04d}")
        now = [datetime.now(UTC)]  # the run's clock: the removal also waits VALVE_HOLD_HOURS
        for count in (1, 2):
            run = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL, clock=lambda: now[0])
            assert run.status is RunStatus.UNCHANGED and run.pages_removed == 0
            assert f"run {count} of 3" in run.error
            now[0] += timedelta(hours=12)
        run = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL, clock=lambda: now[0])
        assert run.status is RunStatus.PUBLISHED and run.pages_removed == 7 and run.error is None


def test_bad_configuration_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(ScrapeError, match="ASKBASE_SOURCES"):
        run_scrape(settings.model_copy(update={"sources": []}))
    # A regex that does not compile is refused with the source, before any scrape can start.
    with pytest.raises(ValueError, match=r"include: pattern 0 \('\(unclosed'\) is not a valid regex"):
        Source(name="x", kind=SourceKind.CRAWL, url="http://127.0.0.1:1/", include=["(unclosed"])
    assert scrape_module.MAX_ATTEMPTS == 2


@pytest.mark.parametrize("url", ["https://", "https://docs.example.com:8o8o/", "https://[docs.example.com/"])
def test_a_bad_start_url_is_a_recorded_failure(emulators, settings: Settings, monkeypatch, url: str) -> None:
    # Settings refuses such a URL at start (first assert); a source that reached the job anyway (built
    # in code, or configured by an older release) is still a recorded failure, not a traceback.
    with pytest.raises(ValueError, match=r"url: .* is not an http\(s\) URL"):
        Source(name="docs", kind=SourceKind.CRAWL, url=url)
    source = Source(name="docs", kind=SourceKind.CRAWL, url="https://docs.example.com/")
    source.url = url  # after __post_init__'s checks
    cfg = settings.model_copy(update={"sources": [source]})
    with pytest.raises(ScrapeError, match=r"source 'docs': start URL .* is not an http\(s\) URL"):
        run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
    recorded = list_runs(firestore_client(cfg.project_id), limit=1)[0]
    assert recorded.status is RunStatus.FAILED and repr(url) in recorded.error and recorded.ended_at
    assert Lease(firestore_client(cfg.project_id)).read() is None  # never taken

    # The function answers with the message, not a traceback.
    import functions.scrape as fn

    monkeypatch.setattr(fn, "get_settings", lambda: cfg)
    body, status = fn.scrape(SimpleNamespace(method="POST", headers={}))
    assert status == 500 and body["ok"] is False and repr(url) in body["error"]


class _HashEmbedder:
    """Fast stand-in vectors; ``id`` is settable to simulate switching models."""

    dimension = 32

    def __init__(self, id: str) -> None:
        self.id = id
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        rows = [
            np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8).astype(np.float32)
            for t in texts
        ]
        return np.vstack(rows) / 255.0 if rows else np.zeros((0, self.dimension), dtype=np.float32)


def test_embedder_change_rebuilds_from_scratch(emulators, settings, site, caplog) -> None:
    cfg = _settings(settings, site)
    first = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
    assert first.status is RunStatus.PUBLISHED
    other = _HashEmbedder("model-b")
    with caplog.at_level(logging.ERROR):
        second = run_scrape(cfg, embedder=other, crawl_config=CRAWL)
    # The old snapshot cannot be opened with model-b: every page is embedded again and published on top.
    assert second.status is RunStatus.PUBLISHED, second.error
    assert second.parent_snapshot_id is None and other.texts == second.embeddings > 0
    assert any("model-a" in r.getMessage() for r in caplog.records)
    bucket = ensure_bucket(storage_client(cfg.project_id), cfg.bucket)
    assert SnapshotStore(bucket).get(second.snapshot_id).embedder == {"id": "model-b", "dimension": 32}


def _storage_outage(monkeypatch) -> None:
    """Simulates a Cloud Storage outage: every archive download answers 503."""

    def download(self, *args, **kwargs):
        raise gexc.ServiceUnavailable("simulated storage outage")

    monkeypatch.setattr(storage.Blob, "download_to_filename", download)


def _disk_full(monkeypatch) -> None:
    """Simulates a full disk while the restored archive is unpacked."""

    def extract(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "extract", extract)


@pytest.mark.parametrize(
    ("trouble", "expected"),
    [(_storage_outage, "ServiceUnavailable"), (_disk_full, "No space left on device")],
    ids=["storage-5xx", "disk-full"],
)
def test_unreadable_snapshot_fails_the_run_instead_of_rebuilding(
    emulators, settings, site, monkeypatch, caplog, trouble, expected
) -> None:
    cfg = _settings(settings, site)
    first = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
    assert first.status is RunStatus.PUBLISHED, first.error
    store = SnapshotStore(ensure_bucket(storage_client(cfg.project_id), cfg.bucket))
    pointer, generation = store.read_pointer()
    site.edit_page("/docs/faq", sites.page_for("/docs/faq", version=2))  # a rebuild would publish
    site.reset_hits()

    trouble(monkeypatch)
    embedder = _HashEmbedder("model-a")
    with caplog.at_level(logging.ERROR):
        run = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert run.status is RunStatus.FAILED
    assert run.error.startswith("SnapshotUnavailable") and expected in run.error
    assert first.snapshot_id in run.error
    assert any("cannot restore the published index" in r.getMessage() for r in caplog.records)
    # Nothing crawled, nothing embedded, nothing published: the served pointer is exactly as it was.
    assert site.hits.total() == 0 and embedder.texts == 0
    assert store.read_pointer() == (pointer, generation)
    assert [m.id for m in store.list()] == [first.snapshot_id]
    recorded = list_runs(firestore_client(cfg.project_id), limit=1)[0]
    assert recorded.id == run.id and recorded.status is RunStatus.FAILED and expected in recorded.error
    assert Lease(firestore_client(cfg.project_id)).read() is None  # released

    # Once storage (or the disk) is back, the next run continues from the published snapshot.
    monkeypatch.undo()
    again = run_scrape(cfg, embedder=embedder, crawl_config=CRAWL)
    assert again.status is RunStatus.PUBLISHED and again.parent_snapshot_id == first.snapshot_id, again.error
    assert again.pages_changed == 1


def test_every_snapshot_broken_rebuilds_from_scratch(emulators, settings, site) -> None:
    cfg = _settings(settings, site)
    first = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
    assert first.status is RunStatus.PUBLISHED, first.error
    bucket = ensure_bucket(storage_client(cfg.project_id), cfg.bucket)
    manifest = SnapshotStore(bucket).get(first.snapshot_id)
    blob = bucket.blob(f"snapshots/{manifest.archive}")
    data = bytearray(blob.download_as_bytes())
    data[len(data) // 2] ^= 0xFF  # the only published archive fails its checksum
    blob.upload_from_string(bytes(data))
    second = run_scrape(cfg, embedder=_HashEmbedder("model-a"), crawl_config=CRAWL)
    assert second.status is RunStatus.PUBLISHED and second.parent_snapshot_id is None, second.error
    assert SnapshotStore(bucket).read_pointer()[0].snapshot_id == second.snapshot_id


# --- the pipeline: fetching goes on while the model works ---------------------------------------------
GUARD = 120.0  # a failure guard only: every wait below ends on an event first


class BlockingEmbedder(CountingEmbedder):
    """The real embedder, except that its first call waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.busy.set()
        assert self.release.wait(GUARD), "never released"
        return super().embed(texts)


def test_the_crawl_goes_on_while_the_embedder_is_busy(emulators, settings: Settings) -> None:
    pages = 24
    embedder = BlockingEmbedder()
    crawled = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "crawl gen" and done >= pages:
            crawled.set()

    with sites.generated_site(pages) as site:
        cfg = settings.model_copy(
            update={"sources": [Source(name="gen", kind=SourceKind.SITEMAP, url=site.url("/sitemap.xml"))]}
        )
        runs: list = []
        job = threading.Thread(
            target=lambda: runs.append(run_scrape(cfg, progress, embedder=embedder, crawl_config=CRAWL))
        )
        job.start()
        try:
            assert embedder.busy.wait(GUARD)
            # The model is stuck in its first call; every page is still fetched, extracted and chunked.
            assert crawled.wait(GUARD), "the crawl stopped while the embedder was busy"
            assert all(site.hits[f"/gen/page-{i:04d}"] == 1 for i in range(pages))
        finally:
            embedder.release.set()
            job.join(GUARD)
    (run,) = runs
    assert run.status is RunStatus.PUBLISHED, run.error
    assert (run.pages_changed, run.pages_failed, run.embeddings) == (pages, 0, pages * 3)
    assert len(embedder.texts) == pages * 3  # each chunk embedded once, ahead of its write
    stats = run.sources["gen"]
    breakdown = ["crawl_wait", "extract", "chunk", "submit_wait", "index_wait", "embed", "write"]
    assert {f"{name}_seconds" for name in [*breakdown, "model_idle"]} <= set(stats)


# --- progress in the run's document ------------------------------------------------------------------
class _FakeDoc:
    def __init__(self, writes: list[dict]) -> None:
        self.writes = writes

    def update(self, data: dict) -> None:
        self.writes.append(data)


class _FakeFirestore:
    def __init__(self, fail: bool = False) -> None:
        self.writes: list[dict] = []
        self.fail = fail

    def collection(self, name: str) -> SimpleNamespace:
        assert name == "scrape_runs"

        def document(run_id: str) -> _FakeDoc:
            if self.fail:
                raise OSError("firestore is down")
            return _FakeDoc(self.writes)

        return SimpleNamespace(document=document)


def test_progress_is_passed_on_and_written_at_most_every_few_seconds(caplog) -> None:
    now = [100.0]
    seen: list[tuple[str, int, int]] = []
    client = _FakeFirestore()
    record = ProgressRecorder(client, "run-1", lambda *a: seen.append(a), every=5.0, clock=lambda: now[0])
    record("crawl docs", 1, 10)  # the first update is written at once
    record("crawl docs", 2, 10)
    now[0] += 4.9
    record("index docs", 3, 30)
    now[0] += 0.2
    record("crawl docs", 5, 10)
    assert len(seen) == 4
    assert client.writes == [
        {"progress": {"crawl docs": [1, 10]}},
        {"progress": {"crawl docs": [5, 10], "index docs": [3, 30]}},
    ]
    assert describe({"index docs": (3, 30), "publish": (0, 1), "crawl docs": (5, 10), "restore": (1, 1)}) == (
        "restore 1/1 · crawl docs 5/10 · index docs 3/30 · publish 0/1"
    )
    broken = ProgressRecorder(_FakeFirestore(fail=True), "run-2", lambda *a: seen.append(a))
    with caplog.at_level(logging.WARNING):
        broken("crawl docs", 1, 2)  # a failed write is logged, never raised
    assert seen[-1] == ("crawl docs", 1, 2)
    assert "could not record the progress" in caplog.text


def test_a_running_scrape_shows_its_progress_and_the_final_record_drops_it(emulators, settings, site) -> None:
    cfg = _settings(settings, site)
    fs = firestore_client(cfg.project_id)
    seen: list = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage.startswith("crawl") and not seen:
            seen.append(latest_progress(fs))  # read while the run is going, as `askbase dev` does

    run = run_scrape(cfg, progress, crawl_config=CRAWL)
    assert run.status is RunStatus.PUBLISHED, run.error
    (during,) = seen
    assert during is not None and during.run_id == run.id and during.status == "running"
    assert "restore" in during.stages  # written at the first update
    after = latest_progress(fs)
    assert after is not None and after.run_id == run.id and after.stages == {}
