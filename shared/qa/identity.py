"""Who is asking: web users (Google Sign-In or the local dev sign-in) and service callers (the bot worker).

Google ID tokens are verified by :mod:`shared.idtokens` (google-auth's ``id_token.verify_token``:
signature against the published certificates, expiry, audience; plus issuer and ``email_verified``).
Web sign-in tokens must be issued to ``google_client_id`` (and, when ``allowed_domain`` is set, carry
that Workspace domain in ``hd``); service tokens must be issued for the Q&A service's own URL by an
account in ``service_callers``. The dev sign-in exists only when settings allow it, which production
never does.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from shared.config import Settings
from shared.idtokens import MAX_TOKEN_CHARS, TokenError, verifier_for

log = logging.getLogger(__name__)

SERVICE_HEADER = "X-Askbase-Service"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


class SignInError(ValueError):
    """The sign-in attempt is refused; the message is safe to show the user."""


class VerificationUnavailable(SignInError):
    """The credential could not be checked now: Google's signing certificates did not answer (the
    verifier's 503). Not the caller's fault, and asking again in a moment may work."""


class SignInDisabled(SignInError):
    """This way of signing in is turned off here (the dev sign-in outside the local stack): the route
    answers as if it did not exist, not as a bad attempt."""


@dataclass(frozen=True)
class User:
    """A signed-in person. ``owner`` is the key their conversations are stored under."""

    email: str
    name: str
    is_admin: bool

    @property
    def owner(self) -> str:
        return f"user:{self.email}"


def make_user(email: str, name: str, settings: Settings) -> User:
    email = email.strip().lower()
    return User(email=email, name=name or email.split("@")[0], is_admin=email in settings.admin_emails)


def dev_sign_in(email: str, settings: Settings) -> User:
    """The local stack's sign-in: anyone is whoever they type. Refused unless ``dev_sign_in`` is on."""
    if not settings.dev_sign_in or settings.is_production:
        raise SignInDisabled("dev sign-in is disabled")
    if not _EMAIL.match(email.strip()):
        raise SignInError("enter an email address like you@example.com")
    return make_user(email, "", settings)


def google_sign_in(credential: str, settings: Settings) -> User:
    """Verify a Google Sign-In ID token and return the user it names."""
    if not settings.google_client_id:
        raise SignInError("Google Sign-In is not configured")
    if not credential or len(credential) > MAX_TOKEN_CHARS:
        raise SignInError("missing or malformed credential")
    try:
        verifier = verifier_for(settings)
        claims = verifier.sign_in(credential, settings.google_client_id, settings.allowed_domain)
    except TokenError as exc:
        log.warning("sign-in refused: %s", exc.reason)
        if exc.status == 403:
            raise SignInError(exc.reason) from None
        if exc.status == 503:
            raise VerificationUnavailable(
                "Google's sign-in could not be checked just now: try again in a minute"
            ) from None
        raise SignInError("the Google credential could not be verified") from None
    return make_user(str(claims["email"]), str(claims.get("name") or ""), settings)


def verify_service_caller(headers: Any, settings: Settings) -> str | None:
    """The calling service's identity (an email or ``botrunner``), or None if this is not a service call.

    Raises :class:`SignInError` when the request claims to be a service but cannot prove it, and
    :class:`VerificationUnavailable` when the proof cannot be checked now.
    """
    auth = headers.get("Authorization", "")
    if settings.internal_auth == "google-oidc":
        if auth[:7].lower() != "bearer ":
            return None
        # qa is public, and anyone can mint a Google ID token for *their* account with our URL as
        # audience: only the configured accounts (botrunner's, as deployed) act as service callers.
        try:
            return verifier_for(settings).service_caller(auth, settings.qa_url, settings.service_callers)
        except TokenError as exc:
            if exc.status == 503:
                raise VerificationUnavailable(exc.reason) from None
            raise SignInError(exc.reason) from None
    # internal_auth == "none": the local stack and tests only (config refuses it in production).
    if headers.get(SERVICE_HEADER) == "botrunner":
        return "botrunner"
    return None
