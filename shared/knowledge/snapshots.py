"""Versioned snapshots of the Chroma index in Cloud Storage, published by compare-and-swap.

Layout under ``prefix`` (default ``snapshots/``)::

    <id>.tar.zst          one consistent copy of the index directory (or .tar.gz)
    <id>.manifest.json    what is inside, and the archive's sha256
    LATEST.json           the pointer {"snapshot_id", "previous": [...]}; replaced only by CAS

Why it is built this way:

* Consistency: the index directory is tarred (no compression, so it is quick) while the index's
  ``write_lock`` is held; tarring a directory a writer is changing produced broken copies every time we
  measured. Compression, hashing and upload happen after the lock is released.
* Atomic publish: archive and manifest are uploaded under a fresh id first; only then is the small pointer
  replaced with ``if_generation_match`` (0 = "must not exist yet"). Two publishers racing on the same base
  generation cannot both win: the loser gets :class:`PublishConflict`. The pointer is uploaded with a
  simple (non-resumable) upload because the emulator ignores preconditions on resumable ones.
* Safe restore: Chroma's segment folders contain a pickle, so an archive is unpacked only after its
  sha256 matched the manifest, into a fresh directory, refusing absolute paths, ``..``, links and devices.
  A snapshot that fails any check is logged as an ERROR and the previous one is tried.
* Broken is not unreachable: a snapshot that fails its checks (checksum, unsafe or corrupt archive, the
  open-check) is *broken*; one that cannot be read because Cloud Storage or the local disk failed (a 5xx,
  a network error, a full disk) is *unavailable*. ``restore(strict=True)`` (the scrape job) raises
  :class:`SnapshotUnavailable` for the latter instead of falling back or answering "nothing to restore",
  because a caller that rebuilds from scratch on ``None`` would drop every page it cannot crawl right now.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import zstandard
from google.api_core import exceptions as gexc

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

Compression = Literal["zstd", "gzip"]
MANIFEST_FORMAT = 1
POINTER_NAME = "LATEST.json"
_EXTENSIONS: dict[str, str] = {"zstd": ".tar.zst", "gzip": ".tar.gz"}
_ID_RE = re.compile(r"^\d{8}T\d{6}\d{0,6}Z-[0-9a-f]{6,32}$")
# zstd level 9, measured by bench/snapshots.py on 2 cores: at 465 chunks 2.14 MB (level 3: 2.40 MB, level 19:
# 2.01 MB but 16x slower, gzip -6: 3.16 MB); at 10k chunks 7 % smaller than level 3 for ~4x the compress
# time, which is paid by the scrape job after the lock is released. Unpacking costs the same at any level.
ZSTD_LEVEL = 9
GZIP_LEVEL = 6
# An archive left without a manifest (a publisher died mid-upload) is deleted after this long.
ORPHAN_AGE = timedelta(hours=1)
_COPY_CHUNK = 1 << 20


class SnapshotError(RuntimeError):
    """A snapshot cannot be read, verified or unpacked; the message says which and why."""


class PublishConflict(SnapshotError):
    """Another publisher replaced the pointer first; start over from the new base or stop."""


class UnsafeArchive(SnapshotError):
    """The archive holds a member that must never be unpacked (absolute path, ``..``, link, device)."""


class SnapshotNotFound(SnapshotError):
    """No snapshot with that id exists in the bucket."""


class SnapshotUnavailable(RuntimeError):
    """A published snapshot could not be read because of storage or disk trouble, not because it is broken.

    Deliberately not a :class:`SnapshotError`: it says nothing about the snapshot, so it must never be
    taken for "nothing restorable". Retry later.
    """


class IndexLike(Protocol):
    """What publishing needs from :class:`shared.knowledge.index.KnowledgeIndex`."""

    path: Path
    write_lock: Any

    def pages(self) -> dict[str, Any]: ...

    def counts_by_source(self) -> dict[str, int]: ...

    def chunk_count(self) -> int: ...


@dataclass(frozen=True)
class Pointer:
    """The content of ``LATEST.json``."""

    snapshot_id: str
    previous: list[str] = field(default_factory=list)
    published_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Pointer:
        try:
            raw = json.loads(data)
            sid = raw["snapshot_id"]
            previous = raw.get("previous", [])
            if not isinstance(sid, str) or not isinstance(previous, list):
                raise TypeError("snapshot_id must be a string and previous a list")
            return cls(sid, [str(p) for p in previous], str(raw.get("published_at", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"snapshot pointer is not valid: {exc}") from None


@dataclass(frozen=True)
class Manifest:
    """What a snapshot holds; stored next to the archive as ``<id>.manifest.json``."""

    id: str
    created_at: str
    archive: str  # object name relative to the prefix, e.g. "<id>.tar.zst"
    compression: Compression
    sha256: str
    size: int  # archive bytes
    unpacked_bytes: int  # tar bytes (bounds what a restore may write)
    embedder: dict[str, Any]
    counts_by_source: dict[str, int]
    pages: int
    pages_by_source: dict[str, int]
    chunk_count: int
    parent_id: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            if raw.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unknown manifest format {raw.get('format')!r}")
            manifest = cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError) as exc:
            raise SnapshotError(f"manifest is not valid: {exc}") from None
        if not _ID_RE.match(manifest.id) or manifest.compression not in _EXTENSIONS:
            raise SnapshotError(f"manifest is not valid: bad id or compression ({manifest.id!r})")
        if manifest.archive != manifest.id + _EXTENSIONS[manifest.compression]:
            raise SnapshotError(f"manifest names an unexpected archive {manifest.archive!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", manifest.sha256):
            raise SnapshotError("manifest sha256 is not a hex digest")
        return manifest


@dataclass
class RestoredSnapshot:
    """A snapshot unpacked and checked in a fresh directory."""

    snapshot_id: str
    path: Path
    manifest: Manifest
    generation: int


# --------------------------------------------------------------------------------------------------
# Pure pieces: ids, member checks, retention
# --------------------------------------------------------------------------------------------------


def new_snapshot_id(now: datetime | None = None) -> str:
    """A sortable, unique id: UTC time to the microsecond plus random hex."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(4)


