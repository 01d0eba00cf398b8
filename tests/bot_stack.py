"""Test plumbing for the bot tests: settings pointed at the fakes, bots in the registry, loopback servers.

Used by ``test_webhooks_*``, ``test_worker``, ``test_bot_e2e`` and ``bench/webhooks.py``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from werkzeug.serving import BaseWSGIServer, make_server

from shared.bots.jobs import Job, JobKind
from shared.bots.platforms.telegram_api import TelegramClient
from shared.bots.registry import BotRegistry
from shared.config import Settings, get_settings
from shared.devstack.subscriptions import ensure_topic

ROOT = Path(__file__).resolve().parent.parent


# Firestore not answering, both ways the client reports it: a 503, and its retries' deadline (RetryError
# is a GoogleAPIError but no GoogleAPICallError). For a test taking ``error``.
FIRESTORE_OUTAGES = pytest.mark.parametrize(
    "error",
    [gexc.ServiceUnavailable("firestore is down"), gexc.RetryError("deadline of 15 s exceeded", None)],
    ids=["unavailable", "retry deadline"],
)


def bot_settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    """Re-read settings after setting ``ASKBASE_<KEY>`` for each value (on top of the settings fixture)."""
    for key, value in values.items():
        monkeypatch.setenv("ASKBASE_" + key.upper(), value)
    get_settings.cache_clear()
    return get_settings()


def register_telegram_bot(
    settings: Settings, fake_tg: Any, username: str = "docs_bot", running: bool = True, owner: str = "alice"
) -> tuple[str, str]:
    """A Telegram bot in the registry (as the control plane would create it); returns (bot_id, token)."""
    registry = BotRegistry.from_settings(settings)
    token = fake_tg.add_bot(username=username)
    me = TelegramClient(token, base_url=fake_tg.base_url).get_me()  # as the control plane learns it
    bot_id = registry.new_id()
    registry.create_bot(
        bot_id=bot_id,
        owner=owner,
        owner_email=f"{owner}@example.com",
        platform="telegram",
        name="Docs",
        model="extractive",
        system_prompt="",
        token=token,
        platform_info={"username": me.username, "bot_user_id": me.id},
    )
    if running:
        registry.set_desired(bot_id, "running")
    return bot_id, token


def register_discord_bot(settings: Settings, application: Any, running: bool = True) -> str:
    """A Discord bot in the registry for a FakeDiscord application; returns bot_id."""
    registry = BotRegistry.from_settings(settings)
    bot_id = registry.new_id()
    registry.create_bot(
        bot_id=bot_id,
        owner="alice",
        owner_email="alice@example.com",
        platform="discord",
        name="Docs",
        model="extractive",
        system_prompt="",
        token=application.bot_token,
        platform_info={"application_id": application.id, "public_key": application.public_key},
    )
    if running:
        registry.set_desired(bot_id, "running")
    return bot_id


class LoopbackServer:
    """A WSGI app served by werkzeug on 127.0.0.1 in a daemon thread (threaded: one thread per request)."""

    def __init__(self, app: Any) -> None:
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def function_app(target: str) -> Any:
    """A fresh functions-framework app for one entry point (its module, and so its caches, are new)."""
    import functions_framework

    return functions_framework.create_app(target=target, source=str(ROOT / "functions" / f"{target}.py"))


class JobTap:
    """A pull subscription on the jobs topic: what the webhooks published."""

    def __init__(self, settings: Settings, name: str = "test-tap") -> None:
        self._subscriber = pubsub_v1.SubscriberClient()
        self._publisher = pubsub_v1.PublisherClient()
        self._topic = topic = ensure_topic(self._publisher, settings.project_id, settings.jobs_topic)
        self.path = self._subscriber.subscription_path(settings.project_id, name)
        self._subscriber.create_subscription(request={"name": self.path, "topic": topic})

    def pull(self, expect: int | None = None, wait: float = 1.0) -> list[Job]:
        """Every job available now; with ``expect``, keep pulling until that many or ``wait`` elapsed."""
        jobs: list[Job] = []
        deadline = time.monotonic() + wait
        while True:
            response = self._subscriber.pull(
                request={"subscription": self.path, "max_messages": 100, "return_immediately": True},
                timeout=5,
            )
            if response.received_messages:
                jobs.extend(Job.from_bytes(m.message.data) for m in response.received_messages)
                self._subscriber.acknowledge(
                    request={
                        "subscription": self.path,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
                continue
            if (expect is not None and len(jobs) >= expect) or time.monotonic() > deadline:
                return jobs
            time.sleep(0.05)

    def settled(self, timeout: float = 30.0) -> list[Job]:
        """Every job published before this call, known to be all of them without waiting a fixed time.

        A barrier message is published, then jobs are pulled until it arrives. Sound because the
        webhooks publish before they answer (a request that has returned has published all it will),
        and the Pub/Sub emulator hands a subscription's messages out in the order they were published:
        measured 2026-12-01, 30 rounds of 1-60 messages then a barrier, never a message after it.
        Not arriving within ``timeout`` is a failure, never a conclusion.
        """
        barrier = f"{time.monotonic_ns()}"
        self._publisher.publish(self._topic, b"", barrier=barrier).result(timeout=timeout)
        jobs: list[Job] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self._subscriber.pull(
                request={"subscription": self.path, "max_messages": 100, "return_immediately": True},
                timeout=5,
            )
            messages = response.received_messages
            if messages:
                self._subscriber.acknowledge(
                    request={"subscription": self.path, "ack_ids": [m.ack_id for m in messages]}
                )
            arrived = False
            for m in messages:
                if "barrier" in m.message.attributes:
                    arrived = arrived or m.message.attributes["barrier"] == barrier
                else:
                    jobs.append(Job.from_bytes(m.message.data))
            if arrived:
                return jobs
            time.sleep(0.02)
        raise AssertionError(f"the barrier message did not arrive within {timeout} s")


def push_envelope(job: Job, message_id: str = "1", subscription: str = "local") -> dict[str, Any]:
    """The envelope Pub/Sub would push for ``job``."""
    return {
        "message": {
            "data": base64.b64encode(job.to_bytes()).decode(),
            "attributes": job.attributes(),
            "messageId": message_id,
        },
        "subscription": subscription,
    }


def envelope_bytes(job: Job, message_id: str = "1") -> bytes:
    """The body Pub/Sub would push for ``job``."""
    return json.dumps(
        push_envelope(job, message_id, "projects/askbase-test/subscriptions/jobs-push")
    ).encode()


# --- jobs as the webhooks publish them ------------------------------------------------------------------
def tg_job(bot_id: str, update_id: int = 1, **fields: Any) -> Job:
    """A Telegram question job in private chat 555 (``fields`` override)."""
    values: dict[str, Any] = {
        "job_id": f"telegram:{bot_id}:{update_id}",
        "platform": "telegram",
        "bot_id": bot_id,
        "kind": JobKind.ASK,
        "chat_id": "555",
        "chat_type": "private",
        "message_id": 7,
        "user": "555",
        "question": "How do I deploy?",
    }
    values.update(fields)
    return Job(**values)


def discord_job(
    bot_id: str, app_id: str, token: str, interaction_id: str = "1234567890123456789", **kw: Any
) -> Job:
    """A Discord ``/ask`` job in a guild channel, with interaction ``token`` (``kw`` override)."""
    values: dict[str, Any] = {
        "job_id": f"discord:{bot_id}:{interaction_id}",
        "platform": "discord",
        "bot_id": bot_id,
        "kind": JobKind.ASK,
        "chat_id": "998877665544332211",
        "chat_type": "guild",
        "user": "112233445566778899",
        "question": "How do I deploy?",
        "interaction_token": token,
        "application_id": app_id,
    }
    values.update(kw)
    return Job(**values)
