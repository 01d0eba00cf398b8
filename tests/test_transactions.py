"""run_transaction and retry_aborted against the Firestore emulator: an aborted read starts the body
again; an aborted plain write is sent again."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.config import Settings
from shared.gcp import firestore_client
from shared.transactions import retry_aborted, run_transaction


def _doc(settings: Settings) -> tuple[firestore.Client, firestore.DocumentReference]:
    db = firestore_client(settings.project_id)
    return db, db.collection("transaction_tests").document(uuid.uuid4().hex)


def test_a_read_aborted_inside_the_transaction_runs_the_body_again(emulators, settings: Settings) -> None:
    db, ref = _doc(settings)
    ref.set({"n": 1})
    calls: list[int] = []
    waits: list[float] = []

    def body(transaction: firestore.Transaction) -> int:
        n = int((ref.get(transaction=transaction).to_dict() or {})["n"])
        calls.append(n)
        if len(calls) == 1:
            # What the emulator and Firestore raise from a read that waited on another's lock.
            raise gexc.Aborted("Transaction lock timeout.")
        transaction.update(ref, {"n": n + 1})
        return n + 1

    assert run_transaction(db, body, sleep=waits.append) == 2
    assert calls == [1, 1]
    assert len(waits) == 1 and waits[0] > 0
    assert (ref.get().to_dict() or {})["n"] == 2


def test_aborts_past_the_attempts_raise_and_write_nothing(emulators, settings: Settings) -> None:
    db, ref = _doc(settings)
    waits: list[float] = []

    def body(transaction: firestore.Transaction) -> None:
        ref.get(transaction=transaction)
        transaction.set(ref, {"written": True})
        raise gexc.Aborted("Transaction lock timeout.")

    with pytest.raises(gexc.Aborted):
        run_transaction(db, body, attempts=3, sleep=waits.append)
    assert len(waits) == 2 and waits[0] < waits[1]  # backs off, and not after the last attempt
    assert not ref.get().exists


def test_other_errors_are_not_retried(emulators, settings: Settings) -> None:
    db, ref = _doc(settings)
    calls: list[Any] = []

    def body(transaction: firestore.Transaction) -> None:
        calls.append(ref.get(transaction=transaction))
        transaction.set(ref, {"written": True})
        raise LookupError("the body's own decision")

    with pytest.raises(LookupError):
        run_transaction(db, body, sleep=lambda s: pytest.fail("slept"))
    assert len(calls) == 1
    assert not ref.get().exists


def test_a_plain_write_aborted_by_a_lock_is_sent_again(emulators, settings: Settings) -> None:
    db, ref = _doc(settings)
    ref.set({"title": "old"})
    waits: list[float] = []
    sent: list[int] = []

    def write() -> None:
        sent.append(1)
        if len(sent) == 1:
            raise gexc.Aborted("Transaction lock timeout.")  # what a delete() beside a transaction got
        ref.update({"title": "new"})

    retry_aborted(write, sleep=waits.append)
    assert len(sent) == 2 and len(waits) == 1
    assert (ref.get().to_dict() or {})["title"] == "new"
    with pytest.raises(gexc.NotFound):  # any other error: at once, not again
        missing = db.collection("transaction_tests").document(uuid.uuid4().hex)
        retry_aborted(lambda: missing.update({"title": "new"}), sleep=waits.append)
    assert len(waits) == 1


class _Flaky:
    """A real client whose transactions fail once the way the server can: the commit aborted, or the
    rollback after an aborted read refused (the server dropped the transaction)."""

    def __init__(self, db: firestore.Client, part: str) -> None:
        self.db, self.part, self.failed = db, part, False

    def transaction(self, **options: Any) -> firestore.Transaction:
        transaction = self.db.transaction(**options)
        if not self.failed:
            self.failed = True
            real = getattr(transaction, self.part)

            def fail(*args: Any, **kwargs: Any) -> Any:
                if self.part == "_rollback":
                    real(*args, **kwargs)
                    raise gexc.InvalidArgument("The referenced transaction has expired.")
                raise gexc.Aborted("Transaction lock timeout.")

            setattr(transaction, self.part, fail)
        return transaction


@pytest.mark.parametrize("part", ["_commit", "_rollback"])
def test_an_abort_behind_the_librarys_wrapping_is_retried_with_backoff(
    emulators, settings: Settings, part: str
) -> None:
    db, ref = _doc(settings)
    ref.set({"n": 1})
    waits: list[float] = []
    runs: list[int] = []

    def body(transaction: firestore.Transaction) -> None:
        runs.append(1)
        n = int((ref.get(transaction=transaction).to_dict() or {})["n"])
        if part == "_rollback" and len(runs) == 1:
            raise gexc.Aborted("Transaction lock timeout.")  # the read; its rollback then fails
        transaction.update(ref, {"n": n + 1})

    run_transaction(_Flaky(db, part), body, sleep=waits.append)  # type: ignore[arg-type]
    assert len(runs) == 2 and len(waits) == 1  # once more, after a backoff (not the library's 5 at once)
    assert (ref.get().to_dict() or {})["n"] == 2
