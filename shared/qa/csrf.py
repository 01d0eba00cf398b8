"""CSRF protection for browser requests: a per-session random token, sent back in a header or form field.

The session cookie is SameSite=Lax, which already stops most cross-site POSTs; the token also covers
same-site attackers (another app on a sibling subdomain) and older browsers.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import MutableMapping
from typing import Any

HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
SESSION_KEY = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token(session: MutableMapping[str, Any]) -> str:
    """The session's token, created on first use."""
    value = session.get(SESSION_KEY)
    if not value:
        value = secrets.token_urlsafe(32)
        session[SESSION_KEY] = value
    return str(value)


def same_secret(expected: str, sent: str) -> bool:
    """Whether two secrets are equal, in constant time. Compared as UTF-8 bytes: ``compare_digest`` raises
    TypeError for a str with a non-ASCII character, which any client can put in a header, cookie or
    form field ("surrogatepass": a lone surrogate is just another byte sequence here)."""
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"), sent.encode("utf-8", "surrogatepass")
    )


def valid(session: MutableMapping[str, Any], sent: str | None) -> bool:
    """True when ``sent`` equals the session's token (compared in constant time)."""
    expected = session.get(SESSION_KEY)
    return bool(expected and sent) and same_secret(str(expected), str(sent))
