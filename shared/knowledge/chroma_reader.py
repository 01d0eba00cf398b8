"""A read-only view of one collection of a Chroma directory, through chromadb's Rust bindings alone.

Serving an index copy needs three calls of Chroma: count, a vector query, and a get of a few ids. All
three are done by chromadb's Rust extension (``chromadb_rust_bindings``); the ``chromadb`` Python
package around it (its client, its settings, its API types, its embedding functions with httpx,
requests and jsonschema, its telemetry) is what a qa cold start paid for: importing ``chromadb`` costs
about 0.5 s of CPU and ~18 MB in the qa worker, importing the extension alone 0.014 s and ~5 MB (one
process on the 2-core machine). :class:`ChromaReader` makes the same calls chromadb's own client makes
(``chromadb/api/rust.py``, ``RustBindingsAPI``), with the same settings chromadb's defaults give
(``migrations="apply"``, ``migrations_hash_algorithm="md5"``, an HNSW cache of one entry per five
open-file slots), so a query returns what ``Collection.query`` returns: the same ids and the same
distances (``tests/test_chroma_reader.py`` compares the two on one directory).

The bindings are chromadb's private interface: their signatures are those of the pinned chromadb
(``requirements.lock``), and the test above fails when an upgrade changes them. Writers (the scrape
job, the tests) keep chromadb's client; :meth:`shared.knowledge.index.KnowledgeIndex.open` uses this
reader only with ``read_only=True``, and only for a published snapshot's exact layout.
"""

from __future__ import annotations

import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Chroma's defaults: the tenant and database every PersistentClient uses.
TENANT = "default_tenant"
DATABASE = "default_database"


class CollectionMissing(LookupError):
    """The directory holds no collection of that name (or no Chroma database at all)."""


class ChromaReader:
    """``count``, ``query`` and ``get`` of one Chroma collection, answered by the Rust bindings.

    Returns results shaped as chromadb's ``Collection`` returns them (``{"ids": ..., "distances": ...}``),
    so :class:`~shared.knowledge.index.KnowledgeIndex` uses it where it would use the collection, and
    :meth:`close` where it would close the client. Safe to call from many threads, as chromadb's client
    is (every call goes to the same bindings object).
    """

    def __init__(self, bindings: Any, collection_id: str) -> None:
        """Use :meth:`open`."""
        self._bindings = bindings
        self.id = collection_id

    @classmethod
    def open(cls, path: Path, collection: str) -> ChromaReader:
        """Open collection ``collection`` of the Chroma directory ``path``.

        Raises :class:`CollectionMissing` when ``path`` has no ``chroma.sqlite3`` (the bindings would
        create an empty database) or no such collection.
        """
        import chromadb_rust_bindings as rust

        database = Path(path) / "chroma.sqlite3"
        if not database.is_file():
            raise CollectionMissing(f"{path} holds no Chroma database")
        sqlite_config = rust.SqliteDBConfig(
            hash_type=rust.MigrationHash.MD5,
            migration_mode=rust.MigrationMode.Apply,
            url=str(database),
        )
        # As RustBindingsAPI sizes it: each cached HNSW index holds 4 data files and 1 metadata file.
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        bindings = rust.Bindings(
            allow_reset=False,
            sqlite_db_config=sqlite_config,
            persist_path=str(path),
            hnsw_cache_size=files // 5,
        )
        try:
            found = bindings.get_collection(collection, TENANT, DATABASE)
        except Exception as exc:  # the bindings raise their own NotFound type, not exported
            del bindings
            raise CollectionMissing(f"{path} holds no collection {collection!r}: {exc}") from exc
        return cls(bindings, str(found.id))

    def _require(self) -> Any:
        bindings = self._bindings
        if bindings is None:
            raise RuntimeError("the Chroma reader is closed")
        return bindings

    def count(self) -> int:
        """Number of records in the collection."""
        return int(self._require().count(self.id, TENANT, DATABASE))

    def query(
        self,
        query_embeddings: Sequence[Sequence[float] | np.ndarray],
        n_results: int = 10,
        include: Sequence[str] = ("distances",),
    ) -> dict[str, Any]:
        """The ``n_results`` nearest records to each query vector (the HNSW search of chromadb)."""
        response = self._require().query(
            self.id, None, list(query_embeddings), n_results, None, None, list(include), TENANT, DATABASE
        )
        return {
            "ids": response.ids,
            "distances": response.distances,
            "embeddings": response.embeddings,
            "documents": response.documents,
            "metadatas": response.metadatas,
        }

    def get(
        self,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
        include: Sequence[str] = ("metadatas", "documents"),
    ) -> dict[str, Any]:
        """Records by id (or the first ``limit`` of the collection), with the fields in ``include``."""
        response = self._require().get(
            self.id,
            list(ids) if ids is not None else None,
            None,
            limit,
            0,
            None,
            list(include),
            TENANT,
            DATABASE,
        )
        return {
            "ids": response.ids,
            "embeddings": response.embeddings,
            "documents": response.documents,
            "metadatas": response.metadatas,
        }

    def close(self) -> None:
        """Release the database and the HNSW files (as chromadb's ``stop`` does: drop the bindings).
        Idempotent."""
        self._bindings = None
