"""The Q&A service's HTTP surface on the emulators: probes, validation, auth, CSRF, isolation, rate
limits, service callers and exports."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from flask import Flask

from shared.config import Settings
from shared.devstack.issuer import LocalIssuer
from shared.gcp import firestore_client
from shared.qa.answerers import get_answerer
from shared.qa.live_index import LiveIndex
from tests.fuzzing import property_settings
from tests.qa_support import ask, fake_live_index, make_app, sign_in

pytestmark = pytest.mark.emulators


# --- probes ---------------------------------------------------------------------------------------
def test_healthz_and_readyz_ready(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready" and ready.json["snapshot_id"] == "s1"
    assert ready.json["chunk_count"] == 3


def test_readyz_serves_the_no_knowledge_state_and_ask_says_so(
    emulators, settings: Settings, tmp_path: Path
) -> None:
    live, store = fake_live_index(tmp_path, publish=None)
    try:
        client = make_app(settings, live).test_client()
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json["status"] == "empty" and "No knowledge yet" in ready.json["message"]
        token = sign_in(client, "a@example.com")
        assert "No knowledge yet" in client.get("/").get_data(as_text=True)
        response = ask(client, token, {"question": "hello there"})
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "No knowledge yet" in response.json["error"]
        store.publish("s1")
        live.check_now()
        assert client.get("/readyz").json["status"] == "ready"
        assert ask(client, token, {"question": "hello there"}).status_code == 200
    finally:
        live.stop()


def test_readyz_is_503_while_starting(emulators, settings: Settings, tmp_path: Path) -> None:
    from tests.fakes.knowledge import FakeStore

    live = LiveIndex(FakeStore(), lambda p: None, tmp_path / "d")  # never started
    assert make_app(settings, live).test_client().get("/readyz").status_code == 503


def test_only_admins_see_the_restore_error_text_never_readyz(
    emulators, settings: Settings, tmp_path: Path
) -> None:
    """/readyz is public: a storage error's text (bucket, object path, project, service account) is
    shown to admins on the status page only; /readyz and everyone else learn only that one is pending."""
    live, store = fake_live_index(tmp_path)
    secret_ish = "askbase-qa@acme-prod.iam.gserviceaccount.com does not have storage.objects.get access"

    def refused() -> None:
        raise PermissionError(f"403 GET https://storage.googleapis.com/b/acme-kb/o/POINTER: {secret_ish}")

    try:
        client = make_app(settings, live).test_client()
        assert client.get("/readyz").json["index_error"] is False
        store.read_pointer = refused  # type: ignore[method-assign]
        live.check_now()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["status"] == "ready"
        assert ready.json["index_error"] is True and "last_error" not in ready.json
        assert "acme" not in ready.get_data(as_text=True)
        sign_in(client, "a@example.com")
        page = client.get("/status").get_data(as_text=True)
        assert secret_ish not in page and "An error was recorded" in page  # not an admin
        admin = make_app(settings, live, admin_emails=["boss@example.com"]).test_client()
        sign_in(admin, "boss@example.com")
        assert secret_ish in admin.get("/status").get_data(as_text=True)
    finally:
        live.stop()


# --- auth -----------------------------------------------------------------------------------------
def test_anonymous_gets_401_on_the_api_and_a_redirect_on_pages(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/api/ask", json={"question": "hi"}).status_code == 401
    assert client.delete("/api/conversations").status_code == 401
    assert client.get("/api/conversations").status_code == 401
    for path in ("/", "/status", "/c/abc"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/signin?next=")


def test_anonymous_ask_with_a_valid_csrf_token_is_401(app: Flask) -> None:
    client = app.test_client()
    from tests.qa_support import csrf_of

    token = csrf_of(client)
    response = ask(client, token, {"question": "hi"})
    assert response.status_code == 401 and response.json["error"] == "sign in first"


def test_sign_in_redirects_back_but_never_off_site(app: Flask) -> None:
    client = app.test_client()
    from tests.qa_support import csrf_of

    token = csrf_of(client)
    ok = client.post("/signin/dev", data={"email": "a@example.com", "csrf_token": token, "next": "/status"})
    assert ok.headers["Location"] == "/status"
    for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        client = app.test_client()
        token = csrf_of(client)
        response = client.post(
            "/signin/dev", data={"email": "a@example.com", "csrf_token": token, "next": evil}
        )
        assert response.headers["Location"] == "/"


@pytest.mark.parametrize("control", ["\n", "\r\n", "\x0b", "\x7f"])
def test_a_return_path_with_a_control_character_lands_on_the_chat_not_a_500(
    app: Flask, control: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A Location header cannot hold a line break (werkzeug raises, a 500): a sign-in link whose
    ``next`` holds one, or a page address with %0A that sent an anonymous visitor to sign in, ended the
    sign-in on the error page. Such a path goes to the chat, like any other unsafe one."""
    from tests.qa_support import csrf_of

    nxt = f"/c/abc{control}def"
    client = app.test_client()
    token = csrf_of(client)
    with caplog.at_level(logging.ERROR):
        signed = client.post("/signin/dev", data={"email": "a@example.com", "csrf_token": token, "next": nxt})
        # Google's redirect mode: the page to come back to waits in a cookie for /signin/resume.
        opened = client.get("/signin", query_string={"next": nxt})
        resumed = client.get("/signin/resume")
    assert (signed.status_code, signed.headers.get("Location")) == (302, "/")
    assert opened.status_code == 200 and "abc" not in opened.headers.get("Set-Cookie", "")
    assert (resumed.status_code, resumed.headers.get("Location")) == (302, "/")
    assert [r.getMessage() for r in caplog.records] == []