def validate_snapshot_id(snapshot_id: str) -> str:
    """Return the id, or raise ValueError: ids become object names, so nothing else gets through."""
    if not isinstance(snapshot_id, str) or not _ID_RE.match(snapshot_id):
        raise ValueError(
            f"not a snapshot id: {snapshot_id!r} (expected like 20260101T000000123456Z-ab12cd34)"
        )
    return snapshot_id


def unsafe_member_reason(member: tarfile.TarInfo) -> str | None:
    """Why an archive member must not be unpacked, or None when it is a plain file or directory."""
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = re.split(r"[\\/]+", name)
    if ".." in parts:
        return "parent directory reference (..)"
    if member.issym() or member.islnk():
        return "link"
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        return "device or fifo"
    if not (member.isfile() or member.isdir()):
        return "unsupported member type"
    return None


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


def check_index_dir(path: Path) -> None:
    """Cheap open-check of an unpacked Chroma directory: the SQLite file is there and consistent."""
    db = path / "chroma.sqlite3"
    if not db.is_file():
        raise SnapshotError(f"{path} holds no chroma.sqlite3")
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            result = conn.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as exc:
        raise SnapshotError(f"chroma.sqlite3 cannot be opened: {exc}") from None
    if not result or result[0] != "ok":
        raise SnapshotError(f"chroma.sqlite3 failed its integrity check: {result}")


# --------------------------------------------------------------------------------------------------
# Archive I/O
# --------------------------------------------------------------------------------------------------


def pack_directory(source: Path, tar_path: Path) -> int:
    """Write an uncompressed tar of ``source``'s contents; returns its size. Hold the writer's lock."""
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(source.iterdir()):
            tar.add(child, arcname=child.name, recursive=True)
    return tar_path.stat().st_size


