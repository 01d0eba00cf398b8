"""One scrape at a time: a lease document in Firestore (``leases/<name>``) with an expiry.

The lease is taken in a transaction, so two runs starting together cannot both get it. It expires, so a
run that crashed (or a Cloud Function instance that was killed) blocks the next one for at most the
lease duration; a long run renews it from a background thread. Release deletes the document only if we
still hold it.

Time comes from an injectable clock so tests can let a lease expire without sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

from shared.transactions import run_transaction

log = logging.getLogger(__name__)

COLLECTION = "leases"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_holder() -> str:
    """Who holds the lease, readable in the console: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseHeld(RuntimeError):
    """Another holder has an unexpired lease."""

    def __init__(self, holder: str, expires_at: datetime) -> None:
        super().__init__(f"lease held by {holder} until {expires_at.isoformat()}")
        self.holder = holder
        self.expires_at = expires_at


class LeaseLost(RuntimeError):
    """We no longer hold the lease (it expired and another run took it over)."""


@dataclass(frozen=True)
class LeaseState:
    holder: str
    expires_at: datetime


def lease_available(current: LeaseState | None, holder: str, now: datetime) -> bool:
    """Pure rule: free, expired, or already ours."""
    return current is None or current.holder == holder or current.expires_at <= now


def _state(snapshot: Any) -> LeaseState | None:
    if not snapshot.exists:
        return None
    data = snapshot.to_dict() or {}
    expires = data.get("expires_at")
    if not isinstance(expires, datetime):
        return None  # a malformed lease document is treated as free rather than blocking forever
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return LeaseState(str(data.get("holder", "")), expires)


class Lease:
    """A named lease for one holder. Use :meth:`acquire` / :meth:`renew` / :meth:`release`, or
    :meth:`hold` to renew automatically while a block runs."""

    def __init__(
        self,
        client: firestore.Client,
        name: str = "scrape",
        ttl_seconds: float = 1800,
        holder: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.client = client
        self.name = name
        self.ttl = timedelta(seconds=ttl_seconds)
        self.holder = holder or default_holder()
        self.clock = clock
        self.expires_at: datetime | None = None
        self._ref = client.collection(COLLECTION).document(name)
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self.lost = False

    def read(self) -> LeaseState | None:
        """The lease as stored now (None when nobody holds it)."""
        return _state(self._ref.get())

    def acquire(self) -> LeaseState:
        """Take the lease; raise :class:`LeaseHeld` if someone else holds an unexpired one."""

        def _take(transaction: firestore.Transaction) -> LeaseState:
            now = self.clock()
            current = _state(self._ref.get(transaction=transaction))
            if not lease_available(current, self.holder, now):
                assert current is not None
                raise LeaseHeld(current.holder, current.expires_at)
            if current is not None and current.holder != self.holder:
                log.warning(
                    "taking over expired lease %s from %s (expired %s)",
                    self.name,
                    current.holder,
                    current.expires_at.isoformat(),
                )
            state = LeaseState(self.holder, now + self.ttl)
            transaction.set(
                self._ref, {"holder": state.holder, "expires_at": state.expires_at, "acquired_at": now}
            )
            return state

        state: LeaseState = run_transaction(self.client, _take)
        self.expires_at = state.expires_at
        self.lost = False
        return state

    def renew(self) -> LeaseState:
        """Push the expiry forward; raise :class:`LeaseLost` if the lease is no longer ours."""

        def _renew(transaction: firestore.Transaction) -> LeaseState:
            now = self.clock()
            current = _state(self._ref.get(transaction=transaction))
            if current is None or current.holder != self.holder:
                raise LeaseLost(f"lease {self.name} is now held by {current.holder if current else 'nobody'}")
            state = LeaseState(self.holder, now + self.ttl)
            transaction.update(self._ref, {"expires_at": state.expires_at})
            return state

        state: LeaseState = run_transaction(self.client, _renew)
        self.expires_at = state.expires_at
        return state

    def release(self) -> bool:
        """Give the lease back if we still hold it. True when released."""
        self.stop_renewing()

        def _release(transaction: firestore.Transaction) -> bool:
            current = _state(self._ref.get(transaction=transaction))
            if current is None or current.holder != self.holder:
                return False
            transaction.delete(self._ref)
            return True

        released: bool = run_transaction(self.client, _release)
        self.expires_at = None
        return released

    # --- automatic renewal ----------------------------------------------------------------------------
    def start_renewing(self, every_seconds: float | None = None) -> None:
        """Renew from a daemon thread every ``every_seconds`` (default: a third of the TTL)."""
        if self._renewer is not None:
            return
        interval = every_seconds or self.ttl.total_seconds() / 3
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except LeaseLost as exc:
                    self.lost = True
                    log.error("%s; the run will stop before publishing", exc)
                    return
                except Exception:  # a blip: the next tick tries again well before expiry
                    log.warning("renewing lease %s failed; will retry", self.name, exc_info=True)

        self._renewer = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._renewer.start()

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)
        self._renewer = None

    def check(self) -> None:
        """Raise :class:`LeaseLost` when the renewer found the lease taken over (call before publishing)."""
        if self.lost:
            raise LeaseLost(f"lease {self.name} was lost during the run")
