"""Sign-in pages: Google Sign-In (production) and the local dev sign-in (type an email)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, g, make_response, redirect, render_template, request, url_for

from services.qa import auth
from services.qa.app import context
from shared.gcp import UNAVAILABLE_RETRY_AFTER_S, unavailable_errors
from shared.qa import csrf
from shared.qa.identity import (
    SignInDisabled,
    SignInError,
    VerificationUnavailable,
    dev_sign_in,
    google_sign_in,
)

log = logging.getLogger("askbase.qa")

bp = Blueprint("signin", __name__)


def _safe_next(value: str | None) -> str:
    """Only same-site relative paths: an open redirect after sign-in is a phishing aid. Nor one with a
    control character: a line break cannot go into the Location header (werkzeug raises: a 500), and
    browsers drop tabs and line breaks from a URL, which may turn "/\t/host" into "//host"."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return url_for("pages.chat")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return url_for("pages.chat")
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return url_for("pages.chat")
    return value


# Where to go after Google sign-in. Google posts the ID token to the page's login_uri, which must match
# an authorized redirect URI of the OAuth client, so it stays one fixed URL without a query string; the
# page to come back to waits in this cookie instead. Lax is enough: the cookie is read by the top-level
# GET that follows Google's POST (/signin/resume), not by the cross-site POST itself.
NEXT_COOKIE = "askbase_next"
NEXT_COOKIE_SECONDS = 600


@bp.get("/signin")
def page() -> Any:
    target = _safe_next(request.args.get("next"))
    response = make_response(render_template("signin.html", next=target, error=None))
    if target == url_for("pages.chat"):
        # A sign-in opened for the chat must not land on an older visit's page.
        response.delete_cookie(NEXT_COOKIE, path="/signin")
    else:
        response.set_cookie(
            NEXT_COOKIE,
            target,
            max_age=NEXT_COOKIE_SECONDS,
            path="/signin",
            secure=request.is_secure,
            httponly=True,
            samesite="Lax",
        )
    return response


@bp.get("/signin/resume")
def resume() -> Any:
    """After Google sign-in: the page the visitor was sent to sign in from (or the chat)."""
    response = redirect(_safe_next(request.cookies.get(NEXT_COOKIE)))
    response.delete_cookie(NEXT_COOKIE, path="/signin")
    return response


@bp.post("/signin/dev")
def dev() -> Any:
    settings = context().settings
    target = _safe_next(request.form.get("next"))
    try:
        user = dev_sign_in(request.form.get("email", ""), settings)
    except SignInError as exc:
        g.reject_reason = str(exc)
        status = 404 if isinstance(exc, SignInDisabled) else 400
        return render_template("signin.html", next=target, error=str(exc)), status
    auth.sign_in(user)
    return redirect(target)


@bp.post("/signin/google")
@auth.csrf_exempt
def google() -> Any:
    """Google Identity Services posts the ID token here (redirect mode).

    Google's own double-submit CSRF check: the ``g_csrf_token`` cookie must equal the form field.
    """
    settings = context().settings
    cookie = request.cookies.get("g_csrf_token", "")
    field = request.form.get("g_csrf_token", "")
    given = request.form.get("next") or request.args.get("next")
    target = _safe_next(given)
    if not cookie or not csrf.same_secret(cookie, field):
        g.reject_reason = "Google Sign-In CSRF check failed"
        return render_template("signin.html", next=target, error="Sign-in failed, try again."), 403
    try:
        user = google_sign_in(request.form.get("credential", ""), settings)
    except VerificationUnavailable as exc:
        log.warning("POST /signin/google -> 503 credential not checked: %s", exc)
        page = render_template("signin.html", next=target, error=str(exc))
        return page, 503, {"Retry-After": str(auth.VERIFY_RETRY_AFTER_S)}
    except SignInError as exc:
        g.reject_reason = str(exc)
        return render_template("signin.html", next=target, error=str(exc)), 403
    auth.sign_in(user)
    return redirect(target if given else url_for("signin.resume"))


# Shown when the sign-out could not be recorded: this browser is signed out, other copies are not.
SIGNOUT_UNRECORDED = (
    "You are signed out in this browser, but askbase could not record the sign-out just now: until it "
    "does, the session may still be open on other devices or browsers that share it. This browser "
    "records it at its next visit to askbase, for example by opening the sign-in page in a minute."
)


@bp.post("/signout")
@auth.ends_session
def signout() -> Any:
    try:
        auth.sign_out()
        response = redirect(url_for("signin.page"))
    except unavailable_errors() as exc:
        # The user is gone from the cookie all the same (a shared computer must not stay signed in),
        # which keeps the id to finish later (auth.finish_pending_sign_out); the user is told the
        # sign-out is not over everywhere yet, with a 503 rather than a success.
        log.warning("POST /signout -> 503 sign-out not recorded: %s", exc)
        page = render_template("error.html", code=503, message=SIGNOUT_UNRECORDED)
        response = make_response(page, 503, {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})
    # The tab's storage holds this user's failed questions (chat.js): the next person to sign in on
    # this browser must not find them.
    response.headers["Clear-Site-Data"] = '"storage"'
    return response
