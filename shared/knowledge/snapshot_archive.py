"""The snapshot format: one consistent copy of a Chroma index directory as a compressed tar, and its manifest.

A snapshot is ``<id>.tar.zst`` (or ``.tar.gz``) plus ``<id>.manifest.json``, which says what is inside and
the archive's sha256; where they are kept and which one is current is :mod:`shared.knowledge.snapshots`.

Why it is built this way:

* Consistency: the index directory is tarred (no compression, so it is quick) while the index's
  ``write_lock`` is held; tarring a directory a writer is changing produced broken copies every time we
  measured. Compression and hashing happen after the lock is released.
* Small: Chroma's SQLite file is copied into the tar with ``VACUUM INTO`` (a compact, consistent copy
  of the database, without the free pages Chroma's purged write log leaves behind), and chunk text is in
  the chunk table only (:mod:`shared.knowledge.chunktable`).
* Safe restore: Chroma's segment folders contain a pickle, so an archive is unpacked only after its
  sha256 matched the manifest, into a fresh directory, refusing absolute paths, ``..``, links and devices.
  The unpacked copy must pass :func:`check_index_dir`: an intact SQLite file whose collection holds
  exactly the chunks the chunk table lists.
* Broken is not unreachable: an archive that fails a check is a :class:`SnapshotError`; a failing local
  disk (full, read-only, I/O error: :func:`is_disk_error`) is not, because it says nothing about the
  archive.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import re
import secrets
import shutil
import sqlite3
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol, cast

import zstandard

Compression = Literal["zstd", "gzip"]
MANIFEST_FORMAT = 1
ARCHIVE_EXTENSIONS: dict[str, str] = {"zstd": ".tar.zst", "gzip": ".tar.gz"}
_ID_RE = re.compile(r"^\d{8}T\d{6}\d{0,6}Z-[0-9a-f]{6,32}$")
# zstd level 9, measured by bench/snapshots.py on 2 cores (bench/README.md, 2026-11-23): at 465 chunks
# 2.21-2.27 MB, inside the 2.5 MB target that level 3 (2.61 MB) misses; gzip -6 gives 3.37 MB. At 10,000
# chunks 57.9 MB (gzip -6: 69.0 MB) for 2.83 s of compression, which the scrape job pays after the write
# lock is released (the tar under the lock takes 0.24 s); unpacking it takes 0.59 s.
ZSTD_LEVEL = 9
GZIP_LEVEL = 6
_COPY_CHUNK = 1 << 20


class SnapshotError(RuntimeError):
    """A snapshot cannot be read, verified or unpacked; the message says which and why."""


class UnsafeArchive(SnapshotError):
    """The archive holds a member that must never be unpacked (absolute path, ``..``, link, device)."""


class IndexLike(Protocol):
    """What publishing needs from :class:`shared.knowledge.index.KnowledgeIndex`."""

    path: Path
    write_lock: Any

    def pages(self) -> dict[str, Any]: ...

    def counts_by_source(self) -> dict[str, int]: ...

    def chunk_count(self) -> int: ...


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
        """Every field, as JSON-ready values."""
        return asdict(self)

    def to_json(self) -> bytes:
        """The bytes stored as ``<id>.manifest.json``."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and check a manifest; :class:`SnapshotError` when any field is not what it must be."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            if raw.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unknown manifest format {raw.get('format')!r}")
            manifest = cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError) as exc:
            raise SnapshotError(f"manifest is not valid: {exc}") from None
        if not _ID_RE.match(manifest.id) or manifest.compression not in ARCHIVE_EXTENSIONS:
            raise SnapshotError(f"manifest is not valid: bad id or compression ({manifest.id!r})")
        if manifest.archive != manifest.id + ARCHIVE_EXTENSIONS[manifest.compression]:
            raise SnapshotError(f"manifest names an unexpected archive {manifest.archive!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", manifest.sha256):
            raise SnapshotError("manifest sha256 is not a hex digest")
        return manifest


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


