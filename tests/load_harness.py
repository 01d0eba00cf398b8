"""A bounded load test on loopback against the real process stack.

``N`` threads deliver Telegram updates to the webhook function for ``seconds`` (each update a new private
chat, so every update must produce exactly one reply), while ``N`` more threads call ``/api/ask`` on the qa
service as the bot worker does. Afterwards the queue is drained: a pull subscription on the jobs topic
(:class:`~tests.fakes.pubsub_push.TopicTap`) lists every message published, a relay in front of the
worker (:class:`~tests.fakes.pubsub_push.PushLog`) records every push delivery and its answer, and the
run waits until each published message was acknowledged with none in flight. Only then, with nothing
left that could still send, are replies counted per chat to find lost and duplicated ones. Used by
``tests/test_load.py`` (short) and ``bench/load.py`` (60 s).
Traffic goes only to 127.0.0.1, and every loop stops by itself.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from werkzeug.serving import WSGIRequestHandler, make_server

from shared.devstack.stack import LocalStack
from shared.devstack.subscriptions import ensure_push_subscription
from shared.emulators import EmulatorStack
from tests import sites
from tests.fakes.pubsub_push import PushLog, TopicTap, forwarding_app
from tests.fakes.telegram_api import FakeTelegram

JOBS_TOPIC = "askbase-jobs"
WORKER_SUBSCRIPTION = "askbase-worker"
# How many jobs a run makes depends on how fast the machine takes webhooks, so the drain's failure
# bound grows with them: this much per accepted update, at least ``drain_timeout``. 586 updates drained
# in 14.3 s here: 0.2 s each is 8x headroom and keeps such a run under pytest-timeout's 300 s.
DRAIN_SECONDS_PER_UPDATE = 0.2
# ...but at most this, so a drain that never ends fails with the harness's counts, not a timeout kill.
DRAIN_GROWTH_CAP_SECONDS = 240.0


@dataclass
class Series:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


@dataclass
class LoadReport:
    seconds: float
    concurrency: int
    webhook: Series
    ask: Series
    updates_sent: int = 0
    replies: int = 0
    lost: int = 0
    duplicated: int = 0
    published: int = 0  # messages on the jobs topic (an update's job may be published more than once)
    deliveries: int = 0  # push deliveries the worker answered, redeliveries included
    unacked: int = 0  # published messages the worker never acknowledged within the drain timeout
    drain_seconds: float = 0.0

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("concurrency (each of webhook, ask)", str(self.concurrency)),
            ("duration", f"{self.seconds:.0f} s"),
            ("webhook deliveries", str(len(self.webhook.latencies) + sum(self.webhook.errors.values()))),
            ("webhook errors", str(sum(self.webhook.errors.values())) + _detail(self.webhook.errors)),
            ("webhook p50 / p99", f"{self.webhook.p50:.1f} / {self.webhook.percentile(0.99):.1f} ms"),
            ("webhook req/s", f"{len(self.webhook.latencies) / self.seconds:.1f}"),
            ("/api/ask requests", str(len(self.ask.latencies) + sum(self.ask.errors.values()))),
            ("/api/ask errors", str(sum(self.ask.errors.values())) + _detail(self.ask.errors)),
            ("/api/ask p50 / p99", f"{self.ask.p50:.1f} / {self.ask.percentile(0.99):.1f} ms"),
            ("/api/ask req/s", f"{len(self.ask.latencies) / self.seconds:.1f}"),
            ("replies expected / received", f"{self.updates_sent} / {self.replies}"),
            ("lost replies", str(self.lost)),
            ("duplicated replies", str(self.duplicated)),
            ("jobs published / worker deliveries", f"{self.published} / {self.deliveries}"),
            ("jobs never acknowledged", str(self.unacked)),
            ("queue drained after", f"{self.drain_seconds:.1f} s"),
        ]


def _detail(errors: Counter[str]) -> str:
    return f" ({dict(errors)})" if errors else ""


def start_stack(
    emulators: EmulatorStack, tg: FakeTelegram, site: sites.FixtureSite, workdir: Path
) -> LocalStack:
    """qa, botrunner and the functions as processes, a published index, the push subscription wired."""
    local = LocalStack(
        workdir=workdir,
        project=emulators.project,
        sources_json=json.dumps([{"name": "docs", "kind": "sitemap", "url": site.url("/sitemap.xml")}]),
        extra_env={
            "ASKBASE_TELEGRAM_API_BASE": tg.base_url,
            "ASKBASE_RATE_LIMIT_PER_MINUTE": "1000000",
            "ASKBASE_SNAPSHOT_POLL_SECONDS": "1",
        },
    )
    local.emulators = emulators
    local.configure()
    local.start_services()
    ensure_push_subscription(
        emulators.project, JOBS_TOPIC, WORKER_SUBSCRIPTION, local.services["botrunner"].url + "/worker/push"
    )
    httpx.post(local.services["scrape"].url, json={}, timeout=300).raise_for_status()
    deadline = time.monotonic() + 120  # until qa serves the published snapshot; bounds a failure only
    while not httpx.get(local.services["qa"].url + "/readyz", timeout=5).json().get("snapshot_id"):
        if time.monotonic() > deadline:
            raise RuntimeError("qa never loaded the published snapshot")
        time.sleep(0.1)
    return local


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:  # no access log per push
        pass


class _Relay:
    """The push subscription's endpoint for a run: a threaded loopback server around ``app``."""

    def __init__(self, app: PushLog) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> _Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def run_load(
    local: LocalStack, tg: FakeTelegram, concurrency: int, seconds: float, drain_timeout: float = 120.0
) -> LoadReport:
    """Run the load; the push subscription goes through a recording relay for the run's duration.

    The queue drain may take ``drain_timeout`` or :data:`DRAIN_SECONDS_PER_UPDATE` per update sent
    (at most :data:`DRAIN_GROWTH_CAP_SECONDS`), whichever is longer."""
    worker_url = local.services["botrunner"].url
    tap = TopicTap(local.project, JOBS_TOPIC)  # before anything is published
    pushes = PushLog(forwarding_app(worker_url))
    with _Relay(pushes) as relay:
        ensure_push_subscription(local.project, JOBS_TOPIC, WORKER_SUBSCRIPTION, relay.url + "/worker/push")
        try:
            return _run_load(local, tg, concurrency, seconds, drain_timeout, tap, pushes)
        finally:
            ensure_push_subscription(
                local.project, JOBS_TOPIC, WORKER_SUBSCRIPTION, worker_url + "/worker/push"
            )
            pushes.app.close()
            tap.delete()


