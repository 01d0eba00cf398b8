"""The index the Q&A service answers from, swapped for newer snapshots while it serves.

On :meth:`LiveIndex.start` the newest snapshot is restored (the snapshot store verifies its checksum and
falls back to the previous one) into a fresh directory under ``data_dir`` and opened. A watcher thread
polls the pointer's generation every ``poll_seconds``; when it moves, the new snapshot is restored into a
*new* directory and swapped in under a lock.

Readers take a lease with :meth:`LiveIndex.lease` (or call :meth:`LiveIndex.search`). Each loaded copy
counts its readers: a request that started on the old copy finishes on it, new requests get the new one,
and the old copy is closed and its directory deleted when its last reader returns. Nothing restarts and
no request fails because of a swap. A newer snapshot that cannot be restored leaves the current one in
service and is logged as an ERROR (and shown in :meth:`LiveIndex.status`).

When the store falls back (the pointer's snapshot failed, broken or just unreadable for a moment, and
an older one came back instead), the pointer's generation is *not* taken as handled: the fallback is
logged as a WARNING and the pointer's snapshot is tried again after ``RETRY_FAILED_SECONDS``, until it is
served or the pointer moves. A fallback may be served when nothing is (a cold start) or when it is newer
than what is; while serving, the index never swaps to an older snapshot than the one it serves because
of a failure (a rollback, which moves the pointer itself, is not a failure).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.processes import remove_orphaned_dirs

if TYPE_CHECKING:
    import numpy as np

    from shared.config import Settings
    from shared.knowledge.coldstart import ColdStartSource
    from shared.knowledge.embeddings import Embedder
    from shared.knowledge.index import KnowledgeIndex
    from shared.knowledge.retrieval import Passage
    from shared.knowledge.snapshot_archive import Manifest

log = logging.getLogger(__name__)

# After a failed restore of a generation (or one that fell back to an older snapshot), wait this long
# before trying the same generation again: a corrupt archive stays corrupt, but a network blip should not
# pin us to an old snapshot forever.
RETRY_FAILED_SECONDS = 300.0
DIR_PREFIX = "index-"


class SnapshotPointer(Protocol):
    """What LiveIndex reads of :class:`shared.knowledge.snapshots.Pointer`."""

    @property
    def snapshot_id(self) -> str: ...

    @property
    def previous(self) -> list[str]: ...


class RestoredCopy(Protocol):
    """What LiveIndex reads of :class:`shared.knowledge.snapshots.RestoredSnapshot`."""

    @property
    def snapshot_id(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def generation(self) -> int: ...

    @property
    def manifest(self) -> Manifest | Mapping[str, Any]: ...

    @property
    def pointer(self) -> SnapshotPointer | None:
        """The pointer the store chose the copy from (it reads the pointer again)."""


class SnapshotSource(Protocol):
    """What LiveIndex needs from :class:`shared.knowledge.snapshots.SnapshotStore` (or the cold-start
    source that restores the first copy in a child process, :mod:`shared.knowledge.coldstart`)."""

    def read_pointer(self) -> tuple[SnapshotPointer | None, int]: ...

    def restore(self, dest_root: Path, *, stop_at: str | None = None) -> RestoredCopy | None:
        """The newest restorable snapshot; with ``stop_at``, only one newer than that one, or None."""

    def close(self) -> None:
        """Release what the source holds (a cold-start child still fetching)."""


def _newer_in(chain: Sequence[str], candidate: str, served: str) -> bool:
    """Whether ``candidate`` comes before ``served`` in a pointer's chain (newest first). A served
    snapshot the chain no longer lists is older than all of it."""
    if candidate not in chain:
        return False
    return served not in chain or chain.index(candidate) < chain.index(served)


class NoIndexYet(RuntimeError):
    """No snapshot has been published yet (the first crawl is still running)."""


@dataclass
class IndexStatus:
    """What /readyz and the status page show."""

    state: str  # "starting" | "empty" | "ready"
    snapshot_id: str | None
    generation: int
    loaded_at: datetime | None
    chunk_count: int
    counts_by_source: dict[str, int]
    last_error: str | None
    last_checked_at: datetime | None
    manifest: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "snapshot_id": self.snapshot_id,
            "generation": self.generation,
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "chunk_count": self.chunk_count,
            "counts_by_source": self.counts_by_source,
            "last_error": self.last_error,
            "last_checked_at": self.last_checked_at.isoformat() if self.last_checked_at else None,
        }


class _Loaded:
    """One opened copy of the index and the readers currently using it."""

    def __init__(
        self,
        index: KnowledgeIndex,
        path: Path,
        snapshot_id: str,
        generation: int,
        manifest: Manifest | Mapping[str, Any],
    ) -> None:
        self.index = index
        self.path = path
        self.snapshot_id = snapshot_id
        self.generation = generation
        self.manifest = manifest
        self.loaded_at = datetime.now(UTC)
        self.chunk_count = index.chunk_count()
        self.counts_by_source = dict(index.counts_by_source())
        self.readers = 0
        self.retired = False

    def dispose(self) -> None:
        try:
            self.index.close()
        except Exception:
            log.exception("closing index copy %s failed", self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        log.info("removed old index copy %s (snapshot %s)", self.path.name, self.snapshot_id)


def _manifest_dict(manifest: Manifest | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    if isinstance(manifest, Mapping):
        return dict(manifest)
    return manifest.to_dict()


@dataclass(frozen=True)
class _Preparation:
    """The two threads :func:`_prepare_in_background` started."""

    chroma: threading.Thread
    model: threading.Thread

    def wait_for_chroma(self) -> None:
        self.chroma.join()

    def wait(self) -> None:
        self.chroma.join()
        self.model.join()


def _prepare_in_background(load_model: Callable[[], object]) -> _Preparation:
    """Import Chroma's Rust bindings and load the model on two threads (the model load releases the
    GIL for part of its time). Failures are logged: the first open retries.

    Only the bindings: a published snapshot is opened read-only through them
    (:mod:`shared.knowledge.chroma_reader`), and the ``chromadb`` package (0.5 s of CPU) is imported
    only to open a copy in an older layout."""

    def import_chroma() -> None:
        import chromadb_rust_bindings  # noqa: F401

    threads = []
    for name, job in (("chroma", import_chroma), ("model", load_model)):

        def run(job: Callable[[], object] = job, name: str = name) -> None:
            try:
                job()
            except Exception:
                log.exception("preparing the index (%s) failed; the first open will retry", name)

        thread = threading.Thread(target=run, name=f"index-prepare-{name}", daemon=True)
        thread.start()
        threads.append(thread)
    return _Preparation(chroma=threads[0], model=threads[1])


class LoadingEmbedder:
    """An embedder whose id and dimension are known while its model is still loading.

    Opening an index reads only the embedder's id and dimension (the sidecar check, Chroma's warm-up
    probe), never a vector, so the first copy can be opened (Chroma's bindings, its HNSW file, the chunk
    table: 0.1-0.25 s of CPU at 465-10,000 chunks) while the model loads on its thread, instead of
    after it. :meth:`embed` waits for that load and then uses the process-wide embedder.
    """

    def __init__(self, embedder_id: str, dimension: int, loaded: Callable[[], Embedder]) -> None:
        self.id = embedder_id
        self.dimension = dimension
        self._loaded = loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The loaded model's vectors for ``texts`` (waits for the model on the first call)."""
        return self._loaded().embed(texts)


