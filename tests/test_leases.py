"""The scrape lease on the Firestore emulator: exclusive, expiring, renewable, taken over after a crash."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import Settings
from shared.gcp import firestore_client
from shared.knowledge.leases import Lease, LeaseHeld, LeaseLost, LeaseState, lease_available
from shared.knowledge.runs import RunStatus, ScrapeRun, list_runs, new_run, save_run

pytestmark = pytest.mark.emulators


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_lease_available_rule() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert lease_available(None, "a", now)
    assert lease_available(LeaseState("a", now + timedelta(seconds=5)), "a", now)
    assert not lease_available(LeaseState("b", now + timedelta(seconds=5)), "a", now)
    assert lease_available(LeaseState("b", now), "a", now)


def test_exclusive_expiring_lease(emulators, settings: Settings) -> None:
    fs = firestore_client(settings.project_id)
    clock = FakeClock()
    crashed = Lease(fs, ttl_seconds=60, holder="crashed-run", clock=clock)
    crashed.acquire()
    # The holder "crashes": it never renews or releases.
    other = Lease(fs, ttl_seconds=60, holder="next-run", clock=clock)
    with pytest.raises(LeaseHeld, match="crashed-run") as info:
        other.acquire()
    assert info.value.holder == "crashed-run"
    clock.advance(61)
    state = other.acquire()  # expired: taken over
    assert state.holder == "next-run" and other.read().holder == "next-run"
    with pytest.raises(LeaseLost):
        crashed.renew()
    assert crashed.release() is False  # cannot release someone else's lease
    assert other.read().holder == "next-run"
    clock.advance(30)
    assert other.renew().expires_at == clock.now + timedelta(seconds=60)
    assert other.release() is True
    assert other.read() is None


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until true; the timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_background_renewal_keeps_the_lease(emulators, settings: Settings) -> None:
    fs = firestore_client(settings.project_id)
    clock = FakeClock()
    lease = Lease(fs, ttl_seconds=60, holder="long-run", clock=clock)
    assert lease.acquire().expires_at == clock.now + timedelta(seconds=60)
    clock.advance(45)  # most of the TTL later, still running: the renewer must push the expiry
    lease.start_renewing(every_seconds=0.05)
    renewed = clock.now + timedelta(seconds=60)
    _wait_for(lambda: lease.read().expires_at == renewed, "the renewer never renewed the lease")
    lease.check()
    assert lease.read().holder == "long-run" and not lease.lost
    lease.release()
    assert lease.read() is None


def test_renewer_notices_a_lost_lease(emulators, settings: Settings) -> None:
    fs = firestore_client(settings.project_id)
    lease = Lease(fs, ttl_seconds=60, holder="slow-run")
    lease.acquire()
    fs.collection("leases").document("scrape").set({"holder": "thief", "expires_at": datetime.now(UTC)})
    lease.start_renewing(every_seconds=0.05)
    _wait_for(lambda: lease.lost, "the renewer never noticed the lease was taken")
    with pytest.raises(LeaseLost):
        lease.check()
    lease.stop_renewing()
    assert lease.read().holder == "thief"  # the renewer did not take it back


def test_runs_are_recorded_and_listed(emulators, settings: Settings) -> None:
    fs = firestore_client(settings.project_id)
    runs = []
    for i in range(3):
        run = new_run("h")
        run.started_at = datetime(2026, 1, 1, 12, i, tzinfo=UTC)
        run.pages_fetched = i
        save_run(fs, run)
        runs.append(run)
    runs[-1].status = RunStatus.PUBLISHED
    runs[-1].ended_at = runs[-1].started_at + timedelta(seconds=5)
    runs[-1].snapshot_id = "snap"
    save_run(fs, runs[-1])
    listed = list_runs(fs, limit=2)
    assert [r.id for r in listed] == [runs[2].id, runs[1].id]
    assert listed[0].status is RunStatus.PUBLISHED and listed[0].seconds == 5.0
    assert listed[0].to_json()["snapshot_id"] == "snap"
    assert ScrapeRun.from_dict({"id": "x", "started_at": runs[0].started_at, "status": "weird"}).status is (
        RunStatus.FAILED
    )
    with pytest.raises(ValueError):
        list_runs(fs, limit=0)
