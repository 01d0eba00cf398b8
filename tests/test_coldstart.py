"""Cold start: the first restore runs in a child process and is handed over by a rename; a child that
fails, hangs or cannot start costs time, never the index; a child never outlives its parent."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.config import Settings
from shared.knowledge import coldstart
from shared.knowledge.coldstart import ColdStartSource, StoreParams
from shared.knowledge.index import KnowledgeIndex
from shared.processes import remove_orphaned_dirs
from shared.qa.live_index import LiveIndex
from tests.qa_corpus import publish

pytestmark = pytest.mark.emulators


def params_for(settings: Settings) -> StoreParams:
    return StoreParams(settings.project_id, settings.bucket, settings.snapshot_prefix, 7, "zstd")


def test_the_child_restores_and_the_copy_is_handed_over(
    emulators, settings: Settings, tmp_path: Path
) -> None:
    first = publish(settings, tmp_path, version=1)
    work = tmp_path / "work"
    source = ColdStartSource(params_for(settings), work)
    source.start()
    child = source._child
    assert child is not None

    pointer, generation = source.read_pointer()
    assert child.returncode == 0  # the answer came from the child, which has finished
    assert pointer.snapshot_id == first.id and generation > 0
    restored = source.restore(tmp_path / "dest")
    assert restored.snapshot_id == first.id and restored.manifest == first
    assert restored.path.parent == tmp_path / "dest"
    assert not list(work.glob("coldstart-*")), "the child's work directory was not removed"
    with KnowledgeIndex.open(restored.path, _embedder(settings)) as index:
        assert index.chunk_count() == first.chunk_count

    # Every later call goes to the in-process store: it sees a newer snapshot.
    second = publish(settings, tmp_path, version=2)
    pointer, later_generation = source.read_pointer()
    assert pointer.snapshot_id == second.id and later_generation > generation
    assert source.restore(tmp_path / "dest2").snapshot_id == second.id


def test_nothing_published_yet(emulators, settings: Settings, tmp_path: Path) -> None:
    source = ColdStartSource(params_for(settings), tmp_path / "work")
    source.start()
    assert source.read_pointer() == (None, 0)
    assert not list((tmp_path / "work").glob("coldstart-*"))


@pytest.mark.parametrize("failure", ["cannot-start", "crashes", "hangs"])
def test_a_failed_child_falls_back_to_an_in_process_restore(
    emulators,
    settings: Settings,
    tmp_path: Path,
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = publish(settings, tmp_path, version=1)
    source = ColdStartSource(
        params_for(settings), tmp_path / "work", timeout=0.05 if failure == "hangs" else 600
    )
    if failure == "cannot-start":
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    elif failure == "crashes":
        # Parameters the child's store rejects: it exits non-zero without writing a result.
        source._params = StoreParams(settings.project_id, settings.bucket, "snapshots/", 7, "lzma")
    with caplog.at_level(logging.ERROR, logger="shared.knowledge.coldstart"):
        source.start()
        if failure == "crashes":
            source._child.wait(timeout=60)
            source._params = params_for(settings)  # the in-process store uses the right bucket
        pointer, _ = source.read_pointer()
    assert pointer.snapshot_id == first.id
    assert source.restore(tmp_path / "dest").snapshot_id == first.id
    assert "restoring in-process" in caplog.text
    assert not list((tmp_path / "work").glob("coldstart-*"))


def test_live_index_from_settings_serves_the_childs_copy(
    emulators, settings: Settings, tmp_path: Path
) -> None:
    first = publish(settings, tmp_path, version=1)
    live = LiveIndex.from_settings(settings)
    assert isinstance(live._store, ColdStartSource) and live._store._child is not None
    live.start()
    try:
        assert live.status().snapshot_id == first.id
        assert live.search("How do I rotate a Telegram bot token?", 3)
    finally:
        live.stop()
    assert not list((Path(settings.data_dir) / "qa").iterdir()), "stop() left a copy behind"


def test_stopping_during_the_cold_start_kills_the_child_at_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = tmp_path / "stuck-python"
    stuck.write_text("#!/bin/sh\nexec sleep 120\n")
    stuck.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(stuck))  # a child that never finishes
    source = ColdStartSource(params_for(settings), tmp_path / "work")
    source.start()
    child = source._child

    def never_opened(path: Path) -> KnowledgeIndex:
        raise AssertionError("nothing was restored, so nothing may be opened")

    live = LiveIndex(source, never_opened, tmp_path / "work")
    with caplog.at_level(logging.WARNING):
        live.start(wait=False)
        # The watcher is waiting for the child once it holds the source's lock (taken around the wait).
        deadline = time.monotonic() + 60
        while not source._lock.locked():
            assert time.monotonic() < deadline and live._thread.is_alive(), "the watcher never waited"
            time.sleep(0.01)
        live.stop()
    # Killed, not finished: `sleep 120` would have exited 0; stop() waits at most 10 s for the watcher.
    assert child.poll() == -signal.SIGKILL, "the child was not killed"
    assert not live._thread.is_alive()
    assert not list((tmp_path / "work").glob("coldstart-*"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_leftovers_of_dead_parents_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"coldstart-{int(dead.stdout)}-abc"
    (stale / "snap").mkdir(parents=True)
    mine_running = tmp_path / f"coldstart-{os.getppid()}-def"  # a live process's (pytest's parent)
    mine_running.mkdir()
    remove_orphaned_dirs(tmp_path, coldstart.WORK_DIR_PREFIX)
    assert not stale.exists()
    assert mine_running.exists()


def _embedder(settings: Settings):
    from shared.knowledge.embeddings import load_embedder

    return load_embedder(settings.embedder)


WORKER = """
import sys, time
from shared.knowledge import coldstart

