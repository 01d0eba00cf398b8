"""Who is calling, for every request: a signed-in browser user, a service (the bot worker), or nobody.

Browser state lives in Flask's signed session cookie (``askbase_session``: HttpOnly, SameSite=Lax,
Secure in production). Each sign-in puts a random session id in it; sign-out revokes that id for every
instance (``shared/qa/revoked_sessions.py``), and every request carrying a signed-in session checks it
first (:func:`end_revoked_session`): a revoked one is signed out. Every state-changing browser request
must carry the session's CSRF token in the ``X-CSRF-Token`` header or a ``csrf_token`` form field, or it
gets a 403. Service callers authenticate per request (a Google ID token in production) and have no
session, so CSRF does not apply to them.

For other blueprints: :func:`current_user`, :func:`signed_in_user` (in views only signed-in users
reach), :func:`login_required` (pages: redirect to sign-in), :func:`api_login_required` (JSON 401) and
:func:`csrf_exempt`; :func:`ends_session` marks the sign-out view.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, abort, current_app, g, jsonify, redirect, request, session, url_for
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions

from shared.gcp import unavailable_errors
from shared.qa import csrf
from shared.qa.identity import (
    SignInError,
    User,
    VerificationUnavailable,
    make_user,
    verify_service_caller,
)
from shared.qa.revoked_sessions import RevokedSessions

log = logging.getLogger("askbase.qa")

# Seconds to wait when a credential cannot be checked now (Google's certificates did not answer).
VERIFY_RETRY_AFTER_S = 30

F = TypeVar("F", bound=Callable[..., Any])

SESSION_ID = "sid"  # the session's key for its id (shared/qa/revoked_sessions.py)
# Sign-outs Firestore did not take: the browser keeps their session ids in a cookie of its own, and each
# of its requests tries again (:func:`finish_pending_sign_out`). Not in the session cookie: a response to
# a request sent before the sign-out, arriving after it, sets the whole old session cookie again (Flask
# re-sends a permanent session on every response), which would erase a pending id kept there and sign
# the browser back in. With the ids apart, the next request records the sign-out and the restored
# session is found revoked. It lives as long as a session (a browser closed meanwhile keeps it). An id
# alone grants nothing: it can only end the session it names.
PENDING_COOKIE = "askbase_signout"
MAX_PENDING_SIGN_OUTS = 5  # the newest kept: a cookie stays small whatever happens
_SESSION_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")  # RevokedSessions.new_session_id's alphabet


def current_user() -> User | None:
    """The signed-in browser user, or None."""
    email = session.get("email")
    if not email:
        return None
    from services.qa.app import context

    # Admin rights are re-read from settings on every request, never trusted from the cookie.
    return make_user(email, session.get("name", ""), context().settings)


def signed_in_user() -> User:
    """The signed-in browser user of a view that only signed-in users reach: one behind
    :func:`login_required` or :func:`api_login_required`, or under ``/api/`` (whose check in
    :func:`init_app` answers 401 to anyone else). Reaching here without a user is a bug, not a request
    to answer."""
    user = current_user()
    assert user is not None, "signed_in_user() in a view open to anonymous visitors"
    return user


def service_caller() -> str | None:
    """The authenticated calling service of this request, or None."""
    caller: str | None = g.get("service_caller")  # set by the before_request check of init_app
    return caller


def sign_in(user: User) -> None:
    """Start a fresh session for ``user`` (a new CSRF token too: no fixation across sign-ins). A session
    this browser still holds (someone else signed in on a shared computer, never signed out) is revoked
    first, best effort: a copy of it must not outlive its replacement. Not recorded now, it joins the
    browser's pending sign-outs."""
    replaced = session.get(SESSION_ID) if session.get("email") else None
    session.clear()
    if replaced:
        _revoke_or_keep_pending([str(replaced)])
    session.permanent = True
    session["email"] = user.email
    session["name"] = user.name
    session[SESSION_ID] = RevokedSessions.new_session_id()
    csrf.token(session)


