"""Snapshots on the GCS emulator: publish by CAS, restore with verification and fallback, retention."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tarfile
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage

from shared.config import Settings
from shared.gcp import ensure_bucket, storage_client
from shared.knowledge import chunktable
from shared.knowledge import snapshot_archive as snap_archive
from shared.knowledge import snapshots as snap
from shared.knowledge.chunker import Chunk, content_hash
from shared.knowledge.index import KnowledgeIndex, PageRecord
from shared.knowledge.retrieval import BM25
from shared.knowledge.snapshot_archive import UnsafeArchive
from shared.knowledge.snapshots import PublishConflict, SnapshotStore

pytestmark = pytest.mark.emulators


class HashEmbedder:
    """Deterministic 16-d vectors from text hashes: fast, and enough to open and query an index."""

    id = "test-hash"
    dimension = 16

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        rows = []
        for text in texts:
            raw = np.frombuffer(hashlib.sha256(text.encode()).digest()[:16], dtype=np.uint8).astype(
                np.float32
            )
            rows.append(raw / (np.linalg.norm(raw) or 1.0))
        return np.vstack(rows) if rows else np.zeros((0, self.dimension), dtype=np.float32)


def add_page(index: KnowledgeIndex, url: str, source: str = "docs", n: int = 3, version: int = 1) -> None:
    chunks = []
    for i in range(n):
        text = f"{url} section {i} version {version} about snapshots and pointers"
        h = content_hash(text)
        chunks.append(
            Chunk(
                id=f"{hashlib.sha256(f'{url}{i}{h}'.encode()).hexdigest()}",
                text=text,
                url=url,
                title="T",
                anchor=f"s{i}",
                source=source,
                content_hash=h,
                position=i,
            )
        )
    record = PageRecord(
        url=url,
        source=source,
        content_hash=f"{version}",
        title="T",
        chunk_count=n,
        etag=None,
        last_modified=None,
        fetched_at="2026-01-01T00:00:00Z",
    )
    index.upsert_page(record, chunks)


@pytest.fixture
def bucket(emulators, settings: Settings):
    return ensure_bucket(storage_client(settings.project_id), settings.bucket)


@pytest.fixture
def index(tmp_path: Path):
    idx = KnowledgeIndex.open(tmp_path / "index", HashEmbedder())
    add_page(idx, "https://docs.example.com/a")
    add_page(idx, "https://docs.example.com/b", source="blog", n=2)
    yield idx
    idx.close()


def _verify_with(embedder: HashEmbedder):
    def verify(path: Path, manifest: snap_archive.Manifest) -> None:
        opened = KnowledgeIndex.open(path, embedder)
        try:
            if opened.chunk_count() != manifest.chunk_count:
                raise snap_archive.SnapshotError("chunk count differs from the manifest")
        finally:
            opened.close()

    return verify


def test_publish_and_restore_roundtrip(bucket, index: KnowledgeIndex, tmp_path: Path) -> None:
    store = SnapshotStore(bucket, verify=_verify_with(HashEmbedder()))
    assert store.read_pointer() == (None, 0)
    assert store.restore(tmp_path / "r") is None
    manifest = store.publish(index, {"run_id": "r1"}, parent_id=None, expected_generation=0)
    assert manifest.chunk_count == 5 and manifest.pages == 2
    assert manifest.counts_by_source == {"docs": 3, "blog": 2}
    assert manifest.pages_by_source == {"docs": 1, "blog": 1}
    assert manifest.embedder == {"id": "test-hash", "dimension": 16}
    assert manifest.extra == {"run_id": "r1"}
    assert bucket.blob(f"snapshots/{manifest.id}.tar.zst").exists()
    pointer, generation = store.read_pointer()
    assert pointer.snapshot_id == manifest.id and pointer.previous == [] and generation > 0

    restored = store.restore(tmp_path / "r")
    assert restored is not None and restored.snapshot_id == manifest.id
    assert restored.generation == generation
    assert restored.path.parent == tmp_path / "r"
    # The packer flushed the chunk table into the archive, so a restored index opens without a scan.
    assert chunktable.load(restored.path, "test-hash", 5) is not None
    reopened = KnowledgeIndex.open(restored.path, HashEmbedder())
    assert reopened.chunk_count() == 5
    assert set(reopened.pages()) == {"https://docs.example.com/a", "https://docs.example.com/b"}
    assert reopened.search("section 1 version 1", k=2)
    reopened.close()
    # A second restore goes to a fresh directory, never over the first.
    again = store.restore(tmp_path / "r")
    assert again.path != restored.path
    assert [m.id for m in store.list()] == [manifest.id]
    assert store.get(manifest.id) == manifest


def test_gzip_compression(bucket, index: KnowledgeIndex, tmp_path: Path) -> None:
    store = SnapshotStore(bucket, compression="gzip")
    manifest = store.publish(index, {}, None, 0)
    assert manifest.archive.endswith(".tar.gz")
    assert store.restore(tmp_path / "r").snapshot_id == manifest.id


def test_stale_generation_conflicts(bucket, index: KnowledgeIndex) -> None:
    store = SnapshotStore(bucket)
    first = store.publish(index, {}, None, 0)
    with pytest.raises(PublishConflict):
        store.publish(index, {}, None, 0)  # create-only, but the pointer exists
    _, generation = store.read_pointer()
    add_page(index, "https://docs.example.com/c")
    second = store.publish(index, {}, first.id, generation)
    pointer, _ = store.read_pointer()
    assert pointer.snapshot_id == second.id and pointer.previous == [first.id]
    # The loser's uploads were removed again: only the two winners remain.
    assert {m.id for m in store.list()} == {first.id, second.id}


def test_two_racing_publishers_exactly_one_wins(bucket, tmp_path: Path) -> None:
    store = SnapshotStore(bucket)
    indexes = []
    for name in ("one", "two"):
        idx = KnowledgeIndex.open(tmp_path / name, HashEmbedder())
        add_page(idx, f"https://docs.example.com/{name}")
        indexes.append(idx)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def publish(name: str, idx: KnowledgeIndex) -> None:
        barrier.wait()
        try:
            outcomes[name] = SnapshotStore(bucket).publish(idx, {"who": name}, None, 0)
        except PublishConflict as exc:
            outcomes[name] = exc

    threads = [
        threading.Thread(target=publish, args=(n, i)) for n, i in zip(("one", "two"), indexes, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [m for m in outcomes.values() if isinstance(m, snap_archive.Manifest)]
    losers = [e for e in outcomes.values() if isinstance(e, PublishConflict)]
    assert len(winners) == 1 and len(losers) == 1
    pointer, _ = store.read_pointer()
    assert pointer.snapshot_id == winners[0].id
    restored = store.restore(tmp_path / "restore")
    opened = KnowledgeIndex.open(restored.path, HashEmbedder())
    assert set(opened.pages()) == {f"https://docs.example.com/{winners[0].extra['who']}"}
    opened.close()
    for idx in indexes:
        idx.close()


def test_corrupted_newest_falls_back_to_previous(
    bucket, index: KnowledgeIndex, tmp_path: Path, caplog
) -> None:
    store = SnapshotStore(bucket)
    first = store.publish(index, {}, None, 0)
    add_page(index, "https://docs.example.com/c")
    second = store.publish(index, {}, first.id, store.read_pointer()[1])
    # Flip bytes in the newest archive.
    blob = bucket.blob(f"snapshots/{second.archive}")
    data = bytearray(blob.download_as_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.upload_from_string(bytes(data))
    with caplog.at_level(logging.ERROR):
        restored = store.restore(tmp_path / "r")
    assert restored is not None and restored.snapshot_id == first.id
    assert any("checksum mismatch" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert any("OLDER snapshot" in r.getMessage() for r in caplog.records)
    assert [p.name for p in (tmp_path / "r").iterdir()] == [restored.path.name]  # failed copy cleaned up
    # Break the older one too: nothing restorable → None (the caller rebuilds).
    bucket.blob(f"snapshots/{first.archive}").delete()
    assert store.restore(tmp_path / "r2") is None


def test_a_snapshot_whose_chunk_table_and_collection_disagree_is_rejected(
    bucket, index: KnowledgeIndex, tmp_path: Path, caplog
) -> None:
    store = SnapshotStore(bucket)
    first = store.publish(index, {}, None, 0)
    add_page(index, "https://docs.example.com/c")
    index.flush()
    # A table that lists one chunk fewer than the collection holds (flush keeps it: nothing changed since).
    table = chunktable.load(index.path, "test-hash", 8)
    assert table is not None
    kept = table.chunks[1:]
    chunktable.save(index.path, kept, BM25([c.id for c in kept], [c.text for c in kept]), "test-hash")
    second = store.publish(index, {}, first.id, store.read_pointer()[1])
    with caplog.at_level(logging.ERROR):
        restored = store.restore(tmp_path / "r")
    assert restored is not None and restored.snapshot_id == first.id
    assert f"snapshot {second.id} cannot be restored" in caplog.text
    assert "the chunk table and the collection disagree: 7 vs 8 chunks" in caplog.text


def test_restore_check_compares_the_table_with_chroma_without_importing_it(
    index: KnowledgeIndex, tmp_path: Path
) -> None:
    index.flush()
    copy = tmp_path / "copy"
    snap_archive.safe_unpack(*_packed(index, tmp_path), copy)
    snap_archive.check_index_dir(copy)  # agrees
    with sqlite3.connect(copy / "chroma.sqlite3") as db:
        # VACUUM INTO left no free pages (purged write-log vectors) in the packed database.
        assert db.execute("PRAGMA freelist_count").fetchone() == (0,)
    (copy / chunktable.FILE_NAME).unlink()
    with pytest.raises(snap_archive.SnapshotError, match="no chunk table holding their text"):
        snap_archive.check_index_dir(copy)
    (copy / chunktable.FILE_NAME).write_bytes(b"not a zip")
    with pytest.raises(snap_archive.SnapshotError, match=r"chunk table: .* unreadable"):
        snap_archive.check_index_dir(copy)
    code = (
        "import sys; from pathlib import Path; from shared.knowledge import snapshot_archive as s; "
        f"s.check_index_dir(Path({str(index.path)!r})); "
        "assert not {'chromadb', 'numpy'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def _packed(index: KnowledgeIndex, tmp_path: Path) -> tuple[Path, snap_archive.Compression]:
    archive, _ = snap_archive.pack_snapshot(index, tmp_path, snap_archive.new_snapshot_id(), "zstd", None, {})
    return archive, "zstd"


def test_a_snapshot_published_before_text_left_chroma_restores_and_answers(bucket, tmp_path: Path) -> None:
    from tests.test_index import BagOfWordsEmbedder, write_legacy_index

    embedder = BagOfWordsEmbedder()
    legacy = tmp_path / "legacy"
    chunks = write_legacy_index(legacy, embedder, with_table=True)
    store = SnapshotStore(bucket)
    with KnowledgeIndex.open(legacy, embedder) as old:  # packed as it is: format-1 table, text in Chroma
        manifest = store.publish(old, {}, None, 0)
    restored = store.restore(tmp_path / "r")
    assert restored is not None and restored.snapshot_id == manifest.id
    packed = chunktable.load(restored.path, embedder.id, len(chunks))
    assert packed is not None and packed.version == 1
    with KnowledgeIndex.open(restored.path, embedder) as opened:
        hit = opened.search("stale lock file error E42", k=1)[0]
        assert "E42" in hit.text and hit.url == "https://docs.acme.dev/install"
    # Without its table, the text of an old snapshot is still in Chroma: it passes the check too.
    (restored.path / chunktable.FILE_NAME).unlink()
    snap_archive.check_index_dir(restored.path)
    with KnowledgeIndex.open(restored.path, embedder) as opened:
        assert opened.chunk_count() == len(chunks)


def _two_snapshots(
    bucket, index: KnowledgeIndex
) -> tuple[SnapshotStore, snap_archive.Manifest, snap_archive.Manifest]:
    store = SnapshotStore(bucket)
    first = store.publish(index, {}, None, 0)
    add_page(index, "https://docs.example.com/c")
    second = store.publish(index, {}, first.id, store.read_pointer()[1])
    return store, first, second


def test_strict_restore_raises_on_a_storage_outage(
    bucket, index: KnowledgeIndex, tmp_path: Path, monkeypatch, caplog
) -> None:
    store, first, second = _two_snapshots(bucket, index)
    real_download = storage.Blob.download_to_filename
    failing: set[str] = {f"snapshots/{second.archive}"}

    def download(self, filename, *args, **kwargs):
        if self.name in failing:  # simulates a Cloud Storage outage for these objects
            raise gexc.ServiceUnavailable("simulated storage outage")
        return real_download(self, filename, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "download_to_filename", download)
    # Not strict (the Q&A service): an unreadable newest snapshot falls back to the previous one.
    assert store.restore(tmp_path / "lenient").snapshot_id == first.id
    # Strict (the scrape job): no fallback to an older base, no "nothing restorable".
    with caplog.at_level(logging.ERROR), pytest.raises(snap.SnapshotUnavailable, match="ServiceUnavailable"):
        store.restore(tmp_path / "strict", strict=True)
    assert any("storage or disk trouble" in r.getMessage() for r in caplog.records)
    assert list((tmp_path / "strict").iterdir()) == []  # nothing left behind
    # Every archive unreadable: still an error, never None.
    failing.add(f"snapshots/{first.archive}")
    assert store.restore(tmp_path / "lenient2") is None
    with pytest.raises(snap.SnapshotUnavailable):
        store.restore(tmp_path / "strict2", strict=True)
    # A broken newest snapshot (checksum) is still skipped in strict mode; broken everywhere → None.
    failing.clear()
    blob = bucket.blob(f"snapshots/{second.archive}")
    data = bytearray(blob.download_as_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.upload_from_string(bytes(data))
    assert store.restore(tmp_path / "strict3", strict=True).snapshot_id == first.id
    bucket.blob(f"snapshots/{first.archive}").delete()
    assert store.restore(tmp_path / "strict4", strict=True) is None


def test_strict_restore_raises_on_a_full_disk(
    bucket, index: KnowledgeIndex, tmp_path: Path, monkeypatch
) -> None:
    store, _, _ = _two_snapshots(bucket, index)

    def no_space(self, *args, **kwargs):  # simulates a full disk while unpacking
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "extract", no_space)
    with pytest.raises(snap.SnapshotUnavailable, match="No space left"):
        store.restore(tmp_path / "r", strict=True)
    assert list((tmp_path / "r").iterdir()) == []
    assert snap_archive.is_disk_error(OSError(errno.ENOSPC, "full"))
    assert not snap_archive.is_disk_error(OSError(errno.ENOTDIR, "a path the archive makes impossible"))
    assert not snap_archive.is_disk_error(snap_archive.SnapshotError("checksum mismatch"))
    assert not snap_archive.is_broken_snapshot(gexc.ServiceUnavailable("503"))


def test_a_lenient_restore_names_its_pointer_and_never_fetches_past_stop_at(
    bucket, index: KnowledgeIndex, tmp_path: Path, monkeypatch
) -> None:
    store, first, second = _two_snapshots(bucket, index)
    add_page(index, "https://docs.example.com/d")
    third = store.publish(index, {}, second.id, store.read_pointer()[1])
    restored = store.restore(tmp_path / "r0")
    assert restored.snapshot_id == restored.pointer.snapshot_id == third.id
    real_download = storage.Blob.download_to_filename
    downloads: list[str] = []

    def download(self, filename, *args, **kwargs):
        downloads.append(self.name.rsplit("/", 1)[-1].split(".", 1)[0])
        if self.name == f"snapshots/{third.archive}":
            raise gexc.ServiceUnavailable("simulated storage outage")
        return real_download(self, filename, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "download_to_filename", download)
    # A 503 on the newest: the lenient restore falls back, and says from which pointer.
    restored = store.restore(tmp_path / "r1")
    assert restored.snapshot_id == second.id and restored.pointer.snapshot_id == third.id
    assert restored.pointer.previous == [second.id, first.id]
    # stop_at: what the caller serves, and anything older, is never fetched as a fallback.
    downloads.clear()
    assert store.restore(tmp_path / "r2", stop_at=second.id) is None
    assert downloads == [third.id]
    assert list((tmp_path / "r2").iterdir()) == []
    downloads.clear()
    assert store.restore(tmp_path / "r3", stop_at=first.id).snapshot_id == second.id
    assert downloads == [third.id, second.id]
    downloads.clear()
    assert store.restore(tmp_path / "r4", stop_at=third.id) is None and downloads == []
    # An id the pointer does not list stops nothing.
    assert store.restore(tmp_path / "r5", stop_at=snap_archive.new_snapshot_id()).snapshot_id == second.id


def test_unreadable_pointer_falls_back_to_listing(bucket, index: KnowledgeIndex, tmp_path: Path) -> None:
    store = SnapshotStore(bucket)
    manifest = store.publish(index, {}, None, 0)
    bucket.blob("snapshots/LATEST.json").upload_from_string(b"{not json")
    pointer, generation = store.read_pointer()
    assert pointer is None and generation > 0
    assert store.restore(tmp_path / "r").snapshot_id == manifest.id
    # A publisher can still replace the broken pointer by CAS on its generation.
    store.publish(index, {}, manifest.id, generation)
    assert store.read_pointer()[0] is not None


def test_retention_keeps_n_and_rollback(bucket, index: KnowledgeIndex, tmp_path: Path) -> None:
    store = SnapshotStore(bucket, keep=3)
    ids = []
    for i in range(5):
        add_page(index, f"https://docs.example.com/p{i}")
        ids.append(store.publish(index, {}, ids[-1] if ids else None, store.read_pointer()[1]).id)
    listed = [m.id for m in store.list()]
    assert listed == list(reversed(ids[-3:]))
    assert not bucket.blob(f"snapshots/{ids[0]}.tar.zst").exists()
    pointer, _ = store.read_pointer()
    assert pointer.snapshot_id == ids[-1] and pointer.previous == [ids[-2], ids[-3]]

    store.rollback(ids[-3])
    pointer, _ = store.read_pointer()
    assert pointer.snapshot_id == ids[-3] and pointer.previous[0] == ids[-1]
    assert pointer.rolled_back and datetime.fromisoformat(pointer.rolled_back_at).tzinfo is not None
    restored = store.restore(tmp_path / "r")
    assert restored.snapshot_id == ids[-3] and restored.manifest.chunk_count == 5 + 3 * 3
    with pytest.raises(snap.SnapshotNotFound):
        store.rollback(ids[0])
    with pytest.raises(ValueError, match="not a snapshot id"):
        store.rollback("../../etc/passwd")
    # A later publish keeps the rolled-back-from snapshot listed in previous, so retention spares it,
    # and clears the rollback mark.
    store.publish(index, {}, ids[-3], store.read_pointer()[1])
    assert ids[-1] in {m.id for m in store.list()}
    assert not store.read_pointer()[0].rolled_back


# --- archive safety (no emulator needed) -------------------------------------------------------------
def _tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_info("/etc/evil"), "absolute"),
        (_info("../evil"), "parent"),
        (_info("ok/../../evil"), "parent"),
        (_info("link", tarfile.SYMTYPE, link="/etc/passwd"), "link"),
        (_info("hard", tarfile.LNKTYPE, link="chroma.sqlite3"), "link"),
        (_info("dev", tarfile.CHRTYPE), "device"),
        (_info("blk", tarfile.BLKTYPE), "device"),
        (_info("fifo", tarfile.FIFOTYPE), "fifo"),
    ],
)
@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_malicious_members_refused(tmp_path: Path, member: tuple, reason: str, compression: str) -> None:
    raw = _tar_with([_info("chroma.sqlite3", data=b"fine"), member])
    tar_path = tmp_path / "evil.tar"
    tar_path.write_bytes(raw)
    archive = tmp_path / "evil.arc"
    snap_archive.compress_file(tar_path, archive, compression)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchive, match=reason):
        snap_archive.safe_unpack(archive, compression, dest)
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()


def test_unpack_size_bound_and_garbage(tmp_path: Path) -> None:
    tar_path = tmp_path / "a.tar"
    tar_path.write_bytes(_tar_with([_info("big", data=b"x" * 10_000)]))
    archive = tmp_path / "a.zst"
    snap_archive.compress_file(tar_path, archive, "zstd")
    with pytest.raises(UnsafeArchive, match="more than"):
        snap_archive.safe_unpack(archive, "zstd", tmp_path / "o1", max_bytes=100)
    junk = tmp_path / "junk.zst"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(snap_archive.SnapshotError, match="cannot be unpacked"):
        snap_archive.safe_unpack(junk, "zstd", tmp_path / "o2")
    junk_gz = tmp_path / "junk.gz"
    junk_gz.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(snap_archive.SnapshotError, match="cannot be unpacked") as broken:
        snap_archive.safe_unpack(junk_gz, "gzip", tmp_path / "o3")
    assert snap_archive.is_broken_snapshot(broken.value)  # corrupt data, not a disk error


def test_malicious_archive_in_bucket_is_never_unpacked(bucket, index: KnowledgeIndex, tmp_path: Path) -> None:
    """A correctly checksummed archive with a bad member: refused, then the previous snapshot is used."""
    store = SnapshotStore(bucket)
    good = store.publish(index, {}, None, 0)
    evil_id = snap_archive.new_snapshot_id()
    tar_path = tmp_path / "evil.tar"
    tar_path.write_bytes(_tar_with([_info("chroma.sqlite3", data=b"x"), _info("../../escape", data=b"boom")]))
    archive = tmp_path / "evil.tar.zst"
    sha = snap_archive.compress_file(tar_path, archive, "zstd")
    manifest = snap_archive.Manifest(
        id=evil_id,
        created_at="2099-01-01T00:00:00+00:00",
        archive=evil_id + ".tar.zst",
        compression="zstd",
        sha256=sha,
        size=archive.stat().st_size,
        unpacked_bytes=tar_path.stat().st_size,
        embedder={},
        counts_by_source={},
        pages=0,
        pages_by_source={},
        chunk_count=0,
        parent_id=good.id,
    )
    bucket.blob(f"snapshots/{manifest.archive}").upload_from_filename(str(archive))
    bucket.blob(f"snapshots/{evil_id}.manifest.json").upload_from_string(manifest.to_json())
    _, generation = store.read_pointer()
    bucket.blob("snapshots/LATEST.json").upload_from_string(
        json.dumps({"snapshot_id": evil_id, "previous": [good.id]}), if_generation_match=generation
    )
    restored = store.restore(tmp_path / "r")
    assert restored.snapshot_id == good.id
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()


def test_pure_helpers() -> None:
    a = snap_archive.new_snapshot_id()
    assert snap_archive.validate_snapshot_id(a) == a
    p = snap.next_pointer("c", snap.Pointer("b", ["a"]), keep=2)
    assert (p.snapshot_id, p.previous) == ("c", ["b"])
    assert snap.next_pointer("a", None, keep=3).previous == []
    assert snap.next_pointer("a", snap.Pointer("b", ["a", "x"]), keep=5).previous == ["b", "x"]
    with pytest.raises(snap_archive.SnapshotError, match="pointer is not valid"):
        snap.Pointer.from_json(b'{"previous": []}')
    # A pointer written before rollbacks were marked reads as not rolled back; a marked one round-trips.
    assert not snap.Pointer.from_json(b'{"snapshot_id": "a", "previous": []}').rolled_back
    marked = snap.Pointer("a", ["b"], "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00")
    assert snap.Pointer.from_json(marked.to_json()) == marked and marked.rolled_back
    with pytest.raises(snap_archive.SnapshotError, match="manifest is not valid"):
        snap_archive.Manifest.from_json(b"[]")


def test_snapshots_cli(bucket, index: KnowledgeIndex, settings: Settings) -> None:
    from click.testing import CliRunner

    from shared.cli.snapshots import snapshots_group

    runner = CliRunner()
    empty = runner.invoke(snapshots_group, ["list"])
    assert empty.exit_code == 0 and "no snapshots yet" in empty.output
    store = SnapshotStore(bucket)
    first = store.publish(index, {}, None, 0)
    add_page(index, "https://docs.example.com/z")
    second = store.publish(index, {}, first.id, store.read_pointer()[1])
    listed = runner.invoke(snapshots_group, ["list"])
    assert listed.exit_code == 0, listed.output
    assert f"* {second.id}" in listed.output and first.id in listed.output
    shown = runner.invoke(snapshots_group, ["show", first.id])
    assert json.loads(shown.output)["id"] == first.id
    bad = runner.invoke(snapshots_group, ["show", "nope"])
    assert bad.exit_code == 1 and "not a snapshot id" in bad.output
    rolled = runner.invoke(snapshots_group, ["rollback", first.id, "--yes"])
    assert rolled.exit_code == 0, rolled.output
    assert "stops at its publish without publishing" in rolled.output
    assert store.read_pointer()[0].snapshot_id == first.id
    as_json = json.loads(runner.invoke(snapshots_group, ["list", "--json"]).output)
    assert as_json["pointer"]["snapshot_id"] == first.id and len(as_json["snapshots"]) == 2
