"""The indexing pipeline of a scrape: pages go in, vectors are computed and written behind the caller.

A scrape has three kinds of work per page: extract + chunk (Python, the caller's thread), embed (the
model: onnxruntime runs without the GIL) and write (Chroma, of which a good part is waiting for the disk).
Done one after the other per page, the model idled while a page was extracted and written, and the crawl
stopped while the model ran. :class:`IndexingPipeline` runs them as a pipeline instead::

    caller: extract, chunk, submit() ──▶ embedding thread ──▶ writing thread ──▶ KnowledgeIndex
                                         (one model call      (upsert_pages: one
                                          for many pages)      write for many pages,
                                                               in submission order)

The embedding thread takes every page waiting when it becomes free, up to :data:`MAX_BATCH_CHUNKS`
chunks, and embeds them in one call: the embedder sorts them by length and pads per batch, and many
pages give it more to sort. The writing thread takes every page embedded meanwhile and writes them
with one :meth:`KnowledgeIndex.upsert_pages`, which finds the vectors ready in
:class:`PrecomputedVectors` (the embedder the scrape opens its index with).

Only pages the index has never seen are embedded ahead: for a changed page the index reuses the stored
vectors of unchanged chunks, and only it knows which those are, so such a page is embedded by the index
itself (in the writing thread, still off the caller's). Of a page embedded ahead, a chunk whose text
the index already stores under another URL (a moved page: :meth:`KnowledgeIndex.stores_text`) is not
embedded either: the write reuses the stored vector.

At most ``max_pending_chunks`` chunks are in the pipeline at once: :meth:`IndexingPipeline.submit` blocks
the caller beyond that, which slows the crawl through its bounded buffer (the crawl awaits room; its
requests in flight are unaffected: see :mod:`shared.knowledge.crawler`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from shared.knowledge.embeddings import Embedder

if TYPE_CHECKING:
    from shared.knowledge.chunker import Chunk
    from shared.knowledge.index import KnowledgeIndex, PageRecord

log = logging.getLogger(__name__)

# Chunks per model call at most: big enough that sorting by length leaves little padding, small enough
# that the last call of a crawl (which nothing overlaps) stays short.
MAX_BATCH_CHUNKS = 128
# Chunks submitted but not yet written, at most: bounds memory (texts + vectors) and how far the crawl
# runs ahead of the model.
MAX_PENDING_CHUNKS = 512


class PrecomputedVectors:
    """An :class:`Embedder` that answers from vectors computed ahead and embeds anything else itself.

    Same ``id`` and ``dimension`` as the embedder it wraps, so an index opened with it is the index of
    that embedder. Each provided vector is handed out as many times as it was provided (two pages may
    share a chunk text), then forgotten.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.id = inner.id
        self.dimension = inner.dimension
        self._lock = threading.Lock()
        self._ready: dict[str, tuple[np.ndarray, int]] = {}

    def provide(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Make ``vectors[i]`` the answer for ``texts[i]`` (once per time it is provided)."""
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                held = self._ready.get(text)
                self._ready[text] = (vector, held[1] + 1 if held else 1)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Provided vectors where there are some; the wrapped embedder for the rest, in one call."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for row, text in enumerate(texts):
                held = self._ready.get(text)
                if held is None:
                    missing.append(row)
                    continue
                out[row] = held[0]
                if held[1] > 1:
                    self._ready[text] = (held[0], held[1] - 1)
                else:
                    del self._ready[text]
        if missing:
            out[missing] = self.inner.embed([texts[row] for row in missing])
        return out

    def forget(self) -> None:
        """Drop every vector not handed out (after a failed run)."""
        with self._lock:
            self._ready.clear()


@dataclass
class PipelineTimes:
    """Where a pipeline's time went; the two threads overlap each other and the caller."""

    embed_seconds: float = 0.0  # the embedding thread inside the model
    write_seconds: float = 0.0  # the writing thread inside upsert_pages (including what the index embedded)
    batches: int = 0  # model calls made by the embedding thread
    chunks_ahead: int = 0  # chunks embedded by the embedding thread
    write_rounds: int = 0  # times the writing thread took what was waiting


@dataclass(frozen=True)
class _Page:
    record: PageRecord
    chunks: list[Chunk]
    ahead: bool


_STOP = None


def _chunks_ahead(page: _Page) -> int:
    """What a page adds to a model call: its chunks when it is embedded ahead, else nothing."""
    return len(page.chunks) if page.ahead else 0


def _gather(
    source: queue.Queue[_Page | None],
    first: _Page,
    limit: float = float("inf"),
    weight: Callable[[_Page], int] = lambda page: 0,
) -> tuple[list[_Page], bool]:
    """``first`` and the pages already waiting behind it while their total ``weight`` is under ``limit``;
    and whether the stop marker came next (taken: the caller stops after this batch).

    Never waits: a thread that is free takes what is queued now, and what arrives meanwhile goes in its
    next round, so a lone page is never held back for company.
    """
    batch = [first]
    size = weight(first)
    while size < limit:
        try:
            item = source.get_nowait()
        except queue.Empty:
            return batch, False
        if item is _STOP:
            return batch, True
        batch.append(item)
        size += weight(item)
    return batch, False


class IndexingPipeline:
    """Embeds and writes submitted pages in two threads; see the module docstring.

    ``index`` must have been opened with ``vectors``. Use as a context manager, or call :meth:`finish`
    (wait, and raise the first error) and then :meth:`close` (always: stops the threads).
    """

    def __init__(
        self,
        index: KnowledgeIndex,
        vectors: PrecomputedVectors,
        *,
        max_batch_chunks: int = MAX_BATCH_CHUNKS,
        max_pending_chunks: int = MAX_PENDING_CHUNKS,
    ) -> None:
        if index.embedder is not vectors:
            raise ValueError("the index must be opened with the pipeline's PrecomputedVectors")
        self._index = index
        self._vectors = vectors
        self._max_batch = max(1, max_batch_chunks)
        self._max_pending = max(1, max_pending_chunks)
        self._to_embed: queue.Queue[_Page | None] = queue.Queue()
        self._to_write: queue.Queue[_Page | None] = queue.Queue()
        self._state = threading.Condition()
        self._pending = 0  # chunks submitted and not yet written (or dropped after an error)
        self._submitted = 0
        self._written = 0
        self._embeddings = 0
        self._error: BaseException | None = None
        self._stopping = False
        self.times = PipelineTimes()
        self._threads = [
            threading.Thread(target=self._embed_loop, name="index-embed", daemon=True),
            threading.Thread(target=self._write_loop, name="index-write", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> IndexingPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the caller's side ---------------------------------------------------------------------------
    @property
    def index(self) -> KnowledgeIndex:
        """The index the pages are written to."""
        return self._index

    @property
    def progress(self) -> tuple[int, int]:
        """(chunks written, chunks submitted) so far."""
        with self._state:
            return self._written, self._submitted

    def submit(self, record: PageRecord, chunks: list[Chunk], *, embed_ahead: bool) -> None:
        """Queue ``upsert_page(record, chunks)``. ``embed_ahead``: the index holds nothing of this page
        (so every chunk needs a new vector). Blocks while the pipeline is full; raises the error a
        thread met, if any."""
        size = len(chunks)
        with self._state:
            # One page bigger than the whole budget still goes in, alone.
            while self._error is None and self._pending > 0 and self._pending + size > self._max_pending:
                self._state.wait()
            self._raise_error()
            if self._stopping:
                raise RuntimeError("the indexing pipeline is closed")
            self._pending += size
            self._submitted += size
        self._to_embed.put(_Page(record, chunks, embed_ahead))

    def finish(self, report: Callable[[int, int], None] | None = None) -> int:
        """Wait until every submitted page is written; return how many chunks the index embedded.

        ``report(written, submitted)`` is called from this thread after each page written meanwhile.
        Raises the first error either thread met.
        """
        while True:
            with self._state:
                if self._error is None and self._pending > 0:
                    self._state.wait()
                self._raise_error()
                done, written, submitted = self._pending == 0, self._written, self._submitted
                embeddings = self._embeddings
            if report is not None:
                report(written, submitted)  # outside the lock: the writer goes on meanwhile
            if done:
                return embeddings

    def close(self) -> None:
        """Stop both threads; work not yet written is dropped. Idempotent."""
        with self._state:
            self._stopping = True
            self._state.notify_all()
        self._to_embed.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._vectors.forget()

    # --- the threads ---------------------------------------------------------------------------------
    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, exc: BaseException) -> None:
        with self._state:
            if self._error is None:
                self._error = exc
            self._state.notify_all()

    def _skip(self) -> bool:
        with self._state:
            return self._stopping or self._error is not None

    def _embed_loop(self) -> None:
        while True:
            first = self._to_embed.get()
            if first is _STOP:
                self._to_write.put(_STOP)
                return
            # Everything already waiting joins this model call, up to the batch limit.
            batch, stop_after = _gather(self._to_embed, first, self._max_batch, _chunks_ahead)
            if not self._skip():
                try:
                    self._embed_ahead(batch)
                except BaseException as exc:  # handed to the caller by finish()/submit()
                    self._fail(exc)
            for page in batch:
                self._to_write.put(page)
            if stop_after:
                self._to_write.put(_STOP)
                return

    def _embed_ahead(self, batch: list[_Page]) -> None:
        # Text the index already stores (a page moved to a new URL, edited or not) is written with the
        # stored vector: only the rest is embedded.
        stored = self._index.stores_text
        texts = [
            chunk.text
            for page in batch
            if page.ahead
            for chunk in page.chunks
            if not stored(chunk.content_hash)
        ]
        if not texts:
            return
        started = time.perf_counter()
        vectors = self._vectors.inner.embed(texts)
        elapsed = time.perf_counter() - started
        self._vectors.provide(texts, vectors)
        with self._state:
            self.times.embed_seconds += elapsed
            self.times.batches += 1
            self.times.chunks_ahead += len(texts)

    def _write_loop(self) -> None:
        while True:
            first = self._to_write.get()
            if first is _STOP:
                return
            # Every page already embedded goes in this round: one index write for all of them.
            batch, stop_after = _gather(self._to_write, first)
            embedded = 0
            elapsed = 0.0
            if not self._skip():
                started = time.perf_counter()
                try:
                    embedded = self._write(batch)
                except BaseException as exc:  # handed to the caller by finish()/submit()
                    self._fail(exc)
                elapsed = time.perf_counter() - started
            with self._state:
                self.times.write_seconds += elapsed
                self.times.write_rounds += 1
                self._embeddings += embedded
                for page in batch:
                    self._pending -= len(page.chunks)
                    self._written += len(page.chunks)
                self._state.notify_all()
            if stop_after:
                return

    def _write(self, batch: list[_Page]) -> int:
        """Write ``batch`` in order; how many chunks the index embedded.

        One :meth:`KnowledgeIndex.upsert_pages` call: the pages the index holds nothing of go to Chroma
        in one ``add``, whose cost is mostly per call (see there).
        """
        return self._index.upsert_pages([(page.record, page.chunks) for page in batch])
