"""The knowledge index: chunks and their vectors in a Chroma directory, plus page records.

Layout of the index directory::

    <path>/chroma.sqlite3, <path>/<segment uuid>/   Chroma's own files (one cosine collection)
    <path>/askbase-index.json                       embedder id + dimension, and url → PageRecord
    <path>/askbase-chunks.npz                       chunk texts + BM25 postings (see chunktable.py)
    <path>/askbase-chunks.journal                   changes since that table was saved (writers only)

Each chunk's text is stored once, in the chunk table; Chroma holds the ids, the vectors, its HNSW index
and the one metadata field worth filtering on (``source``). Directories written before that (text in
Chroma too) still open, and a writer that stopped between two saves is recovered from:
:mod:`shared.knowledge.index_recovery`.

The sidecar pins the embedder: vectors from two models are not comparable, so opening an index with a
different embedder raises :class:`EmbedderMismatch` instead of silently returning nonsense.

Vectors are always passed to Chroma explicitly: its default embedding function downloads a model on
first use, which fails offline (and would be the wrong model anyway).

Concurrency: one writer, many readers. Every write holds :attr:`KnowledgeIndex.write_lock`; the
snapshot packer takes the same lock to copy a consistent directory. :meth:`KnowledgeIndex.search`
never takes it for long, so answering goes on while a snapshot is being packed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from shared.atomicfiles import write_atomically
from shared.knowledge import chunktable, index_recovery
from shared.knowledge.chunker import Chunk
from shared.knowledge.embeddings import Embedder
from shared.knowledge.index_recovery import IndexCorrupt as IndexCorrupt  # what open() raises
from shared.knowledge.reranking import POOL as RERANK_POOL
from shared.knowledge.reranking import SEMANTIC_PAGES, rerank, semantic_picks
from shared.knowledge.retrieval import BM25, Passage, fuse_and_dedupe, heading_path, heading_scores

if TYPE_CHECKING:
    from chromadb.api.client import Client

    from shared.knowledge.chroma_reader import ChromaReader

log = logging.getLogger(__name__)

SIDECAR_NAME = "askbase-index.json"
SIDECAR_VERSION = 1
# Page records are written to the sidecar in batches (see KnowledgeIndex._mark_dirty).
SIDECAR_FLUSH_EVERY = 64
SIDECAR_FLUSH_SECONDS = 5.0
# How many candidates each retriever contributes to the fusion; deep enough that a chunk ranked
# well by one retriever and poorly by the other still makes it.
CANDIDATES_MIN = 30
CANDIDATES_PER_RESULT = 6


class EmbedderMismatch(RuntimeError):
    """The index was built with another embedder than the one it is being opened with."""


@dataclass
class PageRecord:
    """What the index remembers about one page: enough for the crawler to skip unchanged pages."""

    url: str
    source: str
    content_hash: str
    title: str
    chunk_count: int
    etag: str | None
    last_modified: str | None
    fetched_at: str


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` atomically (:mod:`shared.atomicfiles`): readers see the old or the new file."""
    # One compact string, one write: the sidecar is rewritten after every batch of pages, so its cost is
    # paid on every scrape (indent and json.dump's many small writes tripled it).
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    write_atomically(path, lambda handle: handle.write(data))


