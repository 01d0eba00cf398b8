"""Opening an index directory whose chunk table is not exact, and moving older ones to today's format.

:class:`shared.knowledge.index.KnowledgeIndex` opens from its chunk table (``askbase-chunks.npz``, see
:mod:`shared.knowledge.chunktable`) whenever the table lists exactly what Chroma holds: every published
snapshot does. This module is the rest, kept apart so the index reads as the index:

* **Directories written before the chunk table held the text** keep each chunk's text and metadata in
  Chroma as well. With no table at all, the chunks are read back out of Chroma
  (:func:`read_chunks_from_chroma`); after the first write such a collection is copied into one without
  text (:func:`copy_without_text`, :func:`retire`), so the next snapshot is the small one.
* **A writer that stopped between two saves** leaves a table, a journal of the changes since, and a
  Chroma collection that may be a step ahead or behind. :func:`reconcile` replays the journal and takes
  Chroma as the record of which chunks exist; :func:`pages_to_refetch` marks the pages that lost chunks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.knowledge import chunktable
from shared.knowledge.chunker import Chunk

if TYPE_CHECKING:
    from chromadb.api.client import Client
    from chromadb.api.models.Collection import Collection

    from shared.knowledge.index import PageRecord

log = logging.getLogger(__name__)

# Chunks per Chroma read while scanning a whole collection: bounded memory per call, few calls.
SCAN_PAGE = 5000


class IndexCorrupt(RuntimeError):
    """The index directory is unusable: unreadable sidecar, or chunks without a sidecar or text."""


def collection_has_text(collection: Collection) -> bool:
    """Whether ``collection`` was written when Chroma still kept chunk text: its oldest chunk tells."""
    if not collection.count():
        return False
    oldest = collection.get(limit=1, include=["documents"])["documents"]
    return oldest is not None and len(oldest) > 0 and oldest[0] is not None


def recover_chunks(client: Client, collection: Collection, path: Path, journal: bool) -> list[Chunk]:
    """The chunks of a directory whose chunk table is missing, stale or followed by a ``journal``.

    No table and no journal: a directory from before the table, whose text is read out of Chroma.
    Otherwise the table with the journal replayed, reconciled with what Chroma holds.
    """
    table = chunktable.load(path, None, None)
    if table is None and not journal:
        return read_chunks_from_chroma(collection, path)
    return reconcile(client, collection, path, chunktable.replay(path, table.chunks if table else []))


def chroma_ids(collection: Collection) -> list[str]:
    """Every chunk id Chroma holds."""
    ids: list[str] = []
    for offset in range(0, collection.count(), SCAN_PAGE):
        ids.extend(collection.get(include=[], limit=SCAN_PAGE, offset=offset)["ids"])
    return ids


def reconcile(client: Client, collection: Collection, path: Path, known: dict[str, Chunk]) -> list[Chunk]:
    """The chunks Chroma holds, their text from ``known`` (the table with the journal replayed).

    Chroma is the record of which chunks exist: known chunks it lacks are dropped (their add never
    happened). A chunk it holds that ``known`` lacks (the journal line lost in a power cut) keeps its
    text only if Chroma has it (older directories); otherwise it is deleted from Chroma.
    """
    present = chroma_ids(collection)
    unknown = [chunk_id for chunk_id in present if chunk_id not in known]
    recovered = (
        {chunk.id: chunk for chunk in read_chunks_from_chroma(collection, path, unknown)} if unknown else {}
    )
    orphans = [chunk_id for chunk_id in unknown if chunk_id not in recovered]
    if orphans:
        log.warning("%s: %d chunks have no text anywhere; deleting them", path, len(orphans))
        batch = client.get_max_batch_size()
        for start in range(0, len(orphans), batch):
            collection.delete(ids=orphans[start : start + batch])
    gone = set(orphans)
    chunks = [known.get(chunk_id) or recovered[chunk_id] for chunk_id in present if chunk_id not in gone]
    log.info(
        "%s: reconciled the chunk table with Chroma (%d chunks; %d dropped)",
        path,
        len(chunks),
        len(known) - (len(chunks) - len(recovered)),
    )
    return chunks


def pages_to_refetch(pages: Mapping[str, PageRecord], chunks: list[Chunk]) -> dict[str, PageRecord]:
    """The records of pages whose chunks are not all there any more, changed so that the next crawl
    fetches them in full: no content hash, and no validators (a 304 must not keep a page without its
    chunks)."""
    per_url = Counter(chunk.url for chunk in chunks)
    return {
        url: dataclasses.replace(record, content_hash="", etag=None, last_modified=None)
        for url, record in pages.items()
        if per_url.get(url, 0) != record.chunk_count
    }


def read_chunks_from_chroma(collection: Collection, path: Path, ids: list[str] | None = None) -> list[Chunk]:
    """Text and metadata of every chunk (or of ``ids``) that Chroma holds a document for: directories
    written before the chunk table held the text. Raises :class:`IndexCorrupt` when asked for every
    chunk and some have no text (the table that held it is gone)."""
    chunks = []
    missing = 0
    batches: list[dict[str, Any]] = (
        [{"limit": SCAN_PAGE, "offset": offset} for offset in range(0, collection.count(), SCAN_PAGE)]
        if ids is None
        else [{"ids": ids[start : start + SCAN_PAGE]} for start in range(0, len(ids), SCAN_PAGE)]
    )
    for batch in batches:
        got = collection.get(include=["documents", "metadatas"], **batch)
        for chunk_id, text, meta in zip(
            got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True
        ):
            if text is None or meta is None or "url" not in meta:
                missing += 1
                continue
            chunks.append(
                Chunk(
                    id=chunk_id,
                    text=text or "",
                    url=str(meta.get("url", "")),
                    title=str(meta.get("title", "")),
                    anchor=str(meta.get("anchor", "")),
                    source=str(meta.get("source", "")),
                    content_hash=str(meta.get("content_hash", "")),
                    position=_position(meta.get("position")),
                )
            )
    if missing and ids is None:
        raise IndexCorrupt(
            f"{path} holds {missing} chunks whose text is in no chunk table "
            f"({chunktable.FILE_NAME} is missing or unreadable); rebuild the index"
        )
    return chunks


def _position(value: object) -> int:
    """A chunk's position as older directories stored it in Chroma's metadata (a number)."""
    return int(value) if isinstance(value, int | float) else 0


def copy_without_text(client: Client, collection: Collection, chunks: Mapping[str, Chunk]) -> Collection:
    """A complete copy of a collection that still stores chunk text, with ids, vectors and ``source``
    only, under a temporary name (:func:`retire` gives it the old one). The vectors are copied, nothing
    is embedded.

    The caller holds the write lock and has just saved the chunk table: a crash midway leaves a
    collection that lacks some chunks, which the next open reconciles.
    """
    temporary = f"{collection.name}-compacting"
    with contextlib.suppress(Exception):  # chromadb raises its own NotFoundError when absent
        client.delete_collection(temporary)
    fresh = client.create_collection(temporary, metadata={"hnsw:space": "cosine"}, embedding_function=None)
    page = client.get_max_batch_size()
    for offset in range(0, collection.count(), page):
        got = collection.get(include=["embeddings"], limit=page, offset=offset)
        fresh.add(
            ids=got["ids"],
            embeddings=np.asarray(got["embeddings"], dtype=np.float32),
            metadatas=[{"source": chunks[chunk_id].source} for chunk_id in got["ids"]],
        )
    return fresh


def retire(client: Client, old: Collection, fresh: Collection) -> None:
    """Delete ``old`` and give ``fresh`` (its :func:`copy_without_text`) its name. Call it only once
    searches use ``fresh``: they never see a collection that is incomplete or gone."""
    name = old.name
    client.delete_collection(name)
    fresh.modify(name=name)
    log.info("rewrote the Chroma collection %r without chunk text (%d chunks)", name, fresh.count())
