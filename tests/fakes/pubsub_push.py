"""Watching Pub/Sub push delivery from the test side, so a test can tell when every job was handled.

"No duplicate reply" can only be concluded once nothing is left that could still produce one: every
message published to the jobs topic has been acknowledged by the worker (a 2xx from ``/worker/push``;
a non-2xx is a nack that Pub/Sub redelivers) and no delivery is still running. Two pieces observe that:

* :class:`PushLog` wraps the worker's WSGI app (in-process botrunner: ``app.wsgi_app = PushLog(...)``;
  a process stack: :func:`forwarding_app` behind a loopback server the push subscription points at) and
  records each delivery's Pub/Sub message id, job id, HTTP status and the worker's one-word reason.
* :class:`TopicTap` is a pull subscription on the jobs topic, created before anything is published:
  it receives a copy of every published message, so its message ids are the set to wait for (the
  ingress may publish one update's job more than once; each copy is its own message).

Usage::

    tap = TopicTap(project, "askbase-jobs")               # before the first publish
    ... deliver updates / publish jobs ...
    published = tap.drain()                               # message id -> job id, everything published
    push_log.wait_until_acked(published, timeout=60)      # every copy answered 2xx, none in flight
    assert len(fake.sent_messages(token)) == 1
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from google.cloud import pubsub_v1
from werkzeug.wsgi import get_input_stream

from shared.devstack.subscriptions import ensure_topic

PUSH_PATH = "/worker/push"


@dataclass(frozen=True)
class Delivery:
    """One push request the worker answered."""

    message_id: str
    job_id: str | None
    status: int
    reason: str | None

    @property
    def ack(self) -> bool:
        return 200 <= self.status < 300


def _ids(body: bytes) -> tuple[str, str | None]:
    """(message id, job id) of a push envelope; empty / None where the body is not one."""
    try:
        message = json.loads(body)["message"]
        message_id = str(message.get("messageId") or message.get("message_id") or "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return "", None
    try:
        job_id = json.loads(base64.b64decode(message.get("data") or "")).get("job_id")
    except (ValueError, TypeError, AttributeError, binascii.Error):
        job_id = None
    return message_id, job_id


class PushLog:
    """WSGI middleware recording every ``POST /worker/push`` and its outcome (thread-safe)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.deliveries: list[Delivery] = []
        self._in_flight = 0
        self._cond = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or not environ.get("PATH_INFO", "").endswith(PUSH_PATH):
            return self.app(environ, start_response)
        body = get_input_stream(environ).read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        message_id, job_id = _ids(body)
        status: list[int] = [500]

        def recording_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(status_line.split()[0])
            return start_response(status_line, headers, exc_info)

        with self._cond:
            self._in_flight += 1
        chunks: list[bytes] = []
        try:
            result = self.app(environ, recording_start_response)
            try:
                chunks = list(result)  # the worker's work (and any reply) is done when this returns
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            try:
                reason = json.loads(b"".join(chunks)).get("status")
            except (ValueError, AttributeError):
                reason = None
            with self._cond:
                self.deliveries.append(Delivery(message_id, job_id, status[0], reason))
                self._in_flight -= 1
                self._cond.notify_all()
        return chunks

    # --- reading ------------------------------------------------------------------------------------

    def snapshot(self) -> list[Delivery]:
        with self._cond:
            return list(self.deliveries)

    def reasons(self, job_id: str | None = None) -> list[str | None]:
        """The worker's reason for every delivery (of ``job_id``), in order."""
        return [d.reason for d in self.snapshot() if job_id is None or d.job_id == job_id]

    def unacked(self, message_ids: Iterable[str]) -> set[str]:
        with self._cond:
            acked = {d.message_id for d in self.deliveries if d.ack}
        return set(message_ids) - acked

    def settled(self, message_ids: Iterable[str]) -> bool:
        """Every one of ``message_ids`` was acknowledged, and no delivery is running now."""
        with self._cond:
            return self._settled(set(message_ids))

    def _settled(self, wanted: set[str]) -> bool:
        return self._in_flight == 0 and wanted <= {d.message_id for d in self.deliveries if d.ack}

    def wait_until_acked(self, message_ids: Iterable[str], timeout: float = 60.0) -> list[Delivery]:
        """Block until :meth:`settled`; AssertionError (naming what is missing) after ``timeout``."""
        wanted = set(message_ids)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._settled(wanted):
                left = deadline - time.monotonic()
                if left <= 0:
                    acked = {d.message_id for d in self.deliveries if d.ack}
                    raise AssertionError(
                        f"{len(wanted - acked)} of {len(wanted)} published messages not acknowledged "
                        f"by the worker within {timeout:.0f} s ({self._in_flight} deliveries running)"
                    )
                self._cond.wait(left)
            return list(self.deliveries)


