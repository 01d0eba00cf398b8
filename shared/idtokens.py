"""Google ID tokens: the one verifier for web sign-in and every service-to-service call.

Who sends them in production:

* Google Identity Services posts a sign-in credential to qa (audience: the OAuth client id);
* botrunner's worker calls qa's ``/api/ask`` (audience: qa's URL), qa's bot pages call botrunner's
  control API (audience: botrunner's URL), each with a token from the metadata server;
* Cloud Scheduler calls botrunner's ``/internal/reconcile`` and the scrape function, and Pub/Sub push
  calls ``/worker/push``, each with an OIDC token it mints for a configured service account.

Every check goes through :func:`google.oauth2.id_token.verify_token` (signature, ``aud``, ``exp``/``iat``)
plus an issuer check against ``settings.oidc_issuers`` and ``email_verified``. Only the certificates URL
and the accepted issuers are settings: the production-shaped local stack points them at a loopback
issuer (``shared.devstack.issuer``) so tests exercise this same code, not a swapped-in verifier.

Cost control, because qa is public and anyone can send ``Authorization: Bearer x``:

* a token that is not a well-formed RS256 JWT with a ``kid`` is refused before any network call;
* certificates are fetched once and cached (Google rotates them about daily and publishes a new key
  well before using it); a ``kid`` not in the cache triggers at most one refresh per
  :data:`UNKNOWN_KID_REFRESH_SECONDS`, so a flood of forged tokens cannot turn into a flood of fetches.

Authorization is per route: :meth:`TokenVerifier.service_caller` takes the list of service accounts
allowed on that route, and an empty list allows nobody (fail closed). Private routes call it through
:func:`require_service_caller`, which skips the check when ``internal_auth`` is ``none``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 8192  # Google ID tokens are ~1 KB; anything this long is not one
CERTS_TTL_SECONDS = 3600.0
UNKNOWN_KID_REFRESH_SECONDS = 60.0
CLOCK_SKEW_SECONDS = 10


class TokenError(Exception):
    """A token was refused. ``status`` is the HTTP answer (401 unproven, 403 proven but not allowed,
    503 certificates unreachable); ``reason`` is safe to log and never contains the token."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Response:
    """The shape google.oauth2.id_token expects from a transport response."""

    status: int
    data: bytes
    headers: Mapping[str, str]


class _CachedCerts:
    """A google-auth transport ``Request`` that serves the certificates URL from a per-process cache.

    ``id_token.verify_token`` fetches the certificates on every call; handing it this callable keeps
    that code path while turning the fetch into a dictionary read.
    """

    def __init__(self, certs_url: str, fetch: Any = None) -> None:
        self._url = certs_url
        self._fetch = fetch or self._http_get
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at = 0.0
        self.fetches = 0  # observable by tests: how many network fetches happened

    @staticmethod
    def _http_get(url: str) -> bytes:
        from google.auth.transport import requests as google_requests

        response = google_requests.Request()(url, method="GET", timeout=10)
        if response.status != 200:
            raise TokenError(503, f"certificates answered {response.status}")
        return bytes(response.data)

    def _refresh_locked(self) -> None:
        body = self._fetch(self._url)
        try:
            kids = frozenset(json.loads(body))
        except (ValueError, TypeError):
            raise TokenError(503, "certificates endpoint sent no JSON object") from None
        self._body, self._kids, self._fetched_at = body, kids, time.monotonic()
        self.fetches += 1

    def ensure_kid(self, kid: str) -> None:
        """Make sure the cache is fresh enough to judge ``kid``; raise 401 if it is unknown."""
        with self._lock:
            now = time.monotonic()
            stale = self._body is None or now - self._fetched_at > CERTS_TTL_SECONDS
            # An unknown kid: Google may have rotated keys since we cached them.
            unknown = kid not in self._kids and now - self._fetched_at > UNKNOWN_KID_REFRESH_SECONDS
            if stale or unknown:
                try:
                    self._refresh_locked()
                except Exception as exc:
                    reason = exc.reason if isinstance(exc, TokenError) else type(exc).__name__
                    if self._body is None:
                        raise TokenError(503, f"cannot fetch certificates ({reason})") from None
                    # Keep judging with the keys we have (Google publishes a new key well before it
                    # signs with it) and try again in a minute, rather than failing every request.
                    log.warning("certificate refresh failed (%s): using the cached keys", reason)
                    self._fetched_at = now - CERTS_TTL_SECONDS + UNKNOWN_KID_REFRESH_SECONDS
            if kid not in self._kids:
                raise TokenError(401, "token signed by an unknown key")

    def __call__(self, url: str, method: str = "GET", **_: Any) -> _Response:
        if url != self._url or self._body is None:
            raise TokenError(503, "unexpected certificate request")
        return _Response(200, self._body, {})


