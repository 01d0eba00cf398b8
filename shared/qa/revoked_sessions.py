"""Signed-out browser sessions, so that signing out ends a session on every qa instance.

The session is Flask's signed cookie: clearing it in one browser leaves any copy of it (stolen, or the
same profile synced elsewhere) valid until it expires. So each sign-in mints a random session id kept in
the cookie (:meth:`RevokedSessions.new_session_id`), sign-out records that id here, and every request that
carries a session asks :meth:`RevokedSessions.is_revoked` first.

Firestore: ``revoked_sessions/{sha256 hex of the id}`` with ``revoked_at`` and ``expire_at`` (TTL policy,
``infra/components/data.py``). The raw id is never stored: the collection (and every export or backup
of it) names no live session. ``expire_at`` is when every copy of the cookie would have expired anyway:
Flask re-signs a permanent session's cookie on every response, so a copy is valid for the session
lifetime after its *last use*, and a copy can still be used (and re-signed) for up to
:data:`CACHE_SECONDS` after the sign-out on an instance that had cached the check.

Public API::

    sessions = RevokedSessions(db, session_lifetime=timedelta(days=14))
    sid = RevokedSessions.new_session_id()   # at sign-in, into the cookie
    sessions.revoke(sid)                     # at sign-out; this instance knows at once
    sessions.revoke(sid, best_effort=True)   # one short try (a sign-out finished later)
    sessions.is_revoked(sid)                 # every request with a session: cached CACHE_SECONDS

Both raise the Google API errors of :func:`shared.gcp.unavailable_errors` when Firestore does not
answer; the caller decides what that means (qa: a 503, never a silent pass).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.retry import Retry

from shared.ttl_cache import TtlCache

COLLECTION = "revoked_sessions"

# How long an instance trusts its last answer for one session. A revoked cookie keeps working at most
# this many seconds on an instance that checked it just before the sign-out (the instance that signs
# out knows at once). Short, so a sign-out is over within seconds everywhere; long enough that a busy
# page (the chat's API calls, its static files) costs one Firestore read per session per window.
CACHE_SECONDS = 10.0
# The client's defaults retry a read for up to 300 s and a write for 60 s, each call up to 60 s: the check
# runs on every signed-in request and the sign-out inside one, and qa's Cloud Run request timeout is 60 s
# (infra/components/services.py). Past it the front end answers 504 (no 503 with Retry-After, and a
# sign-out's response that clears the browser's cookie never arrives) while the thread goes on waiting.
# Bounded well inside it, as the bot registry's reads are (shared/bots/registry.py READ_RETRY).
CALL_RETRY = Retry(initial=0.1, maximum=1.0, multiplier=2.0, timeout=8.0)
CALL_TIMEOUT_S = 5.0
# A best-effort revocation (a sign-out Firestore did not take, tried again on a later request of that
# browser) gets one try of this long: the client's default retries for up to 60 s, which would hold
# every request of that browser, and a qa thread, for a minute during an outage.
BEST_EFFORT_TIMEOUT_S = 2.0


def session_key(sid: str) -> str:
    """The document id for a session id: its SHA-256, hex."""
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


class RevokedSessions:
    """The revoked session ids, read through a per-process cache of :data:`CACHE_SECONDS`."""

    def __init__(
        self,
        db: Any,
        session_lifetime: timedelta,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collection = db.collection(COLLECTION)
        self.session_lifetime = session_lifetime
        self.cache_seconds = cache_seconds
        self._cache: TtlCache[str, bool] = TtlCache(cache_seconds, clock=clock)

    @staticmethod
    def new_session_id() -> str:
        """A fresh, unguessable session id (256 bits)."""
        return secrets.token_urlsafe(32)

    def is_revoked(self, sid: str) -> bool:
        """Whether ``sid`` was signed out (as this instance knew it at most ``cache_seconds`` ago)."""
        return self._cache.get(session_key(sid), self._read)

    def revoke(self, sid: str, *, best_effort: bool = False) -> None:
        """Record the sign-out of ``sid``; idempotent. Every instance sees it within ``cache_seconds``,
        this one at once. ``best_effort``: one short try (:data:`BEST_EFFORT_TIMEOUT_S`), no retries."""
        key = session_key(sid)
        now = datetime.now(UTC)
        expire_at = now + self.session_lifetime + timedelta(seconds=self.cache_seconds)
        self._write(key, {"revoked_at": now, "expire_at": expire_at}, best_effort=best_effort)
        self._cache.forget(key)

    def _read(self, key: str) -> bool:
        document = self._collection.document(key)
        return bool(document.get(retry=CALL_RETRY, timeout=CALL_TIMEOUT_S).exists)

    def _write(self, key: str, fields: dict[str, Any], *, best_effort: bool = False) -> None:
        document = self._collection.document(key)
        if best_effort:
            document.set(fields, retry=None, timeout=BEST_EFFORT_TIMEOUT_S)
        else:
            document.set(fields, retry=CALL_RETRY, timeout=CALL_TIMEOUT_S)
