"""KnowledgeIndex on a real Chroma directory: build, incremental upserts, removal, reopen, embedder pin,
locking. A small bag-of-words embedder keeps these fast; retrieval quality is tested with MiniLM in
test_retrieval.py."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.knowledge import chunktable, index_recovery
from shared.knowledge.chunker import Chunk, chunk_page, page_content_hash
from shared.knowledge.extract import ExtractedPage, Section
from shared.knowledge.index import (
    SIDECAR_NAME,
    EmbedderMismatch,
    IndexCorrupt,
    KnowledgeIndex,
    PageRecord,
)
from shared.knowledge.retrieval import BM25


class BagOfWordsEmbedder:
    """Words hashed into 64 buckets, L2-normalised: texts sharing words get similar vectors.

    Counts calls and embedded texts so tests can prove what was (not) embedded.
    """

    dimension = 64

    def __init__(self, embedder_id: str = "test-bow") -> None:
        self.id = embedder_id
        self.calls = 0
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts.extend(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
            out[row] /= np.linalg.norm(out[row]) or 1.0
        return out


def make_page(url: str, sections: dict[str, str], title: str = "Guide") -> ExtractedPage:
    return ExtractedPage(
        url=url,
        title=title,
        sections=[Section(heading, heading.lower(), 2, text) for heading, text in sections.items()],
        canonical_url=None,
    )


def record_for(page: ExtractedPage, chunks: list[Chunk], source: str, etag: str | None = None) -> PageRecord:
    return PageRecord(
        url=page.url,
        source=source,
        content_hash=page_content_hash(chunks),
        title=page.title,
        chunk_count=0,  # the index fills in the real count
        etag=etag,
        last_modified=None,
        fetched_at="2026-11-23T10:00:00+00:00",
    )


def add(index: KnowledgeIndex, page: ExtractedPage, source: str = "docs") -> tuple[int, list[Chunk]]:
    chunks = chunk_page(page, source=source, max_chars=400, overlap=40)
    return index.upsert_page(record_for(page, chunks, source), chunks), chunks


PAGES = {
    "https://docs.acme.dev/install": {
        "Requirements": "Acme needs Python 3.11 and two gigabytes of disk space.",
        "Installer": "Run the installer script with sudo. It configures background services.",
        "Troubleshooting": "Error E42 means a stale lock file: delete it and retry.",
    },
    "https://docs.acme.dev/billing": {
        "Invoices": "Invoices are emailed on the first day of each month as PDF files.",
        "Refunds": "Refunds are processed within five business days of the request.",
    },
}
BLOG = {"https://blog.acme.dev/launch": {"Launch": "We launched Acme Cloud with regions in Europe and Asia."}}


@pytest.fixture
def embedder() -> BagOfWordsEmbedder:
    return BagOfWordsEmbedder()


@pytest.fixture
def index(tmp_path: Path, embedder: BagOfWordsEmbedder) -> Iterator[KnowledgeIndex]:
    idx = KnowledgeIndex.open(tmp_path / "index", embedder)
    for url, sections in PAGES.items():
        add(idx, make_page(url, sections))
    for url, sections in BLOG.items():
        add(idx, make_page(url, sections, title="Blog"), source="blog")
    yield idx
    idx.close()


def chroma_ids(index: KnowledgeIndex) -> set[str]:
    return set(index._collection.get(include=[])["ids"])


def test_full_build_counts_pages_and_sources(index: KnowledgeIndex, embedder: BagOfWordsEmbedder) -> None:
    assert index.chunk_count() == 6
    assert index.counts_by_source() == {"blog": 1, "docs": 5}
    pages = index.pages()
    assert set(pages) == {*PAGES, *BLOG}
    assert pages["https://docs.acme.dev/install"].chunk_count == 3
    assert pages["https://blog.acme.dev/launch"].source == "blog"
    assert len(embedder.texts) == 6
    assert len(chroma_ids(index)) == 6


def test_unchanged_page_embeds_nothing(
    index: KnowledgeIndex, embedder: BagOfWordsEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chroma_write(*args: object) -> None:
        raise AssertionError("an unchanged page rewrote its chunks")

    monkeypatch.setattr(index, "_delete_ids", no_chroma_write)
    monkeypatch.setattr(index, "_add_chunks", no_chroma_write)
    calls = embedder.calls
    page = make_page("https://docs.acme.dev/install", PAGES["https://docs.acme.dev/install"])
    embedded, _ = add(index, page)
    assert embedded == 0
    assert embedder.calls == calls
    assert index.chunk_count() == 6


def test_changed_page_replaces_all_its_chunks_and_embeds_only_new_text(
    index: KnowledgeIndex, embedder: BagOfWordsEmbedder
) -> None:
    url = "https://docs.acme.dev/install"
    old_ids = {i for i in chroma_ids(index) if index._chunks[i].url == url}
    changed = dict(PAGES[url])
    changed["Troubleshooting"] = "Error E51 means the license expired: renew it in the console."
    del changed["Installer"]
    before = len(embedder.texts)
    embedded, new_chunks = add(index, make_page(url, changed))

    # Requirements kept its text: its vector is reused; only the rewritten section is embedded.
    assert embedded == 1
    assert embedder.texts[before:] == [new_chunks[1].text]
    ids = chroma_ids(index)
    assert {c.id for c in new_chunks} <= ids
    assert not (old_ids - {c.id for c in new_chunks}) & ids
    assert index.chunk_count() == 5
    assert index.pages()[url].chunk_count == 2
    assert index.pages()[url].content_hash == page_content_hash(new_chunks)
    texts = [p.text for p in index.search("E42 stale lock", k=5)]
    assert not any("E42" in t for t in texts)
    assert any("E51" in t for t in (p.text for p in index.search("E51 license", k=5)))


def test_reused_vectors_are_the_stored_ones(index: KnowledgeIndex) -> None:
    url = "https://docs.acme.dev/billing"
    first = chunk_page(make_page(url, PAGES[url]), "docs", 400, 40)
    stored = index._collection.get(ids=[first[0].id], include=["embeddings"])["embeddings"][0]
    changed = {"Intro": "Billing basics.", **PAGES[url]}  # shifts positions, so ids change
    _, chunks = add(index, make_page(url, changed))
    moved = next(c for c in chunks if c.content_hash == first[0].content_hash)
    assert moved.id != first[0].id
    got = index._collection.get(ids=[moved.id], include=["embeddings"])["embeddings"][0]
    np.testing.assert_allclose(got, stored, atol=1e-7)


@pytest.mark.parametrize("reopen", [False, True], ids=["same-index", "reopened"])
def test_a_page_moved_to_a_new_url_reuses_the_stored_vectors(
    tmp_path: Path, index: KnowledgeIndex, embedder: BagOfWordsEmbedder, reopen: bool
) -> None:
    old = "https://docs.acme.dev/install"
    if reopen:  # the text map is built from a reopened index's chunk table, not from its own writes
        index.close()
        index = KnowledgeIndex.open(tmp_path / "index", embedder)
    stored = {
        index._chunks[i].content_hash: index._collection.get(ids=[i], include=["embeddings"])["embeddings"][0]
        for i in index._by_url[old]
    }
    before = len(embedder.texts)
    page = make_page("https://docs.acme.dev/guide/install", PAGES[old])
    chunks = chunk_page(page, source="docs", max_chars=400, overlap=40)
    assert all(index.stores_text(chunk.content_hash) for chunk in chunks)
    # Both write paths: a page the index has never seen goes through upsert_pages' batch.
    assert index.upsert_pages([(record_for(page, chunks, "docs"), chunks)]) == 0
    assert embedder.texts[before:] == []
    for chunk in chunks:
        got = index._collection.get(ids=[chunk.id], include=["embeddings"])["embeddings"][0]
        np.testing.assert_allclose(got, stored[chunk.content_hash], atol=1e-7)
    index.remove_page(old)
    # The old URL's chunks held the text map's entries; a second copy still finds the new URL's.
    again = make_page("https://docs.acme.dev/v2/install", PAGES[old])
    assert add(index, again)[0] == 0
    other = chunk_page(make_page(old, {"New": "Nothing like it."}), "docs", 400, 40)
    assert not any(index.stores_text(chunk.content_hash) for chunk in other)
    if reopen:
        index.close()


def test_remove_page_deletes_its_chunks_and_record(index: KnowledgeIndex) -> None:
    url = "https://docs.acme.dev/billing"
    assert index.remove_page(url) == 2
    assert url not in index.pages()
    assert index.chunk_count() == 4
    assert all(index._chunks[i].url != url for i in chroma_ids(index))
    assert all(p.url != url for p in index.search("refunds invoices billing", k=10))
    assert index.counts_by_source() == {"blog": 1, "docs": 3}
    assert index.remove_page(url) == 0
    assert index.remove_page("https://never.seen/") == 0


def test_touch_page_updates_validators_only(index: KnowledgeIndex, embedder: BagOfWordsEmbedder) -> None:
    url = "https://docs.acme.dev/install"
    before = index.pages()[url]
    calls = embedder.calls
    index.touch_page(url, etag='"v2"', last_modified="Mon, 23 Nov 2026 10:00:00 GMT")
    after = index.pages()[url]
    assert after.etag == '"v2"'
    assert after.last_modified == "Mon, 23 Nov 2026 10:00:00 GMT"
    assert after.fetched_at > before.fetched_at
    assert after.content_hash == before.content_hash
    assert embedder.calls == calls
    with pytest.raises(KeyError):
        index.touch_page("https://never.seen/", None, None)


def test_reopen_after_close_keeps_chunks_records_and_search(
    tmp_path: Path, embedder: BagOfWordsEmbedder
) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        for url, sections in PAGES.items():
            add(idx, make_page(url, sections))
        idx.touch_page("https://docs.acme.dev/billing", '"e1"', None)
    reopened = KnowledgeIndex.open(path, BagOfWordsEmbedder())
    try:
        assert reopened.chunk_count() == 5
        assert reopened.pages()["https://docs.acme.dev/billing"].etag == '"e1"'
        hits = reopened.search("stale lock file error E42", k=1)
        assert hits[0].anchor == "troubleshooting"
        assert hits[0].url == "https://docs.acme.dev/install"
        # Unchanged pages stay free after a reopen too.
        embedded, _ = add(
            reopened, make_page("https://docs.acme.dev/install", PAGES["https://docs.acme.dev/install"])
        )
        assert embedded == 0
    finally:
        reopened.close()


def test_close_saves_the_chunk_table_and_reopen_reads_no_chunks_from_chroma(
    tmp_path: Path, embedder: BagOfWordsEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        for url, sections in PAGES.items():
            add(idx, make_page(url, sections))
        questions = ["stale lock file error E42", "refund business days", "python disk space"]
        before = {q: idx.search(q, k=3) for q in questions}
        by_url = {url: list(ids) for url, ids in idx._by_url.items()}
    assert (path / chunktable.FILE_NAME).is_file()

    def no_scan(*args: object, **kwargs: object) -> list:
        raise AssertionError("opened by scanning Chroma although a valid chunk table was saved")

    monkeypatch.setattr(index_recovery, "read_chunks_from_chroma", no_scan)
    with KnowledgeIndex.open(path, BagOfWordsEmbedder()) as reopened:
        assert reopened.chunk_count() == 5
        assert {q: reopened.search(q, k=3) for q in questions} == before
        assert {url: list(ids) for url, ids in reopened._by_url.items()} == by_url


def test_chroma_keeps_ids_vectors_and_source_only_and_the_table_keeps_the_text(
    tmp_path: Path, embedder: BagOfWordsEmbedder
) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        for url, sections in PAGES.items():
            add(idx, make_page(url, sections))
        got = idx._collection.get(include=["documents", "metadatas", "embeddings"])
        texts = {chunk_id: chunk.text for chunk_id, chunk in idx._chunks.items()}
    assert got["documents"] == [None] * 5
    assert got["metadatas"] == [{"source": "docs"}] * 5
    assert len(got["embeddings"]) == 5
    with sqlite3.connect(path / "chroma.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM embedding_metadata WHERE key != 'source'").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM embedding_fulltext_search").fetchone() == (0,)
    table = chunktable.load(path, embedder.id, 5)
    assert table is not None and {c.id: c.text for c in table.chunks} == texts
    assert not (path / chunktable.JOURNAL_NAME).exists()  # close saved the table and dropped the journal


def test_every_change_is_journalled_before_chroma_changes_and_a_killed_writer_loses_nothing(
    tmp_path: Path, embedder: BagOfWordsEmbedder
) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        add(idx, make_page("https://docs.acme.dev/a", {"A": "Alpha text here."}))
        add(idx, make_page("https://docs.acme.dev/c", {"C": "Gamma text about owls."}))
    idx = KnowledgeIndex.open(path, embedder)
    journalled: list[str] = []
    real_add, real_delete = idx._collection.add, idx._collection.delete

    def spying_add(**kwargs: Any) -> None:
        journalled.append((path / chunktable.JOURNAL_NAME).read_text().splitlines()[-1])
        assert all(chunk_id in journalled[-1] for chunk_id in kwargs["ids"])
        real_add(**kwargs)

    def spying_delete(**kwargs: Any) -> None:
        journalled.append((path / chunktable.JOURNAL_NAME).read_text().splitlines()[-1])
        assert all(chunk_id in journalled[-1] for chunk_id in kwargs["ids"])
        real_delete(**kwargs)

    idx._collection.add = spying_add  # type: ignore[method-assign]
    idx._collection.delete = spying_delete  # type: ignore[method-assign]
    add(idx, make_page("https://docs.acme.dev/b", {"B": "Beta text about zebras."}))
    idx.remove_page("https://docs.acme.dev/c")
    assert [json.loads(line).keys() for line in journalled] == [{"add"}, {"delete"}]
    idx.flush()  # the sidecar (page records) is batched apart from the chunk table: make it exact...
    add(idx, make_page("https://docs.acme.dev/d", {"D": "Delta text about yaks."}))
    # ...and kill the writer now: no flush, no close. The table on disk still lists a and b only.
    idx._client.close()
    assert (path / chunktable.JOURNAL_NAME).is_file()
    with KnowledgeIndex.open(path, embedder) as reopened:
        assert reopened.chunk_count() == 3
        assert reopened.search("zebras", k=1)[0].url == "https://docs.acme.dev/b"
        assert reopened.search("yaks", k=1)[0].text.endswith("Delta text about yaks.")
        assert "https://docs.acme.dev/c" not in {p.url for p in reopened.search("owls", k=3)}
        # The reconciled table replaced table + journal at once.
        assert not (path / chunktable.JOURNAL_NAME).exists()
        assert chunktable.load(path, embedder.id, 3) is not None


def test_a_chunk_chroma_holds_without_text_is_dropped_and_its_page_fetched_again(
    tmp_path: Path, embedder: BagOfWordsEmbedder
) -> None:
    # A power cut can lose the journal's last line while Chroma kept the add it described.
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        add(idx, make_page("https://docs.acme.dev/a", {"A": "Alpha text here."}))
    idx = KnowledgeIndex.open(path, embedder)
    page = make_page("https://docs.acme.dev/b", {"B": "Beta text about zebras."})
    chunks = chunk_page(page, source="docs", max_chars=400, overlap=40)
    idx.upsert_page(record_for(page, chunks, "docs", etag='"b1"'), chunks)
    idx.flush()
    # The sidecar now records page b; the table is re-written without b and the journal says nothing.
    a_only = [c for c in idx._chunks.values() if c.url.endswith("/a")]
    chunktable.save(path, a_only, BM25([c.id for c in a_only], [c.text for c in a_only]), embedder.id)
    (path / chunktable.JOURNAL_NAME).write_text("")
    idx._client.close()
    with KnowledgeIndex.open(path, embedder) as reopened:
        assert reopened.chunk_count() == 1
        assert chroma_ids(reopened) == {a_only[0].id}
        record = reopened.pages()["https://docs.acme.dev/b"]
        assert (record.content_hash, record.etag) == ("", None)  # no 304 can keep it chunkless
        embedded = reopened.upsert_page(record_for(page, chunks, "docs"), chunks)
        assert embedded == 1
        assert reopened.search("zebras", k=1)[0].url == "https://docs.acme.dev/b"


def test_a_torn_last_journal_line_is_ignored(tmp_path: Path, embedder: BagOfWordsEmbedder) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        add(idx, make_page("https://docs.acme.dev/a", {"A": "Alpha text here."}))
    idx = KnowledgeIndex.open(path, embedder)
    add(idx, make_page("https://docs.acme.dev/b", {"B": "Beta text about zebras."}))
    idx._client.close()
    with (path / chunktable.JOURNAL_NAME).open("ab") as journal:
        journal.write(b'{"add": [["half')
    with KnowledgeIndex.open(path, embedder) as reopened:
        assert reopened.chunk_count() == 2
        assert reopened.search("zebras", k=1)[0].url == "https://docs.acme.dev/b"


@pytest.mark.parametrize("damage", ["stale", "other-embedder", "bad-arrays"])
def test_a_chunk_table_that_does_not_fit_is_reconciled_or_its_postings_rebuilt(
    tmp_path: Path, embedder: BagOfWordsEmbedder, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        add(idx, make_page("https://docs.acme.dev/a", {"A": "Alpha text here."}))
        add(idx, make_page("https://docs.acme.dev/b", {"B": "Beta text about zebras."}))
    table = chunktable.load(path, embedder.id, 2)
    assert table is not None and table.bm25 is not None
    if damage == "stale":  # a table listing one chunk fewer than Chroma holds: that chunk has no text
        chunks = [c for c in table.chunks if c.url.endswith("/a")]
        chunktable.save(path, chunks, BM25([c.id for c in chunks], [c.text for c in chunks]), embedder.id)
    elif damage == "other-embedder":  # the text is still the text
        chunktable.save(path, table.chunks, table.bm25, "another-model")
    else:  # postings pointing past the last document: rebuilt from the texts
        arrays = table.bm25.to_arrays()
        arrays["posting_docs"] = arrays["posting_docs"] + 10
        _write_table(path, table.chunks, arrays, embedder.id)
    with (
        caplog.at_level("INFO", logger="shared.knowledge"),
        KnowledgeIndex.open(path, embedder) as reopened,
    ):
        if damage == "stale":
            assert reopened.chunk_count() == 1
            assert "reconciled" in caplog.text
            # b's chunk had no text anywhere: dropped, and its page marked for a full fetch.
            assert all(p.url.endswith("/a") for p in reopened.search("zebras", k=3))
            assert reopened.pages()["https://docs.acme.dev/b"].content_hash == ""
        else:
            assert reopened.chunk_count() == 2
            assert reopened.search("zebras", k=1)[0].url == "https://docs.acme.dev/b"
    if damage == "bad-arrays":
        assert "rebuilding" in caplog.text
        rebuilt = chunktable.load(path, embedder.id, 2)
        assert rebuilt is not None and rebuilt.bm25 is not None


@pytest.mark.parametrize("damage", ["garbage", "short-column", "missing"])
def test_an_unreadable_chunk_table_is_an_error_not_an_empty_index(
    tmp_path: Path, embedder: BagOfWordsEmbedder, damage: str
) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        add(idx, make_page("https://docs.acme.dev/a", {"A": "Alpha text here."}))
        add(idx, make_page("https://docs.acme.dev/b", {"B": "Beta text about zebras."}))
    table = chunktable.load(path, embedder.id, 2)
    assert table is not None and table.bm25 is not None
    target = path / chunktable.FILE_NAME
    if damage == "garbage":
        target.write_bytes(b"PK\x03\x04 not really a zip")
    elif damage == "missing":
        target.unlink()
    else:
        _write_table(path, table.chunks, table.bm25.to_arrays(), embedder.id, short=True)
    with pytest.raises(IndexCorrupt, match="text is in no chunk table"):
        KnowledgeIndex.open(path, embedder)


def _write_table(
    path: Path, chunks: list[Chunk], arrays: dict[str, np.ndarray], embedder_id: str, short: bool = False
) -> None:
    columns = {name: [getattr(c, name) for c in chunks] for name in chunktable._DATA_COLUMNS}
    if short:
        columns["text"] = columns["text"][:1]
    with (path / chunktable.FILE_NAME).open("wb") as handle:
        np.savez(
            handle,
            header=chunktable._json_array(
                {"version": chunktable.FORMAT_VERSION, "embedder": embedder_id, "count": len(chunks)}
            ),
            ids=chunktable._json_array([c.id for c in chunks]),
            columns=chunktable._json_array(columns),
            **{f"bm25_{name}": value for name, value in arrays.items()},
        )


def write_legacy_index(path: Path, embedder: BagOfWordsEmbedder, with_table: bool) -> list[Chunk]:
    """A directory as askbase wrote it before the chunk table held the text: documents and every
    metadata field in Chroma, and (``with_table``) a format-1 table listing the same chunks."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chunks = [
        c for url, sections in PAGES.items() for c in chunk_page(make_page(url, sections), "docs", 400, 40)
    ]
    client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_or_create_collection(
        "askbase", metadata={"hnsw:space": "cosine"}, embedding_function=None
    )
    fields = ("url", "title", "anchor", "source", "content_hash", "position")
    collection.add(
        ids=[c.id for c in chunks],
        embeddings=embedder.embed([c.text for c in chunks]),
        documents=[c.text for c in chunks],
        metadatas=[{name: getattr(c, name) for name in fields} for c in chunks],
    )
    client.close()  # chromadb's Client has close(); its declared ClientAPI does not list it
    pages = {
        url: dict(vars(record_for(make_page(url, sections), [c for c in chunks if c.url == url], "docs")))
        | {"chunk_count": sum(c.url == url for c in chunks)}
        for url, sections in PAGES.items()
    }
    sidecar = {"version": 1, "embedder": {"id": embedder.id, "dimension": 64}, "collection": "askbase"}
    (path / SIDECAR_NAME).write_text(json.dumps(sidecar | {"pages": pages}))
    if with_table:
        bm25 = BM25([c.id for c in chunks], [c.text for c in chunks])
        columns = {name: [getattr(c, name) for c in chunks] for name in chunktable._COLUMNS}
        with (path / chunktable.FILE_NAME).open("wb") as handle:
            np.savez(
                handle,
                header=chunktable._json_array({"version": 1, "embedder": embedder.id, "count": len(chunks)}),
                columns=chunktable._json_array(columns),
                **{f"bm25_{name}": value for name, value in bm25.to_arrays().items()},
            )
    return chunks


