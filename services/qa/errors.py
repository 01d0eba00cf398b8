"""Error pages a person can act on, and API addresses opened in a browser.

Pages: every HTML error (404, 403, 429, 500, ...) renders ``error.html`` in the app's layout with a
heading in plain words, what probably happened and where to go next (:func:`error_page_info`). The
handlers in ``services/qa/app.py`` and the bot pages only pass the status and, when they have one, a
specific message.

API: ``/api/...`` answers JSON, byte for byte as before, to every client that does not prefer HTML:
``Accept: application/json``, ``*/*`` (curl, ``fetch``, httpx) or no Accept header at all. A browser
that opens such an address (it sends ``Accept: text/html`` before ``*/*``) gets a page saying what the
address is for and, for an error, the API's message, with the same status code (content negotiation,
so the response carries ``Vary: Accept``). Downloads (``Content-Disposition``) are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, render_template, request

API_PREFIX = "/api/"


@dataclass(frozen=True)
class ErrorPageInfo:
    """What an error page says for one status code."""

    heading: str
    explanation: str


_PAGES: dict[int, ErrorPageInfo] = {
    400: ErrorPageInfo(
        "That request didn't work",
        "Something in the address or the form was not what askbase expected. Go back and try again.",
    ),
    401: ErrorPageInfo("Please sign in", "Sign in to use askbase, then open this address again."),
    403: ErrorPageInfo(
        "You can't open this",
        "This page or action is not available to your account. If you think it should be, ask one of "
        "askbase's admins.",
    ),
    404: ErrorPageInfo(
        "Page not found",
        "The address may be mistyped, or what it pointed to (a conversation, a bot) was deleted or "
        "belongs to someone else.",
    ),
    405: ErrorPageInfo(
        "That doesn't work here",
        "This address exists, but not for what the browser asked. Use the links below instead.",
    ),
    413: ErrorPageInfo("That was too large", "What was sent is larger than askbase accepts."),
    429: ErrorPageInfo(
        "Too many requests",
        "You sent a lot of requests in the last minute. Wait a moment, then reload the page.",
    ),
    500: ErrorPageInfo(
        "Something went wrong",
        "askbase hit an unexpected error and logged it. Try again; if it keeps happening, tell your admin.",
    ),
    502: ErrorPageInfo(
        "A service askbase needs did not answer",
        "Telegram, Discord or another part of askbase could not be reached. Try again in a moment.",
    ),
    503: ErrorPageInfo(
        "askbase is not ready",
        "A part of askbase is starting or unavailable. Try again in a minute.",
    ),
}

# What each API address is for, shown when a browser opens it (first match wins).
_API_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^/api/ask$"),
        "answers a question (POST): the chat page and the bots send their questions here.",
    ),
    (
        re.compile(r"^/api/conversations/[^/]+/export$"),
        "downloads one of your conversations as Markdown or JSON.",
    ),
    (re.compile(r"^/api/conversations/[^/]+$"), "returns one of your conversations with its messages."),
    (re.compile(r"^/api/conversations$"), "lists your conversations, newest first, for the history sidebar."),
)


def error_page_info(code: int) -> ErrorPageInfo:
    """The heading and explanation of the error page for ``code`` (a generic one for other codes)."""
    if code in _PAGES:
        return _PAGES[code]
    if code >= 500:
        return _PAGES[500]
    return ErrorPageInfo(f"That didn't work (error {code})", _PAGES[400].explanation)


def prefers_html() -> bool:
    """True when the client ranks HTML above JSON: a browser's navigation, not curl or ``fetch``."""
    accept = request.accept_mimetypes
    return accept.quality("text/html") > accept.quality("application/json")


def api_purpose(path: str) -> str | None:
    """What the API address ``path`` is for, in a sentence fragment, or None when it is unknown."""
    for pattern, purpose in _API_ROUTES:
        if pattern.match(path):
            return purpose
    return None


def _explain_api_response(response: Response) -> Response:
    if not request.path.startswith(API_PREFIX):
        return response
    response.vary.add("Accept")
    if (
        response.mimetype != "application/json"
        or "Content-Disposition" in response.headers
        or response.is_streamed
        or not prefers_html()
    ):
        return response
    data = response.get_json(silent=True)
    message = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), str) else None
    html = render_template(
        "api_page.html",
        code=response.status_code,
        info=error_page_info(response.status_code) if response.status_code >= 400 else None,
        message=message,
        path=request.path,
        purpose=api_purpose(request.path),
        retry_after=response.headers.get("Retry-After"),
    )
    # Changed in place: the security headers already set on this response stay.
    response.set_data(html)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def init_app(app: Flask) -> None:
    """Install the error pages' template helper and the API's browser explanation (which edits the
    response in place, so the headers other ``after_request`` hooks set stay, whatever their order)."""
    app.jinja_env.globals["error_page_info"] = error_page_info

    @app.after_request
    def explain_api_to_browsers(response: Response) -> Any:
        return _explain_api_response(response)
