"""Firestore writes that another transaction's locks can abort: retried, not lost.

google-cloud-firestore's ``@firestore.transactional`` (2.34) retries an ``Aborted`` raised by the
commit (running the body again at once, up to five times, then raising ``ValueError``), but an
``Aborted`` raised by a read inside the transaction is rolled back and handed to the caller, and if
that rollback fails (the server may already have dropped the aborted transaction) the rollback's error
is raised with the ``Aborted`` only in its context. Firestore locks what a transaction reads (server
client libraries use pessimistic concurrency), so two transactions on one document can abort each
other's reads with "Transaction lock timeout". Measured on the Firestore emulator: two turns appended
at once to one conversation, each reading a query inside its transaction, lost a turn on the 2nd of 15
repeated runs before this module existed (the suite's CI run hit it too); with it, 20 of 20 kept both
turns, each aborted read costing the emulator's ~2 s lock timeout.

Every transaction in askbase runs through :func:`run_transaction`: one commit per attempt, and any
abort (read, commit, or hidden behind a failed rollback) starts the body again in a fresh transaction
after a jittered backoff. A body must therefore be idempotent up to its writes, which Firestore commits
atomically or not at all. Plain idempotent writes to documents a transaction also touches (recording an
answer, re-stamping a conversation's messages, deleting one, a vote's answer getting its vector) go
through :func:`retry_aborted`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.backoff import exponential

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Attempts per write or transaction (a transaction commits once per attempt).
ATTEMPTS = 5
#: First wait after an aborted read, doubled per attempt; jitter keeps two losers from meeting again.
BASE_DELAY_S = 0.05
#: Writes per batch commit (Firestore takes at most 500).
BATCH_WRITES = 400


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
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
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
    raise AssertionError("unreachable: the last attempt returns or raises")


def run_transaction(
    client: firestore.Client,
    body: Callable[[firestore.Transaction], T],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``body(transaction)`` in a transaction of ``client`` and return what it returns.

    An ``Aborted`` from a read or the commit starts the body again in a new transaction, up to
    ``attempts`` times (:func:`retry_aborted`); then that ``Aborted`` is raised. Any other exception
    from ``body`` rolls the transaction back and propagates at once (nothing was written).
    """
    transactional = firestore.transactional(body)

    def attempt() -> T:
        try:
            # One commit per attempt, so an aborted commit waits its backoff like an aborted read.
            result: T = transactional(client.transaction(max_attempts=1))
            return result
        except gexc.Aborted:
            raise
        except Exception as exc:
            aborted = aborted_cause(exc)
            if aborted is None:
                raise
            # A new Aborted: re-raising the one inside exc's chain would make the chain a cycle.
            raise gexc.Aborted(aborted.message) from exc  # type: ignore[no-untyped-call]  # untyped __init__

    return retry_aborted(attempt, attempts=attempts, sleep=sleep)


def aborted_cause(exc: BaseException) -> gexc.Aborted | None:
    """The ``Aborted`` behind ``exc``, if any: the library raises ``ValueError`` from an aborted commit
    whose attempts ran out, and a failed rollback's error carries the read's ``Aborted`` as context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, gexc.Aborted):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def delete_all(db: firestore.Client, refs: Iterable[firestore.DocumentReference]) -> int:
    """Delete ``refs`` in batches of :data:`BATCH_WRITES`, each commit through :func:`retry_aborted` (a
    transaction may hold one of the documents); returns how many. ``refs`` may be a lazy stream."""
    count = 0
    batch = db.batch()
    pending = 0
    for ref in refs:
        batch.delete(ref)
        pending += 1
        count += 1
        if pending == BATCH_WRITES:
            retry_aborted(batch.commit)
            batch, pending = db.batch(), 0
    if pending:
        retry_aborted(batch.commit)
    return count
