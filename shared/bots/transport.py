"""HTTP plumbing shared by the Telegram and Discord clients: one pooled client, errors, retry policy.

* :func:`http_client` returns the process-wide ``httpx.Client`` (keep-alive pool, TCP_NODELAY). It is
  keyed by PID: gunicorn forks workers after import and a pool inherited across ``fork`` shares sockets
  between processes.
* :class:`PlatformError` is the one exception type callers catch. Its message never contains the URL,
  because Telegram puts the bot token in the URL and Discord puts the interaction token there.
* :class:`RetryPolicy` says how often and how long to retry 429 / 5xx / network failures.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from shared.backoff import exponential

# Without TCP_NODELAY the request body (a second write) waits for the delayed ACK of the headers:
# ~40 ms per call on loopback, measured (see FIELD-NOTES).
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

_lock = threading.Lock()
_clients: dict[int, httpx.Client] = {}


log = logging.getLogger(__name__)
T = TypeVar("T")


def new_http_client(timeout: httpx.Timeout | float = DEFAULT_TIMEOUT) -> httpx.Client:
    """A fresh keep-alive client with TCP_NODELAY (tests and long-polling use their own)."""
    transport = httpx.HTTPTransport(socket_options=_SOCKET_OPTIONS, retries=0)
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20, keepalive_expiry=60),
        headers={"User-Agent": "askbase-bots/0.1"},
    )


def http_client() -> httpx.Client:
    """The shared client of this process (created lazily, one per PID)."""
    pid = os.getpid()
    with _lock:
        client = _clients.get(pid)
        if client is None:
            client = new_http_client()
            _clients.clear()  # drop a parent's client after fork without closing its sockets
            _clients[pid] = client
        return client


class PlatformError(RuntimeError):
    """A platform API call failed. Safe to log and to show to the bot's owner.

    ``status`` is the HTTP status (0 for a network failure), ``code`` the platform's error code if any,
    ``retry_after`` the seconds the platform asked us to wait (429), ``platform`` "telegram"/"discord".
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
        """The token was rejected (revoked, mistyped): retrying will not help."""
        return self.status in (401, 403) or (self.platform == "telegram" and self.status == 404)

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


NO_RETRY = RetryPolicy(attempts=1)