def sign_out() -> None:
    """End the session: cleared in this browser first (whatever happens next), then its id revoked
    for every instance. Raises the storage's unavailable errors when the revocation was not recorded:
    the user is gone from this browser's cookie, which keeps only the id so that its next request
    records the sign-out (:func:`finish_pending_sign_out`); a copy of the cookie elsewhere works until
    then."""
    from services.qa.app import context

    sid = session.get(SESSION_ID)
    session.clear()
    if sid:
        try:
            context().sessions.revoke(str(sid))
        except unavailable_errors():
            _set_pending([*_pending_sign_outs(), str(sid)])
            raise


def _pending_sign_outs() -> list[str]:
    """This browser's sign-outs still to record (this request's changes included)."""
    if "pending_sign_outs" in g:
        return list(g.pending_sign_outs)
    raw = request.cookies.get(PENDING_COOKIE, "")
    return [sid for sid in raw.split(".") if _SESSION_ID_SHAPE.fullmatch(sid)][-MAX_PENDING_SIGN_OUTS:]


def _set_pending(sids: list[str]) -> None:
    g.pending_sign_outs = list(dict.fromkeys(sids))[-MAX_PENDING_SIGN_OUTS:]  # written by init_app's hook


def _revoke_or_keep_pending(sids: list[str]) -> None:
    """Revoke ``sids`` best effort (one short try each); what is not recorded is kept pending."""
    from services.qa.app import context

    left = [*_pending_sign_outs(), *sids]
    try:
        while left:
            context().sessions.revoke(left[0], best_effort=True)
            left.pop(0)
    except (gexc.GoogleAPIError, auth_exceptions.GoogleAuthError) as exc:
        # Any failure, not only "unavailable" (a permission or credentials error too): this runs on
        # requests the user did not make for it, which must not fail because of it.
        log.warning("%s %s: sign-out not recorded yet: %s", request.method, request.path, exc)
    _set_pending(left)


def finish_pending_sign_out() -> None:
    """Record the sign-outs that Firestore did not take at the time, best effort: still unavailable,
    the request goes on (it is not the user's doing) and the next one tries again. Static files do not
    try (a page's dozen assets would each wait on an outage)."""
    if request.endpoint == "static" or not _pending_sign_outs():
        return
    _revoke_or_keep_pending([])


def end_revoked_session() -> None:
    """Sign out this request's session if it was revoked (or predates session ids); a session without
    a user (a visitor's CSRF token only) is left alone.

    Cookies from before session ids (a user but no ``sid``) count as signed out, not as valid until
    they expire: they could never be revoked, and Flask re-signs a permanent session's cookie on every
    response, so a copy in use would never expire. The cost is one more sign-in per user after the
    upgrade.

    Firestore not answering fails closed: the storage's unavailable error propagates (the app's error
    handler answers 503 with Retry-After, a page or JSON), since an unchecked session may be a revoked
    one; the session is not cleared (the outage is not a sign-out), so it works again once Firestore
    answers. Answers cached within ``CACHE_SECONDS`` still serve during an outage.
    """
    if not session.get("email"):
        return
    sid = session.get(SESSION_ID)
    if sid:
        from services.qa.app import context

        if not context().sessions.is_revoked(str(sid)):
            return
        reason = "session was signed out"
    else:
        reason = "session from before session ids"
    # Logged here: the page's redirect (a 302) or the API's 401 that follows says only "not signed in",
    # and a replayed signed-out cookie must be told from an anonymous visitor.
    log.warning("%s %s: %s; treated as signed out", request.method, request.path, reason)
    session.clear()


