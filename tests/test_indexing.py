"""The scrape's indexing pipeline: embedding and writing behind the caller, in order, errors raised."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from shared.knowledge.chunker import Chunk, chunk_id, content_hash
from shared.knowledge.index import KnowledgeIndex, PageRecord
from shared.knowledge.indexing import IndexingPipeline, PrecomputedVectors

GUARD = 60.0  # a failure guard only: every wait ends on an event first


class FakeEmbedder:
    """Deterministic unit vectors from the text's hash; records each call's texts."""

    id = "fake-embedder"
    dimension = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
        rows = [
            np.random.default_rng(int(content_hash(t)[:12], 16)).normal(size=self.dimension) for t in texts
        ]
        out = np.array(rows, dtype=np.float32).reshape(len(texts), self.dimension)
        return out / np.linalg.norm(out, axis=1, keepdims=True) if len(texts) else out

    @property
    def texts(self) -> list[str]:
        return [text for call in self.calls for text in call]


class BlockingEmbedder(FakeEmbedder):
    """Blocks in embed() until released; `entered` says a call is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        assert self.release.wait(GUARD)
        return super().embed(texts)


def page(n: int, texts: list[str]) -> tuple[PageRecord, list[Chunk]]:
    url = f"https://docs.example.com/{n}"
    chunks = [
        Chunk(chunk_id(url, i, content_hash(t)), t, url, f"Page {n}", "", "docs", content_hash(t), i)
        for i, t in enumerate(texts)
    ]
    digest = content_hash("".join(texts))
    return PageRecord(url, "docs", digest, f"Page {n}", len(chunks), None, None, ""), chunks


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[tuple[KnowledgeIndex, PrecomputedVectors, FakeEmbedder]]:
    inner = FakeEmbedder()
    vectors = PrecomputedVectors(inner)
    index = KnowledgeIndex.open(tmp_path / "index", vectors)  # type: ignore[arg-type]
    try:
        yield index, vectors, inner
    finally:
        index.close()


def test_precomputed_vectors_answer_once_per_provision_and_embed_the_rest() -> None:
    inner = FakeEmbedder()
    vectors = PrecomputedVectors(inner)
    assert (vectors.id, vectors.dimension) == (inner.id, inner.dimension)
    ahead = inner.embed(["a", "b"])
    inner.calls.clear()
    vectors.provide(["a", "b", "a"], np.stack([ahead[0], ahead[1], ahead[0]]))
    got = vectors.embed(["a", "c", "b"])
    assert inner.calls == [["c"]]  # only the text nobody provided
    np.testing.assert_array_equal(got[0], ahead[0])
    np.testing.assert_array_equal(got[2], ahead[1])
    np.testing.assert_array_equal(got[1], inner.embed(["c"])[0])
    inner.calls.clear()
    vectors.embed(["a"])  # "a" was provided twice
    vectors.embed(["a", "b"])  # now both are used up
    assert inner.calls == [["a", "b"]]
    with pytest.raises(TypeError):
        vectors.embed("a")  # type: ignore[arg-type]


def test_pages_are_written_in_order_and_new_pages_share_model_calls(opened) -> None:
    index, vectors, inner = opened
    pages = [page(n, [f"page {n} part {i}" for i in range(3)]) for n in range(10)]
    with IndexingPipeline(index, vectors, max_batch_chunks=64) as pipeline:
        for record, chunks in pages:
            pipeline.submit(record, chunks, embed_ahead=True)
        embedded = pipeline.finish()
    assert embedded == 30  # what the index reports it needed: every chunk is new
    assert sorted(inner.texts) == sorted(c.text for _, chunks in pages for c in chunks)  # each once
    assert set(index.pages()) == {record.url for record, _ in pages}
    assert index.chunk_count() == 30
    assert pipeline.times.chunks_ahead == 30
    # The passages carry the vectors computed ahead: a search for a chunk's own text finds it first.
    hit = index.search("page 7 part 2", k=1)[0]
    assert hit.url == "https://docs.example.com/7"


def test_a_changed_page_is_embedded_by_the_index_which_reuses_unchanged_chunks(opened) -> None:
    index, vectors, inner = opened
    record, chunks = page(1, ["kept text", "old text"])
    index.upsert_page(record, chunks)
    inner.calls.clear()
    record2, chunks2 = page(1, ["kept text", "new text"])
    with IndexingPipeline(index, vectors) as pipeline:
        pipeline.submit(record2, chunks2, embed_ahead=False)
        assert pipeline.finish() == 1
    assert inner.texts == ["new text"]  # the kept chunk's stored vector was reused
    assert pipeline.times.chunks_ahead == 0


