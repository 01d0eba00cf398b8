"""Versioned snapshots of the Chroma index in Cloud Storage, published by compare-and-swap.

Layout under ``prefix`` (default ``snapshots/``)::

    <id>.tar.zst          one consistent copy of the index directory (or .tar.gz)
    <id>.manifest.json    what is inside, and the archive's sha256
    LATEST.json           the pointer {"snapshot_id", "previous": [...], "rolled_back_at"}; replaced
                          only by CAS

The archive and manifest format (and how an archive is packed, checked and unpacked) is
:mod:`shared.knowledge.snapshot_archive`; this module is where snapshots are kept and which one is current.

Why it is built this way:

* Atomic publish: archive and manifest are uploaded under a fresh id first; only then is the small pointer
  replaced with ``if_generation_match`` (0 = "must not exist yet"). Two publishers racing on the same base
  generation cannot both win: the loser gets :class:`PublishConflict`. The pointer is uploaded with a
  simple (non-resumable) upload because the emulator ignores preconditions on resumable ones.
* Safe restore: an archive is unpacked only after its sha256 matched the manifest, into a fresh
  directory (:func:`~shared.knowledge.snapshot_archive.safe_unpack`). A snapshot that fails any check is
  logged as an ERROR and the previous one is tried.
* Broken is not unreachable: a snapshot that fails its checks (checksum, unsafe or corrupt archive, the
  open-check) is *broken*; one that cannot be read because Cloud Storage or the local disk failed (a 5xx,
  a network error, a full disk) is *unavailable*. ``restore(strict=True)`` (the scrape job) raises
  :class:`SnapshotUnavailable` for the latter instead of falling back or answering "nothing to restore",
  because a caller that rebuilds from scratch on ``None`` would drop every page it cannot crawl right now.
  The lenient restore (the Q&A service) falls back to an older snapshot either way, and says which one
  it restored out of which pointer (:attr:`RestoredSnapshot.pointer`), so that a server can tell a
  fallback from the pointer's own snapshot and try the newest again later; ``stop_at`` keeps it from
  fetching the snapshot a server already serves, or anything older, as a fallback.
* A rollback is marked: :meth:`SnapshotStore.rollback` writes the pointer with ``rolled_back_at``, and the
  next publish clears it. A scrape that was already crawling when the pointer was rolled back sees the
  mark after losing its compare-and-swap, and stops instead of publishing again on top of the rollback
  (:mod:`shared.knowledge.scrape`).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from shared.knowledge.snapshot_archive import (
    ARCHIVE_EXTENSIONS,
    Compression,
    IndexLike,
    Manifest,
    SnapshotError,
    check_archive,
    check_index_dir,
    is_broken_snapshot,
    is_disk_error,
    new_snapshot_id,
    pack_snapshot,
    safe_unpack,
    validate_snapshot_id,
)

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

POINTER_NAME = "LATEST.json"
# An archive left without a manifest (a publisher died mid-upload) is deleted after this long.
ORPHAN_AGE = timedelta(hours=1)


class PublishConflict(SnapshotError):
    """Another publisher replaced the pointer first; start over from the new base or stop."""


class SnapshotNotFound(SnapshotError):
    """No snapshot with that id exists in the bucket."""


class SnapshotUnavailable(RuntimeError):
    """A published snapshot could not be read because of storage or disk trouble, not because it is broken.

    Deliberately not a :class:`SnapshotError`: it says nothing about the snapshot, so it must never be
    taken for "nothing restorable". Retry later.
    """


@dataclass(frozen=True)
class Pointer:
    """The content of ``LATEST.json``."""

    snapshot_id: str
    previous: list[str] = field(default_factory=list)
    published_at: str = ""
    #: When :meth:`SnapshotStore.rollback` wrote this pointer (ISO 8601); empty for a published one.
    rolled_back_at: str = ""

    @property
    def rolled_back(self) -> bool:
        """Whether this pointer was written by a rollback (no publish since)."""
        return bool(self.rolled_back_at)

    def to_json(self) -> bytes:
        """The bytes stored as ``LATEST.json``."""
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Pointer:
        """Parse ``LATEST.json``; :class:`SnapshotError` when it is not a valid pointer."""
        try:
            raw = json.loads(data)
            sid = raw["snapshot_id"]
            previous = raw.get("previous", [])
            if not isinstance(sid, str) or not isinstance(previous, list):
                raise TypeError("snapshot_id must be a string and previous a list")
            return cls(
                sid,
                [str(p) for p in previous],
                str(raw.get("published_at", "")),
                str(raw.get("rolled_back_at") or ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"snapshot pointer is not valid: {exc}") from None


@dataclass
class RestoredSnapshot:
    """A snapshot unpacked and checked in a fresh directory."""

    snapshot_id: str
    path: Path
    manifest: Manifest
    generation: int
    #: The pointer the snapshot was chosen from (None when it was unreadable and every listed snapshot
    #: was tried). ``snapshot_id != pointer.snapshot_id`` means the store fell back to an older one.
    pointer: Pointer | None = None


def retention_victims(manifests: list[Manifest], keep: int, protected: set[str]) -> list[str]:
    """Ids to delete: everything but the newest ``keep`` and the ``protected`` ones."""
    ordered = sorted(manifests, key=lambda m: (m.created_at, m.id), reverse=True)
    kept = {m.id for m in ordered[:keep]} | protected
    return [m.id for m in ordered if m.id not in kept]


def next_pointer(new_id: str, current: Pointer | None, keep: int) -> Pointer:
    """The pointer after publishing ``new_id`` on top of ``current``: older ids slide into previous."""
    previous: list[str] = []
    if current is not None:
        previous = [current.snapshot_id, *current.previous]
    previous = [p for i, p in enumerate(previous) if p != new_id and p not in previous[:i]]
    return Pointer(new_id, previous[: max(keep - 1, 0)], datetime.now(UTC).isoformat())


class SnapshotStore:
    """Publish, list, restore and roll back index snapshots in one bucket prefix.

    ``verify`` is an extra open-check run on every unpacked copy before it is handed out (for example
    "open it with the embedder and compare the chunk count"); it raises to reject the copy. The built-in
    check always runs first (the SQLite file exists and passes ``PRAGMA quick_check``).
    """

    def __init__(
        self,
        bucket: storage.Bucket | Callable[[], storage.Bucket],
        prefix: str = "snapshots/",
        keep: int = 7,
        compression: Compression = "zstd",
        verify: Callable[[Path, Manifest], None] | None = None,
        work_dir: Path | None = None,
    ) -> None:
        if compression not in ARCHIVE_EXTENSIONS:
            raise ValueError(f"compression must be one of {sorted(ARCHIVE_EXTENSIONS)}, not {compression!r}")
        if keep < 1:
            raise ValueError("keep must be at least 1")
        # A callable is called on first use: a starting service builds the store before it needs the
        # Cloud Storage client, and importing that client takes 0.3-0.4 s (google.cloud.storage on the
        # 2-core dev machine at load 2: 0.32-0.41 s wall, 0.22-0.28 s CPU).
        self._bucket = bucket
        self._bucket_lock = threading.Lock()
        self.prefix = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        self.keep = keep
        self.compression: Compression = compression
        self.verify = verify
        self.work_dir = work_dir

    @property
    def bucket(self) -> storage.Bucket:
        """The bucket the snapshots live in."""
        if callable(self._bucket):
            with self._bucket_lock:
                if callable(self._bucket):
                    self._bucket = self._bucket()
        return self._bucket

    # --- names --------------------------------------------------------------------------------------
    @property
    def pointer_name(self) -> str:
        """Object name of ``LATEST.json`` in the bucket."""
        return self.prefix + POINTER_NAME

    def _manifest_name(self, snapshot_id: str) -> str:
        return f"{self.prefix}{snapshot_id}.manifest.json"

    def close(self) -> None:
        """Nothing to release: the storage client's connections close with the process. (LiveIndex
        closes its source on stop; the cold-start source has a child process to stop.)"""

    # --- pointer ------------------------------------------------------------------------------------
    def read_pointer(self) -> tuple[Pointer | None, int]:
        """``(pointer, generation)``; ``(None, 0)`` when nothing was ever published.

        A pointer whose content is unreadable is logged as an ERROR and returned as ``(None,
        generation)`` so a publisher can still replace it by compare-and-swap.
        """
        for _ in range(5):
            blob = self.bucket.get_blob(self.pointer_name)
            if blob is None:
                return None, 0
            generation = int(blob.generation or 0)
            try:
                data = blob.download_as_bytes(if_generation_match=generation)
            except gexc.PreconditionFailed:
                continue  # replaced between the two calls: read again
            except gexc.NotFound:
                return None, 0
            try:
                return Pointer.from_json(data), generation
            except SnapshotError as exc:
                log.error("%s (generation %d): %s", self.pointer_name, generation, exc)
                return None, generation
        raise SnapshotError("the snapshot pointer kept changing while being read")

    def _write_pointer(self, pointer: Pointer, expected_generation: int) -> int:
        blob = self.bucket.blob(self.pointer_name)
        blob.cache_control = "no-store"
        blob.chunk_size = None  # simple upload: the emulator ignores preconditions on resumable ones
        try:
            blob.upload_from_string(
                pointer.to_json(), content_type="application/json", if_generation_match=expected_generation
            )
        except gexc.PreconditionFailed:
            raise PublishConflict(
                f"the snapshot pointer moved (expected generation {expected_generation}); "
                "another publisher won"
            ) from None
        return int(blob.generation or 0)

    # --- publish ------------------------------------------------------------------------------------
    def publish(
        self,
        index: IndexLike,
        manifest_extra: dict[str, Any],
        parent_id: str | None,
        expected_generation: int,
    ) -> Manifest:
        """Pack the index, upload archive + manifest, then CAS the pointer to the new snapshot.

        ``manifest_extra`` may carry ``embedder`` (``{"id", "dimension"}``); everything else lands in the
        manifest's ``extra``. Raises :class:`PublishConflict` when the pointer is no longer at
        ``expected_generation`` (its uploads are then deleted again).
        """
        snapshot_id = new_snapshot_id()
        with tempfile.TemporaryDirectory(prefix="askbase-snap-", dir=self.work_dir) as tmp:
            archive_path, manifest = pack_snapshot(
                index, Path(tmp), snapshot_id, self.compression, parent_id, manifest_extra
            )
            archive_blob = self.bucket.blob(self.prefix + manifest.archive)
            archive_blob.upload_from_filename(
                str(archive_path),
                content_type="application/zstd" if self.compression == "zstd" else "application/gzip",
                if_generation_match=0,
            )
        manifest_blob = self.bucket.blob(self._manifest_name(snapshot_id))
        manifest_blob.chunk_size = None
        manifest_blob.upload_from_string(
            manifest.to_json(), content_type="application/json", if_generation_match=0
        )
        current, generation = self.read_pointer()
        if generation != expected_generation:
            self._delete_snapshot(snapshot_id)
            raise PublishConflict(
                f"the snapshot pointer moved from generation {expected_generation} to {generation}; "
                "another publisher won"
            )
        pointer = next_pointer(snapshot_id, current, self.keep)
        try:
            self._write_pointer(pointer, expected_generation)
        except PublishConflict:
            self._delete_snapshot(snapshot_id)
            raise
        log.info(
            "published snapshot %s (%d chunks, %d pages, %.1f MB, parent %s)",
            snapshot_id,
            manifest.chunk_count,
            manifest.pages,
            manifest.size / 1e6,
            parent_id,
            extra={"snapshot_id": snapshot_id},
        )
        try:
            self.prune(protected={pointer.snapshot_id, *pointer.previous})
        except Exception:  # retention must never fail a publish that already succeeded
            log.exception("snapshot retention failed; old snapshots stay until the next publish")
        return manifest

    # --- listing ------------------------------------------------------------------------------------
    def get(self, snapshot_id: str) -> Manifest:
        """The manifest of one snapshot; :class:`SnapshotNotFound` if there is none."""
        validate_snapshot_id(snapshot_id)
        try:
            data = self.bucket.blob(self._manifest_name(snapshot_id)).download_as_bytes()
        except gexc.NotFound:
            raise SnapshotNotFound(
                f"no snapshot {snapshot_id} in gs://{self.bucket.name}/{self.prefix}"
            ) from None
        manifest = Manifest.from_json(data)
        if manifest.id != snapshot_id:
            raise SnapshotError(f"manifest of {snapshot_id} names a different snapshot ({manifest.id})")
        return manifest

    def list(self) -> list[Manifest]:
        """Every readable manifest, newest first (unreadable ones are logged and left out)."""
        manifests = []
        for blob in self.bucket.list_blobs(prefix=self.prefix):
            if not blob.name.endswith(".manifest.json"):
                continue
            try:
                manifests.append(Manifest.from_json(blob.download_as_bytes()))
            except (SnapshotError, gexc.NotFound) as exc:
                log.warning("skipping %s: %s", blob.name, exc)
        return sorted(manifests, key=lambda m: (m.created_at, m.id), reverse=True)

    # --- retention ----------------------------------------------------------------------------------
    def prune(self, protected: set[str] | None = None) -> builtins.list[str]:
        """Delete all but the newest ``keep`` snapshots, never one the pointer names. Returns deleted ids."""
        if protected is None:
            pointer, _ = self.read_pointer()
            protected = {pointer.snapshot_id, *pointer.previous} if pointer else set()
        manifests = self.list()
        victims = retention_victims(manifests, self.keep, protected)
        for snapshot_id in victims:
            self._delete_snapshot(snapshot_id)
        # Archives whose manifest never arrived (a publisher died between the two uploads).
        known = {m.id for m in manifests}
        cutoff = datetime.now(UTC) - ORPHAN_AGE
        for blob in self.bucket.list_blobs(prefix=self.prefix):
            stem = blob.name[len(self.prefix) :].split(".", 1)[0]
            if (
                blob.name.endswith(tuple(ARCHIVE_EXTENSIONS.values()))
                and stem not in known | protected
                and blob.time_created is not None
                and blob.time_created < cutoff
            ):
                log.info("deleting orphaned archive %s", blob.name)
                with contextlib.suppress(gexc.NotFound):
                    blob.delete()
        if victims:
            log.info("retention: deleted %d old snapshot(s): %s", len(victims), ", ".join(victims))
        return victims

    def _delete_snapshot(self, snapshot_id: str) -> None:
        for ext in (*ARCHIVE_EXTENSIONS.values(), ".manifest.json"):
            with contextlib.suppress(gexc.NotFound):
                self.bucket.blob(self.prefix + snapshot_id + ext).delete()

    # --- restore ------------------------------------------------------------------------------------
    def restore(
        self, dest_root: Path, *, strict: bool = False, stop_at: str | None = None
    ) -> RestoredSnapshot | None:
        """Unpack the newest valid snapshot into a fresh directory under ``dest_root``.

        Tries the pointer's snapshot, then each of its ``previous`` ones; every failure is logged as an
        ERROR. Returns None when nothing was ever published or nothing could be restored. Whatever the
        reason a newer snapshot failed (broken, or a Cloud Storage 5xx that may be gone in a minute), the
        result may be an older one: compare its ``snapshot_id`` with ``pointer.snapshot_id``.

        ``stop_at``: a snapshot the caller already has (the one a server is serving). When the pointer's
        chain holds it, neither it nor anything after it (older) is tried: the result is a snapshot
        newer than it, or None.

        With ``strict`` (a caller that rebuilds from scratch on None), None means exactly "nothing was
        ever published" or "every candidate is broken" (:func:`is_broken_snapshot`); any other failure
        (a Cloud Storage 5xx, a network or disk error) raises :class:`SnapshotUnavailable` at once, without
        falling back to an older snapshot.
        """
        pointer, generation = self.read_pointer()
        if pointer is not None:
            candidates = [pointer.snapshot_id, *pointer.previous]
        elif generation:
            log.error("snapshot pointer unreadable: trying every listed snapshot, newest first")
            candidates = [m.id for m in self.list()]
        else:
            return None
        candidates = list(dict.fromkeys(candidates))
        kept = stop_at is not None and stop_at in candidates
        if stop_at is not None and kept:
            candidates = candidates[: candidates.index(stop_at)]
            if not candidates:
                return None  # the pointer names what the caller has: nothing newer to restore
        dest_root = Path(dest_root)
        dest_root.mkdir(parents=True, exist_ok=True)
        failures = []
        for position, snapshot_id in enumerate(candidates):
            try:
                path, manifest = self._restore_one(snapshot_id, dest_root)
            except Exception as exc:
                if strict and not is_broken_snapshot(exc):
                    log.error(
                        "snapshot %s cannot be read (%s: %s): storage or disk trouble, not a broken "
                        "snapshot; not falling back",
                        snapshot_id,
                        type(exc).__name__,
                        exc,
                        extra={"snapshot_id": snapshot_id},
                    )
                    raise SnapshotUnavailable(
                        f"published snapshot {snapshot_id} could not be read ({type(exc).__name__}: {exc})"
                    ) from exc
                failures.append(f"{snapshot_id}: {exc}")
                log.error(
                    "snapshot %s cannot be restored (%s: %s); falling back to the previous one",
                    snapshot_id,
                    type(exc).__name__,
                    exc,
                    extra={"snapshot_id": snapshot_id},
                )
                continue
            if position:
                log.error(
                    "restored OLDER snapshot %s because newer ones failed: %s",
                    snapshot_id,
                    "; ".join(failures),
                    extra={"snapshot_id": snapshot_id},
                )
            return RestoredSnapshot(snapshot_id, path, manifest, generation, pointer)
        if kept:
            log.error(
                "no snapshot newer than %s could be restored (%s); the caller keeps %s",
                stop_at,
                "; ".join(failures),
                stop_at,
            )
            return None
        log.error("no snapshot could be restored (%s); the index must be rebuilt", "; ".join(failures))
        return None

    def _restore_one(self, snapshot_id: str, dest_root: Path) -> tuple[Path, Manifest]:
        manifest = self.get(snapshot_id)
        target = dest_root / f"{snapshot_id}-{secrets.token_hex(4)}"
        fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=dest_root)
        os.close(fd)
        archive = Path(tmp_name)
        try:
            try:
                self.bucket.blob(self.prefix + manifest.archive).download_to_filename(str(archive))
            except gexc.NotFound:
                raise SnapshotError(f"archive {manifest.archive} is missing") from None
            check_archive(archive, manifest)
            target.mkdir()
            safe_unpack(archive, manifest.compression, target, max_bytes=manifest.unpacked_bytes)
            check_index_dir(target)
            if self.verify is not None:
                try:
                    self.verify(target, manifest)
                except SnapshotError:
                    raise
                except Exception as exc:
                    if is_disk_error(exc):
                        raise
                    # The copy does not pass the caller's open-check (e.g. another embedder): broken.
                    raise SnapshotError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            archive.unlink(missing_ok=True)
        return target, manifest

    # --- rollback -----------------------------------------------------------------------------------
    def rollback(self, snapshot_id: str) -> None:
        """Point LATEST at an older snapshot (CAS); the one it replaces moves into ``previous``.

        The new pointer carries ``rolled_back_at``: a scrape that started before it and then loses its
        publish race to it ends without publishing (:mod:`shared.knowledge.scrape`). The lease is not
        taken: a crawl can run for many minutes, and a rollback must not wait for the run it undoes.
        """
        manifest = self.get(snapshot_id)
        if not self.bucket.blob(self.prefix + manifest.archive).exists():
            raise SnapshotError(f"snapshot {snapshot_id} has a manifest but its archive is gone")
        current, generation = self.read_pointer()
        if current is not None and current.snapshot_id == snapshot_id:
            return
        pointer = replace(
            next_pointer(snapshot_id, current, self.keep), rolled_back_at=datetime.now(UTC).isoformat()
        )
        self._write_pointer(pointer, generation)
        log.warning(
            "snapshot pointer rolled back to %s (was %s); a scrape still running stops at its publish "
            "instead of publishing over the rollback",
            snapshot_id,
            current.snapshot_id if current else None,
            extra={"snapshot_id": snapshot_id},
        )