def test_dev_sign_in_rejects_bad_email_and_is_off_unless_enabled(
    emulators, settings: Settings, live: LiveIndex
) -> None:
    client = make_app(settings, live).test_client()
    from tests.qa_support import csrf_of

    token = csrf_of(client)
    bad = client.post("/signin/dev", data={"email": "nope", "csrf_token": token})
    assert bad.status_code == 400 and "enter an email address" in bad.get_data(as_text=True)
    off = make_app(settings, live, dev_sign_in=False).test_client()
    token = csrf_of(off)
    page = off.get("/signin").get_data(as_text=True)
    assert 'action="/signin/dev"' not in page
    # Disabled (SignInDisabled) is a 404, whichever email is typed: not a bad attempt's 400.
    for email in ("a@example.com", "nope"):
        refused = off.post("/signin/dev", data={"email": email, "csrf_token": token})
        assert refused.status_code == 404 and "dev sign-in is disabled" in refused.get_data(as_text=True)


def test_session_cookie_flags(app: Flask) -> None:
    client = app.test_client()
    from tests.qa_support import csrf_of

    token = csrf_of(client)
    response = client.post("/signin/dev", data={"email": "a@example.com", "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_sign_out(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    assert client.post("/signout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


# --- CSRF -----------------------------------------------------------------------------------------
def test_state_changing_requests_without_csrf_are_403(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    cid = ask(client, token, {"question": "hello"}).json["conversation_id"]
    assert ask(client, None, {"question": "hello"}).status_code == 403
    assert ask(client, "wrong", {"question": "hello"}).status_code == 403
    assert client.delete(f"/api/conversations/{cid}").status_code == 403
    assert client.delete("/api/conversations").status_code == 403
    assert client.post("/signout").status_code == 403
    assert client.post("/status/refresh").status_code == 403
    # Nothing was deleted.
    assert client.get(f"/api/conversations/{cid}").status_code == 200


def test_sign_in_form_needs_csrf(app: Flask) -> None:
    client = app.test_client()
    client.get("/signin")
    assert client.post("/signin/dev", data={"email": "a@example.com"}).status_code == 403


# --- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"data": "question=hi", "content_type": "application/x-www-form-urlencoded"}, "JSON"),
        ({"data": "{not json", "content_type": "application/json"}, "JSON object"),
        ({"json": ["question"]}, "JSON object"),
        ({"json": {"question": 42}}, "must be a string"),
        ({"json": {"question": None}}, "must be a string"),
        ({"json": {}}, "must be a string"),
        ({"json": {"question": ""}}, "empty"),
        ({"json": {"question": "   \n "}}, "empty"),
        ({"json": {"question": "x" * 2001}}, "longer than 2000"),
        ({"json": {"question": "hi", "conversation_id": 7}}, "conversation_id"),
        ({"json": {"question": "hi", "bot_id": ["a"]}}, "bot_id"),
        ({"json": {"question": "hi", "conversation_id": "x" * 500}}, "too long"),
    ],
)
def test_bad_input_is_400_with_a_message(
    app: Flask, kwargs: dict, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    with caplog.at_level(logging.WARNING, logger="askbase.qa"):
        response = client.post("/api/ask", headers={"X-CSRF-Token": token}, **kwargs)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert fragment in response.json["error"]
    lines = [r for r in caplog.records if r.name == "askbase.qa" and "/api/ask -> 400" in r.getMessage()]
    assert len(lines) == 1


def test_storage_contended_past_the_retries_is_503_with_retry_after_not_500(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from google.api_core import exceptions as gexc

    from shared.qa.conversations import ConversationStore

    client = app.test_client()
    token = sign_in(client, "a@example.com")

    def contended(*args: object, **kwargs: object) -> str:
        raise gexc.Aborted("Transaction lock timeout.")  # what run_transaction raises at the end

    monkeypatch.setattr(ConversationStore, "record_turn", contended)
    with caplog.at_level(logging.WARNING, logger="askbase.qa"):
        response = ask(client, token, {"question": "How do I install askbase?"})
        page = client.get("/", headers={"Accept": "text/html"})  # still serves what needs no write
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json == {"error": "askbase is briefly unavailable: its storage did not answer."}
    assert page.status_code == 200
    assert any("storage unavailable on POST /api/ask" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


def test_oversized_body_is_413_json(app: Flask, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    body = json.dumps({"question": "x" * settings.max_body_bytes})
    with caplog.at_level(logging.WARNING, logger="askbase.qa"):
        response = client.post(
            "/api/ask", data=body, content_type="application/json", headers={"X-CSRF-Token": token}
        )
    assert response.status_code == 413
    assert "larger than" in response.json["error"]
    assert any("-> 413" in r.getMessage() for r in caplog.records)


def test_unknown_conversation_and_bot_are_404(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    assert ask(client, token, {"question": "hi", "conversation_id": "nope"}).status_code == 404
    assert ask(client, token, {"question": "hi", "bot_id": "nope"}).status_code == 404
    assert ask(client, token, {"question": "hi", "bot_id": "../../x"}).status_code == 404


def test_rate_limit_is_429_with_retry_after(emulators, settings: Settings, live: LiveIndex) -> None:
    client = make_app(settings, live, rate_limit_per_minute=2).test_client()
    token = sign_in(client, "a@example.com")
    assert ask(client, token, {"question": "one"}).status_code == 200
    assert ask(client, token, {"question": "two"}).status_code == 200
    limited = ask(client, token, {"question": "three"})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Per user: somebody else is not affected.
    other = make_app(settings, live, rate_limit_per_minute=2).test_client()
    assert ask(other, sign_in(other, "b@example.com"), {"question": "one"}).status_code == 200


def test_reads_are_rate_limited_in_their_own_bucket(
    emulators, settings: Settings, live: LiveIndex, caplog: pytest.LogCaptureFixture
) -> None:
    from services.qa.app import READ_LIMIT_FACTOR
    from shared.qa.ratelimit import RateLimiter

    app = make_app(settings, live, rate_limit_per_minute=2)
    assert app.extensions["askbase"].read_limiter.limit == 2 * READ_LIMIT_FACTOR
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    cid = ask(client, token, {"question": "hello snapshot"}).json["conversation_id"]
    app.extensions["askbase"].read_limiter = RateLimiter(4)  # a fresh budget: sign-in and ask read pages too
    reads = [
        "/api/conversations",
        "/api/conversations?q=hello",
        f"/api/conversations/{cid}",
        f"/api/conversations/{cid}/export?format=md",
    ]
    assert [client.get(path).status_code for path in reads] == [200] * 4
    caplog.set_level(logging.WARNING, logger="askbase.qa")
    for path in reads:
        limited = client.get(path)
        assert limited.status_code == 429 and limited.is_json, path
        assert limited.json["error"] == "too many requests; slow down"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert any(f"GET /api/conversations/{cid} -> 429" in r.getMessage() for r in caplog.records)
    for path in ("/", f"/c/{cid}", "/status"):  # the pages that read history count too
        page = client.get(path)
        assert page.status_code == 429 and page.headers["Retry-After"], path
        assert "Too many requests" in page.get_data(as_text=True)
    # Reads did not spend the question budget (2 a minute, one used), nor another user's reads.
    assert ask(client, token, {"question": "hello again", "conversation_id": cid}).status_code == 200
    other = app.test_client()
    sign_in(other, "b@example.com")
    assert other.get("/api/conversations").status_code == 200


def test_history_api_pages_with_limit_and_cursor(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    app.extensions["askbase"].limiter.limit = 100
    made = [ask(client, token, {"question": f"hello number {i}"}).json["conversation_id"] for i in range(5)]
    seen, cursor, sizes = [], None, []
    while True:
        url = "/api/conversations?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url).json
        assert body["conversations"] == body["items"]  # the field the page script reads
        sizes.append(len(body["items"]))
        seen += [c["id"] for c in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1] and seen == made[::-1]
    first = client.get("/api/conversations").json
    assert [c["id"] for c in first["items"]] == made[::-1] and first["next_cursor"] is None
    for bad in ("0", "201", "-1", "x", "²", "1.5"):
        response = client.get(f"/api/conversations?limit={bad}")
        assert response.status_code == 400 and "limit" in response.json["error"], bad
    for bad in ("garbage", "x" * 500):
        response = client.get(f"/api/conversations?cursor={bad}")
        assert response.status_code == 400 and response.json["error"] == "invalid cursor"


# --- asking and history ---------------------------------------------------------------------------
def test_ask_answers_with_sources_and_continues_the_conversation(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    first = ask(client, token, {"question": "hello snapshot"})
    assert first.status_code == 200
    body = first.json
    assert set(body) >= {"answer", "sources", "conversation_id"}
    assert "[1]" in body["answer"]
    assert body["sources"][0] == {
        "title": "Page of s1",
        "url": "https://docs.example.com/s1",
        "snippet": "snapshot s1 says hello about hello snapshot",
        "score": 0.9,
    }
    cid = body["conversation_id"]
    again = ask(client, token, {"question": "and hello again", "conversation_id": cid})
    assert again.json["conversation_id"] == cid
    conv = client.get(f"/api/conversations/{cid}").json
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    page = client.get(f"/c/{cid}").get_data(as_text=True)
    assert "hello snapshot" in page and 'href="https://docs.example.com/s1"' in page


def test_history_list_search_export_delete_and_clear(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    a = ask(client, token, {"question": "hello telegram"}).json["conversation_id"]
    b = ask(client, token, {"question": "hello discord"}).json["conversation_id"]
    listed = client.get("/api/conversations").json["conversations"]
    assert [c["id"] for c in listed] == [b, a]
    assert [c["id"] for c in client.get("/api/conversations?q=telegram").json["conversations"]] == [a]
    assert "hello discord" not in client.get("/?q=telegram").get_data(as_text=True)

    md = client.get(f"/api/conversations/{a}/export?format=md")
    assert md.status_code == 200 and md.mimetype == "text/markdown"
    assert "attachment" in md.headers["Content-Disposition"]
    assert "## hello telegram" in md.get_data(as_text=True)
    exported = json.loads(client.get(f"/api/conversations/{a}/export").get_data(as_text=True))
    assert exported["id"] == a and exported["messages"][0]["text"] == "hello telegram"
    assert client.get(f"/api/conversations/{a}/export?format=pdf").status_code == 400

    headers = {"X-CSRF-Token": token}
    assert client.delete(f"/api/conversations/{a}", headers=headers).json == {"deleted": a}
    assert [c["id"] for c in client.get("/api/conversations").json["conversations"]] == [b]
    assert client.delete("/api/conversations", headers=headers).json == {"deleted": 1}
    assert client.get("/api/conversations").json["conversations"] == []


def test_user_a_can_never_read_export_continue_or_delete_bs_conversations(app: Flask) -> None:
    alice, bob = app.test_client(), app.test_client()
    a_token = sign_in(alice, "alice@example.com")
    b_token = sign_in(bob, "bob@example.com")
    cid = ask(alice, a_token, {"question": "alice's private question"}).json["conversation_id"]

    assert bob.get("/api/conversations").json["conversations"] == []
    assert bob.get("/api/conversations?q=private").json["conversations"] == []
    assert bob.get(f"/api/conversations/{cid}").status_code == 404
    assert bob.get(f"/api/conversations/{cid}/export?format=md").status_code == 404
    assert bob.get(f"/api/conversations/{cid}/export?format=json").status_code == 404
    assert bob.get(f"/c/{cid}").status_code == 404
    assert ask(bob, b_token, {"question": "mine now", "conversation_id": cid}).status_code == 404
    assert bob.delete(f"/api/conversations/{cid}", headers={"X-CSRF-Token": b_token}).status_code == 404
    assert bob.delete("/api/conversations", headers={"X-CSRF-Token": b_token}).json == {"deleted": 0}
    # Bob's CSRF token is no good in Alice's session either.
    assert alice.delete(f"/api/conversations/{cid}", headers={"X-CSRF-Token": b_token}).status_code == 403

    conv = alice.get(f"/api/conversations/{cid}").json
    assert len(conv["messages"]) == 2 and conv["title"] == "alice's private question"


# --- service callers (the bot worker) -------------------------------------------------------------
def _bot(settings: Settings, bot_id: str, **fields) -> None:
    doc = {"owner": "user:owner@example.com", "owner_email": "owner@example.com", "platform": "telegram"}
    firestore_client(settings.project_id).collection("bots").document(bot_id).set(doc | fields)


def test_certificates_out_of_reach_are_503_try_again_not_a_refused_token(
    emulators, oidc_settings: Settings, live: LiveIndex, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh instance checks ID tokens against Google's certificates, fetched on first use. While they
    cannot be fetched the verifier says 503 ("certificates unreachable"), but qa answered the bot
    worker 401 "invalid service credentials" and a person signing in 403 "could not be verified": a
    wait, reported as a bad credential. Both are now a 503 with Retry-After and a log line."""
    import socket

    with socket.socket() as closed:  # a certificates URL nothing listens on
        closed.bind(("127.0.0.1", 0))
        certs = f"http://127.0.0.1:{closed.getsockname()[1]}/oauth2/v1/certs"
    sa = f"botrunner@{oidc_settings.project_id}.iam.gserviceaccount.com"
    app = make_app(
        oidc_settings,
        live,
        oidc_certs_url=certs,
        qa_url="https://qa.run.app",
        service_callers=[sa],
        dev_sign_in=False,
        google_client_id="cid.apps.googleusercontent.com",
    )
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="askbase.qa"):
        asked = client.post(
            "/api/ask",
            json={"question": "hello", "bot_id": "bot1", "user": "telegram:42"},
            headers={"Authorization": "Bearer " + issuer.mint(sa, "https://qa.run.app")},
        )
        client.set_cookie("g_csrf_token", "abc", domain="localhost")
        credential = issuer.mint("g@corp.example", "cid.apps.googleusercontent.com")
        signed = client.post("/signin/google", data={"credential": credential, "g_csrf_token": "abc"})
    assert (asked.status_code, asked.headers.get("Retry-After")) == (503, "30"), asked.get_data(as_text=True)
    assert "try again" in asked.json["error"]
    assert (signed.status_code, signed.headers.get("Retry-After")) == (503, "30")
    assert "try again" in signed.get_data(as_text=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "askbase.qa"]
    assert [line.split(" -> ")[0] for line in lines if "-> 503" in line] == [
        "POST /api/ask",
        "POST /signin/google",
    ], lines
    assert "cannot fetch certificates" in lines[0]


def test_service_caller_asks_for_a_bot_user(emulators, settings: Settings, live: LiveIndex) -> None:
    seen: list[tuple[str, str | None]] = []

    class Spy:
        name = "spy"

        def answer(self, question, passages, system_prompt):
            from shared.qa.answerers import Answer

            seen.append((question, system_prompt))
            return Answer(text="spied [1]", sources=passages[:1], answerer="spy")

    def factory(name: str):
        return Spy() if name == "gemini" else get_answerer(name, settings)

    # Gemini offered to bots (the default, extractive only, answers bot1 with extractive: test_bot_models).
    app = make_app(settings, live, answerer_factory=factory, bot_models=["extractive", "gemini"])
    _bot(settings, "bot1", model="gemini", system_prompt="Be brief.")
    _bot(settings, "bot2", model="extractive", system_prompt="")
    client = app.test_client()
    headers = {"X-Askbase-Service": "botrunner"}

    response = client.post(
        "/api/ask", json={"question": "hello", "bot_id": "bot1", "user": "telegram:42"}, headers=headers
    )
    assert response.status_code == 200, response.json
    assert response.json["answer"] == "spied [1]"
    assert seen == [("hello", "Be brief.")]
    cid = response.json["conversation_id"]
    db = firestore_client(settings.project_id)
    assert db.collection("conversations").document(cid).get().to_dict()["owner"] == "bot:bot1:telegram:42"

    plain = client.post(
        "/api/ask", json={"question": "hello", "bot_id": "bot2", "user": "telegram:42"}, headers=headers
    )
    assert plain.json["answerer"] == "extractive"
    unknown = client.post(
        "/api/ask", json={"question": "hello", "bot_id": "nobot", "user": "telegram:42"}, headers=headers
    )
    assert unknown.status_code == 404
    missing_user = client.post("/api/ask", json={"question": "hello", "bot_id": "bot1"}, headers=headers)
    assert missing_user.status_code == 400
    # Another user's conversation id is still a 404 for a service caller.
    stolen = client.post(
        "/api/ask",
        json={"question": "hello", "bot_id": "bot1", "user": "telegram:43", "conversation_id": cid},
        headers=headers,
    )
    assert stolen.status_code == 404


def test_web_users_may_use_only_their_own_bots(emulators, settings: Settings, live: LiveIndex) -> None:
    _bot(settings, "bot1", model="extractive")
    client = make_app(settings, live).test_client()
    token = sign_in(client, "someone@example.com")
    assert ask(client, token, {"question": "hello", "bot_id": "bot1"}).status_code == 404
    owner = make_app(settings, live).test_client()
    assert (
        ask(owner, sign_in(owner, "owner@example.com"), {"question": "hello", "bot_id": "bot1"}).status_code
        == 200
    )


def test_service_header_is_ignored_with_google_oidc(emulators, settings: Settings, live: LiveIndex) -> None:
    client = make_app(settings, live, internal_auth="google-oidc").test_client()
    response = client.post(
        "/api/ask",
        json={"question": "hello", "bot_id": "bot1", "user": "telegram:1"},
        headers={"X-Askbase-Service": "botrunner"},
    )
    assert response.status_code in (401, 403)
    bad_token = client.post(
        "/api/ask",
        json={"question": "hello", "bot_id": "bot1", "user": "telegram:1"},
        headers={"Authorization": "Bearer not-a-real-token"},
    )
    assert bad_token.status_code == 401
    assert "not-a-real-token" not in bad_token.get_data(as_text=True)


# --- pages ----------------------------------------------------------------------------------------
def test_chat_page_is_accessible_and_offline(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, "a@example.com")
    html = client.get("/").get_data(as_text=True)
    assert '<label for="question"' in html and 'aria-live="polite"' in html
    assert 'name="viewport"' in html
    # Nothing is loaded from another origin.
    import re

    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert client.get("/static/chat.js").status_code == 200
    assert client.get("/static/askbase.css").status_code == 200


def test_nav_items_can_be_added_by_a_blueprint(app: Flask) -> None:
    from services.qa.app import add_nav_item

    add_nav_item(app, "health.healthz", "Health")
    client = app.test_client()
    sign_in(client, "a@example.com")
    assert ">Health</a>" in client.get("/").get_data(as_text=True)


def test_unknown_route_and_method_are_json_on_the_api(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/api/nope").status_code == 401  # strangers learn nothing about routes
    sign_in(client, "a@example.com")
    assert client.get("/api/nope").json == {"error": "not found"}
    assert client.get("/api/ask").status_code == 405


def test_google_sign_in_route_checks_gis_double_submit_and_the_token(
    emulators, oidc_settings: Settings, live: LiveIndex, issuer: LocalIssuer
) -> None:
    app = make_app(
        oidc_settings,
        live,
        dev_sign_in=False,
        google_client_id="cid.apps.googleusercontent.com",
        allowed_domain="corp.example",
    )
    client = app.test_client()
    good = issuer.mint("g@corp.example", "cid.apps.googleusercontent.com", hd="corp.example")
    wrong_domain = issuer.mint("g@else.example", "cid.apps.googleusercontent.com", hd="else.example")
    page = client.get("/signin?next=/status").get_data(as_text=True)
    assert 'data-client_id="cid.apps.googleusercontent.com"' in page and 'data-hd="corp.example"' in page
    # login_uri must equal the OAuth client's authorized redirect URI: no ?next= in it.
    assert 'data-login_uri="http://localhost/signin/google"' in page
    # No GIS CSRF cookie → refused; mismatched → refused; bad token → refused.
    assert client.post("/signin/google", data={"credential": good}).status_code == 403
    client.set_cookie("g_csrf_token", "abc", domain="localhost")
    assert client.post("/signin/google", data={"credential": good, "g_csrf_token": "xyz"}).status_code == 403
    for bad in ("bad", wrong_domain):
        assert (
            client.post("/signin/google", data={"credential": bad, "g_csrf_token": "abc"}).status_code == 403
        )
    assert client.get("/").status_code == 302
    ok = client.post("/signin/google", data={"credential": good, "g_csrf_token": "abc"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/signin/resume"
    back = client.get("/signin/resume")  # the page /signin was opened for, kept in a cookie
    assert back.status_code == 302 and back.headers["Location"] == "/status"
    assert client.get_cookie("askbase_next", path="/signin") is None  # used once
    assert client.get("/signin/resume").headers["Location"] == "/"
    client.get("/signin?next=/status")
    client.get("/signin")  # a later sign-in for the chat forgets the earlier page
    assert client.get("/signin/resume").headers["Location"] == "/"
    hostile = client.get("/signin?next=//evil.example/x")  # never stored: only same-site paths
    assert "evil" not in hostile.headers.get("Set-Cookie", "")
    assert "g@corp.example" in client.get("/").get_data(as_text=True)


def test_random_json_never_causes_a_500(app: Flask) -> None:
    from hypothesis import HealthCheck, given
    from hypothesis import strategies as st

    client = app.test_client()
    token = sign_in(client, "fuzz@example.com")
    app.extensions["askbase"].limiter.limit = 10**9
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
    values = st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )
    bodies = (
        st.dictionaries(
            st.sampled_from(["question", "conversation_id", "bot_id", "user", "extra"]), values, max_size=4
        )
        | values
    )

    @property_settings(60, suppress=list(HealthCheck))
    @given(bodies)
    def check(body) -> None:
        response = ask(client, token, body)
        assert response.status_code < 500, (body, response.get_data(as_text=True))
        assert response.is_json

    check()


def test_security_headers(emulators, settings: Settings, live: LiveIndex) -> None:
    client = make_app(settings, live).test_client()
    response = client.get("/signin")
    csp = response.headers["Content-Security-Policy"]
    assert (
        "script-src 'self';" in csp
        and "frame-ancestors 'none'" in csp
        and "google" not in csp.split("form-action")[0]
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    sign_in(client, "a@example.com")
    assert client.get("/api/conversations").headers["Cache-Control"] == "no-store"
    google = make_app(settings, live, google_client_id="cid").test_client().get("/signin")
    assert (
        "script-src 'self' https://accounts.google.com/gsi/client;"
        in google.headers["Content-Security-Policy"]
    )