def login_required(view: F) -> F:
    """Pages: anonymous visitors are redirected to the sign-in page and come back afterwards."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            g.reject_reason = "not signed in"
            return redirect(url_for("signin.page", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def api_login_required(view: F) -> F:
    """JSON endpoints for browsers: anonymous → 401."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            g.reject_reason = "not signed in"
            return jsonify(error="sign in first"), 401
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def service_route(view: F) -> F:
    """Mark a view that service callers (a verified ID token on the service caller list) may use.

    Everywhere else a service token counts for nothing: the request is judged as a browser's (session,
    CSRF), so a service account cannot, say, drive the sign-in or bot pages."""
    view._service_route = True  # type: ignore[attr-defined]
    return view


def ends_session(view: F) -> F:
    """Mark the sign-out view: it is not refused for a revoked session (it ends it anyway)."""
    view._ends_session = True  # type: ignore[attr-defined]
    return view


def csrf_exempt(view: F) -> F:
    """Mark a view that proves its origin another way (Google Sign-In's own double-submit cookie)."""
    view._csrf_exempt = True  # type: ignore[attr-defined]
    return view


def init_app(app: Flask) -> None:
    """Install the per-request identity and CSRF checks and the template globals."""

    @app.before_request
    def identify_and_check_csrf() -> Any:
        from services.qa.app import context

        settings = context().settings
        g.service_caller = None
        try:
            caller = verify_service_caller(request.headers, settings)
        except VerificationUnavailable as exc:
            # A wait, not a bad token: the worker retries either way, but the log must not say forged.
            log.warning("%s %s -> 503 service token not checked: %s", request.method, request.path, exc)
            message = "service credentials cannot be checked right now; try again"
            return jsonify(error=message), 503, {"Retry-After": str(VERIFY_RETRY_AFTER_S)}
        except SignInError as exc:
            g.reject_reason = str(exc)
            return jsonify(error="invalid service credentials"), 401
        view = app.view_functions.get(request.endpoint or "")
        if caller and view is not None and getattr(view, "_service_route", False):
            g.service_caller = caller
            return None
        finish_pending_sign_out()
        if request.endpoint == "static":
            return None  # a stylesheet or script: nobody's data, no session check (no Firestore read)
        if view is None or not getattr(view, "_ends_session", False):
            # Sign-out itself skips the check: it ends the session whatever the check would say (and
            # a copy signed out elsewhere can sign out again rather than meet a CSRF complaint).
            end_revoked_session()
        if request.path.startswith("/api/") and current_user() is None:
            # Every API route needs a caller; saying "sign in" beats a CSRF complaint to a stranger.
            g.reject_reason = "not signed in"
            return jsonify(error="sign in first"), 401
        if request.method in csrf.SAFE_METHODS:
            return None
        if view is not None and getattr(view, "_csrf_exempt", False):
            return None
        sent = request.headers.get(csrf.HEADER)
        if sent is None and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            sent = request.form.get(csrf.FIELD)
        if not csrf.valid(session, sent):
            g.reject_reason = "missing or wrong CSRF token"
            if request.path.startswith("/api/"):
                return jsonify(error="missing or invalid CSRF token; reload the page"), 403
            abort(403, "Your session expired or the form is stale: reload the page and try again.")
        return None

    @app.after_request
    def write_pending_sign_outs(response: Response) -> Response:
        if "pending_sign_outs" not in g:
            return response
        if g.pending_sign_outs:
            response.set_cookie(
                PENDING_COOKIE,
                ".".join(g.pending_sign_outs),
                max_age=int(current_app.permanent_session_lifetime.total_seconds()),
                httponly=True,
                secure=bool(current_app.config["SESSION_COOKIE_SECURE"]),
                samesite="Lax",
            )
        elif PENDING_COOKIE in request.cookies:
            response.delete_cookie(
                PENDING_COOKIE, httponly=True, secure=bool(current_app.config["SESSION_COOKIE_SECURE"])
            )
        return response

    @app.context_processor
    def template_globals() -> dict[str, Any]:
        from services.qa.app import context

        user = current_user()
        nav = [item for item in context().nav if item.shown_to(user)]
        return {
            "current_user": user,
            "csrf_token": lambda: csrf.token(session),
            "nav_items": nav,
            "settings": context().settings,
        }
