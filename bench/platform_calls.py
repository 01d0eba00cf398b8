"""Per-call latency of a Telegram API call on loopback: sendMessage against the fake Telegram.

Usage: .venv/bin/python bench/platform_calls.py [N] [RUNS]   (defaults 200 calls, 5 runs)

Rows:

* ``TelegramClient (PTB Bot, process loop)``: the client botrunner uses
  (:mod:`shared.bots.platforms.telegram_api`: python-telegram-bot's ``Bot`` on the process's event loop,
  called from a synchronous thread), keep-alive;
* ``bare httpx, keep-alive``: the same request as a plain JSON POST on a pooled ``httpx.Client`` with
  TCP_NODELAY, i.e. what the hand-written client it replaced did: the difference between the two rows
  is what PTB and the thread hop cost per call;
* ``bare httpx, new connection per call``: why the pools matter.

Prints the median over RUNS of each run's p50 / p99. Targets: the PTB client's p50 < 30 ms (Nagle +
delayed ACK, when either end leaves TCP_NODELAY off, makes it ~40 ms), and its p50 at most 8.7 ms above
the bare client's: 10 % of the Telegram message → reply p50 (87 ms, ``bench/webhooks.py``), one
sendMessage per answer. The suite checks the behaviour behind the figures (one connection, TCP_NODELAY
on) in ``tests/test_fake_platforms.py``; this script measures the speed.

Measured on the 2-core dev machine while other sessions' tests ran (load average 7), N=200, 7 runs:
PTB client 1.33 / 6.3 ms, bare httpx keep-alive 0.52 / 0.98 ms, new connection per call 0.73 / 1.4 ms:
+0.81 ms per call for PTB (an earlier run at load 2.5: +0.63 ms).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: tests/ is importable

import httpx

from shared.bots.platforms.telegram_api import TelegramClient
from shared.bots.transport import SOCKET_OPTIONS
from tests.fakes.telegram_api import FakeTelegram


def _latencies(call: Callable[[int], object], calls: int) -> list[float]:
    call(-1)  # connect (keep-alive) and warm up
    latencies = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - started)
    return latencies


def _p(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _bare(http: httpx.Client, url: str) -> Callable[[int], object]:
    def call(i: int) -> object:
        body = {"chat_id": 555, "text": f"answer <b>{i}</b>", "parse_mode": "HTML"}
        body["reply_parameters"] = {"message_id": 7, "allow_sending_without_reply": True}
        body["link_preview_options"] = {"is_disabled": True}
        response = http.post(url, json=body)
        assert response.json()["ok"] is True
        return response

    return call


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    ptb_row, bare_row, fresh_row = (
        "TelegramClient (PTB Bot, process loop)",
        "bare httpx, keep-alive",
        "bare httpx, new connection per call",
    )
    rows: dict[str, list[tuple[float, float]]] = {ptb_row: [], bare_row: [], fresh_row: []}
    with FakeTelegram() as tg:
        token = tg.add_bot()
        url = f"{tg.base_url}/bot{token}/sendMessage"
        client = TelegramClient(token, tg.base_url)

        def ptb(i: int) -> object:
            return client.send_message(555, f"answer <b>{i}</b>", parse_mode="HTML", reply_to_message_id=7)

        for _ in range(runs):
            result = _latencies(ptb, calls)
            rows[ptb_row].append((_p(result, 0.5), _p(result, 0.99)))
            pooled = httpx.HTTPTransport(retries=0, socket_options=SOCKET_OPTIONS)
            with httpx.Client(transport=pooled) as http:
                result = _latencies(_bare(http, url), calls)
            rows[bare_row].append((_p(result, 0.5), _p(result, 0.99)))
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            fresh = httpx.HTTPTransport(retries=0, limits=no_reuse, socket_options=SOCKET_OPTIONS)
            with httpx.Client(transport=fresh) as http:
                result = _latencies(_bare(http, url), calls)
            rows[fresh_row].append((_p(result, 0.5), _p(result, 0.99)))
    width = max(len(k) for k in rows)
    print(f"{'sendMessage on loopback':<{width}}  p50 / p99 (median of {runs} runs of {calls} calls)")
    p50 = {}
    for name, figures in rows.items():
        p50[name] = statistics.median(f[0] for f in figures)
        p99 = statistics.median(f[1] for f in figures)
        print(f"{name:<{width}}  {p50[name]:.2f} / {p99:.2f} ms")
    overhead = p50[ptb_row] - p50[bare_row]
    print(f"{'PTB overhead per call (p50)':<{width}}  {overhead:+.2f} ms (budget +8.7 ms)")
    sys.exit(0 if p50[ptb_row] < 30 and overhead <= 8.7 else 1)


if __name__ == "__main__":
    main()