def test_a_new_url_embeds_ahead_only_the_text_the_index_does_not_store(opened) -> None:
    """A page moved to a new URL and edited there: its unchanged chunks' text is stored under the old
    URL, so only the edited chunk reaches the model, ahead or in the index (and is counted once)."""
    index, vectors, inner = opened
    record, chunks = page(1, ["kept text", "old text"])
    index.upsert_page(record, chunks)
    inner.calls.clear()
    moved_record, moved_chunks = page(2, ["kept text", "new text"])
    with IndexingPipeline(index, vectors) as pipeline:
        pipeline.submit(moved_record, moved_chunks, embed_ahead=True)
        assert pipeline.finish() == 1
    assert inner.texts == ["new text"]
    assert pipeline.times.chunks_ahead == 1


def test_upsert_pages_writes_new_pages_together_and_known_ones_as_upsert_page_does(opened) -> None:
    index, _, inner = opened
    known_record, known_chunks = page(0, ["kept text", "old text"])
    index.upsert_page(known_record, known_chunks)
    inner.calls.clear()
    new = [page(n, [f"new page {n} part {i}" for i in range(2)]) for n in range(1, 4)]
    changed = page(0, ["kept text", "changed text"])
    again = page(2, ["page 2 rewritten"])  # the same URL twice in one write: the later one wins
    embedded = index.upsert_pages([new[0], changed, new[1], new[2], again])
    assert embedded == 1 + 6 + 1  # the changed chunk, the new pages' chunks, the rewrite
    texts = [[c.text for c in chunks] for _, chunks in new]
    assert inner.calls == [
        texts[0],  # written before the known page that follows it, to keep the order
        ["changed text"],  # the known page reused its unchanged chunk's vector
        texts[1] + texts[2],  # new pages that came together go to the model (and Chroma) together
        ["page 2 rewritten"],
    ]
    assert set(index.pages()) == {f"https://docs.example.com/{n}" for n in range(4)}
    assert index.pages()["https://docs.example.com/2"].chunk_count == 1
    assert index.chunk_count() == 2 + 2 + 1 + 2
    hit = index.search("new page 3 part 1", k=1)[0]
    assert hit.url == "https://docs.example.com/3"
    with pytest.raises(ValueError, match="duplicate chunk ids"):
        record, chunks = page(9, ["x"])
        index.upsert_pages([(record, chunks + chunks)])


def test_the_caller_goes_on_while_the_model_is_busy(tmp_path: Path) -> None:
    inner = BlockingEmbedder()
    vectors = PrecomputedVectors(inner)
    index = KnowledgeIndex.open(tmp_path / "index", vectors)  # type: ignore[arg-type]
    try:
        with IndexingPipeline(index, vectors, max_pending_chunks=100) as pipeline:
            pipeline.submit(*page(0, ["first"]), embed_ahead=True)
            assert inner.entered.wait(GUARD)  # the model is busy with page 0 now
            # The caller is not held up by it: it submits the next pages while the call is blocked.
            for n in range(1, 20):
                pipeline.submit(*page(n, [f"text {n}"]), embed_ahead=True)
            assert pipeline.progress == (0, 20)
            inner.release.set()
            assert pipeline.finish() == 20
        assert index.chunk_count() == 20
        assert len(inner.calls) <= 3  # the 19 pages that queued up behind the first went in one or two calls
    finally:
        index.close()


def test_an_error_in_a_thread_reaches_the_caller(opened) -> None:
    index, vectors, inner = opened

    def broken(texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("model exploded")

    inner.embed = broken  # type: ignore[method-assign]
    with IndexingPipeline(index, vectors) as pipeline:
        pipeline.submit(*page(0, ["a"]), embed_ahead=True)
        with pytest.raises(RuntimeError, match="model exploded"):
            pipeline.finish()
        with pytest.raises(RuntimeError, match="model exploded"):
            pipeline.submit(*page(1, ["b"]), embed_ahead=True)
    assert index.chunk_count() == 0


def test_the_index_must_be_opened_with_the_pipelines_vectors(tmp_path: Path) -> None:
    inner = FakeEmbedder()
    index = KnowledgeIndex.open(tmp_path / "index", inner)  # type: ignore[arg-type]
    try:
        with pytest.raises(ValueError, match="PrecomputedVectors"):
            IndexingPipeline(index, PrecomputedVectors(inner))
    finally:
        index.close()