started_before_the_app = []
real_start = coldstart.ColdStartSource.start


def start(self):
    if self._child is None:  # a second call is a no-op
        started_before_the_app.append("services.qa.app" not in sys.modules)
    real_start(self)


coldstart.ColdStartSource.start = start
import services.qa.wsgi as wsgi

live = wsgi.app.extensions["askbase"].live_index
assert live._store is wsgi.cold_start, "the live index did not adopt the early restore"
deadline = time.monotonic() + 120
while live.status().state != "ready":
    assert time.monotonic() < deadline and live.status().state == "starting", live.status()
    time.sleep(0.02)
print("RESULT", started_before_the_app, live.status().snapshot_id)
live.stop()
"""


def test_the_qa_worker_starts_the_restore_before_importing_the_app(
    emulators, settings: Settings, tmp_path: Path
) -> None:
    first = publish(settings, tmp_path, version=1)
    done = subprocess.run(
        [sys.executable, "-c", WORKER],
        cwd=Path(__file__).parents[1],
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Started once, before services.qa.app was imported; the index it restored is the one served.
    result = [line.split() for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert result == [["RESULT", "[True]", first.id]], done.stdout[-3000:]


def test_a_cold_start_source_built_for_other_settings_is_refused(settings: Settings, tmp_path: Path) -> None:
    other = ColdStartSource(StoreParams(settings.project_id, "another-bucket"), tmp_path / "work")
    with pytest.raises(ValueError, match="other settings"):
        LiveIndex.from_settings(settings, other)
    assert other._child is None  # refused before anything was started


def test_a_model_that_cannot_load_fails_the_open_not_every_search(
    emulators, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first copy is opened while the model loads (LoadingEmbedder); if the model then fails,
    # the copy must not be served as ready with every search failing.
    from shared.knowledge import embeddings
    from shared.qa.live_index import NoIndexYet

    publish(settings, tmp_path, version=1)

    def missing(name: str = embeddings.MINILM_ID) -> embeddings.Embedder:
        raise embeddings.EmbedderUnavailable("model package missing (test)")

    monkeypatch.setattr(embeddings, "load_embedder", missing)
    live = LiveIndex.from_settings(settings)
    live.start()
    try:
        status = live.status()
        assert status.state != "ready"
        assert "model package missing (test)" in (status.last_error or "")
        with pytest.raises(NoIndexYet):
            live.search("How do I rotate a Telegram bot token?", 3)
    finally:
        live.stop()
