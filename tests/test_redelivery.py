"""Redelivery in every order: Telegram updates and Pub/Sub jobs sent several times, shuffled, and from
many threads at once, through the real webhook function, Pub/Sub emulator push and worker → exactly one
reply per update and per job."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.bots.jobs import Job, JobKind
from tests.bot_stack import push_envelope
from tests.test_bot_e2e import Stack, _register_telegram

pytestmark = pytest.mark.emulators
pytest_plugins = ["tests.test_bot_e2e"]  # the fakes and the in-process stack fixtures
COPIES = 3


def _replies(running: Stack, token: str) -> Counter:
    return Counter(str(m["chat_id"]) for m in running.tg.sent_messages(token))


def test_updates_redelivered_out_of_order_and_concurrently_get_one_reply_each(stack: Stack) -> None:
    _, token = _register_telegram(stack)
    updates = [
        stack.tg.message_update(7000 + i, f"How do I deploy? #{i}", update_id=9000 + i) for i in range(12)
    ]
    deliveries = [u for u in updates for _ in range(COPIES)]
    random.Random(5).shuffle(deliveries)  # duplicates interleaved, later updates before earlier ones
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda u: stack.tg.send_update(token, u).status_code, deliveries))
    assert set(statuses) == {200}
    # Every job the ingress published (at least one per update, more when copies raced) has been
    # acknowledged by the worker and nothing is running: the reply count is final.
    handled = stack.settle(at_least=len(updates))
    assert _replies(stack, token) == Counter({str(7000 + i): 1 for i in range(12)})
    sent = Counter(d.job_id for d in handled if d.reason == "sent")
    assert sorted(sent.values()) == [1] * 12, sent


def test_jobs_redelivered_out_of_order_and_concurrently_get_one_reply_each(stack: Stack) -> None:
    bot_id, token = _register_telegram(stack)
    jobs = [
        Job(
            job_id=f"telegram:{bot_id}:{8000 + i}",
            platform="telegram",
            bot_id=bot_id,
            kind=JobKind.ASK,
            chat_id=str(6000 + i),
            chat_type="private",
            message_id=i + 1,
            user=str(6000 + i),
            question="How do snapshots work?",
        )
        for i in range(10)
    ]
    deliveries = [(job, n) for job in jobs for n in range(COPIES)]
    random.Random(9).shuffle(deliveries)
    worker = httpx.Client(base_url=stack.botrunner.url, timeout=60)

    def push(item: tuple[Job, int]) -> int:
        job, n = item
        # Each redelivery is a new Pub/Sub message id for the same job, as after a nack or a timeout.
        return worker.post(
            "/worker/push", json=push_envelope(job, message_id=f"{job.job_id}-{n}")
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(push, deliveries))
    # 200 = sent or already sent; 503 = another delivery holds the claim right now (Pub/Sub retries it).
    assert set(statuses) <= {200, 503} and statuses.count(200) >= len(jobs)
    # Redeliver every nacked copy, as Pub/Sub does, until each is acknowledged. Every request above has
    # returned, so no claim is held any more and each redelivery gets its final answer.
    nacked = [item for item, status in zip(deliveries, statuses, strict=True) if status != 200]
    pushed = len(deliveries)
    for _ in range(3):
        pushed += len(nacked)
        nacked = [item for item in nacked if push(item) != 200]
    assert not nacked, f"{len(nacked)} deliveries still refused"
    assert _replies(stack, token) == Counter({str(6000 + i): 1 for i in range(10)})
    outcomes = stack.pushes.snapshot()
    assert len(outcomes) == pushed  # every delivery was answered by the worker, none is running
    sent = Counter(d.job_id for d in outcomes if d.reason == "sent")
    assert sent == Counter({job.job_id: 1 for job in jobs}), sent
