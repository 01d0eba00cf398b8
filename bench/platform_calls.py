"""Per-call latency of a platform API call on loopback: TelegramClient.get_me against the fake Telegram.

Usage: .venv/bin/python bench/platform_calls.py [N] [RUNS]   (defaults 200 calls, 5 runs)

Two rows: one keep-alive connection reused for every call (what the worker's shared client does), and a
new connection per call. Prints the median over RUNS of each run's p50 / p99. Target for keep-alive:
p50 < 30 ms (Nagle + delayed ACK, when either end leaves TCP_NODELAY off, makes it ~40 ms). The
suite checks the behaviour behind the figure (one connection, TCP_NODELAY on) in
``tests/test_fake_platforms.py``; this script measures the speed.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: tests/ is importable

import httpx

from shared.bots.telegram import TelegramClient
from tests.fakes.telegram_api import FakeTelegram


def _run(client: TelegramClient, calls: int) -> list[float]:
    client.get_me()  # connect (keep-alive) and warm up
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        client.get_me()
        latencies.append(time.perf_counter() - started)
    return latencies


def _p(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rows: dict[str, list[tuple[float, float]]] = {"keep-alive": [], "new connection per call": []}
    with FakeTelegram() as tg:
        token = tg.add_bot()
        for _ in range(runs):
            with httpx.Client(transport=httpx.HTTPTransport(retries=0)) as http:
                result = _run(TelegramClient(token, tg.base_url, http=http), calls)
            rows["keep-alive"].append((_p(result, 0.5), _p(result, 0.99)))
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(transport=httpx.HTTPTransport(retries=0, limits=no_reuse)) as http:
                result = _run(TelegramClient(token, tg.base_url, http=http), calls)
            rows["new connection per call"].append((_p(result, 0.5), _p(result, 0.99)))
    width = max(len(k) for k in rows)
    print(f"{'getMe on loopback':<{width}}  p50 / p99 (median of {runs} runs of {calls} calls)")
    for name, figures in rows.items():
        p50 = statistics.median(f[0] for f in figures)
        p99 = statistics.median(f[1] for f in figures)
        print(f"{name:<{width}}  {p50:.2f} / {p99:.2f} ms")
    keep_alive_p50 = statistics.median(f[0] for f in rows["keep-alive"])
    sys.exit(0 if keep_alive_p50 < 30 else 1)


if __name__ == "__main__":
    main()
