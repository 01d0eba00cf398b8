"""In-memory stand-ins for the snapshot store and the knowledge index, for LiveIndex unit tests.

The real ones are exercised by the API tests; these make swap timing and failure paths deterministic.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.knowledge.retrieval import Passage


@dataclass
class FakePointer:
    snapshot_id: str
    previous: list[str] = field(default_factory=list)


@dataclass
class FakeRestored:
    snapshot_id: str
    path: Path
    manifest: dict[str, Any]
    generation: int
    pointer: FakePointer | None = None


class FakeIndex:
    """Answers every search with one passage naming its snapshot; fails loudly once closed."""

    def __init__(self, path: Path, snapshot_id: str, search_delay: float = 0.0) -> None:
        self.path = path
        self.snapshot_id = snapshot_id
        self.search_delay = search_delay
        self.closed = False

    def search(self, question: str, k: int = 5) -> list[Passage]:
        if self.closed:
            raise RuntimeError(f"search on closed index {self.snapshot_id}")
        if not self.path.exists():
            raise RuntimeError(f"index directory of {self.snapshot_id} was deleted under a reader")
        time.sleep(self.search_delay)
        if self.closed:
            raise RuntimeError(f"index {self.snapshot_id} closed during a search")
        return [
            Passage(
                chunk_id=f"{self.snapshot_id}-1",
                text=f"snapshot {self.snapshot_id} says hello about {question}",
                url=f"https://docs.example.com/{self.snapshot_id}",
                title=f"Page of {self.snapshot_id}",
                anchor="",
                source="docs",
                score=0.9,
            )
        ][:k]

    def chunk_count(self) -> int:
        return 3

    def counts_by_source(self) -> dict[str, int]:
        return {"docs": 3}

    def close(self) -> None:
        self.closed = True


class FakeStore:
    """A pointer that tests move with :meth:`publish`; restores write a marker file into dest_root.

    ``broken`` snapshots always fail; one in ``unavailable`` fails that many more times, then restores
    (a Cloud Storage blip). ``attempted`` lists every snapshot a restore tried, in order.
    """

    def __init__(self) -> None:
        self.pointer: FakePointer | None = None
        self.generation = 0
        self.broken: set[str] = set()
        self.unavailable: dict[str, int] = {}
        self.attempted: list[str] = []
        self.restores = 0
        self._lock = threading.Lock()

    def publish(self, snapshot_id: str) -> None:
        with self._lock:
            previous = [self.pointer.snapshot_id, *self.pointer.previous] if self.pointer else []
            self.pointer = FakePointer(snapshot_id, previous[:6])  # as the real store keeps 7
            self.generation += 1

    def close(self) -> None:
        pass

    def read_pointer(self) -> tuple[FakePointer | None, int]:
        with self._lock:
            return self.pointer, self.generation

    def rollback(self, snapshot_id: str) -> None:
        with self._lock:
            assert self.pointer is not None
            previous = [self.pointer.snapshot_id, *self.pointer.previous]
            self.pointer = FakePointer(snapshot_id, [p for p in previous if p != snapshot_id])
            self.generation += 1

    def restore(self, dest_root: Path, *, stop_at: str | None = None) -> FakeRestored | None:
        self.restores += 1
        with self._lock:
            pointer, generation = self.pointer, self.generation
        if pointer is None:
            return None
        candidates = [pointer.snapshot_id, *pointer.previous]
        if stop_at in candidates:
            candidates = candidates[: candidates.index(stop_at)]
            if not candidates:
                return None
        for candidate in candidates:
            self.attempted.append(candidate)
            if candidate in self.broken:
                continue
            if self.unavailable.get(candidate, 0) > 0:
                self.unavailable[candidate] -= 1
                continue
            path = dest_root / candidate
            path.mkdir(parents=True)
            (path / "chroma.sqlite3").write_text(candidate)
            return FakeRestored(candidate, path, {"id": candidate}, generation, pointer)
        raise RuntimeError("every snapshot failed verification")
