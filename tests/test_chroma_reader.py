"""ChromaReader (chromadb's Rust bindings alone) against chromadb's own client on the same directory,
and KnowledgeIndex.open(read_only=True), which serves a published snapshot through it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from shared.knowledge import chunktable, retrieval
from shared.knowledge.chroma_reader import ChromaReader, CollectionMissing
from shared.knowledge.index import KnowledgeIndex
from tests.test_index import BLOG, PAGES, BagOfWordsEmbedder, add, make_page, write_legacy_index

ROOT = Path(__file__).resolve().parents[1]


class RandomEmbedder:
    """Seeded random unit vectors per text: no two distances tie, so result order is exact."""

    id = "test-random"
    dimension = 32

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.stack(
            [np.random.default_rng(list(text.encode())).normal(size=self.dimension) for text in texts]
        ).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def build(path: Path, embedder: object, pages: int = 40) -> None:
    with KnowledgeIndex.open(path, embedder) as index:  # type: ignore[arg-type]
        for n in range(pages):
            add(index, make_page(f"https://docs.acme.dev/{n}", {f"Part {n}": f"Topic {n} text {n * 7}."}))


def built(tmp_path: Path, pages: int) -> tuple[Path, BagOfWordsEmbedder]:
    """An index of ``pages`` pages under ``tmp_path``, and the embedder it was built with."""
    path, embedder = tmp_path / "index", BagOfWordsEmbedder()
    build(path, embedder, pages=pages)
    return path, embedder


def chroma_collection(path: Path):  # type: ignore[no-untyped-def]
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    )
    return client, client.get_collection("askbase", embedding_function=None)


def test_the_reader_returns_what_chromadbs_client_returns(tmp_path: Path) -> None:
    path = tmp_path / "index"
    embedder = RandomEmbedder()
    build(path, embedder)
    queries = embedder.embed([f"question {n}" for n in range(8)])
    client, collection = chroma_collection(path)
    try:
        expected = collection.query(
            query_embeddings=[q.tolist() for q in queries], n_results=15, include=["distances"]
        )
        all_ids = collection.get(include=[])["ids"]
        some = sorted(all_ids)[:5]
        expected_vectors = collection.get(ids=some, include=["embeddings"])
        expected_count = collection.count()
    finally:
        client.close()
    reader = ChromaReader.open(path, "askbase")
    try:
        got = reader.query([q.tolist() for q in queries], n_results=15, include=["distances"])
        assert got["ids"] == expected["ids"]
        assert got["distances"] == expected["distances"]
        vectors = reader.get(ids=some, include=["embeddings"])
        assert vectors["ids"] == expected_vectors["ids"]
        assert np.array_equal(np.asarray(vectors["embeddings"]), np.asarray(expected_vectors["embeddings"]))
        assert reader.count() == expected_count == 40
        assert reader.get(limit=1, include=["documents"])["documents"] == [None]  # text is in the table
    finally:
        reader.close()
    with pytest.raises(RuntimeError, match="closed"):
        reader.count()


def test_a_missing_database_or_collection_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CollectionMissing):
        ChromaReader.open(tmp_path, "askbase")
    assert not (tmp_path / "chroma.sqlite3").exists()  # nothing created
    build(tmp_path / "index", RandomEmbedder(), pages=2)
    with pytest.raises(CollectionMissing):
        ChromaReader.open(tmp_path / "index", "other")


def test_read_only_search_equals_the_writable_index_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "index"
    embedder = BagOfWordsEmbedder()
    with KnowledgeIndex.open(path, embedder) as index:
        for url, sections in PAGES.items():
            add(index, make_page(url, sections))
        for url, sections in BLOG.items():
            add(index, make_page(url, sections, title="Blog"), source="blog")
    questions = ["stale lock file error E42", "refunds", "regions in Europe", "python disk space"]
    with KnowledgeIndex.open(path, embedder) as writable:
        expected = [[(p.chunk_id, p.score) for p in writable.search(q, k=3)] for q in questions]
        expected_counts = (writable.chunk_count(), writable.counts_by_source(), writable.pages())
    with KnowledgeIndex.open(path, embedder, read_only=True) as served:
        assert isinstance(served._collection, ChromaReader)
        assert [[(p.chunk_id, p.score) for p in served.search(q, k=3)] for q in questions] == expected
        assert (served.chunk_count(), served.counts_by_source(), served.pages()) == expected_counts
        page = make_page("https://docs.acme.dev/new", {"New": "Zebras."})
        with pytest.raises(RuntimeError, match="read-only"):
            add(served, page)
        with pytest.raises(RuntimeError, match="read-only"):
            served.remove_page("https://docs.acme.dev/billing")
        with pytest.raises(RuntimeError, match="read-only"):
            served.touch_page("https://docs.acme.dev/billing", "etag", None)


def test_a_snapshot_of_another_tokenizer_is_served_by_the_reader_with_postings_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A snapshot published before a tokenizer change: its saved BM25 postings are refused, rebuilt
    # from the chunk table's texts in memory, and the copy on disk is left as published.
    path, embedder = built(tmp_path, pages=8)
    with KnowledgeIndex.open(path, embedder) as writable:
        expected = [(p.chunk_id, p.score) for p in writable.search("Topic 3 text", k=3)]
    table = path / chunktable.FILE_NAME
    published = table.read_bytes()
    monkeypatch.setattr(retrieval, "TOKENIZER_VERSION", retrieval.TOKENIZER_VERSION + 1)
    with KnowledgeIndex.open(path, embedder, read_only=True) as served:
        assert isinstance(served._collection, ChromaReader)
        assert [(p.chunk_id, p.score) for p in served.search("Topic 3 text", k=3)] == expected
    assert table.read_bytes() == published


def test_serving_a_snapshot_does_not_import_chromadb(tmp_path: Path) -> None:
    # The point of the reader: a qa worker opening a published snapshot skips chromadb's import
    # (about 0.5 s of CPU and ~18 MB on the 2-core machine), so this checks the import, not a time.
    path = tmp_path / "index"
    build(path, BagOfWordsEmbedder(), pages=5)
    script = (
        "import sys, json; from pathlib import Path; from tests.test_index import BagOfWordsEmbedder; "
        "from shared.knowledge.index import KnowledgeIndex; "
        f"index = KnowledgeIndex.open(Path({str(path)!r}), BagOfWordsEmbedder(), read_only=True); "
        "hits = index.search('Topic 3', k=1); index.close(); "
        "print(json.dumps([hits[0].url, 'chromadb' in sys.modules]))"
    )
    # tests.test_index imports nothing of chromadb at module level (its legacy writer imports it lazily).
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["https://docs.acme.dev/3", False]


@pytest.mark.parametrize("with_table", [False, True])
def test_other_layouts_open_read_only_through_chromadb(tmp_path: Path, with_table: bool) -> None:
    path = tmp_path / "index"
    embedder = BagOfWordsEmbedder()
    write_legacy_index(path, embedder, with_table)
    with KnowledgeIndex.open(path, embedder, read_only=True) as served:
        assert served.search("stale lock file error E42", k=1)[0].url == "https://docs.acme.dev/install"


def test_a_journal_left_by_a_writer_opens_read_only_through_chromadb(tmp_path: Path) -> None:
    path = tmp_path / "index"
    embedder = BagOfWordsEmbedder()
    index = KnowledgeIndex.open(path, embedder)
    add(index, make_page("https://docs.acme.dev/a", {"A": "Alpha text about zebras."}))
    index.flush()
    add(index, make_page("https://docs.acme.dev/d", {"D": "Delta text about yaks."}))
    index._client.close()  # the writer dies without a save: the table lists page a only
    assert (path / chunktable.JOURNAL_NAME).is_file()
    with KnowledgeIndex.open(path, embedder, read_only=True) as served:
        assert served.chunk_count() == 2
        assert served.search("yaks", k=1)[0].url == "https://docs.acme.dev/d"


def test_bindings_whose_calls_changed_fall_back_to_chromadb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The bindings are chromadb's private API: after an upgrade that changes a call, qa must still
    # serve (through chromadb's client), not fail every open.
    path, embedder = built(tmp_path, pages=5)

    def changed_query(self: ChromaReader, *args: object, **kwargs: object) -> dict[str, object]:
        raise TypeError("query() takes 8 positional arguments but 10 were given")

    monkeypatch.setattr(ChromaReader, "query", changed_query)
    with (
        caplog.at_level("WARNING", logger="shared.knowledge.index"),
        KnowledgeIndex.open(path, embedder, read_only=True) as served,
    ):
        assert not isinstance(served._collection, ChromaReader)
        assert served.search("Topic 3", k=1)[0].url == "https://docs.acme.dev/3"
        with pytest.raises(RuntimeError, match="read-only"):
            served.remove_page("https://docs.acme.dev/3")
    assert "opening it with chromadb" in caplog.text


def test_missing_bindings_fall_back_but_an_error_of_askbases_own_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, embedder = built(tmp_path, pages=3)

    def no_bindings(cls: type, *args: object) -> ChromaReader:
        raise ModuleNotFoundError("No module named 'chromadb_rust_bindings'")

    with monkeypatch.context() as patch:
        patch.setattr(ChromaReader, "open", classmethod(no_bindings))
        with KnowledgeIndex.open(path, embedder, read_only=True) as served:
            assert not isinstance(served._collection, ChromaReader)
            assert served.search("Topic 2", k=1)[0].url == "https://docs.acme.dev/2"

    def broken_table(self: KnowledgeIndex, table: object) -> bool:
        raise TypeError("a bug in askbase, not in the bindings")

    monkeypatch.setattr(KnowledgeIndex, "_adopt_table", broken_table)
    with pytest.raises(TypeError, match="a bug in askbase"):
        KnowledgeIndex.open(path, embedder, read_only=True)