@pytest.mark.parametrize("with_table", [True, False])
def test_an_index_written_before_text_left_chroma_opens_and_takes_new_writes(
    tmp_path: Path, embedder: BagOfWordsEmbedder, with_table: bool
) -> None:
    path = tmp_path / "index"
    chunks = write_legacy_index(path, embedder, with_table)
    with KnowledgeIndex.open(path, embedder) as reader:  # a reader (qa) leaves the collection as it is
        assert reader.search("stale lock file error E42", k=1)[0].url == "https://docs.acme.dev/install"
    with KnowledgeIndex.open(path, embedder) as reader:
        assert None not in reader._collection.get(include=["documents"])["documents"]
    with KnowledgeIndex.open(path, embedder) as idx:
        assert idx.chunk_count() == len(chunks)
        hit = idx.search("stale lock file error E42", k=1)[0]
        assert hit.url == "https://docs.acme.dev/install" and "E42" in hit.text
        assert (
            add(idx, make_page("https://docs.acme.dev/install", PAGES["https://docs.acme.dev/install"]))[0]
            == 0
        )
        add(idx, make_page("https://docs.acme.dev/new", {"New": "Zebras are striped."}))
    with KnowledgeIndex.open(path, embedder) as reopened:
        assert reopened.chunk_count() == len(chunks) + 1
        assert reopened.search("zebras striped", k=1)[0].url == "https://docs.acme.dev/new"
        # The writer's flush rewrote the collection without text: vectors copied, nothing embedded.
        got = reopened._collection.get(include=["documents", "metadatas"])
        assert set(got["documents"]) == {None} and {m["source"] for m in got["metadatas"]} == {"docs"}
        assert reopened._collection.name == "askbase"
        old_texts = {c.text for c in chunks}
        assert sorted(t for t in embedder.texts if t in old_texts) == sorted(old_texts)  # embedded once
        saved = chunktable.load(path, embedder.id, len(chunks) + 1)
        assert saved is not None and saved.version == chunktable.FORMAT_VERSION


