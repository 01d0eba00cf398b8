"""A small per-process cache whose entries expire: what a service keeps of a Firestore read for a few
seconds, so a hot document is not read again for every request.

Public API::

    from shared.ttl_cache import TtlCache

    cache: TtlCache[str, Profile | None] = TtlCache(ttl=30.0, cache_none=False)
    cache.get(key, load)     # the cached value while it is fresh, else load(key) (cached, unless None
                             # and cache_none is False: an id unknown now may exist a moment later)
    cache.forget(key)        # the next get reads again

Thread-safe; ``load`` runs outside the lock (two threads missing at once both load, the later write
wins). An exception from ``load`` caches nothing. Bounded: past :data:`MAX_ENTRIES` the whole cache is
dropped and refilled on demand (the keys are ids of a few thousand documents at most, so this is a
guard, not an eviction policy). The clock is injectable (``time.monotonic`` by default) so tests expire
entries without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

MAX_ENTRIES = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values by key, each fresh for ``ttl`` seconds after it was loaded."""

    def __init__(
        self,
        ttl: float,
        *,
        cache_none: bool = True,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.ttl = ttl
        self._cache_none = cache_none
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, load: Callable[[K], V]) -> V:
        """The value of ``key``: cached while fresh, else ``load(key)`` (then cached)."""
        now = self._clock()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load(key)
        if value is not None or self._cache_none:
            with self._lock:
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
                self._entries[key] = (now + self.ttl, value)
        return value

    def forget(self, key: K) -> None:
        """Drop ``key``'s entry: the next :meth:`get` loads it again."""
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