CHROMA_DB = "chroma.sqlite3"
# Chroma 1.5's schema: a collection's chunk ids are the ``embeddings`` rows of its segments, and a stored
# document is the metadata key ``chroma:document`` (checked against chromadb 1.5.9, the pinned version).
_CHROMA_IDS = (
    "SELECT e.embedding_id FROM embeddings e JOIN segments s ON e.segment_id = s.id "
    "JOIN collections c ON s.collection = c.id WHERE c.name = ?"
)
_CHROMA_HAS_DOCUMENTS = "SELECT 1 FROM embedding_metadata WHERE key = 'chroma:document' LIMIT 1"


def check_index_dir(path: Path) -> None:
    """Cheap open-check of an unpacked index directory, without importing Chroma.

    The SQLite file is there and consistent, and the chunk table lists exactly the chunks the collection
    holds: a table and a collection that disagree would answer with passages whose text is missing or
    belongs to another chunk. A directory without a table passes only when Chroma keeps the text itself
    (snapshots packed before the chunk table held it).
    """
    from shared.knowledge import chunktable

    db = path / CHROMA_DB
    if not db.is_file():
        raise SnapshotError(f"{path} holds no {CHROMA_DB}")
    collection = _sidecar_collection(path)
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            result = conn.execute("PRAGMA quick_check").fetchone()
            if not result or result[0] != "ok":
                raise SnapshotError(f"{CHROMA_DB} failed its integrity check: {result}")
            if collection is None:
                return  # not an askbase index (no sidecar): nothing more to compare
            chroma_ids = [row[0] for row in conn.execute(_CHROMA_IDS, (collection,))]
            has_documents = conn.execute(_CHROMA_HAS_DOCUMENTS).fetchone() is not None
    except sqlite3.Error as exc:
        raise SnapshotError(f"{CHROMA_DB} cannot be read: {exc}") from None
    try:
        table_ids = chunktable.read_ids(path)
    except chunktable.ChunkTableError as exc:
        raise SnapshotError(f"chunk table: {exc}") from None
    if table_ids is None:
        if chroma_ids and not has_documents:
            raise SnapshotError(f"{len(chroma_ids)} chunks but no chunk table holding their text")
        return
    if len(table_ids) != len(chroma_ids) or set(table_ids) != set(chroma_ids):
        only_table = len(set(table_ids) - set(chroma_ids))
        only_chroma = len(set(chroma_ids) - set(table_ids))
        raise SnapshotError(
            f"the chunk table and the collection disagree: {len(table_ids)} vs {len(chroma_ids)} chunks, "
            f"{only_table} only in the table, {only_chroma} only in the collection"
        )


def _sidecar_collection(path: Path) -> str | None:
    """The collection name the index sidecar names ("askbase" when it names none), None without one."""
    sidecar = path / "askbase-index.json"  # shared.knowledge.index.SIDECAR_NAME (importing it loads numpy)
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_bytes())
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"index sidecar unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise SnapshotError("index sidecar is not a JSON object")
    return str(data.get("collection") or "askbase")


def pack_directory(source: Path, tar_path: Path) -> int:
    """Write an uncompressed tar of ``source``'s contents; returns its size. Hold the writer's lock.

    Chroma's database goes in as a ``VACUUM INTO`` copy: consistent (one read transaction) and without
    free pages (about 2 MB of purged write-log vectors at 10,000 chunks, which compress poorly).
    """
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(source.iterdir()):
            if child.name == CHROMA_DB and child.is_file():
                compact = tar_path.with_name(tar_path.name + "." + CHROMA_DB)
                compact.unlink(missing_ok=True)
                try:
                    with contextlib.closing(sqlite3.connect(child)) as conn:
                        conn.execute("VACUUM INTO ?", (str(compact),))
                    tar.add(compact, arcname=child.name)
                finally:
                    compact.unlink(missing_ok=True)
                continue
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
        # The compressors want a file object; the hashing sink has the two methods they call.
        sink = cast(IO[bytes], _Hashing(raw))
        if compression == "zstd":
            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
            with cctx.stream_writer(sink, closefd=False) as zwriter:
                shutil.copyfileobj(src, zwriter, _COPY_CHUNK)
        else:
            with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gwriter:
                shutil.copyfileobj(src, gwriter, _COPY_CHUNK)
    return digest.hexdigest()


