"""The chunk table: every chunk's text and metadata plus the BM25 postings, saved beside Chroma's files.

Opening an index needs both in memory (BM25 scores keywords; passages carry text and metadata).
Reading 10,000 documents back out of Chroma and re-tokenising them took 2.4 s of a 10k-chunk cold
start; loading this file takes about 0.1 s. So the writer saves it when it makes the directory
exact (:meth:`KnowledgeIndex.flush`, called on close and under the write lock before every snapshot
is packed), and every snapshot carries it.

The file is a cache, never the record: Chroma is. It is valid only while Chroma holds exactly the
chunks it lists, which the writer guarantees by deleting it *before* its first change to Chroma
after a flush (:func:`discard`). An absent, unreadable or mismatched file (an older snapshot, a
crash mid-build, another embedder) just means the slow path: read Chroma and rebuild BM25.

Format: one uncompressed ``.npz`` (the snapshot archive compresses it) with the chunk columns as
UTF-8 JSON, the BM25 vocabulary as JSON and its arrays as-is. No pickle: a restored file is data only.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.atomicfiles import write_atomically
from shared.knowledge.chunker import Chunk
from shared.knowledge.retrieval import BM25

log = logging.getLogger(__name__)

FILE_NAME = "askbase-chunks.npz"
FORMAT_VERSION = 1
_COLUMNS = ("id", "text", "url", "title", "anchor", "source", "content_hash", "position")


@dataclass(frozen=True)
class ChunkTable:
    """What :func:`load` returns: the chunks in their saved order and the BM25 built over them."""

    chunks: list[Chunk]
    bm25: BM25


def _json_array(value: Any) -> np.ndarray:
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return np.frombuffer(data, np.uint8)


def _from_json_array(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode("utf-8"))


def save(directory: Path, chunks: list[Chunk], bm25: BM25, embedder_id: str) -> Path:
    """Write the table for ``chunks`` (in this order) and ``bm25`` (built over the same chunks, same order).

    Atomic (temporary file, fsync, rename): a reader or a crash sees the old file, the new one or none.
    """
    if bm25.ids != [chunk.id for chunk in chunks]:
        raise ValueError("the BM25 index was built over other chunks than the ones being saved")
    header = {"version": FORMAT_VERSION, "embedder": embedder_id, "count": len(chunks)}
    columns = {name: [getattr(chunk, name) for chunk in chunks] for name in _COLUMNS}
    arrays: dict[str, Any] = {
        "header": _json_array(header),
        "columns": _json_array(columns),
        **{f"bm25_{name}": array for name, array in bm25.to_arrays().items()},
    }
    target = Path(directory) / FILE_NAME
    write_atomically(target, lambda handle: np.savez(handle, **arrays))
    return target


def load(directory: Path, embedder_id: str, expected_count: int) -> ChunkTable | None:
    """The saved table, or None when there is none or it does not fit (logged; the caller rebuilds).

    ``expected_count`` is Chroma's chunk count: a table listing another number is stale.
    """
    path = Path(directory) / FILE_NAME
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = _from_json_array(data["header"])
            if header.get("version") != FORMAT_VERSION:
                log.info("chunk table %s has another format (%s): rebuilding", path, header.get("version"))
                return None
            if header.get("embedder") != embedder_id or header.get("count") != expected_count:
                log.warning(
                    "chunk table %s does not fit (embedder %r, %s chunks; Chroma has %s): rebuilding",
                    path,
                    header.get("embedder"),
                    header.get("count"),
                    expected_count,
                )
                return None
            columns = _from_json_array(data["columns"])
            bm25_arrays = {name[5:]: data[name] for name in data.files if name.startswith("bm25_")}
        if any(len(columns[name]) != expected_count for name in _COLUMNS):
            raise ValueError("its columns do not all list every chunk")
        ids = columns["id"]
        chunks = list(map(Chunk, *(columns[name] for name in _COLUMNS)))
        return ChunkTable(chunks, BM25.from_arrays(ids, bm25_arrays))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, io.UnsupportedOperation) as exc:
        log.warning("chunk table %s is unreadable (%s: %s): rebuilding", path, type(exc).__name__, exc)
        return None


def discard(directory: Path) -> None:
    """Delete the table, durably: called before a change to Chroma makes it stale."""
    path = Path(directory) / FILE_NAME
    try:
        path.unlink()
    except FileNotFoundError:
        return
    # The unlink must reach the disk before Chroma's change does, or a crash could bring back a
    # table that no longer matches.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
