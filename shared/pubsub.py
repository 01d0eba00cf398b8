"""Publishing to a Pub/Sub topic over its REST API (``topics.publish``), without the gRPC client library.

Why not ``google-cloud-pubsub``: the webhook functions publish one small message per request and
nothing else, and that library costs them more than it gives. Measured on the 2-core build machine
(bench/function_coldstart.py, bench/deployable_sizes.py): importing it adds 0.28 s to every cold start
(the function's deadline clock starts before the import) and, with its OpenTelemetry and IAM
dependencies, 6.6 MB to the installed archive. A JSON POST through google-auth's ``AuthorizedSession``
(requests, already in every deployable) is the same API call: Google documents REST and gRPC as two
transports of one service, and the emulator serves both on one port.

Production: ``https://pubsub.googleapis.com`` with Application Default Credentials (on Cloud Run and
Cloud Functions, the service account's token from the metadata server, refreshed by google-auth).
Locally: ``PUBSUB_EMULATOR_HOST`` (as the client libraries read it), plain HTTP, no credentials; the
topic is created on first use there, as Pulumi creates it in production.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests

from shared.backoff import exponential, parse_retry_after

log = logging.getLogger(__name__)

PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"
GOOGLE_ENDPOINT = "https://pubsub.googleapis.com"
# What Google's client libraries retry for Publish: these statuses are transient by contract.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class PublishError(RuntimeError):
    """The message was not accepted (a permanent error, or transient ones until the deadline)."""


class TopicNotFound(PublishError):
    """The topic does not exist (production: infra was not applied; locally: the emulator was reset)."""


def _session(emulator_host: str | None) -> requests.Session:
    if emulator_host:
        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=[PUBSUB_SCOPE])
    return AuthorizedSession(credentials)


class TopicPublisher:
    """Publishes messages to one topic and waits for the server's message id. Thread-safe (requests'
    connection pool is; the session is only read after construction); build one per process so the
    TLS connection and the access token are reused across requests."""

    def __init__(
        self,
        project: str,
        topic: str,
        *,
        emulator_host: str | None = None,
        session: requests.Session | None = None,
        endpoint: str = GOOGLE_ENDPOINT,
    ) -> None:
        if emulator_host is None:
            emulator_host = os.environ.get("PUBSUB_EMULATOR_HOST")
        self._emulator = emulator_host
        self._base = f"http://{self._emulator}" if self._emulator else endpoint.rstrip("/")
        self.topic_path = f"projects/{project}/topics/{topic}"
        self._session = session or _session(self._emulator)
        self._created = False
        self._lock = threading.Lock()

    def publish(self, data: bytes, attributes: Mapping[str, str], timeout: float = 10.0) -> str:
        """Publish one message; return its Pub/Sub message id. Transient failures (connection errors,
        408/429/5xx) are retried with backoff until ``timeout`` seconds have passed."""
        if self._emulator and not self._created:
            self._ensure_topic()
        message = {"data": base64.b64encode(data).decode(), "attributes": dict(attributes)}
        body: dict[str, Any] = {"messages": [message]}
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                response = self._session.post(
                    f"{self._base}/v1/{self.topic_path}:publish", json=body, timeout=max(0.5, remaining)
                )
            except requests.RequestException as exc:
                reason: str = type(exc).__name__
                wait = exponential(attempt, 0.1, cap=2.0)
            else:
                if response.status_code == 200:
                    ids = response.json().get("messageIds") or []
                    if not ids:
                        raise PublishError("publish returned no message id")
                    return str(ids[0])
                if response.status_code == 404:
                    if self._emulator:
                        # The emulator was reset under us (never in production): recreate, retry.
                        self._created = False
                        self._ensure_topic()
                        continue
                    raise TopicNotFound(self.topic_path)
                if response.status_code not in RETRYABLE_STATUS:
                    raise PublishError(f"publish to {self.topic_path} refused: HTTP {response.status_code}")
                reason = f"HTTP {response.status_code}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                wait = retry_after if retry_after is not None else exponential(attempt, 0.1, cap=2.0)
            if time.monotonic() + wait >= deadline:
                raise PublishError(f"publish to {self.topic_path} failed until the deadline: {reason}")
            log.info("publish to %s: %s, retrying in %.2f s", self.topic_path, reason, wait)
            time.sleep(wait)
            attempt += 1

    def _ensure_topic(self) -> None:
        with self._lock:
            if self._created:
                return
            response = self._session.put(f"{self._base}/v1/{self.topic_path}", json={}, timeout=10)
            # 409: it exists already, which is all we need.
            if response.status_code not in (200, 409):
                status = response.status_code
                raise PublishError(f"cannot create {self.topic_path} on the emulator: HTTP {status}")
            self._created = True
