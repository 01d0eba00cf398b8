"""``POST /worker/push``: the Pub/Sub push endpoint that answers bot jobs (blueprint ``bp``).

Thin on purpose: authenticate the push, hand the body to :class:`shared.bots.worker.BotWorker`, return
its status (2xx = ack, 503 = redeliver later; the table is in :mod:`shared.bots.worker`).

Authentication (``settings.internal_auth``):

* ``google-oidc`` (production): the push subscription signs each request with a Google ID token for
  the service account ``settings.worker_push_service_account`` and audience
  ``settings.worker_push_audience``. The token's signature (Google's public certificates, cached), issuer,
  audience, expiry, ``email`` and ``email_verified`` are all checked; anything else is 401/403. Cloud Run
  IAM (invoker) is the first gate, this is the second: botrunner also serves the control plane, so being
  able to reach it must not be enough to inject jobs.
* ``none`` (local stack, tests: the Pub/Sub emulator sends no token): no check.

The worker is built lazily, once per process (gunicorn forks after import and gRPC channels do not
survive a fork); tests may install their own under ``app.extensions["askbase.worker"]``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import httpx
from flask import Blueprint, Response, current_app, jsonify, request
from google.auth import exceptions as gauth_exc
from google.auth import jwt

from shared.bots.worker import BotWorker, build_worker
from shared.config import Settings, get_settings

log = logging.getLogger(__name__)

bp = Blueprint("worker", __name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
CERTS_TTL_SECONDS = 3600.0
EXTENSION_KEY = "askbase.worker"
AUTH_EXTENSION_KEY = "askbase.push_auth"
MAX_PUSH_BYTES = 1_000_000  # a job is a few KB; Pub/Sub messages are at most 10 MB


class PushAuthError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PushAuthenticator:
    """Verifies the Google-signed OIDC token on a push request. Thread-safe; certificates cached."""

    def __init__(
        self,
        audience: str,
        service_account: str,
        certs_url: str = GOOGLE_CERTS_URL,
        fetch_certs: Any = None,
    ) -> None:
        if not audience or not service_account:
            raise ValueError(
                "internal_auth=google-oidc needs ASKBASE_WORKER_PUSH_AUDIENCE and "
                "ASKBASE_WORKER_PUSH_SERVICE_ACCOUNT"
            )
        self._audience = audience
        self._email = service_account.lower()
        self._certs_url = certs_url
        self._fetch = fetch_certs or self._fetch_certs
        self._certs: dict[str, str] = {}
        self._certs_until = 0.0
        self._lock = threading.Lock()

    def _fetch_certs(self) -> dict[str, str]:
        response = httpx.get(self._certs_url, timeout=10.0)
        response.raise_for_status()
        return dict(response.json())

    def _certificates(self, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if refresh or not self._certs or self._certs_until < time.monotonic():
                self._certs = self._fetch()
                self._certs_until = time.monotonic() + CERTS_TTL_SECONDS
            return self._certs

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or :class:`PushAuthError` (401 no/bad token, 403 wrong caller)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise PushAuthError(401, "missing bearer token")
        token = authorization[7:].strip()
        try:
            header = jwt.decode_header(token)
        except (ValueError, gauth_exc.GoogleAuthError):
            raise PushAuthError(401, "malformed token") from None
        try:
            certs = self._certificates()
            if header.get("kid") not in certs:  # Google rotated its keys since we cached them
                certs = self._certificates(refresh=True)
            claims = jwt.decode(token, certs=certs, audience=self._audience, clock_skew_in_seconds=10)
        except (ValueError, gauth_exc.GoogleAuthError) as exc:
            raise PushAuthError(401, f"invalid token ({type(exc).__name__})") from None
        except httpx.HTTPError:
            raise PushAuthError(503, "cannot fetch Google certificates") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise PushAuthError(401, "wrong issuer")
        if str(claims.get("email", "")).lower() != self._email or not claims.get("email_verified"):
            raise PushAuthError(403, "token is not from the push service account")
        return claims


def _settings() -> Settings:
    configured = current_app.config.get("ASKBASE_SETTINGS")
    return configured if isinstance(configured, Settings) else get_settings()


_build_lock = threading.Lock()


def _per_process(key: str, build: Any) -> Any:
    """``app.extensions[key]``, built once per process (a forked child builds its own)."""
    pid = os.getpid()
    entry = current_app.extensions.get(key)
    if isinstance(entry, tuple) and entry[0] == pid:
        return entry[1]
    if entry is not None and not isinstance(entry, tuple):
        return entry  # installed by a test or the app factory
    with _build_lock:
        entry = current_app.extensions.get(key)
        if isinstance(entry, tuple) and entry[0] == pid:
            return entry[1]
        value = build()
        current_app.extensions[key] = (pid, value)
        return value


def _worker() -> BotWorker:
    return _per_process(EXTENSION_KEY, lambda: build_worker(_settings()))


def _authenticator(settings: Settings) -> PushAuthenticator:
    return _per_process(
        AUTH_EXTENSION_KEY,
        lambda: PushAuthenticator(settings.worker_push_audience, settings.worker_push_service_account),
    )


@bp.post("/worker/push")
def push() -> tuple[Response, int]:
    settings = _settings()
    if settings.internal_auth == "google-oidc":
        try:
            _authenticator(settings).verify(request.headers.get("Authorization"))
        except PushAuthError as exc:
            log.warning("worker push rejected %d: %s", exc.status, exc.reason)
            return jsonify({"error": exc.reason}), exc.status
    if request.content_length is not None and request.content_length > MAX_PUSH_BYTES:
        # Acked (200): an oversized message would be redelivered forever.
        log.warning("worker push dropped: body of %d bytes", request.content_length)
        return jsonify({"status": "too large"}), 200
    outcome = _worker().handle_push(request.get_data(cache=False))
    return jsonify({"status": outcome.reason}), outcome.status