def _run_load(
    local: LocalStack,
    tg: FakeTelegram,
    concurrency: int,
    seconds: float,
    drain_timeout: float,
    tap: TopicTap,
    pushes: PushLog,
) -> LoadReport:
    botrunner = httpx.Client(
        base_url=local.services["botrunner"].url, timeout=30, headers={"X-Askbase-User": "load@example.com"}
    )
    token = tg.add_bot(username="load_bot")
    bot_id = botrunner.post(
        "/api/bots", json={"platform": "telegram", "name": "Load", "token": token}
    ).json()["id"]
    assert botrunner.post(f"/api/bots/{bot_id}/start").status_code == 200

    report = LoadReport(seconds=seconds, concurrency=concurrency, webhook=Series(), ask=Series())
    chat_ids = itertools.count(10_000)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def deliver() -> None:
        while time.monotonic() < stop_at:
            with lock:
                chat = next(chat_ids)
            started = time.monotonic()
            try:
                response = tg.send_update(token, tg.message_update(chat, f"How do I deploy? ({chat})"))
                ok = response.status_code == 200
            except httpx.HTTPError as exc:
                ok, response = False, None
                label = type(exc).__name__
            with lock:
                if ok:
                    report.webhook.latencies.append(time.monotonic() - started)
                    report.updates_sent += 1
                else:
                    report.webhook.errors[str(response.status_code) if response is not None else label] += 1

    qa = httpx.Client(
        base_url=local.services["qa"].url,
        timeout=30,
        limits=httpx.Limits(max_connections=concurrency * 2),
        headers={"X-Askbase-Service": "botrunner"},
    )

    def ask(worker: int) -> None:
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            started = time.monotonic()
            try:
                response = qa.post(
                    "/api/ask",
                    json={
                        "question": "How do I configure sources?",
                        "bot_id": bot_id,
                        "user": f"load:{worker}:{n % 5}",
                    },
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            with lock:
                if status == 200:
                    report.ask.latencies.append(time.monotonic() - started)
                else:
                    report.ask.errors[str(status)] += 1

    threads = [threading.Thread(target=deliver) for _ in range(concurrency)]
    threads += [threading.Thread(target=ask, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)

    # Drained = every message published (at least one per accepted update) acknowledged by the worker,
    # none in flight: then no reply, first or duplicate, can still arrive.
    grown = min(DRAIN_GROWTH_CAP_SECONDS, DRAIN_SECONDS_PER_UPDATE * report.updates_sent)
    drain_timeout = max(drain_timeout, grown)
    drain_started = time.monotonic()
    deadline = drain_started + drain_timeout
    published: dict[str, str | None] = {}
    try:
        published = tap.drain(at_least=report.updates_sent, timeout=drain_timeout)
        pushes.wait_until_acked(published, timeout=max(0.0, deadline - time.monotonic()))
    except AssertionError:
        published = published or dict(tap.published)  # counted below as unacknowledged / lost
    report.drain_seconds = time.monotonic() - drain_started
    report.published = len(published)
    report.deliveries = len(pushes.snapshot())
    report.unacked = len(pushes.unacked(published))
    per_chat = Counter(m["chat_id"] for m in tg.sent_messages(token))
    report.replies = sum(per_chat.values())
    report.duplicated = sum(n - 1 for n in per_chat.values() if n > 1)
    report.lost = report.updates_sent - len(per_chat)
    return report
