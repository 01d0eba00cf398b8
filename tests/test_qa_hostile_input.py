"""Hostile input against the Q&A service's HTTP surface on the emulators: non-ASCII CSRF values. Each is
a 4xx, never a 500.

The fixtures are those of tests/test_qa_api.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from shared.config import Settings
from shared.qa.live_index import LiveIndex
from tests.qa_support import ask, fake_live_index, make_app, sign_in

pytestmark = pytest.mark.emulators


@pytest.fixture
def live(tmp_path: Path) -> LiveIndex:
    index, _ = fake_live_index(tmp_path)
    yield index
    index.stop()


@pytest.fixture
def app(emulators, settings: Settings, live: LiveIndex) -> Flask:
    return make_app(settings, live)


# --- CSRF -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sent", ["é", "ünïcode-token", "\u20ac", "токен"])
def test_a_non_ascii_csrf_token_is_403_not_500(app: Flask, sent: str) -> None:
    """hmac.compare_digest refuses a str with non-ASCII characters (TypeError): tokens are compared as
    bytes. In a header, the form field of the dev sign-in, and Google's double-submit cookie and field."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    header = sent.encode().decode("latin-1")  # what a WSGI server hands over for UTF-8 header bytes
    assert ask(client, header, {"question": "hello"}).status_code == 403
    assert client.delete("/api/conversations", headers={"X-CSRF-Token": header}).status_code == 403
    fresh = app.test_client()
    fresh.get("/signin")
    assert fresh.post("/signin/dev", data={"email": "a@example.com", "csrf_token": sent}).status_code == 403
    assert token  # signed in above with the real token: only the wrong ones were refused


@pytest.mark.parametrize(("cookie", "field"), [("abc", "é"), ("été", "abc"), ("été", "été")])
def test_google_sign_in_double_submit_with_non_ascii_values_is_compared_not_500(
    emulators, settings: Settings, live: LiveIndex, cookie: str, field: str
) -> None:
    app = make_app(settings, live, google_client_id="cid.apps.googleusercontent.com")
    client = app.test_client()
    client.set_cookie("g_csrf_token", cookie, domain="localhost")
    response = client.post("/signin/google", data={"credential": "not-a-token", "g_csrf_token": field})
    # Equal values pass the double submit and fail on the credential: 403 either way, never a 500.
    assert response.status_code == 403