def forwarding_app(target: str, timeout: float = 120.0) -> Callable[..., Iterator[bytes]]:
    """A WSGI app that forwards each POST to ``target`` + path (a worker in another process) and returns
    its answer unchanged: put a :class:`PushLog` around it and point the push subscription at it."""
    client = httpx.Client(base_url=target, timeout=timeout)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        body = get_input_stream(environ).read()
        headers = {"Content-Type": environ.get("CONTENT_TYPE") or "application/json"}
        if environ.get("HTTP_AUTHORIZATION"):
            headers["Authorization"] = environ["HTTP_AUTHORIZATION"]
        try:
            response = client.post(environ.get("PATH_INFO", "/"), content=body, headers=headers)
        except httpx.HTTPError as exc:  # the worker is down: a nack, as Pub/Sub would see it
            start_response("502 Bad Gateway", [("Content-Type", "application/json")])
            return iter([json.dumps({"status": type(exc).__name__}).encode()])
        start_response(
            f"{response.status_code} {response.reason_phrase}",
            [("Content-Type", response.headers.get("content-type", "application/json"))],
        )
        return iter([response.content])

    app.close = client.close  # type: ignore[attr-defined]
    return app


class TopicTap:
    """A pull subscription on ``topic`` that sees a copy of every message published after it exists."""

    def __init__(self, project: str, topic: str, name: str | None = None) -> None:
        self._subscriber = pubsub_v1.SubscriberClient()
        topic_path = ensure_topic(pubsub_v1.PublisherClient(), project, topic)
        self.path = self._subscriber.subscription_path(project, name or f"tap-{uuid.uuid4().hex[:12]}")
        self._subscriber.create_subscription(request={"name": self.path, "topic": topic_path})
        self.published: dict[str, str | None] = {}  # message id -> job id

    def drain(self, at_least: int = 0, timeout: float = 60.0) -> dict[str, str | None]:
        """Pull (and ack) until the subscription is empty and ``at_least`` messages were seen in all.

        Call after every publish that matters has returned: a returned publish is stored in this
        subscription, so an empty pull then means every one of them was counted.
        """
        deadline = time.monotonic() + timeout
        while True:
            response = self._subscriber.pull(
                request={"subscription": self.path, "max_messages": 1000, "return_immediately": True},
                timeout=30,
            )
            received = response.received_messages
            for m in received:
                try:
                    job_id = json.loads(m.message.data).get("job_id")
                except (ValueError, AttributeError):
                    job_id = None
                self.published[m.message.message_id] = job_id
            if received:
                self._subscriber.acknowledge(
                    request={"subscription": self.path, "ack_ids": [m.ack_id for m in received]}
                )
                continue
            if len(self.published) >= at_least:
                return dict(self.published)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the jobs topic got {len(self.published)} messages, expected at least {at_least}"
                )
            time.sleep(0.05)

    def delete(self) -> None:
        self._subscriber.delete_subscription(request={"subscription": self.path})
