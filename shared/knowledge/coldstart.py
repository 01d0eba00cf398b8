"""Cold start: restore the newest snapshot in a child process while this one gets ready to open it.

A starting Q&A instance has two slow, independent jobs before it can answer: *fetch* the snapshot
(import the Cloud Storage client, read the pointer, download, verify, unpack) and *get ready* to open it
(import Chroma's Rust bindings, load the embedding model). Both are mostly Python holding the GIL, so
two threads run them one after the other; a child process runs the fetch on the second CPU.
bench/snapshots.py measures the difference on a 2-core machine.

:class:`ColdStartSource` is the snapshot source a :class:`~shared.qa.live_index.LiveIndex` starts with:
its first pointer read and restore are answered by the child started in :meth:`ColdStartSource.start`,
everything after (the watcher's polls, later swaps) goes to the ordinary in-process store. If the child
fails, times out or cannot be started, the same first read and restore run in-process instead, so the
worst case is the old start-up time plus a logged error, never a missing index.

The child is ``python -m shared.knowledge.coldstart``. It is killed if its parent dies, restores into a
directory of its own under ``work_dir`` and writes what it restored to a JSON file; its log lines go to
the same output as the parent's.

The qa worker starts it first thing (:meth:`ColdStartSource.for_settings` in ``services/qa/wsgi.py``,
before Flask and the Firestore client are imported): importing the app is the longest single step of a
start, and the download, check and unpack run on the other CPU meanwhile. This module imports nothing
heavy for that reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.processes import die_with_parent, remove_orphaned_dirs

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.knowledge.snapshots import Pointer, RestoredSnapshot, SnapshotStore

log = logging.getLogger(__name__)

# Long enough for a large snapshot on a slow link; past it the child is killed and the restore is
# done in-process (which has no deadline of its own, like any restore).
RESTORE_TIMEOUT_SECONDS = 600.0
WORK_DIR_PREFIX = "coldstart-"


@dataclass(frozen=True)
class StoreParams:
    """Where the snapshots are: enough for the parent and the child to build the same store."""

    project_id: str
    bucket: str
    prefix: str = "snapshots/"
    keep: int = 7
    compression: str = "zstd"

    def build_store(self) -> SnapshotStore:
        """A :class:`SnapshotStore` for these parameters; the Cloud Storage client is built on first use."""
        from shared.gcp import ensure_bucket, storage_client
        from shared.knowledge.snapshots import SnapshotStore

        return SnapshotStore(
            lambda: ensure_bucket(storage_client(self.project_id), self.bucket),
            prefix=self.prefix,
            keep=self.keep,
            compression=self.compression,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class _ChildResult:
    pointer: Pointer | None
    generation: int
    restored: RestoredSnapshot | None


class ColdStartSource:
    """A snapshot source whose first ``read_pointer`` + ``restore`` come from a child process.

    An in-process store built from ``params`` serves every later call (and the first ones if the child
    fails). ``work_dir`` is where the child unpacks: a directory on the same file system as the restore
    destinations, so handing the copy over is a rename.
    """

    def __init__(
        self,
        params: StoreParams,
        work_dir: Path,
        timeout: float = RESTORE_TIMEOUT_SECONDS,
        log_level: str = "INFO",
        json_logs: bool = False,
    ) -> None:
        self._store: SnapshotStore | None = None
        self._params = params
        self._work_root = Path(work_dir)
        self._timeout = timeout
        self._log_args = [log_level, "json" if json_logs else "text"]
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._collected = False
        self._work_dir: Path | None = None
        self._started_at = 0.0
        self._pending: _ChildResult | None = None
        self._closed = False
        #: Called once before the in-process store is first used (see LiveIndex.from_settings).
        self.before_fallback: Callable[[], object] | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> ColdStartSource:
        """The qa service's source: the configured bucket, restoring under ``<data_dir>/qa``."""
        return cls(
            StoreParams(
                project_id=settings.project_id,
                bucket=settings.bucket,
                prefix=settings.snapshot_prefix,
                keep=settings.snapshot_keep,
                compression=settings.snapshot_compression,
            ),
            Path(settings.data_dir) / "qa",
            log_level=settings.log_level,
            json_logs=settings.is_production,
        )

    @property
    def params(self) -> StoreParams:
        """Where this source's snapshots are."""
        return self._params

    @property
    def work_root(self) -> Path:
        """The directory the child unpacks under."""
        return self._work_root

    @property
    def store(self) -> SnapshotStore:
        """The in-process store behind this source."""
        if self._store is None:
            wait, self.before_fallback = self.before_fallback, None
            if wait is not None:
                wait()
            self._store = self._params.build_store()
        return self._store

    def start(self) -> None:
        """Start the child now (call as early as possible). Failing to start it is logged, not raised."""
        with self._lock:
            if self._child is not None:
                return
            self._work_root.mkdir(parents=True, exist_ok=True)
            # A parent killed before it collected its child leaves the child's directory behind.
            remove_orphaned_dirs(self._work_root, WORK_DIR_PREFIX)
            prefix = f"{WORK_DIR_PREFIX}{os.getpid()}-"
            self._work_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=self._work_root))
            command = [
                sys.executable,
                "-m",
                "shared.knowledge.coldstart",
                json.dumps(asdict(self._params)),
                str(self._work_dir),
                str(os.getpid()),
                *self._log_args,
            ]
            self._started_at = time.monotonic()
            try:
                self._child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
            except OSError as exc:
                log.error("cannot start the cold-start restore (%s); restoring in-process", exc)
                self._cleanup()

    # --- SnapshotSource ----------------------------------------------------------------------------
    def read_pointer(self) -> tuple[Pointer | None, int]:
        """The child's pointer read the first time (waiting for the child), the store's after that."""
        result = self._collect()
        if self._closed:
            return None, 0  # the owner is stopping: nothing to load
        if self._pending is not None and self._pending.restored is not None:
            self._cleanup()  # the caller read the pointer again instead of restoring: drop the copy
        self._pending = result
        if result is None:
            return self.store.read_pointer()
        return result.pointer, result.generation

    def restore(self, dest_root: Path, *, stop_at: str | None = None) -> RestoredSnapshot | None:
        """The child's restored copy, moved under ``dest_root``, after its pointer read; else the store's.

        ``stop_at`` is passed on to the store (:meth:`SnapshotStore.restore`); the child restored before
        anything was served, so its copy is handed over as it is (the caller compares it with what it
        serves, if anything).
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return self.store.restore(dest_root, stop_at=stop_at)
        restored = pending.restored
        if restored is None:
            return None  # the child found nothing restorable and logged why
        dest_root = Path(dest_root)
        dest_root.mkdir(parents=True, exist_ok=True)
        target = dest_root / restored.path.name
        os.replace(restored.path, target)
        self._cleanup()
        restored.path = target
        return restored

    def close(self) -> None:
        """Stop the child if it still runs and delete what it left (for a service stopping early).

        Never waits for a thread blocked in :meth:`read_pointer`: that one finds its child killed and
        cleans up itself.
        """
        self._closed = True
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()
        if self._lock.acquire(blocking=False):
            try:
                if child is not None:
                    child.wait()
                self._collected = True
                self._pending = None
                self._cleanup()
            finally:
                self._lock.release()

    # --- internals -----------------------------------------------------------------------------------
    def _collect(self) -> _ChildResult | None:
        """Wait for the child once; its result, or None (logged) when it failed or never ran."""
        with self._lock:
            child = self._child
            if child is None or self._collected:
                return None
            self._collected = True
            try:
                code = child.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                log.error(
                    "cold-start restore ran over %.0f s and was killed; restoring in-process", self._timeout
                )
                self._cleanup()
                return None
            if self._closed:
                self._cleanup()
                return None
            assert self._work_dir is not None
            try:
                if code != 0:
                    raise RuntimeError(f"it exited with status {code}")
                result = _read_result(self._work_dir / RESULT_NAME)
            except Exception as exc:
                log.error("the cold-start restore failed (%s); restoring in-process", exc)
                self._cleanup()
                return None
            log.info(
                "cold-start restore finished in %.2f s (snapshot %s)",
                time.monotonic() - self._started_at,
                result.restored.snapshot_id if result.restored else None,
            )
            if result.restored is None:
                self._cleanup()
            return result

    def _cleanup(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None


RESULT_NAME = "result.json"


def _read_result(path: Path) -> _ChildResult:
    from shared.knowledge.snapshot_archive import Manifest
    from shared.knowledge.snapshots import Pointer, RestoredSnapshot

    raw = json.loads(path.read_bytes())
    pointer = Pointer.from_json(json.dumps(raw["pointer"]).encode()) if raw["pointer"] else None
    restored = None
    if raw["restored"] is not None:
        item = raw["restored"]
        copy = Path(item["path"])
        if copy.parent != path.parent or not copy.is_dir():
            raise RuntimeError(f"it reported a copy outside its work directory: {copy}")
        manifest = Manifest.from_json(json.dumps(item["manifest"]).encode())
        chosen_from = item.get("pointer")
        restored = RestoredSnapshot(
            item["snapshot_id"],
            copy,
            manifest,
            int(item["generation"]),
            Pointer.from_json(json.dumps(chosen_from).encode()) if chosen_from else None,
        )
    return _ChildResult(pointer, int(raw["generation"]), restored)


def _write_result(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """The child: ``python -m shared.knowledge.coldstart PARAMS_JSON WORK_DIR PARENT_PID LEVEL FORMAT``."""
    params_json, work_dir, parent_pid, level, log_format = (argv if argv is not None else sys.argv[1:])[:5]
    die_with_parent(int(parent_pid))
    from shared import logs

    logs.configure(level, json_output=log_format == "json")
    store = StoreParams(**json.loads(params_json)).build_store()
    work = Path(work_dir)
    try:
        pointer, generation = store.read_pointer()
        restored = store.restore(work) if generation else None
    except Exception:
        log.exception("cold-start restore failed")
        return 1
    payload = {
        "pointer": json.loads(pointer.to_json()) if pointer is not None else None,
        "generation": generation,
        "restored": None
        if restored is None
        else {
            "snapshot_id": restored.snapshot_id,
            "path": str(restored.path),
            "manifest": restored.manifest.to_dict(),
            "generation": restored.generation,
            # What it was chosen from: the parent tells a fallback to an older snapshot by it.
            "pointer": json.loads(restored.pointer.to_json()) if restored.pointer is not None else None,
        },
    }
    _write_result(work / RESULT_NAME, payload)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