class KnowledgeIndex:
    """Chunks, vectors and page records of the knowledge base in one directory.

    ``path`` is that directory (the snapshot packer archives it while holding ``write_lock``);
    ``embedder`` is the one the index was opened with and embeds questions in :meth:`search`.
    """

    write_lock: threading.RLock
    path: Path
    embedder: Embedder

    def __init__(
        self, path: Path, embedder: Embedder, client: Any, collection: Any, pages: dict[str, Any]
    ) -> None:
        """Use :meth:`open`."""
        self.path = path
        self.embedder = embedder
        self.write_lock = threading.RLock()
        self._dirty = False
        self._unflushed = 0
        self._flushed_at = time.monotonic()
        self._client = client
        self._collection = collection
        self._pages: dict[str, PageRecord] = pages
        self._chunks: dict[str, Chunk] = {}
        self._by_url: dict[str, list[str]] = {}
        # content hash -> a chunk id holding that text, so a write reuses any stored vector of the same
        # text (a page moved to a new URL keeps its vectors). Built on the first write that needs it:
        # a read-only copy (qa) never pays for it.
        self._by_hash: dict[str, str] | None = None
        # BM25 is rebuilt lazily after writes; _generation tells a finished rebuild whether a write
        # happened while it ran (then its result is already stale and is not kept).
        self._bm25: tuple[int, BM25] | None = None
        self._generation = 0
        self._bm25_lock = threading.Lock()
        # True while askbase-chunks.npz on disk matches Chroma exactly; every change before the next
        # save is journalled first (see chunktable.py).
        self._table_saved = False
        self._journal = chunktable.Journal(path)
        # A collection written before the chunk table held the text still stores it (documents and
        # text metadata); the first flush after a write rewrites it without (see _drop_text_from_chroma).
        self._chroma_has_text = False
        self._written = False
        self._closed = False
        self._read_only = False

    # --- opening and closing ---------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: Path, embedder: Embedder, collection: str = "askbase", read_only: bool = False
    ) -> KnowledgeIndex:
        """Open (or create) the index at ``path`` for ``embedder``.

        ``read_only``: for serving a restored snapshot. A directory in a published snapshot's exact
        layout (sidecar, chunk table with BM25 postings, no journal) is then read through
        :class:`~shared.knowledge.chroma_reader.ChromaReader`, without importing the ``chromadb``
        package (0.5 s of CPU and ~18 MB of a qa cold start); any other directory is opened as before,
        and opening it may still repair the directory (replay a journal, write the table and sidecar:
        it is the server's own copy). Read-only means the index's write methods raise ``RuntimeError``.

        Raises :class:`EmbedderMismatch` if the index was built with another embedder id or dimension,
        :class:`IndexCorrupt` if the directory holds chunks but no readable sidecar.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        sidecar = _read_sidecar(path / SIDECAR_NAME)
        if sidecar is not None:
            stored = sidecar.get("embedder") or {}
            if stored.get("id") != embedder.id or stored.get("dimension") != embedder.dimension:
                raise EmbedderMismatch(
                    f"the index at {path} was built with embedder {stored.get('id')!r} "
                    f"(dimension {stored.get('dimension')}), not {embedder.id!r} "
                    f"(dimension {embedder.dimension}); rebuild the index or open it with that embedder"
                )
            if sidecar.get("collection", collection) != collection:
                raise IndexCorrupt(
                    f"the index at {path} holds collection {sidecar.get('collection')!r}, not {collection!r}"
                )
        if read_only and sidecar is not None:
            index = cls._open_published(path, embedder, collection, sidecar)
            if index is not None:
                return index

        import chromadb
        from chromadb.config import Settings as ChromaSettings

        # The returned object is chromadb.api.client.Client, which has close(); the declared ClientAPI
        # interface does not list it.
        client = cast(
            "Client",
            chromadb.PersistentClient(
                path=str(path), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
            ),
        )
        try:
            # embedding_function=None: Chroma must never reach for its downloading default.
            chroma_collection = client.get_or_create_collection(
                collection, metadata={"hnsw:space": "cosine"}, embedding_function=None
            )
            if sidecar is None and chroma_collection.count() > 0:
                raise IndexCorrupt(
                    f"{path} holds {chroma_collection.count()} chunks but no {SIDECAR_NAME}: "
                    "it was not written by askbase or is an incomplete copy"
                )
            index = cls(path, embedder, client, chroma_collection, _page_records(sidecar))
            index._read_only = read_only
            index._load_chunks()
            if sidecar is None:
                index._write_sidecar()
            index._warm_up()
        except BaseException:
            client.close()
            raise
        return index

    @classmethod
    def _open_published(
        cls, path: Path, embedder: Embedder, collection: str, sidecar: dict[str, Any]
    ) -> KnowledgeIndex | None:
        """``path`` read through the Rust bindings alone, or None when it is not in a published
        snapshot's exact layout (no Chroma collection, a journal, no chunk table matching Chroma's
        count): those need chromadb's client to recover. Postings of another tokenizer version are
        rebuilt in memory here."""
        from shared.knowledge.chroma_reader import ChromaReader, CollectionMissing

        if chunktable.has_journal(path):
            return None
        # The bindings are chromadb's private interface, pinned with chromadb: if an upgrade changes
        # their calls (TypeError, AttributeError), serving falls back to chromadb's client, slower to
        # start but correct, and says so, rather than leaving qa with nothing to serve.
        # Only the calls into the bindings are guarded: an error of askbase's own (the chunk table,
        # BM25) is raised as it is, not served around under the bindings' name.
        try:
            reader = ChromaReader.open(path, collection)
        except CollectionMissing:
            return None
        except (ImportError, TypeError, AttributeError) as exc:
            log.warning("chromadb's Rust bindings did not open %s (%r): opening it with chromadb", path, exc)
            return None
        try:
            try:
                count = reader.count()
            except (TypeError, AttributeError) as exc:
                _bindings_failed(reader, path, exc)
                return None
            table = chunktable.load(path, None, count)
            if table is None:
                reader.close()
                return None
            index = cls(path, embedder, reader, reader, _page_records(sidecar))
            # _chroma_has_text stays False: it only tells a writer's flush to rewrite the collection.
            index._read_only = True
            index._adopt_table(table)
            # Read-only: the copy on disk stays as published, even when its postings were rebuilt
            # here (the next publish saves new ones).
            index._table_saved = True
            try:
                index._warm_up()
            except (TypeError, AttributeError) as exc:
                _bindings_failed(reader, path, exc)
                return None
        except BaseException:
            reader.close()
            raise
        return index

    def close(self) -> None:
        """Write pending page records and release Chroma's files. Idempotent; unusable afterwards."""
        with self.write_lock:
            if self._closed:
                return
            self.flush()
            self._closed = True
            self._journal.close()
            self._client.close()

    def flush(self) -> None:
        """Make the directory exact: write changed page records to the sidecar, and the chunk table
        if the chunks changed since it was last saved.

        The snapshot packer calls this under ``write_lock`` before copying the directory, so a published
        snapshot always carries the records of every chunk it holds, and opens without a Chroma scan.
        """
        with self.write_lock:
            if self._closed:
                return
            if self._dirty:
                self._write_sidecar()
            if not self._table_saved:
                bm25 = self._current_bm25()
                chunktable.save(self.path, [self._chunks[i] for i in bm25.ids], bm25, self.embedder.id)
                self._journal.remove()  # only now: the saved table holds all it recorded
                self._table_saved = True
            if self._chroma_has_text and self._written:
                self._drop_text_from_chroma()

    def __enter__(self) -> KnowledgeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------------

    def pages(self) -> dict[str, PageRecord]:
        """A copy of url → PageRecord for every indexed page."""
        with self.write_lock:
            return {url: dataclasses.replace(record) for url, record in self._pages.items()}

    def counts_by_source(self) -> dict[str, int]:
        """Number of chunks per source name."""
        chunks = list(self._chunks.values())  # atomic copy under the GIL; never waits for a writer
        return dict(sorted(Counter(chunk.source for chunk in chunks).items()))

    def chunk_count(self) -> int:
        """Number of chunks in the index."""
        return len(self._chunks)

    def search(
        self,
        question: str,
        k: int = 5,
        weights: tuple[float, float, float] | None = None,
        picks: int = SEMANTIC_PAGES,
    ) -> list[Passage]:
        """The ``k`` most relevant distinct passages for ``question``: vector search fused with BM25
        and the heading-path score (``weights``: see :func:`shared.knowledge.retrieval.fuse_scores`),
        re-ranked; then up to ``picks`` semantic picks, passages of the pages the embedding ranks
        first that the ``k`` leave out (:func:`shared.knowledge.reranking.semantic_picks`).

        Safe to call from many threads at once, and while a write or a snapshot copy is under way.
        """
        self._check_open()
        if k <= 0 or not question.strip():
            return []
        bm25 = self._current_bm25()
        total = len(bm25)
        if total == 0:
            return []
        candidates = min(total, max(CANDIDATES_MIN, k * CANDIDATES_PER_RESULT))
        query = self.embedder.embed([question])[0].astype(np.float32)
        result = self._collection.query(
            query_embeddings=[query.tolist()], n_results=candidates, include=["distances"]
        )
        # Chroma's cosine distance is 1 - cosine similarity.
        vector_scores = {
            chunk_id: 1.0 - float(distance)
            for chunk_id, distance in zip(result["ids"][0], result["distances"][0], strict=True)
        }
        # The vector candidates get their keyword score too, not 0 when BM25 ranks them just below
        # its top N (see BM25.top_normalized).
        keyword_scores = dict(bm25.top_normalized(question, candidates, also=vector_scores))
        # A keyword hit outside the vector top-N still deserves its true similarity, not 0.
        missing = [chunk_id for chunk_id in keyword_scores if chunk_id not in vector_scores]
        if missing:
            got = self._collection.get(ids=missing, include=["embeddings"])
            for chunk_id, vector in zip(got["ids"], got["embeddings"], strict=True):
                vector_scores[chunk_id] = float(np.dot(np.asarray(vector, dtype=np.float32), query))
        chunks = self._chunks
        passages: dict[str, Passage] = {}
        hashes: dict[str, str] = {}
        for chunk_id in {*vector_scores, *keyword_scores}:
            chunk = chunks.get(chunk_id)
            if chunk is None:
                continue  # removed by a concurrent write
            passages[chunk_id] = Passage(
                chunk_id=chunk.id,
                text=chunk.text,
                url=chunk.url,
                title=chunk.title,
                anchor=chunk.anchor,
                source=chunk.source,
                score=0.0,
            )
            hashes[chunk_id] = chunk.content_hash
        headings = {chunk_id: heading_path(p.text, p.title) or p.title for chunk_id, p in passages.items()}
        heading = heading_scores(bm25, question, headings)
        fused = fuse_and_dedupe(
            vector_scores, keyword_scores, passages, max(k, RERANK_POOL), hashes, heading, weights
        )
        found = rerank(question, fused, k, bm25.idf)
        return found + semantic_picks(fused, found, picks)

    # --- writing ---------------------------------------------------------------------------------

    def upsert_page(self, record: PageRecord, chunks: list[Chunk]) -> int:
        """Store ``record`` and make ``chunks`` the page's chunks; return how many were embedded.

        A page whose ``content_hash`` is unchanged (and whose chunks are all present) costs nothing
        and returns 0. A changed page replaces all of its chunks; a chunk whose text the index already
        stores (on this page, or on another: a page moved to a new URL) reuses the stored vector, so
        only new text is embedded.
        """
        for chunk in chunks:
            if chunk.url != record.url:
                raise ValueError(f"chunk {chunk.id} belongs to {chunk.url}, not {record.url}")
        if len({chunk.id for chunk in chunks}) != len(chunks):
            raise ValueError(f"duplicate chunk ids for {record.url}")
        with self.write_lock:
            self._check_writable()
            record = dataclasses.replace(record, chunk_count=len(chunks))
            old_ids = self._by_url.get(record.url, [])
            previous = self._pages.get(record.url)
            if (
                previous is not None
                and previous.content_hash == record.content_hash
                and sorted(old_ids) == sorted(chunk.id for chunk in chunks)
            ):
                self._pages[record.url] = record
                self._mark_dirty()
                return 0

            reusable = self._reusable_vectors(chunks)
            to_embed = [chunk for chunk in chunks if chunk.content_hash not in reusable]
            fresh = self.embedder.embed([chunk.text for chunk in to_embed]) if to_embed else None
            if fresh is not None and fresh.shape != (len(to_embed), self.embedder.dimension):
                raise ValueError(f"embedder returned shape {fresh.shape}")
            vectors: dict[str, np.ndarray] = dict(reusable)
            for chunk, vector in zip(to_embed, fresh if fresh is not None else [], strict=True):
                vectors[chunk.content_hash] = vector

            if old_ids:
                self._delete_ids(old_ids)
            if chunks:
                self._add_chunks(chunks, [vectors[chunk.content_hash] for chunk in chunks])
            self._pages[record.url] = record
            self._mark_dirty()
            return len(to_embed)

    def upsert_pages(self, pages: list[tuple[PageRecord, list[Chunk]]]) -> int:
        """:meth:`upsert_page` for each ``(record, chunks)`` in order; return how many were embedded.

        Pages the index holds nothing of (nearly every page of a first crawl) are embedded in one call
        and added to Chroma in one ``add``, whose cost is mostly per call: on the 2-core machine 600
        chunks added 3 per call took 8.3 s, 60 per call 1.05 s. A page the index holds goes through
        :meth:`upsert_page`. Both reuse the stored vector of any chunk text the index already holds.
        """
        with self.write_lock:
            self._check_writable()
            embedded = 0
            new: dict[str, tuple[PageRecord, list[Chunk]]] = {}
            for record, chunks in pages:
                if record.url in self._pages or record.url in self._by_url or record.url in new:
                    embedded += self._add_new_pages(list(new.values()))  # keep the order per URL
                    new.clear()
                    embedded += self.upsert_page(record, chunks)
                    continue
                for chunk in chunks:
                    if chunk.url != record.url:
                        raise ValueError(f"chunk {chunk.id} belongs to {chunk.url}, not {record.url}")
                if len({chunk.id for chunk in chunks}) != len(chunks):
                    raise ValueError(f"duplicate chunk ids for {record.url}")
                new[record.url] = (record, chunks)
            return embedded + self._add_new_pages(list(new.values()))

    def _add_new_pages(self, pages: list[tuple[PageRecord, list[Chunk]]]) -> int:
        """Add pages the index holds nothing of (checked by the caller, under write_lock); return how
        many chunks were embedded (text held under another URL reuses its stored vector)."""
        chunks = [chunk for _, page_chunks in pages for chunk in page_chunks]
        embedded = 0
        if chunks:
            vectors = self._reusable_vectors(chunks)
            to_embed = [chunk for chunk in chunks if chunk.content_hash not in vectors]
            if to_embed:
                fresh = self.embedder.embed([chunk.text for chunk in to_embed])
                if fresh.shape != (len(to_embed), self.embedder.dimension):
                    raise ValueError(f"embedder returned shape {fresh.shape}")
                vectors.update(zip((chunk.content_hash for chunk in to_embed), fresh, strict=True))
                embedded = len(to_embed)
            self._add_chunks(chunks, [vectors[chunk.content_hash] for chunk in chunks])
        for record, page_chunks in pages:
            self._pages[record.url] = dataclasses.replace(record, chunk_count=len(page_chunks))
            self._mark_dirty()
        return embedded

    def touch_page(self, url: str, etag: str | None, last_modified: str | None) -> None:
        """Record that ``url`` was fetched again and found unchanged (e.g. HTTP 304).

        Raises KeyError for a page the index does not hold.
        """
        with self.write_lock:
            self._check_writable()
            record = self._pages[url]
            self._pages[url] = dataclasses.replace(
                record, etag=etag, last_modified=last_modified, fetched_at=_utc_now()
            )
            self._mark_dirty()

    def remove_page(self, url: str) -> int:
        """Forget ``url`` and delete its chunks; return how many chunks were removed (0 if unknown)."""
        with self.write_lock:
            self._check_writable()
            ids = self._by_url.get(url, [])
            if ids:
                self._delete_ids(ids)
            had_record = self._pages.pop(url, None) is not None
            if had_record or ids:
                self._mark_dirty()
            return len(ids)

    # --- internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the index at {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise RuntimeError(f"the index at {self.path} was opened read-only (for serving)")

    def _load_chunks(self) -> None:
        """Hold every chunk in memory, from the chunk table (see chunktable.py for the three cases)."""
        count = self._collection.count()
        self._chroma_has_text = index_recovery.collection_has_text(self._collection)
        journal = chunktable.has_journal(self.path)
        table = None if journal else chunktable.load(self.path, None, count)
        if table is not None:
            # The fast path, and the only one a published snapshot takes: the table is exact.
            self._table_saved = self._adopt_table(table)
            return
        # No table (a directory from before it), or a writer stopped between two saves, or the table
        # does not list what Chroma holds.
        chunks = index_recovery.recover_chunks(self._client, self._collection, self.path, journal)
        refetch = index_recovery.pages_to_refetch(self._pages, chunks)
        if refetch:
            self._pages.update(refetch)
            self._dirty = True
        self._adopt_chunks(chunks)
        self._build_bm25()
        if journal:
            self.flush()  # the reconciled table replaces table + journal

    def _drop_text_from_chroma(self) -> None:
        """Rewrite a collection that still stores chunk text (written before the chunk table held it)
        without it (:func:`shared.knowledge.index_recovery.copy_without_text`). Called under the write
        lock right after the table was saved. Searches move to the complete copy before the old
        collection is deleted."""
        fresh = index_recovery.copy_without_text(self._client, self._collection, self._chunks)
        old, self._collection = self._collection, fresh
        index_recovery.retire(self._client, old, fresh)
        self._chroma_has_text = False
        self._warm_up()

    def _adopt_table(self, table: chunktable.ChunkTable) -> bool:
        """Hold the chunk table's chunks and its BM25 postings; postings saved by another tokenizer
        version (none loaded) are rebuilt from the texts, 0.6-0.8 s at 9,826 chunks. True when the
        saved postings were used, so the table on disk needs no rewrite."""
        self._adopt_chunks(table.chunks)
        if table.bm25 is None:
            self._build_bm25()
            return False
        self._bm25 = (self._generation, table.bm25)
        return True

    def _adopt_chunks(self, chunks: list[Chunk]) -> None:
        """Hold ``chunks`` in memory (BM25 and passages need them), each page's in position order."""
        for chunk in chunks:
            self._remember(chunk)
        for ids in self._by_url.values():
            ids.sort(key=lambda chunk_id: self._chunks[chunk_id].position)

    def _warm_up(self) -> None:
        """Make Chroma load its vector index now (it does so lazily, costing the first query
        0.2-0.5 s at 10,000 chunks): a freshly opened copy is often swapped in while serving."""
        if self._chunks:
            probe = np.zeros(self.embedder.dimension, dtype=np.float32)
            probe[0] = 1.0
            self._collection.query(query_embeddings=[probe.tolist()], n_results=1, include=[])

    def _remember(self, chunk: Chunk) -> None:
        self._chunks[chunk.id] = chunk
        self._by_url.setdefault(chunk.url, []).append(chunk.id)
        if self._by_hash is not None:
            # The newest chunk holds its text: a moved page's old URL is removed after the new one is
            # written, and the entry must survive that removal.
            self._by_hash[chunk.content_hash] = chunk.id

    def stores_text(self, content_hash: str) -> bool:
        """Whether the index stores a vector for the chunk text of ``content_hash`` (under any URL): a
        write of that text reuses it, so embedding it ahead would be wasted work. Takes no lock once the
        map exists (a dict lookup is atomic under the GIL), so the pipeline's embedding thread does not
        wait on a write; a text removed meanwhile is embedded by the write instead, never lost."""
        by_hash = self._by_hash
        if by_hash is None:
            with self.write_lock:
                by_hash = self._hashes()
        return content_hash in by_hash

    def _hashes(self) -> dict[str, str]:
        if self._by_hash is None:
            # Built whole, then published: a reader without the lock never sees it half-filled.
            by_hash: dict[str, str] = {}
            for chunk in self._chunks.values():
                by_hash[chunk.content_hash] = chunk.id
            self._by_hash = by_hash
        return self._by_hash

    def _reusable_vectors(self, chunks: list[Chunk]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks (of any page) whose exact text reappears in ``chunks``: content
        hash → vector. A chunk's vector is a function of its text alone (the text embedded is the chunk
        text, whose sha256 is its content hash), and one index holds one embedder's vectors."""
        by_hash = self._hashes()
        wanted = {chunk.content_hash for chunk in chunks}
        ids_by_hash = {content: by_hash[content] for content in wanted if content in by_hash}
        if not ids_by_hash:
            return {}
        got = self._collection.get(ids=list(ids_by_hash.values()), include=["embeddings"])
        hash_by_id = {chunk_id: content for content, chunk_id in ids_by_hash.items()}
        return {
            hash_by_id[chunk_id]: np.asarray(vector, dtype=np.float32)
            for chunk_id, vector in zip(got["ids"], got["embeddings"], strict=True)
        }

    def _delete_ids(self, ids: list[str]) -> None:
        self._table_saved = False
        self._written = True
        self._journal.append_deleted(ids)  # before Chroma changes: see chunktable.py
        batch = self._client.get_max_batch_size()
        for start in range(0, len(ids), batch):
            self._collection.delete(ids=ids[start : start + batch])
        for chunk_id in ids:
            chunk = self._chunks.pop(chunk_id, None)
            if chunk is not None:
                if self._by_hash is not None and self._by_hash.get(chunk.content_hash) == chunk_id:
                    # An older chunk may hold the same text too; missing it costs one embedding.
                    del self._by_hash[chunk.content_hash]
                remaining = [i for i in self._by_url.get(chunk.url, []) if i != chunk_id]
                if remaining:
                    self._by_url[chunk.url] = remaining
                else:
                    self._by_url.pop(chunk.url, None)
        self._changed()

    def _add_chunks(self, chunks: list[Chunk], vectors: list[np.ndarray]) -> None:
        self._table_saved = False
        self._written = True
        self._journal.append_added(chunks)  # before Chroma changes: see chunktable.py
        batch = self._client.get_max_batch_size()
        for start in range(0, len(chunks), batch):
            part = chunks[start : start + batch]
            # No documents and no text-like metadata: the chunk table holds them (chunktable.py).
            # ``source`` is kept so a search can be filtered to one source inside Chroma.
            self._collection.add(
                ids=[chunk.id for chunk in part],
                embeddings=np.stack(vectors[start : start + batch]).astype(np.float32),
                metadatas=[{"source": chunk.source} for chunk in part],
            )
        for chunk in chunks:
            self._remember(chunk)  # Chunk is frozen: holding the caller's object is safe
        self._changed()

    def _mark_dirty(self) -> None:
        # Rewriting the whole sidecar after every page made a build of N pages cost O(N^2) in JSON;
        # batching bounds that, and flush() (close, snapshot packing) makes the file exact.
        self._dirty = True
        self._unflushed += 1
        if (
            self._unflushed >= SIDECAR_FLUSH_EVERY
            or time.monotonic() - self._flushed_at >= SIDECAR_FLUSH_SECONDS
        ):
            self._write_sidecar()

    def _write_sidecar(self) -> None:
        self._dirty = False
        self._unflushed = 0
        self._flushed_at = time.monotonic()
        write_json_atomic(
            self.path / SIDECAR_NAME,
            {
                "version": SIDECAR_VERSION,
                "embedder": {"id": self.embedder.id, "dimension": self.embedder.dimension},
                "collection": self._collection.name,
                # vars() rather than dataclasses.asdict: no deep copy, and the fields are all scalars.
                "pages": {url: dict(vars(record)) for url, record in self._pages.items()},
            },
        )

    def _changed(self) -> None:
        """Called under write_lock when a change to the chunks is complete."""
        self._generation += 1

    def _build_bm25(self) -> BM25:
        # No write_lock here: a reader must not wait for a snapshot copy. Copying the dict is atomic
        # under the GIL; a copy taken mid-write is used once but not kept, because the write bumps
        # the generation when it completes.
        generation = self._generation
        items = list(self._chunks.values())
        bm25 = BM25([chunk.id for chunk in items], [chunk.text for chunk in items])
        if generation == self._generation:
            self._bm25 = (generation, bm25)
        return bm25

    def _current_bm25(self) -> BM25:
        cached = self._bm25
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        # One rebuild for all readers that arrive while it runs.
        with self._bm25_lock:
            cached = self._bm25
            if cached is not None and cached[0] == self._generation:
                return cached[1]
            return self._build_bm25()


def _bindings_failed(reader: ChromaReader, path: Path, exc: Exception) -> None:
    """Close ``reader`` after the bindings' call failed as a changed call does, and say so: the
    caller opens ``path`` with chromadb's client instead."""
    reader.close()
    log.warning("chromadb's Rust bindings did not read %s (%r): opening it with chromadb", path, exc)


def _page_records(sidecar: dict[str, Any] | None) -> dict[str, PageRecord]:
    """url → PageRecord from the sidecar (fields this version does not know are left out)."""
    known = {field.name for field in dataclasses.fields(PageRecord)}
    return {
        url: PageRecord(**{k: v for k, v in record.items() if k in known})
        for url, record in (sidecar or {}).get("pages", {}).items()
    }


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or "embedder" not in data:
        raise IndexCorrupt(f"{path} is not an askbase index sidecar")
    return data
