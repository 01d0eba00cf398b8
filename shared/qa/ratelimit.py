"""Per-user rate limit: a sliding window of request times kept in memory.

The limit is per instance: Cloud Run may run several, so the effective ceiling is ``limit * instances``.
That is enough to stop a runaway client or a bot loop, which is the point; exact global accounting would
need a Firestore write on every question and double the latency.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """``allow(key)`` → ``(allowed, retry_after_seconds)``; at most ``limit`` calls per ``window``."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def allow(self, key: str) -> tuple[bool, int]:
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            self._calls += 1
            if self._calls % 1000 == 0:
                self._sweep(now)
            if len(hits) >= self.limit:
                return False, max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            return True, 0

    def _sweep(self, now: float) -> None:
        # Forget idle users so memory stays bounded by the active ones.
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
            del self._hits[key]
