"""Bounded load on loopback: 50 concurrent webhook deliveries and 50 concurrent /api/ask for 60 s.

Usage: .venv/bin/python bench/load.py [CONCURRENCY] [SECONDS]   (defaults 50 and 60)
Prints errors, p50/p99 latency, throughput, and lost / duplicated replies (both must be 0).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: tests/ is importable

from shared.emulators import running_stack
from tests import sites
from tests.fakes.telegram_api import FakeTelegram
from tests.load_harness import run_load, start_stack


def main() -> None:
    concurrency = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    site = sites.FixtureSite()
    for path in sites.DOC_PAGES:
        site.set_page(path, sites.page_for(path))
    with (
        running_stack("askbase-load") as stack,
        site,
        FakeTelegram() as tg,
        tempfile.TemporaryDirectory() as tmp,
    ):
        local = start_stack(stack, tg, site, Path(tmp) / "stack")
        try:
            report = run_load(local, tg, concurrency=concurrency, seconds=seconds, drain_timeout=600)
        finally:
            local.kill_services()
    width = max(len(k) for k, _ in report.rows())
    for key, value in report.rows():
        print(f"{key:<{width}}  {value}")
    sys.exit(1 if report.lost or report.duplicated else 0)


if __name__ == "__main__":
    main()