def compress_file(tar_path: Path, out_path: Path, compression: Compression) -> str:
    """Compress ``tar_path`` into ``out_path``; returns the sha256 of the compressed bytes."""
    digest = hashlib.sha256()

    class _Hashing:
        def __init__(self, raw: IO[bytes]) -> None:
            self.raw = raw

        def write(self, data: bytes) -> int:
            digest.update(data)
            return self.raw.write(data)

        def flush(self) -> None:
            self.raw.flush()

    with open(tar_path, "rb") as src, open(out_path, "wb") as raw:
        sink = _Hashing(raw)
        if compression == "zstd":
            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
            with cctx.stream_writer(sink, closefd=False) as writer:  # type: ignore[arg-type]
                shutil.copyfileobj(src, writer, _COPY_CHUNK)
        else:
            with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as writer:  # type: ignore[arg-type]
                shutil.copyfileobj(src, writer, _COPY_CHUNK)
    return digest.hexdigest()


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_COPY_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@contextlib.contextmanager
def _decompressed(path: Path, compression: Compression) -> Iterator[IO[bytes]]:
    with open(path, "rb") as raw:
        if compression == "zstd":
            with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
                yield reader  # type: ignore[misc]
        else:
            with gzip.GzipFile(fileobj=raw, mode="rb") as reader:
                yield reader


