"""Sign-out ends the session on every qa instance, not only in the browser that signed out.

Each sign-in mints a random session id kept in the signed cookie; sign-out records its hash in
``revoked_sessions`` (shared/qa/revoked_sessions.py), and every request that carries a session checks
it, through a short per-instance cache. Two apps on the same emulator stand for two Cloud Run instances;
a cookie copied from one test client to another is a stolen (or other-device) copy.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from google.api_core import exceptions as gexc

from services.qa.auth import PENDING_COOKIE
from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.live_index import LiveIndex
from shared.qa.revoked_sessions import CACHE_SECONDS, COLLECTION, RevokedSessions
from tests.qa_support import ask, make_app, sign_in

pytestmark = pytest.mark.emulators

COOKIE = "askbase_session"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session_of(app: Flask, client: FlaskClient) -> dict[str, Any]:
    data: dict[str, Any] = app.session_interface.get_signing_serializer(app).loads(cookie_of(client))  # type: ignore[attr-defined]
    return data


def cookie_of(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None, "no session cookie"
    return cookie.value


def copy_of(source: FlaskClient | str, app: Flask) -> FlaskClient:
    """Another browser (or a thief) holding the same session cookie (a client's, or a saved value)."""
    other = app.test_client()
    other.set_cookie(COOKIE, source if isinstance(source, str) else cookie_of(source))
    return other


def signed_out(client: FlaskClient, token: str) -> bool:
    """True when both a page and the API treat the client as signed out (redirect to sign-in, 401)."""
    page = client.get("/")
    api = client.get("/api/conversations", headers={"X-CSRF-Token": token})
    if page.status_code == 302 and api.status_code == 401:
        assert page.headers["Location"].startswith("/signin")
        return True
    assert (page.status_code, api.status_code) == (200, 200), (page.status_code, api.status_code)
    return False


def with_clock(app: Flask, clock: Clock) -> RevokedSessions:
    ctx = app.extensions["askbase"]
    ctx.sessions = RevokedSessions(ctx.db, ctx.sessions.session_lifetime, clock=clock)
    return ctx.sessions  # type: ignore[no-any-return]


@pytest.fixture
def second(app: Flask, settings: Settings, live: LiveIndex) -> Flask:
    """A second qa instance over the same Firestore."""
    return make_app(settings, live)


def test_each_sign_in_mints_a_new_random_session_id(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, "a@example.com")
    first = session_of(app, client)["sid"]
    sign_in(client, "a@example.com")
    again = session_of(app, client)["sid"]
    assert len(first) >= 32 and len(again) >= 32 and first != again


def test_sign_out_ends_every_copy_of_the_session_on_every_instance(app: Flask, second: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    stolen = cookie_of(client)
    here, elsewhere = copy_of(stolen, app), copy_of(stolen, second)
    assert not signed_out(here, token) and not signed_out(elsewhere, token)
    with_clock(second, clock := Clock())
    assert client.post("/signout", data={"csrf_token": token}).status_code == 302
    assert signed_out(client, token)
    # The instance that signed out knows at once; another one within its cache window.
    assert signed_out(here, token)
    clock.now += CACHE_SECONDS + 0.1
    assert signed_out(elsewhere, token)
    # Posting with the copy is refused too, and the copy's cookie is dropped.
    assert ask(copy_of(stolen, second), token, {"question": "hello"}).status_code == 401
    # A fresh sign-in on the same browser is a new session that works.
    token = sign_in(client, "a@example.com")
    assert not signed_out(client, token) and not signed_out(copy_of(client, second), token)


def test_a_cached_check_lets_a_revoked_copy_work_at_most_the_cache_window(app: Flask, second: Flask) -> None:
    assert 0 < CACHE_SECONDS <= 10
    clock = Clock()
    with_clock(second, clock)
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    stolen = cookie_of(client)
    elsewhere = copy_of(stolen, second)
    assert not signed_out(elsewhere, token)  # now cached as "not revoked" on the second instance
    client.post("/signout", data={"csrf_token": token})
    clock.now += CACHE_SECONDS - 0.5
    assert not signed_out(copy_of(stolen, second), token)  # the documented window
    clock.now += 1.0
    assert signed_out(elsewhere, token)


def test_the_revocation_record_holds_a_hash_and_expires_after_the_cookie_would(
    app: Flask, settings: Settings
) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    sid = session_of(app, client)["sid"]
    before = datetime.now(UTC)
    client.post("/signout", data={"csrf_token": token})
    docs = list(firestore_client(settings.project_id).collection(COLLECTION).stream())
    assert [d.id for d in docs] == [hashlib.sha256(sid.encode()).hexdigest()]
    data = docs[0].to_dict()
    assert sid not in repr(data) and "a@example.com" not in repr(data)
    # Flask re-signs the cookie on every response, so a copy used up to the cache window after the
    # sign-out stays valid for the session lifetime after that.
    lifetime = app.permanent_session_lifetime
    assert data["expire_at"] >= before + lifetime + timedelta(seconds=CACHE_SECONDS)
    assert data["expire_at"] <= datetime.now(UTC) + lifetime + timedelta(seconds=CACHE_SECONDS + 60)


def test_a_cookie_from_before_session_ids_counts_as_signed_out(app: Flask) -> None:
    """Such a cookie could never be revoked, and Flask re-signs it on every use, so "until it expires"
    could be forever: it is signed out (one more sign-in for everyone after the upgrade)."""
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    legacy = serializer.dumps({"email": "a@example.com", "name": "a", "_permanent": True, "csrf": "t" * 43})
    client = app.test_client()
    client.set_cookie(COOKIE, legacy)
    assert signed_out(client, "t" * 43)
    cookie = client.get_cookie(COOKIE)
    assert cookie is None or "email" not in session_of(app, client)
    token = sign_in(client, "a@example.com")
    assert not signed_out(client, token)


def test_the_check_and_the_sign_out_give_up_well_inside_qas_request_timeout(
    emulators: Any, settings: Settings
) -> None:
    """The client's defaults retry a read for 300 s and a write for 60 s: past qa's 60 s Cloud Run
    timeout the front end answers 504, so neither the check's 503 nor the sign-out's response (which
    clears the browser's cookie) would ever arrive. Every call names a bounded retry and timeout."""
    from infra.components.services import ServiceSpec

    calls: list[tuple[str, dict[str, Any]]] = []

    class Document:
        def get(self, **kwargs: Any) -> Any:
            calls.append(("get", kwargs))
            return type("Snapshot", (), {"exists": False})()

        def set(self, fields: dict[str, Any], **kwargs: Any) -> None:
            calls.append(("set", kwargs))

    class Collection:
        def document(self, key: str) -> Document:
            return Document()

    sessions = RevokedSessions(firestore_client(settings.project_id), timedelta(days=14))
    sessions._collection = Collection()
    sessions.is_revoked("s" * 43)
    sessions.revoke("s" * 43)
    sessions.revoke("t" * 43, best_effort=True)
    qa_timeout = ServiceSpec.__dataclass_fields__["timeout_seconds"].default
    assert [name for name, _ in calls] == ["get", "set", "set"]
    for _, kwargs in calls:
        retry, timeout = kwargs["retry"], kwargs["timeout"]
        assert timeout is not None and timeout < qa_timeout / 4
        assert retry is None or retry.timeout + timeout < qa_timeout / 2


def test_a_replayed_signed_out_cookie_is_logged_and_static_files_need_no_check(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    thief = copy_of(client, app)
    client.post("/signout", data={"csrf_token": token})
    sessions = app.extensions["askbase"].sessions

    def down(key: str) -> bool:
        raise gexc.ServiceUnavailable("firestore is down")

    sessions._read, read = down, sessions._read
    try:  # a stylesheet is served with Firestore down: it reads no session
        assert thief.get("/static/askbase.css").status_code == 200
    finally:
        sessions._read = read
    with caplog.at_level(logging.WARNING, logger="askbase.qa"):
        assert signed_out(thief, token)
    assert any("session was signed out" in r.getMessage() for r in caplog.records)


def test_firestore_down_during_the_check_is_a_503_and_keeps_the_session(app: Flask, second: Flask) -> None:
    """Fail closed: an unchecked session could be a revoked one. Not signed out either: the outage is
    not the user's doing, and the same cookie works once Firestore answers."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    elsewhere = copy_of(client, second)
    sessions = second.extensions["askbase"].sessions

    def down(key: str) -> bool:
        raise gexc.ServiceUnavailable("firestore is down")

    sessions._read, read = down, sessions._read
    api = elsewhere.get("/api/conversations", headers={"X-CSRF-Token": token})
    assert api.status_code == 503 and api.headers["Retry-After"] and "storage" in api.json["error"]
    page = elsewhere.get("/")
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert elsewhere.get_cookie(COOKIE) is not None
    sessions._read = read
    assert not signed_out(elsewhere, token)


def test_sign_out_while_firestore_is_down_clears_this_browser_and_finishes_at_its_next_request(
    app: Flask, second: Flask
) -> None:
    """A shared computer must not stay signed in because Firestore did not answer: the cookie loses
    the user at once, the page says the sign-out is not recorded yet, and the browser keeps only the
    session id, to record the sign-out at its next request (a copy works until then)."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    sid = session_of(app, client)["sid"]
    clock = Clock()
    with_clock(second, clock)
    elsewhere = copy_of(client, second)
    sessions = app.extensions["askbase"].sessions

    def down(*args: Any, **kwargs: Any) -> None:
        raise gexc.ServiceUnavailable("firestore is down")

    sessions._write, write = down, sessions._write
    response = client.post("/signout", data={"csrf_token": token})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.headers["Clear-Site-Data"] == '"storage"'
    assert "other devices" in response.get_data(as_text=True)
    # The id to record waits in a cookie of its own that outlives the browser's session (Max-Age).
    [pending] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(PENDING_COOKIE + "=")]
    assert sid in pending and "Max-Age=" in pending and "HttpOnly" in pending
    assert signed_out(client, token)  # requests go on while the retry fails
    assert "email" not in session_of(app, client) and sid not in repr(session_of(app, client))
    assert not signed_out(elsewhere, token)  # not recorded yet
    sessions._write = write
    assert client.get("/signin").status_code == 200  # any request finishes the sign-out
    assert client.get_cookie(PENDING_COOKIE) is None
    clock.now += CACHE_SECONDS + 0.1
    assert signed_out(elsewhere, token)


def test_a_late_response_restoring_the_old_session_cookie_does_not_undo_a_pending_sign_out(
    app: Flask,
) -> None:
    """A request sent before the sign-out whose response arrives after it sets the whole old session
    cookie again (Flask re-sends a permanent session on every response). The pending sign-out, kept
    apart, is still recorded at the next request, and the restored session is found revoked."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    before = cookie_of(client)
    sessions = app.extensions["askbase"].sessions

    def down(*args: Any, **kwargs: Any) -> None:
        raise gexc.ServiceUnavailable("firestore is down")

    sessions._write, write = down, sessions._write
    assert client.post("/signout", data={"csrf_token": token}).status_code == 503
    client.set_cookie(COOKIE, before)  # the late response of a request sent before the sign-out
    sessions._write = write
    assert signed_out(client, token)
    assert client.get_cookie(PENDING_COOKIE) is None


def test_while_firestore_is_down_a_pending_sign_out_costs_each_request_one_short_try_and_assets_none(
    app: Flask,
) -> None:
    client = app.test_client()
    client.set_cookie(PENDING_COOKIE, "a" * 43)  # as a sign-out's 503 leaves it
    sessions = app.extensions["askbase"].sessions
    tries: list[dict[str, Any]] = []

    def down(*args: Any, **kwargs: Any) -> None:
        tries.append(kwargs)
        raise gexc.PermissionDenied("not only 'unavailable': any failure must leave the request alone")

    sessions._write, write = down, sessions._write
    try:
        assert client.get("/signin").status_code == 200
        assert tries == [{"best_effort": True}]
        tries.clear()
        assert client.get("/static/chat.js").status_code == 200 and tries == []
        assert client.get_cookie(PENDING_COOKIE) is not None  # kept for the next try
    finally:
        sessions._write = write
    assert client.get("/signin").status_code == 200
    assert client.get_cookie(PENDING_COOKIE) is None


def test_signing_in_over_a_live_session_ends_the_session_it_replaces(app: Flask) -> None:
    """B signs in on a shared computer where A never signed out: A's session ends, copies included."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    a_copy = copy_of(client, app)
    sign_in(client, "b@example.com")
    assert signed_out(a_copy, token)
    assert session_of(app, client)["email"] == "b@example.com"


def test_a_pending_sign_out_survives_the_next_sign_in_on_that_browser(app: Flask, second: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    elsewhere = copy_of(client, second)
    sessions = app.extensions["askbase"].sessions

    def down(*args: Any, **kwargs: Any) -> None:
        raise gexc.ServiceUnavailable("firestore is down")

    sessions._write, write = down, sessions._write
    assert client.post("/signout", data={"csrf_token": token}).status_code == 503
    token = sign_in(client, "b@example.com")  # still down: the pending sign-out is kept
    assert not signed_out(elsewhere, token)
    sessions._write = write
    assert not signed_out(client, token)  # b's session works, and a's sign-out is recorded
    assert signed_out(copy_of(elsewhere, app), token)


def test_pending_sign_outs_of_several_sessions_are_all_recorded(app: Flask) -> None:
    client = app.test_client()
    sessions = app.extensions["askbase"].sessions

    def down(*args: Any, **kwargs: Any) -> None:
        raise gexc.ServiceUnavailable("firestore is down")

    sessions._write, write = down, sessions._write
    copies = []
    for email in ("a@example.com", "b@example.com"):
        token = sign_in(client, email)
        copies.append(cookie_of(client))
        assert client.post("/signout", data={"csrf_token": token}).status_code == 503
    assert not any(signed_out(copy_of(c, app), token) for c in copies)
    sessions._write = write
    client.get("/signin")
    assert all(signed_out(copy_of(c, app), token) for c in copies)


def test_sign_out_with_an_already_revoked_copy_is_still_a_sign_out(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    thief = copy_of(client, app)
    client.post("/signout", data={"csrf_token": token})
    response = thief.post("/signout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/signin")
    assert signed_out(thief, token)


def test_revoked_sessions_unit_cache_and_forget(emulators: Any, settings: Settings) -> None:
    clock = Clock()
    store = RevokedSessions(firestore_client(settings.project_id), timedelta(days=14), clock=clock)
    other = RevokedSessions(firestore_client(settings.project_id), timedelta(days=14), clock=clock)
    sid = RevokedSessions.new_session_id()
    assert not store.is_revoked(sid) and not other.is_revoked(sid)
    store.revoke(sid)
    assert store.is_revoked(sid)  # the revoking instance forgets its cached answer
    assert not other.is_revoked(sid)  # cached
    clock.now += CACHE_SECONDS + 0.1
    assert other.is_revoked(sid)


def test_an_admin_removed_from_the_settings_loses_admin_rights_on_the_same_cookie(
    settings: Settings, live: LiveIndex, emulators: Any
) -> None:
    """Admin rights come from ASKBASE_ADMIN_EMAILS on every request, never from the cookie: a new
    revision without the address treats the same session as an ordinary user's."""
    before = make_app(settings, live, admin_emails=["boss@example.com"])
    client = before.test_client()
    token = sign_in(client, "boss@example.com")
    assert "Refresh" in client.get("/status").get_data(as_text=True)
    after = copy_of(client, make_app(settings, live, admin_emails=[]))
    page = after.get("/status")
    assert page.status_code == 200 and "Refresh" not in page.get_data(as_text=True)
    assert after.post("/status/refresh", data={"csrf_token": token}).status_code == 403
