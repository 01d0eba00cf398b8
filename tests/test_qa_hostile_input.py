"""Hostile input against the Q&A service's HTTP surface on the emulators: ids no Firestore document can
have, non-ASCII CSRF values, JSON Python cannot read. Each is a 4xx with one log line, never a 500.

The fixtures are those of tests/test_qa_api.py.
"""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from shared.config import Settings
from shared.qa.live_index import LiveIndex
from tests.qa_support import ask, make_app, sign_in

pytestmark = pytest.mark.emulators


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


# --- ids ------------------------------------------------------------------------------------------
RESERVED_OR_PATH_LIKE = ["__x__", "__conversation__", ".", ".."]


@pytest.mark.parametrize("cid", RESERVED_OR_PATH_LIKE)
def test_ids_firestore_refuses_are_404_on_every_conversation_route(
    app: Flask, cid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Firestore refuses "__x__" (reserved), "." and ".." (InvalidArgument, a 500 before): no conversation
    has such an id, so each route says it does not exist, with one log line."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    headers = {"X-CSRF-Token": token}
    with caplog.at_level(logging.WARNING, logger="askbase.qa"):
        responses = [
            client.get(f"/api/conversations/{cid}"),
            client.get(f"/api/conversations/{cid}/export"),
            client.patch(f"/api/conversations/{cid}", json={"title": "t"}, headers=headers),
            client.delete(f"/api/conversations/{cid}", headers=headers),
            ask(client, token, {"question": "hi", "conversation_id": cid}),
        ]
    assert [r.status_code for r in responses] == [404] * 5, [r.get_data(as_text=True) for r in responses]
    assert {r.json["error"] for r in responses} == {"conversation not found"}
    lines = [r.getMessage() for r in caplog.records if r.name == "askbase.qa"]
    assert len(lines) == 5 and all("-> 404" in line for line in lines)


@pytest.mark.parametrize("bot_id", ["__x__", "__bot__"])
def test_reserved_bot_ids_are_404_for_users_and_service_callers(app: Flask, bot_id: str) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    assert ask(client, token, {"question": "hi", "bot_id": bot_id}).status_code == 404
    service = {"X-Askbase-Service": "botrunner"}
    asked = client.post(
        "/api/ask", json={"question": "hi", "bot_id": bot_id, "user": "telegram:1"}, headers=service
    )
    forget = client.post(
        "/api/bot-forget",
        json={"bot_id": bot_id, "user": "telegram:1", "voter": "telegram:1"},
        headers=service,
    )
    assert (asked.status_code, forget.status_code) == (404, 404)


def test_an_admins_gaps_report_for_a_reserved_bot_id_is_400(
    emulators, settings: Settings, live: LiveIndex
) -> None:
    client = make_app(settings, live, admin_emails=["root@example.com"]).test_client()
    sign_in(client, "root@example.com")
    response = client.get("/api/gaps?bot=__x__")
    assert response.status_code == 400 and "'bot' must be a bot id" in response.json["error"]
    assert client.get("/gaps?bot=__x__").status_code == 400  # the page reads the same filters


@pytest.mark.parametrize("state_id", ["a/b", "__x__", "..", ".", "é", "0f" * 16 + "/"])
def test_a_bot_vote_on_a_state_id_no_document_can_have_is_404(app: Flask, state_id: str) -> None:
    """botrunner passes on what a chat platform's user pressed: an id Firestore would refuse (or a path)
    names no button state. (A lone surrogate is not text at all: a 400, like in any other string of a
    body, test_a_lone_surrogate_escape_in_a_json_string_is_400_on_every_json_route.)"""
    press = {"bot_id": "bot1", "state_id": state_id, "voter": "telegram:1", "vote": "up"}
    response = app.test_client().post(
        "/api/bot-votes",
        data=json.dumps(press),  # ASCII: a lone surrogate travels as the escape JSON allows
        content_type="application/json",
        headers={"X-Askbase-Service": "botrunner"},
    )
    assert response.status_code == 404 and response.json == {"error": "unknown or expired button"}


def test_json_nested_past_the_recursion_limit_is_400(app: Flask) -> None:
    """json.loads raises RecursionError (not a ValueError, which get_json(silent=True) would catch)."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    cid = ask(client, token, {"question": "hello"}).json["conversation_id"]
    deep = "[" * 5000 + "]" * 5000
    headers = {"X-CSRF-Token": token}
    kwargs = {"data": deep, "content_type": "application/json", "headers": headers}
    assert client.post("/api/ask", **kwargs).status_code == 400
    assert client.patch(f"/api/conversations/{cid}", **kwargs).status_code == 400
    service = {
        "data": deep,
        "content_type": "application/json",
        "headers": {"X-Askbase-Service": "botrunner"},
    }
    assert client.post("/api/bot-votes", **service).status_code == 400
    assert client.post("/api/bot-forget", **service).status_code == 400


# --- JSON strings that are not text -----------------------------------------------------------------
LONE_SURROGATES = ["\ud800", "x\udc00y", "\udbff"]


@pytest.mark.parametrize("bad", LONE_SURROGATES)
def test_a_lone_surrogate_escape_in_a_json_string_is_400_on_every_json_route(
    app: Flask, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``"\\ud800"`` is valid JSON and json.loads gives a str with a lone surrogate, which no UTF-8
    encoder takes: Firestore (the question, a title, a comment) and the vote id's hash raised
    UnicodeEncodeError, a 500, after the answer had been computed. Refused at the door instead."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    asked = ask(client, token, {"question": "hello"}).json
    cid, aid = asked["conversation_id"], asked["answer_id"]
    browser = {"X-CSRF-Token": token}
    service = {"X-Askbase-Service": "botrunner"}

    def send(method: str, path: str, body: dict[str, object], headers: dict[str, str]) -> TestResponse:
        # json.dumps writes a lone surrogate as the \u escape a client sends (ensure_ascii).
        return client.open(
            path, method=method, data=json.dumps(body), content_type="application/json", headers=headers
        )

    with caplog.at_level(logging.WARNING, logger="askbase.qa"):
        responses = [
            send("POST", "/api/ask", {"question": f"deploy {bad}"}, browser),
            send("POST", "/api/ask", {"question": "hello", "conversation_id": cid, bad: 1}, browser),
            send("PATCH", f"/api/conversations/{cid}", {"title": f"t{bad}"}, browser),
            send("PUT", f"/api/answers/{aid}/vote", {"vote": "down", "comment": f"no{bad}"}, browser),
            send(
                "POST",
                "/api/bot-votes",
                {"bot_id": "b1", "state_id": "s1", "voter": f"telegram:{bad}", "vote": "up"},
                service,
            ),
            send(
                "POST",
                "/api/bot-forget",
                {"bot_id": "b1", "user": f"telegram:{bad}", "voter": "telegram:2"},
                service,
            ),
        ]
    statuses = [r.status_code for r in responses]
    assert statuses == [400] * 6, [r.get_data(as_text=True) for r in responses]
    assert all("not text" in r.json["error"] for r in responses)
    lines = [r.getMessage() for r in caplog.records if r.name == "askbase.qa"]
    assert len(lines) == 6 and all("-> 400" in line and "not text" in line for line in lines), lines
    # Nothing was stored or changed: the conversation still holds the one exchange, under its title.
    kept = client.get(f"/api/conversations/{cid}").json
    assert kept["title"] == "hello" and len(kept["messages"]) == 2
