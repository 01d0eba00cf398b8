"""Who is asking: web users (Google Sign-In or the local dev sign-in) and service callers (the bot worker).

Google ID tokens are verified with google-auth: signature against Google's published keys, expiry,
issuer and audience. Web sign-in tokens must be issued to ``google_client_id`` (and, when
``allowed_domain`` is set, carry that Workspace domain in ``hd``); service tokens must be issued for the
Q&A service's own URL. The dev sign-in exists only when settings allow it, which production never does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.config import Settings

SERVICE_HEADER = "X-Askbase-Service"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")

# (token, request, audience) -> claims; injectable so tests never fetch Google's keys.
TokenVerifier = Callable[[str, Any, str], dict[str, Any]]


class SignInError(ValueError):
    """The sign-in attempt is refused; the message is safe to show the user."""


@dataclass(frozen=True)
class User:
    """A signed-in person. ``owner`` is the key their conversations are stored under."""

    email: str
    name: str
    is_admin: bool

    @property
    def owner(self) -> str:
        return f"user:{self.email}"


def _google_verifier(token: str, request: Any, audience: str) -> dict[str, Any]:
    from google.oauth2 import id_token

    return id_token.verify_oauth2_token(token, request, audience)


def _transport_request() -> Any:
    from google.auth.transport import requests as google_requests

    return google_requests.Request()


def make_user(email: str, name: str, settings: Settings) -> User:
    email = email.strip().lower()
    return User(email=email, name=name or email.split("@")[0], is_admin=email in settings.admin_emails)


def dev_sign_in(email: str, settings: Settings) -> User:
    """The local stack's sign-in: anyone is whoever they type. Refused unless ``dev_sign_in`` is on."""
    if not settings.dev_sign_in or settings.is_production:
        raise SignInError("dev sign-in is disabled")
    if not _EMAIL.match(email.strip()):
        raise SignInError("enter an email address like you@example.com")
    return make_user(email, "", settings)


def google_sign_in(credential: str, settings: Settings, verifier: TokenVerifier | None = None) -> User:
    """Verify a Google Sign-In ID token and return the user it names."""
    if not settings.google_client_id:
        raise SignInError("Google Sign-In is not configured")
    if not credential or len(credential) > 8192:
        raise SignInError("missing or malformed credential")
    verify = verifier or _google_verifier
    try:
        claims = verify(credential, _transport_request(), settings.google_client_id)
    except Exception as exc:
        raise SignInError("the Google credential could not be verified") from exc
    if claims.get("iss") not in ("accounts.google.com", "https://accounts.google.com"):
        raise SignInError("the credential was not issued by Google")
    email = str(claims.get("email") or "")
    if not email or claims.get("email_verified") not in (True, "true"):
        raise SignInError("the Google account has no verified email")
    if settings.allowed_domain and claims.get("hd") != settings.allowed_domain:
        raise SignInError(f"only {settings.allowed_domain} accounts may sign in")
    return make_user(email, str(claims.get("name") or ""), settings)


def verify_service_caller(
    headers: Any, settings: Settings, verifier: TokenVerifier | None = None
) -> str | None:
    """The calling service's identity (an email or ``botrunner``), or None if this is not a service call.

    Raises :class:`SignInError` when the request claims to be a service but cannot prove it.
    """
    auth = headers.get("Authorization", "")
    if settings.internal_auth == "google-oidc":
        if not auth.startswith("Bearer "):
            return None
        verify = verifier or _google_verify_any
        try:
            claims = verify(auth[len("Bearer ") :].strip(), _transport_request(), settings.qa_url)
        except Exception as exc:
            raise SignInError("service token could not be verified") from exc
        email = str(claims.get("email") or "")
        if not email or claims.get("email_verified") not in (True, "true"):
            raise SignInError("service token names no verified account")
        # qa is public, and anyone can mint a Google ID token for *their* account with our URL as
        # audience: only the configured accounts (botrunner's, as deployed), or failing a list any
        # service account of this project, may act as a service caller.
        if settings.service_callers:
            allowed = email.lower() in settings.service_callers
        else:
            allowed = email.endswith(f"@{settings.project_id}.iam.gserviceaccount.com")
        if not allowed:
            raise SignInError("this account may not call the Q&A API as a service")
        return email
    # internal_auth == "none": the local stack and tests only (config refuses it in production).
    if headers.get(SERVICE_HEADER) == "botrunner":
        return "botrunner"
    return None


def _google_verify_any(token: str, request: Any, audience: str) -> dict[str, Any]:
    from google.oauth2 import id_token

    return id_token.verify_token(token, request, audience=audience)