class LiveIndex:
    """Serve the newest snapshot; swap newer ones in without failing a request."""

    def __init__(
        self,
        store: SnapshotSource,
        opener: Callable[[Path], KnowledgeIndex],
        data_dir: Path,
        poll_seconds: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        # Seconds, for the retry delay (tests move it instead of sleeping); time.monotonic by default.
        self._clock = clock or time.monotonic
        self._open = opener
        self.data_dir = Path(data_dir)
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()  # guards _current and reader counts; never held during I/O
        self._swap_lock = threading.Lock()  # one restore at a time (watcher vs. check_now)
        self._current: _Loaded | None = None
        self._state = "starting"
        self._generation = 0  # of the pointer the current copy was restored under (shown in status)
        self._handled = 0  # the pointer generation whose own snapshot is served: nothing left to do
        self._last_error: str | None = None
        self._last_checked_at: datetime | None = None
        self._failed: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, cold_start: ColdStartSource | None = None) -> LiveIndex:
        """The production LiveIndex: snapshots from the configured bucket, opened with the configured
        embedder, the first restore done by a child process (:mod:`shared.knowledge.coldstart`).

        ``cold_start``: that source, started earlier (the qa worker starts it before importing the app);
        it must be the one :meth:`ColdStartSource.for_settings` gives for ``settings``. Returns at once
        with the child running; call :meth:`start`.
        """
        from shared.knowledge.coldstart import ColdStartSource

        source = cold_start or ColdStartSource.for_settings(settings)
        expected = ColdStartSource.for_settings(settings)
        if (source.params, source.work_root) != (expected.params, expected.work_root):
            raise ValueError("the cold-start source was built for other settings than this index")
        data_dir = source.work_root
        source.start()  # no-op when it was started already
        # Imported here, before the threads below: two threads importing the same package at once can
        # see it half-initialised (numpy, protobuf).
        import shared.knowledge.snapshots  # noqa: F401
        from shared.knowledge.embeddings import MINILM_DIMENSION, MINILM_ID, load_embedder
        from shared.knowledge.index import KnowledgeIndex

        prepared = _prepare_in_background(lambda: load_embedder(settings.embedder))
        # The in-process fallback imports the Cloud Storage client: not while Chroma is being imported.
        source.before_fallback = prepared.wait

        def loaded() -> Embedder:
            prepared.model.join()
            return load_embedder(settings.embedder)  # loaded by now; loads (or raises) if that failed

        def opener(path: Path) -> KnowledgeIndex:
            if settings.embedder != MINILM_ID:  # an unknown name: load_embedder says so
                prepared.wait()
                return KnowledgeIndex.open(path, loaded(), collection=settings.collection, read_only=True)
            prepared.wait_for_chroma()
            embedder = LoadingEmbedder(MINILM_ID, MINILM_DIMENSION, loaded)
            index = KnowledgeIndex.open(path, embedder, collection=settings.collection, read_only=True)
            try:
                # Opened while the model loaded; a model that cannot load fails the open, as before,
                # rather than every search of a copy that looks ready.
                loaded()
            except BaseException:
                index.close()
                raise
            return index

        return cls(source, opener, data_dir, settings.snapshot_poll_seconds)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        """Load the newest snapshot and start the watcher.

        With ``wait=False`` the first restore runs on the watcher thread, so a web server can answer
        /healthz (and /readyz "starting") while a large snapshot downloads.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_copies()
        if wait:
            self.check_now()
        self._thread = threading.Thread(target=self._watch, name="live-index-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher and close the current copy (when its readers are done)."""
        self._stop.set()
        self._store.close()  # a cold-start child still fetching is of no use any more
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            current, self._current = self._current, None
            dispose = current is not None and self._retire(current)
        if dispose and current is not None:
            current.dispose()

    def _remove_stale_copies(self) -> None:
        # Copies left by a dead process (a crash, a kill -9) are garbage; copies of *live* processes are
        # not: several gunicorn workers may share data_dir.
        remove_orphaned_dirs(self.data_dir, DIR_PREFIX)

    def _watch(self) -> None:
        first = self._current is None and self._state == "starting"
        while not self._stop.is_set():
            if not first and self._stop.wait(self.poll_seconds):
                break
            first = False
            try:
                self.check_now()
            except Exception:
                # check_now logs and records its own failures; this guards the thread's life.
                log.exception("index watcher iteration failed")

    # --- swapping ------------------------------------------------------------------------------
    def check_now(self) -> bool:
        """Poll the pointer once and load a newer snapshot if there is one. True when swapped."""
        with self._swap_lock:
            return self._check()

    def _check(self) -> bool:
        if self._stop.is_set():
            return False
        try:
            pointer, generation = self._store.read_pointer()
        except Exception as exc:
            self._record_error(f"cannot read the snapshot pointer: {type(exc).__name__}: {exc}")
            if self._current is None:
                self._state = "empty"
            return False
        self._last_checked_at = datetime.now(UTC)
        if self._stop.is_set():
            return False
        if generation == 0:
            if self._current is None:
                self._state = "empty"
            return False
        if pointer is None and self._current is not None:
            # An unreadable pointer (the store logged it): keep serving; a publisher will replace it.
            return False
        # (An unreadable pointer with nothing loaded yet still restores: the store then tries every
        # listed snapshot, newest first.)
        if generation == self._handled:
            return False
        failed_at = self._failed.get(generation)
        if failed_at is not None and self._clock() - failed_at < RETRY_FAILED_SECONDS:
            return False
        wanted = pointer.snapshot_id if pointer is not None else None
        current = self._current
        if current is not None and wanted is not None and wanted == current.snapshot_id:
            # A rollback or a pointer rewrite to what we already serve: nothing to load.
            self._settle(generation)
            return False
        dest = self.data_dir / f"{DIR_PREFIX}{os.getpid()}-{int(time.time())}-{uuid.uuid4().hex[:8]}"
        dest.mkdir(parents=True)
        started = time.monotonic()
        serving = current.snapshot_id if current is not None else None
        try:
            # Never fetch what we serve, or anything older, as a fallback: we would not swap it in.
            restored = self._store.restore(dest, stop_at=serving)
            if restored is None:
                raise RuntimeError(
                    "no restorable snapshot" + (f" newer than the served {serving}" if serving else "")
                )
            index = self._open(Path(restored.path))
            try:
                loaded = _Loaded(index, dest, restored.snapshot_id, generation, restored.manifest)
            except Exception:
                index.close()
                raise
        except Exception as exc:
            shutil.rmtree(dest, ignore_errors=True)
            self._failed[generation] = self._clock()
            self._record_error(
                f"restoring snapshot {wanted or '?'} (generation {generation}) failed: "
                f"{type(exc).__name__}: {exc}; keeping " + (serving or "no index")
            )
            if self._current is None:
                self._state = "empty"
            return False
        # The store reads the pointer again; a publish in between may have moved it forward. What it
        # restored is judged against the pointer it read (the one we read, if it does not say).
        generation = restored.generation or generation
        chosen_from = restored.pointer if restored.pointer is not None else pointer
        fell_back = chosen_from is not None and restored.snapshot_id != chosen_from.snapshot_id
        if chosen_from is not None and fell_back:
            # The pointer's own snapshot failed (broken, or unreadable right now: the store logged
            # why). Not handled: it is tried again after RETRY_FAILED_SECONDS.
            self._failed[generation] = self._clock()
            target = chosen_from.snapshot_id
            chain = [target, *chosen_from.previous]
            if serving is not None and not _newer_in(chain, restored.snapshot_id, serving):
                index.close()
                shutil.rmtree(dest, ignore_errors=True)
                self._record_fallback(
                    logging.WARNING,  # what is served stays as it was; the store logged each failure
                    f"snapshot {target} (generation {generation}) could not be restored and the store "
                    f"fell back to {restored.snapshot_id}, which is not newer than the served {serving}; "
                    f"keeping {serving}, trying {target} again in {RETRY_FAILED_SECONDS:.0f} s",
                )
                return False
            self._record_fallback(
                logging.ERROR,  # what is served is older than what was published: an operator should know
                f"snapshot {target} (generation {generation}) could not be restored; serving the older "
                f"{restored.snapshot_id} the store fell back to, trying {target} again in "
                f"{RETRY_FAILED_SECONDS:.0f} s",
            )
        else:
            self._last_error = None
        loaded.generation = generation
        if self._stop.is_set():
            # stop() ran while this restore was downloading: nobody will ever release this copy.
            loaded.dispose()
            return False
        with self._lock:
            old, self._current = self._current, loaded
            self._generation = generation
            self._state = "ready"
            dispose = old is not None and self._retire(old)
        if not fell_back:
            self._settle(generation)
        if dispose and old is not None:
            old.dispose()
        log.info(
            "serving snapshot %s (%d chunks, restored in %.2fs)%s",
            loaded.snapshot_id,
            loaded.chunk_count,
            time.monotonic() - started,
            f", replacing {old.snapshot_id}" if old else "",
        )
        return True

    def _settle(self, generation: int) -> None:
        """The pointer at ``generation`` is served as it says: stop polling it for retries."""
        self._handled = generation
        self._generation = generation
        self._failed = {g: at for g, at in self._failed.items() if g > generation}

    def _retire(self, loaded: _Loaded) -> bool:
        """Mark a copy as replaced; True if nobody reads it and the caller must dispose it."""
        loaded.retired = True
        return loaded.readers == 0

    def _record_error(self, message: str) -> None:
        self._last_error = message
        log.error("%s", message)

    def _record_fallback(self, level: int, message: str) -> None:
        # Logged here as well as by the store: a starting instance restores in a child process, whose
        # own log lines are not this process's.
        self._last_error = message
        log.log(level, "%s", message)

    # --- reading -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lease(self) -> Iterator[KnowledgeIndex]:
        """The current index for the duration of a ``with`` block; raises :class:`NoIndexYet`."""
        with self._lock:
            loaded = self._current
            if loaded is None:
                raise NoIndexYet(self._state)
            loaded.readers += 1
        try:
            yield loaded.index
        finally:
            with self._lock:
                loaded.readers -= 1
                dispose = loaded.retired and loaded.readers == 0
            if dispose:
                loaded.dispose()

    def search(self, question: str, k: int) -> list[Passage]:
        """Retrieve passages from the current index (raises :class:`NoIndexYet` before the first one):
        the ``k`` best, then up to two semantic picks (:meth:`KnowledgeIndex.search`)."""
        with self.lease() as index:
            return index.search(question, k=k)

    def status(self) -> IndexStatus:
        with self._lock:
            cur = self._current
            return IndexStatus(
                state=self._state,
                snapshot_id=cur.snapshot_id if cur else None,
                generation=self._generation,
                loaded_at=cur.loaded_at if cur else None,
                chunk_count=cur.chunk_count if cur else 0,
                counts_by_source=dict(cur.counts_by_source) if cur else {},
                last_error=self._last_error,
                last_checked_at=self._last_checked_at,
                manifest=_manifest_dict(cur.manifest) if cur else None,
            )
