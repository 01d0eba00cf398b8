"""How a platform fails: its API calls (and which failures are worth another try), its checks, its jobs.

* :class:`PlatformError` is the one exception type callers of the API clients catch
  (``shared/bots/platforms/*_api.py``). Its message never contains the URL, because Telegram puts the
  bot token in the URL and Discord puts the interaction token there; it is safe to log and to show to
  the bot's owner.
* :class:`RetryPolicy` says how often and how long to retry 429 / 5xx / network failures; a 429 that
  asks for a longer wait than the policy allows becomes :class:`RateLimited`, so a queue worker can hand
  the job back instead of holding a request open.
* :class:`InvalidRegistration` (what the owner typed is wrong) and :class:`PlatformUnreachable` (the
  platform could not be asked) are a platform's verdict on a registration; the control plane answers
  them 400 and 502.
* :class:`Unanswerable`: a job that can never be answered (no chat, no token); the worker drops it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from shared.backoff import exponential

log = logging.getLogger(__name__)
T = TypeVar("T")


class PlatformError(RuntimeError):
    """A platform API call failed. Safe to log and to show to the bot's owner.

    ``status`` is the HTTP status (0 for a network failure), ``code`` the platform's error code if any,
    ``retry_after`` the seconds the platform asked us to wait (429), ``platform`` the platform's name.
    """

    def __init__(
        self,
        message: str,
        *,
        platform: str,
        status: int = 0,
        code: int | str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.platform = platform
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def unauthorized(self) -> bool:
        """The token was rejected (revoked, mistyped): retrying will not help. (Telegram's 404 for a
        malformed token arrives as 401: its client maps it.)"""
        return self.status in (401, 403)

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500


class RateLimited(PlatformError):
    """429 that outlasted the retry budget; ``retry_after`` says when to try again (e.g. nack a job)."""


@dataclass
class RetryPolicy:
    """Retries for 429 (wait ``retry_after``) and 5xx / network errors (exponential backoff).

    ``max_wait`` caps one 429 wait: a longer ``retry_after`` raises :class:`RateLimited` immediately so
    a queue worker can hand the job back instead of holding a request open.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_wait: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, attempt: int, error: PlatformError) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1-based), or None to give up."""
        if attempt >= self.attempts or not error.retryable:
            return None
        if error.status == 429:
            wait = error.retry_after if error.retry_after is not None else self.backoff
            return None if wait > self.max_wait else wait
        return exponential(attempt - 1, self.backoff, cap=self.max_backoff)

    def run(self, call: Callable[[], T], platform: str, what: str) -> T:
        """``call()`` until it succeeds or :meth:`delay` gives up (a 429 then is :class:`RateLimited`)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except PlatformError as error:
                wait = self.delay(attempt, error)
                if wait is None:
                    if error.status == 429:
                        raise RateLimited(
                            error.message,
                            platform=platform,
                            status=429,
                            code=error.code,
                            retry_after=error.retry_after,
                        ) from None
                    raise
                log.info("%s %s failed (%s); retrying in %.2fs", platform, what, error.message, wait)
                self.sleep(wait)


class InvalidRegistration(ValueError):
    """What the owner gave cannot register this bot; the message says why and is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PlatformUnreachable(RuntimeError):
    """The platform could not be asked to check a registration; the message is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unanswerable(Exception):
    """A job that can never be answered (no chat, no token, no interaction token): drop it."""
