"""The chunk table: every chunk's text and metadata plus the BM25 postings, saved beside Chroma's files.

Since format 2 the table is the *record* of the chunks' text: Chroma keeps only what it alone does (ids,
vectors, the HNSW index and the ``source`` metadata to filter by), because Chroma 1.5 stores a document
about four more times (the documents column, the metadata string index, the trigram full-text tables)
and a 10,000-chunk snapshot was 58 MB mostly of text it held twice (bench/snapshots.py). Chroma is the
record of which chunks exist and of their vectors; this table of what they say.

Writes stay crash-safe without rewriting the table per page. The writer saves the whole table when it
makes the directory exact (:meth:`KnowledgeIndex.flush`: on close, and under the write lock before
every snapshot is packed). Between saves, every change is first appended to a journal
(``askbase-chunks.journal``, one JSON line per change), then made in Chroma. Opening a directory that has
a journal replays it over the table and keeps exactly the chunks Chroma holds (the index reconciles
them): a writer killed at any point loses nothing it had added to Chroma. A published snapshot never holds a
journal (the packer saves first), so readers take the fast path: load the table, no Chroma scan.

Format 1 tables (the text also in Chroma) still load: snapshots published before format 2 open as they
did. Format: one uncompressed ``.npz`` (the snapshot archive compresses it) with the ids and the other
columns as UTF-8 JSON, the BM25 vocabulary as JSON and its arrays as-is. No pickle: a restored file is
data only. :func:`read_ids` reads the ids with the standard library alone, so the restore check
(:func:`shared.knowledge.snapshot_archive.check_index_dir`) runs in the cold-start child without numpy.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from shared.atomicfiles import write_atomically
from shared.knowledge.chunker import Chunk

if TYPE_CHECKING:
    import numpy as np

    from shared.knowledge.retrieval import BM25

log = logging.getLogger(__name__)

FILE_NAME = "askbase-chunks.npz"
JOURNAL_NAME = "askbase-chunks.journal"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_COLUMNS = ("id", "text", "url", "title", "anchor", "source", "content_hash", "position")
_DATA_COLUMNS = _COLUMNS[1:]
# Columns whose values repeat across chunks (a page's url and title, the source name), kept once each.
_SHARED_COLUMNS = ("url", "title", "anchor", "source")


class ChunkTableError(ValueError):
    """The table on disk cannot be read or does not describe a consistent list of chunks."""


@dataclass(frozen=True)
class ChunkTable:
    """What :func:`load` returns: the chunks in their saved order and the BM25 built over them (None when
    the saved postings are unusable, e.g. from another tokenizer version: the caller rebuilds them)."""

    chunks: list[Chunk]
    bm25: BM25 | None
    embedder: str | None = None
    version: int = FORMAT_VERSION


def _json_array(value: Any) -> np.ndarray:
    import numpy as np

    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return np.frombuffer(data, np.uint8)


def _from_json_array(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode("utf-8"))


def save(directory: Path, chunks: list[Chunk], bm25: BM25, embedder_id: str) -> Path:
    """Write the table for ``chunks`` (in this order) and ``bm25`` (built over the same chunks, same order).

    Atomic (temporary file, fsync, rename): a reader or a crash sees the old file, the new one or none.
    The journal is *not* removed here: the caller does that once Chroma and the table agree.
    """
    import numpy as np

    if bm25.ids != [chunk.id for chunk in chunks]:
        raise ValueError("the BM25 index was built over other chunks than the ones being saved")
    header = {"version": FORMAT_VERSION, "embedder": embedder_id, "count": len(chunks)}
    columns = {name: [getattr(chunk, name) for chunk in chunks] for name in _DATA_COLUMNS}
    arrays: dict[str, Any] = {
        "header": _json_array(header),
        "ids": _json_array(bm25.ids),
        "columns": _json_array(columns),
        **{f"bm25_{name}": array for name, array in bm25.to_arrays().items()},
    }
    target = Path(directory) / FILE_NAME
    write_atomically(target, lambda handle: np.savez(handle, **arrays))
    return target


def load(directory: Path, embedder_id: str | None, expected_count: int | None) -> ChunkTable | None:
    """The saved table, or None when there is none or it does not fit (logged).

    ``embedder_id`` and ``expected_count`` (Chroma's chunk count), when given, must match what the table
    was saved with: a table listing another number of chunks is stale. Pass None to read whatever is
    there (opening after a crash reconciles it with Chroma instead).
    """
    path = Path(directory) / FILE_NAME
    if not path.is_file():
        return None
    try:
        table = _read(path)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, io.UnsupportedOperation) as exc:
        log.warning("chunk table %s is unreadable (%s: %s)", path, type(exc).__name__, exc)
        return None
    if (embedder_id is not None and table.embedder != embedder_id) or (
        expected_count is not None and len(table.chunks) != expected_count
    ):
        log.warning(
            "chunk table %s does not fit (embedder %r, %s chunks; expected %r, %s)",
            path,
            table.embedder,
            len(table.chunks),
            embedder_id,
            expected_count,
        )
        return None
    return table


def _read(path: Path) -> ChunkTable:
    import numpy as np

    from shared.knowledge.retrieval import BM25

    with np.load(path, allow_pickle=False) as data:
        header = _from_json_array(data["header"])
        version = header.get("version")
        if version not in READABLE_VERSIONS:
            raise ChunkTableError(f"unknown format {version!r}")
        columns = _from_json_array(data["columns"])
        ids = columns["id"] if version == 1 else _from_json_array(data["ids"])
        bm25_arrays = {name[5:]: data[name] for name in data.files if name.startswith("bm25_")}
    count = header.get("count")
    if len(ids) != count or any(len(columns[name]) != count for name in _DATA_COLUMNS):
        raise ChunkTableError("its columns do not all list every chunk")
    if len(set(ids)) != len(ids):
        raise ChunkTableError("it lists a chunk id twice")
    for name in _SHARED_COLUMNS:
        columns[name] = _one_object_per_value(columns[name])
    chunks = list(map(Chunk, ids, *(columns[name] for name in _DATA_COLUMNS)))
    try:
        bm25: BM25 | None = BM25.from_arrays(ids, bm25_arrays)
    except (ValueError, KeyError, TypeError) as exc:
        # The postings are a cache over the texts: rebuilding them is the caller's slow path.
        log.info("chunk table %s: BM25 postings not usable (%s); rebuilding them", path, exc)
        bm25 = None
    return ChunkTable(chunks, bm25, header.get("embedder"), int(version))


def _one_object_per_value(values: list[Any]) -> list[Any]:
    """``values`` with equal strings made one object. JSON decoding gives every chunk its own copy of
    its page's url, title and section anchor and of its source name (a page has 8-40 chunks, a site a
    few sources): 2.4 MB of the 28.5 MB a 10,000-chunk synthetic table held (bench/cost_curve.py's
    index: 250 pages of 40 chunks), in every serving worker."""
    seen: dict[Any, Any] = {}
    return [seen.setdefault(value, value) for value in values]


def read_ids(directory: Path) -> list[str] | None:
    """The chunk ids the table lists, or None when there is no table; :class:`ChunkTableError` when it is
    unreadable. Standard library only (zip + the ``.npy`` header), for the restore check."""
    path = Path(directory) / FILE_NAME
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            header = json.loads(_npy_bytes(archive, "header"))
            version = header.get("version") if isinstance(header, dict) else None
            if version not in READABLE_VERSIONS:
                raise ChunkTableError(f"unknown format {version!r}")
            if version == 1:
                ids = json.loads(_npy_bytes(archive, "columns"))["id"]
            else:
                ids = json.loads(_npy_bytes(archive, "ids"))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, struct.error) as exc:
        raise ChunkTableError(f"{path} is unreadable: {type(exc).__name__}: {exc}") from None
    if not isinstance(ids, list) or len(ids) != header.get("count"):
        raise ChunkTableError(f"{path} lists {header.get('count')} chunks but holds another number of ids")
    return [str(chunk_id) for chunk_id in ids]


def _npy_bytes(archive: zipfile.ZipFile, name: str) -> bytes:
    """The raw data of the 1-D uint8 array ``name`` in an ``.npz`` (see numpy.lib.format)."""
    raw = archive.read(name + ".npy")
    if raw[:6] != b"\x93NUMPY":
        raise ChunkTableError(f"{name}.npy is not an .npy array")
    major = raw[6]
    if major == 1:
        (length,), start = struct.unpack("<H", raw[8:10]), 10
    else:
        (length,), start = struct.unpack("<I", raw[8:12]), 12
    meta = ast.literal_eval(raw[start : start + length].decode("latin1"))
    if (
        not isinstance(meta, dict)
        or meta.get("descr") not in ("|u1", "<u1")
        or len(meta.get("shape", ())) != 1
    ):
        raise ChunkTableError(f"{name}.npy is not a byte array")
    return raw[start + length :]


# --- the journal -------------------------------------------------------------------------------------


class Journal:
    """The changes made to Chroma since the table was last saved, one JSON line each.

    :meth:`append` is called *before* the change it describes reaches Chroma, and writes the line
    through to the operating system (a killed process loses nothing; after a power cut the journal may
    lack a change Chroma has, which the index resolves by dropping that chunk).
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / JOURNAL_NAME
        self._handle: BinaryIO | None = None

    def append_added(self, chunks: Iterable[Chunk]) -> None:
        """Record that ``chunks`` are about to be added to Chroma."""
        rows = [[getattr(chunk, name) for name in _COLUMNS] for chunk in chunks]
        self._append({"add": rows})

    def append_deleted(self, ids: list[str]) -> None:
        """Record that ``ids`` are about to be deleted from Chroma."""
        self._append({"delete": ids})

    def _append(self, entry: dict[str, Any]) -> None:
        if self._handle is None:
            created = not self.path.exists()
            self._handle = self.path.open("ab")
            if created:
                _fsync_dir(self.path.parent)  # the journal's existence must outlive a crash
        self._handle.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        self._handle.flush()

    def remove(self) -> None:
        """Delete the journal, durably: the table just saved holds everything it recorded."""
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        """Close the file handle (the journal stays on disk)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def has_journal(directory: Path) -> bool:
    """True when a writer changed Chroma after the table was last saved and never saved it again."""
    return (Path(directory) / JOURNAL_NAME).is_file()


def replay(directory: Path, chunks: list[Chunk]) -> dict[str, Chunk]:
    """``chunks`` (the saved table, possibly empty) with the journal's changes applied, by id.

    A line that does not parse ends the replay: only the last line can be torn by a crash.
    """
    by_id = {chunk.id: chunk for chunk in chunks}
    path = Path(directory) / JOURNAL_NAME
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return by_id
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            if "add" in entry:
                added = [Chunk(*row) for row in entry["add"]]
                by_id.update((chunk.id, chunk) for chunk in added)
            else:
                for chunk_id in entry["delete"]:
                    by_id.pop(chunk_id, None)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "journal %s: line %d of %d unreadable (%s); ignoring the rest", path, number, len(lines), exc
            )
            break
    return by_id


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