def _b64json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def token_key_id(token: str) -> str:
    """The ``kid`` of a well-formed RS256 JWT, or :class:`TokenError` (401) without any network call."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenError(401, "malformed token")
    try:
        header = _b64json(token.split(".", 1)[0])
    except (ValueError, UnicodeError, binascii.Error):
        raise TokenError(401, "malformed token") from None
    kid = header.get("kid")
    if header.get("alg") != "RS256" or not isinstance(kid, str) or not kid:
        raise TokenError(401, "token is not an RS256 token with a key id")
    return kid


class TokenVerifier:
    """Verifies Google-style ID tokens against one certificates URL and issuer list. Thread-safe."""

    def __init__(self, certs_url: str, issuers: Collection[str], fetch: Any = None) -> None:
        self.certs_url = certs_url
        self.issuers = frozenset(issuers)
        self._certs = _CachedCerts(certs_url, fetch)

    @property
    def certificate_fetches(self) -> int:
        return self._certs.fetches

    def verify(self, token: str, audience: str | list[str]) -> dict[str, Any]:
        """The claims of a valid token for ``audience``, or :class:`TokenError`."""
        from google.auth import exceptions as gauth_exc
        from google.oauth2 import id_token

        kid = token_key_id(token)
        self._certs.ensure_kid(kid)
        try:
            claims = dict(
                id_token.verify_token(
                    token,
                    self._certs,  # type: ignore[arg-type]
                    audience=audience,
                    certs_url=self.certs_url,
                    clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
                )
            )
        except TokenError:
            raise
        except (ValueError, gauth_exc.GoogleAuthError) as exc:
            raise TokenError(401, f"invalid token ({_short(exc)})") from None
        if claims.get("iss") not in self.issuers:
            raise TokenError(401, "token from an issuer askbase does not accept")
        return claims

    def service_caller(self, authorization: str | None, audience: str, allowed: Collection[str]) -> str:
        """The verified service account behind ``Authorization: Bearer …`` if ``allowed`` lists it.

        401: no token or an invalid one; 403: a valid token of an account not allowed on this route.
        An empty ``allowed`` refuses everyone.
        """
        if not authorization or authorization[:7].lower() != "bearer ":
            raise TokenError(401, "missing bearer token")
        claims = self.verify(authorization[7:].strip(), audience)
        email = str(claims.get("email") or "").lower()
        if not email or claims.get("email_verified") not in (True, "true"):
            raise TokenError(403, "token names no verified account")
        if email not in {a.lower() for a in allowed}:
            raise TokenError(403, f"{email} may not call this route")
        return email

    def sign_in(self, credential: str, client_id: str, allowed_domain: str = "") -> dict[str, Any]:
        """Claims of a Google Sign-In credential for ``client_id`` with a verified email (and, when
        ``allowed_domain`` is set, that Workspace domain in ``hd``)."""
        claims = self.verify(credential, client_id)
        if not claims.get("email") or claims.get("email_verified") not in (True, "true"):
            raise TokenError(403, "the Google account has no verified email")
        # Domain names are case-insensitive (RFC 4343): "Corp.Example" in the stack's config is the
        # domain Google writes as "corp.example" in ``hd``.
        # A value of spaces alone restricts too (it names no domain, so nobody signs in): it must not
        # read as "unset" and open sign-in to every Google account.
        if allowed_domain:
            domain = allowed_domain.strip().lower()
            if not domain or str(claims.get("hd") or "").lower() != domain:
                raise TokenError(403, f"only {domain or repr(allowed_domain)} accounts may sign in")
        return claims


def _short(exc: BaseException) -> str:
    # google-auth messages can quote the token's claims (never the signature); keep the log line short.
    return f"{type(exc).__name__}: {str(exc)[:120]}"


_verifiers: dict[tuple[int, str, frozenset[str]], TokenVerifier] = {}
_verifiers_lock = threading.Lock()


def verifier_for(settings: Settings) -> TokenVerifier:
    """The process-wide verifier for these settings (per PID: a forked worker builds its own cache)."""
    key = (os.getpid(), settings.oidc_certs_url, frozenset(settings.oidc_issuers))
    with _verifiers_lock:
        verifier = _verifiers.get(key)
        if verifier is None:
            verifier = _verifiers[key] = TokenVerifier(settings.oidc_certs_url, settings.oidc_issuers)
        return verifier


def require_service_caller(
    settings: Settings, authorization: str | None, audience: str, allowed: Collection[str]
) -> str | None:
    """The service-to-service check every private route makes, by ``settings.internal_auth``.

    ``google-oidc``: the verified account behind ``authorization`` (:meth:`TokenVerifier.service_caller`
    with ``audience`` and ``allowed``), or :class:`TokenError` (401/403/503) for the caller to answer in
    its own shape. ``none`` (local stack, tests; refused in production): no check, None.
    """
    if settings.internal_auth != "google-oidc":
        return None
    return verifier_for(settings).service_caller(authorization, audience, allowed)


class IdTokenSource:
    """ID tokens for calls this process makes, from the metadata server (google-auth's
    ``fetch_id_token``), reused per audience until a few minutes before they expire. Thread-safe."""

    REUSE_SECONDS = 45 * 60  # Google ID tokens live 60 minutes

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def authorization(self, audience: str) -> str:
        """``Bearer <token>`` for ``audience``; raises whatever google-auth raises when it cannot."""
        with self._lock:
            cached = self._tokens.get(audience)
            if cached is None or cached[0] < time.monotonic():
                import google.auth.transport.requests
                from google.oauth2 import id_token

                token = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
                cached = self._tokens[audience] = (time.monotonic() + self.REUSE_SECONDS, token)
            return f"Bearer {cached[1]}"

    def forget(self, audience: str) -> None:
        """Drop a cached token the callee refused (expired, or the deploy changed the audience)."""
        with self._lock:
            self._tokens.pop(audience, None)