def pack_snapshot(
    index: IndexLike,
    directory: Path,
    snapshot_id: str,
    compression: Compression,
    parent_id: str | None,
    manifest_extra: dict[str, Any],
) -> tuple[Path, Manifest]:
    """Write snapshot ``snapshot_id`` of ``index`` into ``directory``; returns the archive and its manifest.

    Only the tar and the index's counts are taken under the index's write lock; compression and hashing
    run after it is released. ``manifest_extra`` may carry ``embedder`` (``{"id", "dimension"}``, else
    read from the index); everything else lands in the manifest's ``extra``.
    """
    extra = dict(manifest_extra)
    embedder = extra.pop("embedder", None) or _embedder_info(index)
    tar_path = directory / "index.tar"
    archive_path = directory / ("index" + ARCHIVE_EXTENSIONS[compression])
    with index.write_lock:
        flush = getattr(index, "flush", None)
        if flush is not None:
            flush()  # the archive must carry the page records of every chunk it holds
        unpacked = pack_directory(Path(index.path), tar_path)
        pages = index.pages()
        counts = dict(index.counts_by_source())
        chunks = int(index.chunk_count())
    sha = compress_file(tar_path, archive_path, compression)
    tar_path.unlink()
    pages_by_source: dict[str, int] = {}
    for record in pages.values():
        src = getattr(record, "source", "")
        pages_by_source[src] = pages_by_source.get(src, 0) + 1
    manifest = Manifest(
        id=snapshot_id,
        created_at=datetime.now(UTC).isoformat(),
        archive=snapshot_id + ARCHIVE_EXTENSIONS[compression],
        compression=compression,
        sha256=sha,
        size=archive_path.stat().st_size,
        unpacked_bytes=unpacked,
        embedder=embedder,
        counts_by_source=counts,
        pages=len(pages),
        pages_by_source=pages_by_source,
        chunk_count=chunks,
        parent_id=parent_id,
        extra=extra,
    )
    return archive_path, manifest


def check_archive(path: Path, manifest: Manifest) -> None:
    """Raise :class:`SnapshotError` unless the file at ``path`` has the size and sha256 ``manifest`` names."""
    with path.open("rb") as handle:
        sha = hashlib.file_digest(handle, "sha256").hexdigest()
    size = path.stat().st_size
    if size != manifest.size or sha != manifest.sha256:
        raise SnapshotError(
            f"archive checksum mismatch (sha256 {sha[:12]}…, {size} bytes; manifest says "
            f"{manifest.sha256[:12]}…, {manifest.size} bytes)"
        )


@contextlib.contextmanager
def _decompressed(path: Path, compression: Compression) -> Iterator[IO[bytes]]:
    with open(path, "rb") as raw:
        if compression == "zstd":
            # Both readers are read-only binary streams; tarfile's stream mode ("r|") only calls read().
            with zstandard.ZstdDecompressor().stream_reader(raw) as zreader:
                yield cast(IO[bytes], zreader)
        else:
            with gzip.GzipFile(fileobj=raw, mode="rb") as greader:
                yield cast(IO[bytes], greader)


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


def _embedder_info(index: object) -> dict[str, Any]:
    embedder = getattr(index, "embedder", None)
    if embedder is None:
        return {}
    return {"id": getattr(embedder, "id", None), "dimension": getattr(embedder, "dimension", None)}
