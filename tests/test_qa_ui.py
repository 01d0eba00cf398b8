"""The web UI's server side on the emulators: the welcome state, history search snippets and rename,
friendly error pages, and ``/api/...`` opened by a browser (an explanation page; JSON for clients)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.config import Settings
from shared.qa.live_index import LiveIndex
from tests.qa_support import ask, fake_live_index, make_app, sign_in

pytestmark = pytest.mark.emulators

# What Chromium sends when it navigates to a page; curl and fetch send */*.
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"}


def _signed_in(app: Flask, email: str = "a@example.com") -> tuple[FlaskClient, str]:
    client = app.test_client()
    return client, sign_in(client, email)


def _ask(client: FlaskClient, token: str, question: str, conversation_id: str | None = None) -> str:
    body = {"question": question} | ({"conversation_id": conversation_id} if conversation_id else {})
    response = ask(client, token, body)
    assert response.status_code == 200, response.json
    return response.json["conversation_id"]


# --- 1. welcome -----------------------------------------------------------------------------------------
def test_a_new_chat_welcomes_with_what_is_indexed_and_a_conversation_does_not(app: Flask) -> None:
    client, token = _signed_in(app)
    html = client.get("/").get_data(as_text=True)
    welcome = html[html.index('id="welcome"') : html.index("</section>", html.index('id="welcome"'))]
    # The fake index: one source "docs" with 3 chunks, a manifest without page counts.
    assert "3 passages" in welcome and "docs" in welcome and "Last updated" in welcome
    assert 'class="starter"' not in welcome  # a stand-in index has no headings: no invented questions
    cid = _ask(client, token, "hello there")
    assert 'id="welcome"' not in client.get(f"/c/{cid}").get_data(as_text=True)


def test_no_welcome_before_the_first_snapshot(emulators, settings: Settings, tmp_path: Path) -> None:
    live, _ = fake_live_index(tmp_path, publish=None)
    try:
        client, _ = _signed_in(make_app(settings, live))
        html = client.get("/").get_data(as_text=True)
        assert "No knowledge yet" in html and 'id="welcome"' not in html
    finally:
        live.stop()


# --- 5. history: snippets, rename, the search kept ----------------------------------------------------------
def test_search_results_say_why_they_matched_and_links_keep_the_search(app: Flask) -> None:
    client, token = _signed_in(app)
    by_text = _ask(client, token, "first question")  # the fake answer quotes the question...
    _ask(client, token, "tell me about zebras", by_text)  # ...so "zebras" is only in the text
    by_title = _ask(client, token, "zebras in the title")
    items = {c["id"]: c for c in client.get("/api/conversations?q=Zebras").json["items"]}
    assert set(items) == {by_text, by_title}
    assert "zebras" in items[by_text]["snippet"] and len(items[by_text]["snippet"]) <= 2 * 60 + 8
    assert "snippet" not in items[by_title]  # the title already shows why
    assert "snippet" not in client.get("/api/conversations").json["items"][0]  # not a search

    html = client.get("/?q=zebras").get_data(as_text=True)
    assert re.search(r'class="history-snippet">[^<]*<mark>zebras</mark>', html)
    assert f'href="/c/{by_text}?q=zebras"' in html
    page = client.get(f"/c/{by_text}?q=zebras").get_data(as_text=True)
    assert 'id="history-q" name="q" type="search" value="zebras"' in page


def test_rename_persists_checks_the_owner_csrf_and_the_title(app: Flask) -> None:
    client, token = _signed_in(app)
    cid = _ask(client, token, "how do snapshots work")
    other = _ask(client, token, "a newer conversation")
    headers = {"X-CSRF-Token": token}

    renamed = client.patch(
        f"/api/conversations/{cid}", json={"title": "  Snapshot\n notes "}, headers=headers
    )
    assert renamed.status_code == 200 and renamed.json["title"] == "Snapshot notes"
    listed = client.get("/api/conversations").json["items"]
    assert [c["id"] for c in listed] == [other, cid]  # renaming does not move it up the history
    assert listed[1]["title"] == "Snapshot notes"
    assert client.get(f"/api/conversations/{cid}").json["title"] == "Snapshot notes"
    assert [c["id"] for c in client.get("/api/conversations?q=snapshot notes").json["items"]] == [cid]
    assert "<title>Snapshot notes · askbase</title>" in client.get(f"/c/{cid}").get_data(as_text=True)

    assert client.patch(f"/api/conversations/{cid}", json={"title": "x"}).status_code == 403  # no CSRF
    for bad in ({"title": "   "}, {"title": "x" * 81}, {"title": 7}, ["x"]):
        response = client.patch(f"/api/conversations/{cid}", json=bad, headers=headers)
        assert response.status_code == 400 and response.json["error"], bad
    assert client.patch("/api/conversations/nope", json={"title": "x"}, headers=headers).status_code == 404

    mallory, mallory_token = _signed_in(app, "mallory@example.com")
    stolen = mallory.patch(
        f"/api/conversations/{cid}", json={"title": "mine now"}, headers={"X-CSRF-Token": mallory_token}
    )
    assert stolen.status_code == 404
    assert client.get(f"/api/conversations/{cid}").json["title"] == "Snapshot notes"
    assert app.test_client().patch(f"/api/conversations/{cid}", json={"title": "x"}).status_code == 401


# --- 6. error pages and content negotiation ----------------------------------------------------------------
def test_error_pages_are_in_the_layout_and_in_words(emulators, settings: Settings, live: LiveIndex) -> None:
    app = make_app(settings, live, rate_limit_per_minute=1)  # reads: 10 a minute

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    client, _ = _signed_in(app, "reader@example.com")
    cases = {
        "/no-such-page": (404, "Page not found", None),
        "/boom": (500, "Something went wrong", None),
    }
    for path, (status, heading, _) in cases.items():
        response = client.get(path, headers=BROWSER)
        html = response.get_data(as_text=True)
        assert response.status_code == status and response.mimetype == "text/html", path
        assert f'<h1 id="error-heading">{heading}</h1>' in html and 'class="topbar"' in html, path
        assert "Back to the chat" in html and "secret detail" not in html, path
    stale_form = client.post("/status/refresh", data={}, headers=BROWSER)
    assert stale_form.status_code == 403
    assert "You can&#39;t open this" in stale_form.get_data(as_text=True)
    assert "reload the page and try again" in stale_form.get_data(as_text=True)  # the view's own message
    for _ in range(12):
        limited = client.get("/status", headers=BROWSER)
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    text = limited.get_data(as_text=True)
    assert "Too many requests" in text and f"about {limited.headers['Retry-After']} seconds" in text
    # A page's error for a client that asks for JSON stays JSON.
    assert client.get("/no-such-page", headers={"Accept": "application/json"}).json == {"error": "not found"}


def test_api_urls_explain_themselves_to_browsers_and_answer_json_to_clients(app: Flask) -> None:
    anonymous = app.test_client()
    page = anonymous.get("/api/conversations", headers=BROWSER)
    text = page.get_data(as_text=True)
    assert page.status_code == 401 and page.mimetype == "text/html"
    assert "Please sign in" in text and "The API answered: sign in first" in text and "/signin" in text
    assert anonymous.get("/api/conversations").json == {"error": "sign in first"}

    client, token = _signed_in(app)
    cid = _ask(client, token, "hello there")
    clients = [
        {},
        {"Accept": "*/*"},
        {"Accept": "application/json"},
        {"Accept": "application/json, text/html"},
    ]
    for headers in clients:
        response = client.get("/api/conversations", headers=headers)
        assert response.mimetype == "application/json" and response.json["items"][0]["id"] == cid, headers
        assert "Accept" in response.headers["Vary"]
    browser = client.get("/api/conversations", headers=BROWSER)
    text = browser.get_data(as_text=True)
    assert browser.status_code == 200 and browser.mimetype == "text/html"
    assert "This address is for programs" in text and "lists your conversations" in text
    assert cid not in text  # an explanation, not the data
    assert "Vary" in browser.headers and browser.headers["Cache-Control"] == "no-store"
    assert browser.headers["Content-Security-Policy"].startswith("default-src 'self'")

    not_allowed = client.get("/api/ask", headers=BROWSER)
    assert not_allowed.status_code == 405 and "answers a question (POST)" in not_allowed.get_data(
        as_text=True
    )
    missing = client.get("/api/nope", headers=BROWSER)
    assert missing.status_code == 404 and "The API answered: not found" in missing.get_data(as_text=True)
    # A download opened from the page's link stays a download.
    export = client.get(f"/api/conversations/{cid}/export?format=json", headers=BROWSER)
    assert export.mimetype == "application/json" and export.headers["Content-Disposition"].startswith(
        "attachment"
    )
