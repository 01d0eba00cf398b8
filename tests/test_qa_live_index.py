"""LiveIndex: restore on start, swap newer snapshots under concurrent readers, keep serving on failure."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from shared.config import Settings
from shared.knowledge.embeddings import Embedder
from shared.qa.live_index import RETRY_FAILED_SECONDS, LiveIndex, LoadingEmbedder, NoIndexYet
from tests.fakes.knowledge import FakeIndex, FakeStore


def _live(tmp_path: Path, store: FakeStore, delay: float = 0.0, poll: float = 3600) -> LiveIndex:
    opened: list[FakeIndex] = []

    def opener(path: Path) -> FakeIndex:
        index = FakeIndex(path, path.name, search_delay=delay)
        opened.append(index)
        return index

    live = LiveIndex(store, opener, tmp_path / "data", poll_seconds=poll)
    live.opened = opened  # type: ignore[attr-defined]
    return live


def _copies(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "data").glob("index-*"))


def test_empty_until_the_first_snapshot(tmp_path: Path) -> None:
    store = FakeStore()
    live = _live(tmp_path, store)
    live.start()
    try:
        assert live.status().state == "empty"
        with pytest.raises(NoIndexYet):
            live.search("hello", 3)
        store.publish("s1")
        assert live.check_now()
        status = live.status()
        assert (status.state, status.snapshot_id, status.chunk_count) == ("ready", "s1", 3)
        assert live.search("hello", 3)[0].chunk_id == "s1-1"
    finally:
        live.stop()


def test_swap_deletes_the_old_copy_and_ignores_an_unchanged_pointer(tmp_path: Path) -> None:
    store = FakeStore()
    store.publish("s1")
    live = _live(tmp_path, store)
    live.start()
    try:
        first_dirs = _copies(tmp_path)
        assert len(first_dirs) == 1
        assert not live.check_now()  # same generation: no restore
        assert store.restores == 1
        store.publish("s2")
        assert live.check_now()
        assert live.status().snapshot_id == "s2"
        assert live.opened[0].closed  # type: ignore[attr-defined]
        assert _copies(tmp_path) != first_dirs and len(_copies(tmp_path)) == 1
    finally:
        live.stop()
    assert _copies(tmp_path) == []


def test_readers_in_flight_finish_on_the_old_copy(tmp_path: Path) -> None:
    store = FakeStore()
    store.publish("s1")
    live = _live(tmp_path, store)
    live.start()
    try:
        with live.lease() as old:
            store.publish("s2")
            assert live.check_now()
            # New readers see s2 while this one still holds s1, whose files are still there.
            assert live.search("x", 1)[0].chunk_id == "s2-1"
            assert old.search("x", 1)[0].chunk_id == "s1-1"
            assert len(_copies(tmp_path)) == 2
        assert old.closed
        assert len(_copies(tmp_path)) == 1
    finally:
        live.stop()


def test_watcher_swaps_under_concurrent_readers_without_errors(tmp_path: Path) -> None:
    store = FakeStore()
    store.publish("s0")
    live = _live(tmp_path, store, delay=0.002, poll=0.02)
    live.start()
    errors: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(live.search("q", 1)[0].chunk_id)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 8):
            store.publish(f"s{i}")
            deadline = time.monotonic() + 5
            while live.status().snapshot_id != f"s{i}" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert live.status().snapshot_id == f"s{i}"
        # The readers run when the scheduler lets them: on a loaded machine none may have searched
        # the newest copy yet when it is swapped in. Wait until one has before stopping them.
        deadline = time.monotonic() + 30
        while "s7-1" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
        live.stop()
    assert errors == []
    assert {"s0-1", "s7-1"} <= seen
    assert all(index.closed for index in live.opened)  # type: ignore[attr-defined]
    assert _copies(tmp_path) == []


def test_a_broken_newer_snapshot_keeps_the_current_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    store.publish("s1")
    live = _live(tmp_path, store)
    live.start()
    try:
        store.publish("s2")
        store.broken.add("s2")
        with caplog.at_level(logging.ERROR, logger="shared.qa.live_index"):
            assert not live.check_now()
        status = live.status()
        assert status.snapshot_id == "s1"
        assert "s2" in (status.last_error or "")
        assert any(r.levelno == logging.ERROR and "s2" in r.getMessage() for r in caplog.records)
        assert live.search("x", 1)[0].chunk_id == "s1-1"
        assert len(_copies(tmp_path)) == 1  # the fallback copy was not kept twice
        # A good snapshot after the broken one is picked up and clears the error.
        store.publish("s3")
        assert live.check_now()
        assert live.status().snapshot_id == "s3" and live.status().last_error is None
    finally:
        live.stop()


def test_restore_exception_keeps_serving(tmp_path: Path) -> None:
    store = FakeStore()
    store.publish("s1")
    live = _live(tmp_path, store)
    live.start()
    try:
        store.publish("s2")
        store.broken.update({"s1", "s2"})
        assert not live.check_now()
        assert live.status().snapshot_id == "s1"
        assert "failed" in (live.status().last_error or "")
        assert len(_copies(tmp_path)) == 1
    finally:
        live.stop()


def test_start_falls_back_to_the_previous_snapshot(tmp_path: Path) -> None:
    store = FakeStore()
    store.publish("s1")
    store.publish("s2")
    store.broken.add("s2")
    live = _live(tmp_path, store)
    live.start()
    try:
        assert live.status().snapshot_id == "s1"
        assert live.status().state == "ready"
        assert "s2" in (live.status().last_error or "")
    finally:
        live.stop()


class Clock:
    """A monotonic clock the test moves (LiveIndex's retry delay), instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _clocked(tmp_path: Path, store: FakeStore) -> tuple[LiveIndex, Clock]:
    clock = Clock()
    live = LiveIndex(store, lambda path: FakeIndex(path, path.name), tmp_path / "data", 3600, clock)
    return live, clock


@pytest.mark.parametrize("failures", [1, 3])
def test_a_fallback_at_start_is_retried_until_the_newest_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, failures: int
) -> None:
    store = FakeStore()
    store.publish("s1")
    store.publish("s2")
    store.unavailable["s2"] = failures  # a Cloud Storage blip: fails this many times, then restores
    live, clock = _clocked(tmp_path, store)
    with caplog.at_level(logging.WARNING, logger="shared.qa.live_index"):
        live.start()
    try:
        assert live.status().snapshot_id == "s1" and live.status().state == "ready"
        assert any(r.levelno == logging.ERROR and "s2" in r.getMessage() for r in caplog.records)
        assert "s2" in (live.status().last_error or "")
        restores = store.restores
        assert not live.check_now()  # within RETRY_FAILED_SECONDS: not tried again yet
        assert store.restores == restores
        for _ in range(failures - 1):  # each retry fails: s1 stays, s1 itself is never fetched again
            clock.now += RETRY_FAILED_SECONDS
            store.attempted.clear()
            assert not live.check_now()
            assert live.status().snapshot_id == "s1" and store.attempted == ["s2"]
        clock.now += RETRY_FAILED_SECONDS
        assert live.check_now()
        status = live.status()
        assert (status.snapshot_id, status.generation, status.last_error) == ("s2", 2, None)
        assert len(_copies(tmp_path)) == 1
        restores = store.restores
        clock.now += RETRY_FAILED_SECONDS
        assert not live.check_now() and store.restores == restores  # handled now: nothing to retry
    finally:
        live.stop()


