"""How long to wait before trying an HTTP call again: the server's ``Retry-After``, or exponential backoff.

One definition for every client that retries: the crawler's HTTP (:mod:`shared.knowledge.fetching`),
the bot platforms' retry policy (:class:`shared.bots.platforms.errors.RetryPolicy`) and Discord's API
client (:mod:`shared.bots.platforms.discord_api`), and the Pub/Sub publisher (:mod:`shared.pubsub`).
"""

from __future__ import annotations

import email.utils
import time


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds, possibly fractional as Discord and
    Telegram send them, or an HTTP date); None if absent or unreadable. Never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):  # since 3.10 an unreadable date raises, never None
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def exponential(attempt: int, base: float, cap: float | None = None, jitter: float = 0.0) -> float:
    """``base * 2**attempt`` (``attempt`` 0-based), plus ``jitter`` (a fraction in [0, 1) of it), at most
    ``cap`` when given."""
    delay: float = base * (2**attempt)
    delay += delay * jitter
    return delay if cap is None else min(cap, delay)
