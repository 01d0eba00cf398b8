"""LiveIndex on the real SnapshotStore and the GCS emulator: a download that fails for a while (a Cloud
Storage 503, patched into one call) never pins qa to an older snapshot nor swaps it down to one; the
newest is served once a retry gets through. Time is a clock the tests move, never a sleep."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage

from shared.config import Settings
from shared.knowledge.coldstart import ColdStartSource, StoreParams
from shared.knowledge.embeddings import load_embedder
from shared.knowledge.index import KnowledgeIndex
from shared.knowledge.snapshot_archive import Manifest
from shared.qa.live_index import RETRY_FAILED_SECONDS, LiveIndex, SnapshotSource
from tests.qa_corpus import publish, snapshot_store

pytestmark = pytest.mark.emulators


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """Downloads of the named archives raise a 503 a given number of times, then work again."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failures: dict[str, int] = {}
        self.downloads: Counter[str] = Counter()
        real = storage.Blob.download_to_filename

        def download(blob: storage.Blob, filename: str, *args: object, **kwargs: object) -> object:
            name = blob.name.rsplit("/", 1)[-1].split(".", 1)[0]
            self.downloads[name] += 1
            if self.failures.get(name, 0) > 0:
                self.failures[name] -= 1
                raise gexc.ServiceUnavailable("simulated: Cloud Storage answered 503")
            return real(blob, filename, *args, **kwargs)

        monkeypatch.setattr(storage.Blob, "download_to_filename", download)

    def fail(self, manifest: Manifest, times: int) -> None:
        self.failures[manifest.id] = times


def _live(
    settings: Settings, tmp_path: Path, source: SnapshotSource | None = None
) -> tuple[LiveIndex, Clock]:
    embedder = load_embedder(settings.embedder)
    clock = Clock()

    def opener(path: Path) -> KnowledgeIndex:
        return KnowledgeIndex.open(path, embedder, collection=settings.collection, read_only=True)

    store = source if source is not None else snapshot_store(settings)
    return LiveIndex(store, opener, tmp_path / "qa", poll_seconds=3600, clock=clock), clock


def _has_release_notes(live: LiveIndex, version: int) -> bool:
    hits = live.search(f"release notes number {version}", 5)
    return any(hit.url.endswith(f"/release-notes/v{version}") for hit in hits)


@pytest.mark.parametrize("failures", [1, 2])
def test_a_transient_failure_at_start_is_retried_and_the_newest_served(
    emulators,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failures: int,
) -> None:
    first = publish(settings, tmp_path, version=1)
    second = publish(settings, tmp_path, version=2)
    outage = Outage(monkeypatch)
    outage.fail(second, failures)
    live, clock = _live(settings, tmp_path)
    with caplog.at_level(logging.WARNING):
        live.start()
    try:
        status = live.status()
        assert (status.state, status.snapshot_id) == ("ready", first.id)  # better than nothing
        assert second.id in (status.last_error or "")
        assert any(
            r.levelno == logging.ERROR and r.name == "shared.qa.live_index" and second.id in r.getMessage()
            for r in caplog.records
        )
        # Not retried before RETRY_FAILED_SECONDS (every poll would download it otherwise) ...
        assert not live.check_now() and outage.downloads[second.id] == 1
        # ... then retried, and never fetching the served snapshot again, until it gets through.
        for attempt in range(2, failures + 1):
            clock.now += RETRY_FAILED_SECONDS
            assert not live.check_now()
            assert live.status().snapshot_id == first.id
            assert outage.downloads == Counter({first.id: 1, second.id: attempt})
        clock.now += RETRY_FAILED_SECONDS
        assert live.check_now()
        status = live.status()
        assert (status.snapshot_id, status.last_error) == (second.id, None)
        assert _has_release_notes(live, 2)
        assert outage.downloads == Counter({first.id: 1, second.id: failures + 1})
        clock.now += RETRY_FAILED_SECONDS
        assert not live.check_now()  # the pointer's snapshot is served: nothing left to retry
        assert outage.downloads[second.id] == failures + 1
    finally:
        live.stop()


def test_a_transient_failure_while_serving_never_swaps_to_an_older_snapshot(
    emulators,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publish(settings, tmp_path, version=1)
    second = publish(settings, tmp_path, version=2)
    live, clock = _live(settings, tmp_path)
    live.start()
    try:
        assert live.status().snapshot_id == second.id
        third = publish(settings, tmp_path, version=3)
        outage = Outage(monkeypatch)
        outage.fail(third, 1)
        outage.fail(second, 1)  # a fallback would skip it too and land on the first
        with caplog.at_level(logging.ERROR):
            assert not live.check_now()
        assert live.status().snapshot_id == second.id
        assert _has_release_notes(live, 2)
        assert outage.downloads == Counter({third.id: 1})  # the served one and older: never fetched
        assert third.id in (live.status().last_error or "")
        assert len(list((tmp_path / "qa").glob("index-*"))) == 1
        clock.now += RETRY_FAILED_SECONDS
        assert live.check_now()
        assert live.status().snapshot_id == third.id and live.status().last_error is None
        assert _has_release_notes(live, 3)
    finally:
        live.stop()


def test_a_fallback_of_the_cold_start_child_is_retried(
    emulators, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The child is another process: it cannot be patched. The newest archive is missing while it
    # restores (moved aside) and back afterwards, so the child falls back to the previous snapshot.
    first = publish(settings, tmp_path, version=1)
    second = publish(settings, tmp_path, version=2)
    store = snapshot_store(settings)
    archive = store.bucket.blob(settings.snapshot_prefix + second.archive)
    aside = store.bucket.copy_blob(archive, store.bucket, settings.snapshot_prefix + "aside")
    archive.delete()
    params = StoreParams(settings.project_id, settings.bucket, settings.snapshot_prefix, 7, "zstd")
    source = ColdStartSource(params, tmp_path / "qa")
    source.start()
    live, clock = _live(settings, tmp_path, source)
    with caplog.at_level(logging.WARNING):
        live.start()
    try:
        assert source._collected  # the first copy came from the child
        assert live.status().snapshot_id == first.id
        assert any(r.name == "shared.qa.live_index" and second.id in r.getMessage() for r in caplog.records)
        store.bucket.copy_blob(aside, store.bucket, settings.snapshot_prefix + second.archive)
        assert not live.check_now()  # not before RETRY_FAILED_SECONDS
        clock.now += RETRY_FAILED_SECONDS
        assert live.check_now()
        assert live.status().snapshot_id == second.id
        assert _has_release_notes(live, 2)
    finally:
        live.stop()


def test_a_rollback_is_served_even_though_it_is_older(emulators, settings: Settings, tmp_path: Path) -> None:
    first = publish(settings, tmp_path, version=1)
    second = publish(settings, tmp_path, version=2)
    live, _ = _live(settings, tmp_path)
    live.start()
    try:
        assert live.status().snapshot_id == second.id
        snapshot_store(settings).rollback(first.id)
        assert live.check_now()
        assert live.status().snapshot_id == first.id
        assert not _has_release_notes(live, 2)
    finally:
        live.stop()