class _IgnoresStopAt(FakeStore):
    """A source that falls back all the way, whatever the caller serves."""

    def restore(self, dest_root: Path, *, stop_at: str | None = None):  # type: ignore[override]
        return super().restore(dest_root)


@pytest.mark.parametrize("store_class", [FakeStore, _IgnoresStopAt])
def test_a_failure_while_serving_never_swaps_to_an_older_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, store_class: type[FakeStore]
) -> None:
    store = store_class()
    store.publish("s1")
    store.publish("s2")
    live, clock = _clocked(tmp_path, store)
    live.start()
    try:
        assert live.status().snapshot_id == "s2"
        store.publish("s3")
        store.unavailable.update({"s3": 1, "s2": 1})
        store.attempted.clear()
        with caplog.at_level(logging.WARNING, logger="shared.qa.live_index"):
            assert not live.check_now()
        assert live.status().snapshot_id == "s2"
        assert live.search("x", 1)[0].chunk_id == "s2-1"
        assert len(_copies(tmp_path)) == 1  # a fallback copy, if one was made, is gone again
        assert "s3" in (live.status().last_error or "")
        if store_class is FakeStore:
            assert store.attempted == ["s3"]  # what is served, and older, is never fetched
        else:
            assert store.attempted == ["s3", "s2", "s1"]
            assert any(
                r.levelno == logging.WARNING and "not newer than the served s2" in r.getMessage()
                for r in caplog.records
            )
        clock.now += RETRY_FAILED_SECONDS
        assert live.check_now()
        assert live.status().snapshot_id == "s3" and live.status().last_error is None
    finally:
        live.stop()