def test_another_embedder_is_refused(tmp_path: Path, embedder: BagOfWordsEmbedder) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        add(idx, make_page("https://docs.acme.dev/x", {"A": "Some text here."}))
    with pytest.raises(EmbedderMismatch, match=r"'test-bow'.*'other-model'"):
        KnowledgeIndex.open(path, BagOfWordsEmbedder("other-model"))

    class WiderEmbedder(BagOfWordsEmbedder):
        dimension = 128

    with pytest.raises(EmbedderMismatch, match="dimension 64"):
        KnowledgeIndex.open(path, WiderEmbedder())
    # The refusal left the index intact for the right embedder.
    with KnowledgeIndex.open(path, embedder) as idx:
        assert idx.chunk_count() == 1


def test_sidecar_is_atomic_json_with_embedder_and_pages(index: KnowledgeIndex) -> None:
    index.flush()  # records are written in batches; flush (also run by close and the packer) writes now
    data = json.loads((index.path / SIDECAR_NAME).read_text())
    assert data["embedder"] == {"id": "test-bow", "dimension": 64}
    assert set(data["pages"]) == {*PAGES, *BLOG}
    assert data["pages"]["https://docs.acme.dev/billing"]["chunk_count"] == 2
    assert not list(index.path.glob("*.tmp"))


