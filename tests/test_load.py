"""A short bounded load run in the suite: concurrent webhooks and /api/ask, no lost or duplicated reply.

The 60-second, 50-way variant with its figures is ``bench/load.py``.
"""

from __future__ import annotations

import pytest

from shared.emulators import EmulatorStack
from tests.fakes.telegram_api import FakeTelegram
from tests.load_harness import run_load, start_stack

pytestmark = pytest.mark.emulators


def test_concurrent_webhooks_and_questions_lose_and_duplicate_nothing(
    emulators: EmulatorStack, docs_site, tmp_path
) -> None:
    with FakeTelegram() as tg:
        local = start_stack(emulators, tg, docs_site, tmp_path / "stack")
        try:
            report = run_load(local, tg, concurrency=20, seconds=8)
        finally:
            local.kill_services()
    print("\n".join(f"{k}: {v}" for k, v in report.rows()))
    assert report.updates_sent >= 20 and len(report.ask.latencies) >= 20
    assert sum(report.webhook.errors.values()) == 0, report.webhook.errors
    assert sum(report.ask.errors.values()) == 0, report.ask.errors
    # Counted only after every published job was acknowledged by the worker, none still running.
    assert report.unacked == 0 and report.published >= report.updates_sent
    assert report.lost == 0 and report.duplicated == 0