def test_a_rollback_still_swaps_to_the_older_snapshot(tmp_path: Path) -> None:
    store = FakeStore()
    store.publish("s1")
    store.publish("s2")
    live, clock = _clocked(tmp_path, store)
    live.start()
    try:
        store.rollback("s1")
        store.unavailable["s1"] = 1
        assert not live.check_now()  # s1 failed once: s2 stays until the retry
        assert live.status().snapshot_id == "s2"
        clock.now += RETRY_FAILED_SECONDS
        assert live.check_now()
        assert live.status().snapshot_id == "s1" and live.status().last_error is None
    finally:
        live.stop()


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_stale_copies_of_dead_processes_are_removed_but_live_workers_kept(tmp_path: Path) -> None:
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    data = tmp_path / "data"
    stale = data / f"index-{dead.pid}-1-deadbeef"
    mine = data / f"index-{os.getpid()}-1-cafebabe"  # a previous life with our (reused) pid
    sibling = data / f"index-{os.getppid()}-1-feedface"  # another live worker's copy
    junk = data / "index-garbage"
    for path in (stale, mine, sibling, junk):
        path.mkdir(parents=True)
    live = _live(tmp_path, FakeStore())
    live.start()
    live.stop()
    assert not stale.exists() and not mine.exists() and not junk.exists()
    assert sibling.exists()


def test_an_index_opens_before_its_model_has_loaded_and_searches_once_it_has(
    tmp_path: Path, settings: Settings
) -> None:
    # LiveIndex.from_settings opens the first copy with a LoadingEmbedder while the model loads on
    # its thread: opening must not need a vector, and the first search must use the real model.
    from shared.knowledge.embeddings import MINILM_DIMENSION, MINILM_ID, load_embedder
    from shared.knowledge.index import KnowledgeIndex
    from tests.qa_corpus import build_index

    build_index(tmp_path / "index", settings).close()
    real = load_embedder()
    asked: list[int] = []

    def loaded() -> Embedder:
        asked.append(1)
        return real

    question = "How do I rotate a Telegram bot token?"
    index = KnowledgeIndex.open(
        tmp_path / "index",
        LoadingEmbedder(MINILM_ID, MINILM_DIMENSION, loaded),
        collection=settings.collection,
    )
    try:
        assert asked == [], "opening the index asked for the model"
        hits = index.search(question, 3)
        assert asked, "the search did not use the loaded model"
    finally:
        index.close()
    with KnowledgeIndex.open(tmp_path / "index", real, collection=settings.collection) as direct:
        assert [hit.chunk_id for hit in hits] == [hit.chunk_id for hit in direct.search(question, 3)]
