"""Firestore writes that another transaction's locks can abort: retried, not lost.

A transaction runs until it commits, retried also when a *read* inside it is aborted.

google-cloud-firestore's ``@firestore.transactional`` (2.34) retries an ``Aborted`` raised by the
commit, but an ``Aborted`` raised by a read inside the transaction is rolled back and handed to the
caller. Firestore locks what a transaction reads (server client libraries use pessimistic concurrency),
so two transactions on one document can abort each other's reads with "Transaction lock timeout".
Measured on the Firestore emulator: two turns appended at once to one conversation, each reading a
query inside its transaction, lost a turn on the 2nd of 15 repeated runs before this module existed (the
suite's CI run hit it too); with it, 15 of 15 kept both turns, each aborted read costing the emulator's
~2 s lock timeout.

Every transaction in askbase runs through :func:`run_transaction`, so the body is retried as a whole
with a fresh transaction. A body must therefore be idempotent up to its writes, which Firestore commits
atomically or not at all. Plain idempotent writes to documents a transaction also touches (re-stamping a
conversation's messages, deleting one, a vote's answer getting its vector) go through
:func:`retry_aborted`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from shared.backoff import exponential

if TYPE_CHECKING:
    from google.cloud import firestore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Whole-transaction attempts (each one also gets the library's own commit retries).
ATTEMPTS = 5
#: First wait after an aborted read, doubled per attempt; jitter keeps two losers from meeting again.
BASE_DELAY_S = 0.05


def retry_aborted(
    write: Callable[[], T],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``write()`` until it does not raise ``Aborted``, at most ``attempts`` times; then the last
    ``Aborted`` is raised. Any other exception propagates at once.

    For a transaction (:func:`run_transaction`) and for a plain write that is idempotent (a batch that
    sets or deletes fixed values, an update of fixed fields): a plain write can be aborted too while a
    transaction holds the document (the crash harness sees it on a lease's ``delete()``), and the
    client library retries a commit only on ``ResourceExhausted`` and ``ServiceUnavailable``. A write
    that is not idempotent (an increment) belongs in a transaction.
    """
    from google.api_core import exceptions as gexc

    for attempt in range(attempts):
        try:
            return write()
        except gexc.Aborted as exc:
            if attempt == attempts - 1:
                raise
            delay = exponential(attempt, BASE_DELAY_S, jitter=random.random())  # noqa: S311 (not a secret)
            log.info(
                "Firestore write aborted (%s); attempt %d of %d in %.2f s",
                exc.message,
                attempt + 2,
                attempts,
                delay,
            )
            sleep(delay)
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def run_transaction(
    client: firestore.Client,
    body: Callable[[firestore.Transaction], T],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``body(transaction)`` in a transaction of ``client`` and return what it returns.

    An ``Aborted`` from a read or the commit starts the body again in a new transaction, up to
    ``attempts`` times (:func:`retry_aborted`); then the last ``Aborted`` is raised. Any other exception
    from ``body`` rolls the transaction back and propagates at once (nothing was written).
    """
    from google.cloud import firestore

    transactional = firestore.transactional(body)

    def attempt() -> T:
        result: T = transactional(client.transaction())
        return result

    return retry_aborted(attempt, attempts=attempts, sleep=sleep)