def test_sidecar_writes_are_batched_and_flushed(
    tmp_path: Path, embedder: BagOfWordsEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.knowledge.index.SIDECAR_FLUSH_SECONDS", 3600.0)  # count-based only here
    path = tmp_path / "index"
    idx = KnowledgeIndex.open(path, embedder)
    add(idx, make_page("https://docs.acme.dev/a", {"A": "Alpha text here."}))
    # One page is below the batch size: the file still holds the empty index written at creation.
    assert json.loads((path / SIDECAR_NAME).read_text())["pages"] == {}
    idx.flush()
    assert set(json.loads((path / SIDECAR_NAME).read_text())["pages"]) == {"https://docs.acme.dev/a"}
    add(idx, make_page("https://docs.acme.dev/b", {"B": "Beta text here."}))
    idx.close()  # close flushes too
    assert len(json.loads((path / SIDECAR_NAME).read_text())["pages"]) == 2


def test_chunks_without_a_sidecar_are_refused(tmp_path: Path, embedder: BagOfWordsEmbedder) -> None:
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as idx:
        add(idx, make_page("https://docs.acme.dev/x", {"A": "Some text here."}))
    (path / SIDECAR_NAME).unlink()
    with pytest.raises(IndexCorrupt, match=r"no askbase-index\.json"):
        KnowledgeIndex.open(path, embedder)
    (path / SIDECAR_NAME).write_text("{not json")
    with pytest.raises(IndexCorrupt):
        KnowledgeIndex.open(path, embedder)


def test_missing_chunks_are_restored_even_when_the_hash_is_unchanged(
    index: KnowledgeIndex, embedder: BagOfWordsEmbedder
) -> None:
    # A writer killed between deleting old chunks and adding new ones leaves the record behind.
    url = "https://docs.acme.dev/billing"
    gone = [i for i, c in index._chunks.items() if c.url == url]
    index._delete_ids(gone)
    embedded, _ = add(index, make_page(url, PAGES[url]))
    assert embedded == 2
    assert index.chunk_count() == 6


def test_bad_input_is_rejected(index: KnowledgeIndex) -> None:
    page = make_page("https://docs.acme.dev/a", {"A": "Alpha text."})
    chunks = chunk_page(page, "docs", 400, 40)
    record = record_for(page, chunks, "docs")
    record.url = "https://docs.acme.dev/b"
    with pytest.raises(ValueError, match="belongs to"):
        index.upsert_page(record, chunks)


def test_closed_index_refuses_work(tmp_path: Path, embedder: BagOfWordsEmbedder) -> None:
    idx = KnowledgeIndex.open(tmp_path / "index", embedder)
    idx.close()
    idx.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        idx.search("anything")
    with pytest.raises(RuntimeError, match="closed"):
        idx.remove_page("https://x/")


class _ObservedLock:
    """The index's write lock, recording which threads found it held and had to wait for it."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.waited: list[str] = []  # names of threads that found the lock held
        self.contended = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self.waited.append(threading.current_thread().name)
        self.contended.set()
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> _ObservedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_writes_wait_for_the_write_lock(index: KnowledgeIndex) -> None:
    assert isinstance(index.write_lock, type(threading.RLock()))
    lock = _ObservedLock(index.write_lock)
    index.write_lock = lock  # type: ignore[assignment]
    page = make_page("https://docs.acme.dev/new", {"New": "A brand new page about quotas."})
    done = threading.Event()
    order: list[str] = []

    def writer() -> None:
        add(index, page)
        order.append("written")
        done.set()

    add(index, make_page("https://docs.acme.dev/other", {"Other": "Another page about refunds."}))
    held = threading.Event()
    release = threading.Event()

    def packer() -> None:  # what the snapshot packer does while it copies the directory
        with index.write_lock:
            held.set()
            release.wait(timeout=60)
            order.append("released")

    holder = threading.Thread(target=packer)
    holder.start()
    assert held.wait(timeout=5)
    thread = threading.Thread(target=writer, name="writer")
    thread.start()
    try:
        # The writer either reaches the held lock and waits, or (if writes skipped the lock) finishes.
        deadline = time.monotonic() + 60
        while not (lock.contended.wait(timeout=0.05) or done.is_set()):
            assert thread.is_alive() and time.monotonic() < deadline, "the writer neither waited nor finished"
        assert lock.waited == ["writer"] and not done.is_set()
        assert "https://docs.acme.dev/new" not in index._pages
        # Readers are not blocked by the held lock, even when BM25 needs a rebuild after a write: they
        # never try to take it (a reader that did would wait here until the packer gave up).
        assert index.search("refunds", k=1)
        assert index.counts_by_source()
        assert lock.waited == ["writer"]
    finally:
        release.set()
        holder.join(timeout=10)
    thread.join(timeout=10)
    assert done.is_set() and order == ["released", "written"]
    assert index.chunk_count() == 8


def test_concurrent_searches_during_writes(index: KnowledgeIndex) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                hits = index.search("refunds processed business days", k=3)
                assert hits
                assert len({h.chunk_id for h in hits}) == len(hits)
            except BaseException as exc:
                errors.append(exc)
                return

    readers = [threading.Thread(target=reader) for _ in range(6)]
    for thread in readers:
        thread.start()
    try:
        for round_ in range(15):
            url = f"https://docs.acme.dev/churn{round_ % 3}"
            add(index, make_page(url, {"Churn": f"Version {round_} of a page that keeps changing."}))
            if round_ % 4 == 3:
                index.remove_page(url)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
    assert not errors, errors[0]


def test_the_loaded_table_holds_a_pages_repeated_fields_once(
    tmp_path: Path, embedder: BagOfWordsEmbedder
) -> None:
    # Every serving worker holds the table: a page's url, title and source are one object each, not one
    # per chunk (what JSON decoding gives).
    path = tmp_path / "index"
    with KnowledgeIndex.open(path, embedder) as index:
        add(index, make_page("https://docs.acme.dev/install", PAGES["https://docs.acme.dev/install"]))
    table = chunktable.load(path, embedder.id, None)
    assert table is not None and len(table.chunks) > 1
    first, *rest = table.chunks
    assert all(c.url is first.url and c.title is first.title and c.source is first.source for c in rest)
    assert [c.url for c in table.chunks] == ["https://docs.acme.dev/install"] * len(table.chunks)