def safe_unpack(archive: Path, compression: Compression, dest: Path, max_bytes: int | None = None) -> None:
    """Unpack into ``dest`` (which must be empty), refusing unsafe members and oversized content.

    Raises :class:`UnsafeArchive` naming the first bad member, :class:`SnapshotError` for a corrupt
    stream. A disk error (full disk, read-only, I/O error, no permission: see :data:`DISK_ERRNOS`)
    propagates as the :class:`OSError` it is: it says nothing about the archive. Nothing outside ``dest``
    is ever written.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise SnapshotError(f"restore target {dest} is not empty")
    written = 0
    try:
        with _decompressed(archive, compression) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                reason = unsafe_member_reason(member)
                if reason:
                    raise UnsafeArchive(f"archive member {member.name!r} refused: {reason}")
                written += max(member.size, 0)
                if max_bytes is not None and written > max_bytes:
                    raise UnsafeArchive(
                        f"archive unpacks to more than the {max_bytes} bytes its manifest says"
                    )
                # filter="data" re-checks paths and strips modes: belt and braces.
                tar.extract(member, dest, filter="data")
    except UnsafeArchive:
        raise
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise  # the disk, not the archive
        # gzip.BadGzipFile, or a path the archive makes impossible (ENOTDIR, ENAMETOOLONG...)
        raise SnapshotError(f"archive cannot be unpacked: {type(exc).__name__}: {exc}") from None
    except (tarfile.TarError, zstandard.ZstdError, zlib.error, EOFError) as exc:
        raise SnapshotError(f"archive cannot be unpacked: {type(exc).__name__}: {exc}") from None


# errnos that describe the machine (its disk, its limits), never the bytes of an archive.
DISK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EIO", "EROFS", "EACCES", "EPERM", "EMFILE", "ENFILE", "ENOMEM", "EFBIG")
    if hasattr(errno, name)
)
_SQLITE_DISK_ERRORS = ("disk is full", "disk i/o error", "unable to open database file")


def is_disk_error(exc: BaseException | None) -> bool:
    """True when ``exc`` or anything in its cause chain is local disk trouble, not bad content.

    That is an :class:`OSError` with one of :data:`DISK_ERRNOS` (full disk, read-only, I/O error, no
    permission...) or SQLite reporting a full or failing disk.
    """
    for _ in range(10):
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and any(
            m in str(exc).lower() for m in _SQLITE_DISK_ERRORS
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_broken_snapshot(exc: BaseException) -> bool:
    """True when a restore failure means the snapshot itself is bad (checksum, archive, open-check).

    Everything else (Cloud Storage errors, network errors, disk errors, anything unexpected) means it
    could not be read this time.
    """
    return isinstance(exc, SnapshotError) and not is_disk_error(exc)


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------


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
        if compression not in _EXTENSIONS:
            raise ValueError(f"compression must be one of {sorted(_EXTENSIONS)}, not {compression!r}")
        if keep < 1:
            raise ValueError("keep must be at least 1")
        # A callable is called on first use: a starting service builds the store before it needs the
        # Cloud Storage client, and importing that client costs 0.4 s (see coldstart.py).
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
        return self.prefix + POINTER_NAME

    def _manifest_name(self, snapshot_id: str) -> str:
        return f"{self.prefix}{snapshot_id}.manifest.json"

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
        extra = dict(manifest_extra)
        embedder = extra.pop("embedder", None) or _embedder_info(index)
        snapshot_id = new_snapshot_id()
        index_path = Path(index.path)
        with tempfile.TemporaryDirectory(prefix="askbase-snap-", dir=self.work_dir) as tmp:
            tar_path = Path(tmp) / "index.tar"
            archive_path = Path(tmp) / ("index" + _EXTENSIONS[self.compression])
            with index.write_lock:
                flush = getattr(index, "flush", None)
                if flush is not None:
                    flush()  # the archive must carry the page records of every chunk it holds
                unpacked = pack_directory(index_path, tar_path)
                pages = index.pages()
                counts = dict(index.counts_by_source())
                chunks = int(index.chunk_count())
            sha = compress_file(tar_path, archive_path, self.compression)
            tar_path.unlink()
            size = archive_path.stat().st_size
            pages_by_source: dict[str, int] = {}
            for record in pages.values():
                src = getattr(record, "source", "")
                pages_by_source[src] = pages_by_source.get(src, 0) + 1
            manifest = Manifest(
                id=snapshot_id,
                created_at=datetime.now(UTC).isoformat(),
                archive=snapshot_id + _EXTENSIONS[self.compression],
                compression=self.compression,
                sha256=sha,
                size=size,
                unpacked_bytes=unpacked,
                embedder=embedder,
                counts_by_source=counts,
                pages=len(pages),
                pages_by_source=pages_by_source,
                chunk_count=chunks,
                parent_id=parent_id,
                extra=extra,
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
            chunks,
            len(pages),
            size / 1e6,
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
    def prune(self, protected: set[str] | None = None) -> list[str]:
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
                blob.name.endswith(tuple(_EXTENSIONS.values()))
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
        for ext in (*_EXTENSIONS.values(), ".manifest.json"):
            with contextlib.suppress(gexc.NotFound):
                self.bucket.blob(self.prefix + snapshot_id + ext).delete()

    # --- restore ------------------------------------------------------------------------------------
    def restore(self, dest_root: Path, *, strict: bool = False) -> RestoredSnapshot | None:
        """Unpack the newest valid snapshot into a fresh directory under ``dest_root``.

        Tries the pointer's snapshot, then each of its ``previous`` ones; every failure is logged as an
        ERROR. Returns None when nothing was ever published or nothing could be restored.

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
        dest_root = Path(dest_root)
        dest_root.mkdir(parents=True, exist_ok=True)
        failures = []
        for position, snapshot_id in enumerate(dict.fromkeys(candidates)):
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
            return RestoredSnapshot(snapshot_id, path, manifest, generation)
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
            sha, size = file_sha256(archive)
            if size != manifest.size or sha != manifest.sha256:
                raise SnapshotError(
                    f"archive checksum mismatch (sha256 {sha[:12]}…, {size} bytes; manifest says "
                    f"{manifest.sha256[:12]}…, {manifest.size} bytes)"
                )
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
        """Point LATEST at an older snapshot (CAS); the one it replaces moves into ``previous``."""
        manifest = self.get(snapshot_id)
        if not self.bucket.blob(self.prefix + manifest.archive).exists():
            raise SnapshotError(f"snapshot {snapshot_id} has a manifest but its archive is gone")
        current, generation = self.read_pointer()
        if current is not None and current.snapshot_id == snapshot_id:
            return
        self._write_pointer(next_pointer(snapshot_id, current, self.keep), generation)
        log.warning(
            "snapshot pointer rolled back to %s (was %s)",
            snapshot_id,
            current.snapshot_id if current else None,
            extra={"snapshot_id": snapshot_id},
        )


def _embedder_info(index: object) -> dict[str, Any]:
    embedder = getattr(index, "embedder", None)
    if embedder is None:
        return {}
    return {"id": getattr(embedder, "id", None), "dimension": getattr(embedder, "dimension", None)}
