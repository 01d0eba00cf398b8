"""End to end on the production shape (shared/devstack/production.py): each deployable with only the
environment infra gives it, behind a TLS front end, with real ID-token verification, the functions
from their deploy archive.

One stack for the module (it takes ~20 s to start). What stands in for Google is listed in the
production module's docstring; no verifier, client or publish method is replaced here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.devstack.production import ProductionStack
from shared.devstack.site_server import serve_sample_site
from shared.emulators import EmulatorStack
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.emulators

QUESTION = "How do I deploy askbase?"


@pytest.fixture(scope="module")
def prod(emulator_stack: EmulatorStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    site = serve_sample_site()
    sources = json.dumps([{"name": "sample-docs", "kind": "sitemap", "url": site.url("/sitemap.xml")}])
    stack = ProductionStack(
        workdir=tmp_path_factory.mktemp("prodshape"),
        sources_json=sources,
        emulators=emulator_stack,
        admin_emails=("admin@example.com",),
    )
    # The fakes deliver to the public HTTPS URLs: like Telegram and Discord, they must trust the
    # front end's certificate (httpx reads SSL_CERT_FILE when a client is made).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_CERT_FILE", str(stack.cert_file))
        tg, dc = FakeTelegram().start(), FakeDiscord().start()
    stack.telegram_api_base, stack.discord_api_base = tg.base_url, dc.base_url
    try:
        stack.start()
        first_scrape = stack.scheduler_call("scrape")
        yield {"stack": stack, "tg": tg, "dc": dc, "first_scrape": first_scrape}
    finally:
        stack.stop()
        tg.stop()
        dc.stop()
        site.stop()


def _wait_for_snapshot(stack: ProductionStack, snapshot_id: str) -> dict[str, Any]:
    # qa polls the pointer every snapshot_poll_seconds (30 s, as deployed): wait for the swap, bounded.
    import time

    deadline = time.monotonic() + 90
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = stack.status()
        if status.get("snapshot_id") == snapshot_id:
            return status
        time.sleep(0.5)
    raise AssertionError(f"qa did not swap in {snapshot_id}; status {status}")


def _browser(stack: ProductionStack) -> httpx.Client:
    return httpx.Client(verify=str(stack.cert_file), timeout=120.0, base_url=stack.urls["qa"])


def _google_sign_in(stack: ProductionStack, email: str) -> tuple[httpx.Client, str]:
    """Sign in as Google Identity Services does in redirect mode; returns the browser and its CSRF token."""
    browser = _browser(stack)
    page = browser.get("/signin?next=/status").text
    login_uri = re.search(r'data-login_uri="([^"]+)"', page)
    assert login_uri, page[:500]
    uri = login_uri.group(1)
    assert uri == stack.urls["qa"] + "/signin/google"  # exactly the OAuth client's redirect URI
    browser.cookies.set("g_csrf_token", "gis-double-submit", domain="127.0.0.1")
    credential = stack.issuer.mint(email, stack.google_client_id, name=email.split("@")[0])
    response = browser.post(uri, data={"credential": credential, "g_csrf_token": "gis-double-submit"})
    assert response.status_code == 302, response.text[:500]
    assert "secure" in response.headers["set-cookie"].lower()  # the session cookie is HTTPS-only
    resumed = browser.get(response.headers["location"])  # back to the page sign-in was opened for
    assert resumed.status_code == 302 and resumed.headers["location"] == "/status", resumed.headers
    home = browser.get("/").text
    assert email in home
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', home)
    assert csrf
    return browser, csrf.group(1)


def test_each_deployable_has_only_its_infra_environment(prod: dict[str, Any]) -> None:
    stack: ProductionStack = prod["stack"]
    for name in ("qa", "botrunner", "telegram-fn", "discord-fn", "scrape-fn"):
        env = stack.env_of(name)
        assert env["ASKBASE_ENV"] == "production" and env["ASKBASE_INTERNAL_AUTH"] == "google-oidc"
        assert "ASKBASE_DEV_SIGN_IN" not in env and "K_SERVICE" in env
    # The public processes hold no key that decrypts bot tokens: only botrunner does.
    holders = [n for n in stack.processes if "ASKBASE_TOKEN_KEY" in stack.env_of(n)]
    assert holders == ["botrunner"]
    assert [n for n in stack.processes if "ASKBASE_SESSION_SECRET" in stack.env_of(n)] == ["qa"]
    # The functions are served from the unpacked deploy archive, not from the repository.
    for name in ("telegram-fn", "discord-fn", "scrape-fn"):
        source = Path(stack.processes[name].env["PYTHONPATH"])
        assert (source / "main.py").is_file() and (source / "requirements.txt").is_file()
        assert stack.processes[name].cwd == source


def test_sign_in_is_https_on_the_public_origin_and_the_chat_answers(prod: dict[str, Any]) -> None:
    stack: ProductionStack = prod["stack"]
    assert prod["first_scrape"].status_code == 200, prod["first_scrape"].text
    _wait_for_snapshot(stack, prod["first_scrape"].json()["snapshot_id"])
    page = _browser(stack).get("/signin").text
    login_uri = re.search(r'data-login_uri="([^"]+)"', page)
    assert login_uri and login_uri.group(1).startswith(stack.urls["qa"] + "/signin/google")
    browser, csrf = _google_sign_in(stack, "ann@example.com")
    answer = browser.post("/api/ask", json={"question": QUESTION}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text
    assert answer.json()["sources"], answer.json()


def test_sign_out_through_the_front_end_ends_every_copy_of_the_session(prod: dict[str, Any]) -> None:
    """Behind the TLS front end, with a real Google credential, from the deployed qa: a copy of the
    session cookie (another device, a thief) is signed out with the browser that signed out."""
    stack: ProductionStack = prod["stack"]
    browser, csrf = _google_sign_in(stack, "sam@example.com")
    copy = _browser(stack)
    copy.cookies.set("askbase_session", browser.cookies["askbase_session"], domain="127.0.0.1")
    assert copy.get("/api/conversations", headers={"X-CSRF-Token": csrf}).status_code == 200
    out = browser.post("/signout", data={"csrf_token": csrf})
    assert out.status_code == 302 and out.headers["location"].startswith("/signin"), out.text[:300]
    page = copy.get("/")
    assert page.status_code == 302 and page.headers["location"].startswith("/signin")
    assert copy.get("/api/conversations", headers={"X-CSRF-Token": csrf}).status_code == 401


def test_telegram_bot_added_from_the_pages_answers_once(prod: dict[str, Any]) -> None:
    stack: ProductionStack = prod["stack"]
    tg: FakeTelegram = prod["tg"]
    browser, csrf = _google_sign_in(stack, "tom@example.com")
    token = tg.add_bot(username="prodshape_bot")
    form = {"csrf_token": csrf, "platform": "telegram", "name": "Docs", "model": "extractive"}
    created = browser.post("/bots/new", data={**form, "token": token, "start": "1"})
    assert created.status_code == 302, created.text[:1000]
    bot_id = created.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    hook = tg.webhook(token)
    assert hook is not None and hook.url.startswith(stack.urls["telegram"] + "/"), hook
    assert bot_id in hook.url
    # Restart from the page keeps the bot up, at the same public URL.
    restarted = browser.post(f"/bots/{bot_id}/restart", data={"csrf_token": csrf})
    assert restarted.status_code == 302
    hook_after = tg.webhook(token)
    assert hook_after is not None and hook_after.url == hook.url

    update = tg.message_update(chat_id=7001, text=QUESTION)
    assert tg.send_update(token, update).status_code == 200
    sent = tg.wait_for_messages(token, 1, timeout=90)
    assert "deploy" in sent[0]["text"].lower() or "pulumi" in sent[0]["text"].lower(), sent[0]
    # Telegram redelivers an update it did not see acknowledged: still one reply. The redelivery is
    # acknowledged only after ingress looked it up, so once it answered the duplicate is decided.
    assert tg.send_update(token, update).status_code == 200
    detail = browser.get(f"/bots/{bot_id}").text
    assert "prodshape_bot" in detail
    assert len(tg.sent_messages(token)) == 1


def test_discord_ask_gets_its_deferred_answer(prod: dict[str, Any]) -> None:
    stack: ProductionStack = prod["stack"]
    dc: FakeDiscord = prod["dc"]
    browser, csrf = _google_sign_in(stack, "dora@example.com")
    app = dc.add_application()
    created = browser.post(
        "/bots/new",
        data={
            "csrf_token": csrf,
            "platform": "discord",
            "name": "Docs",
            "model": "extractive",
            "application_id": app.id,
            "public_key": app.public_key,
            "bot_token": app.bot_token,
            "start": "1",
        },
    )
    assert created.status_code == 302, created.text[:1000]
    assert app.interactions_endpoint_url.startswith(stack.urls["discord"] + "/")
    response = dc.deliver(app.id, dc.ask_interaction(app.id, QUESTION))
    assert response.status_code == 200 and response.json()["type"] == 5  # deferred
    edits = dc.wait_for_edits(app.id, 1, timeout=90)
    assert "deploy" in edits[0]["message"]["content"].lower(), edits[0]
    assert dc.deliver(app.id, dc.ask_interaction(app.id, QUESTION), bad_signature=True).status_code == 401


def test_service_routes_accept_only_their_callers(prod: dict[str, Any]) -> None:
    stack: ProductionStack = prod["stack"]
    http = stack.http()
    botrunner, qa = stack.urls["botrunner"], stack.urls["qa"]
    user = {"X-Askbase-User": "ann@example.com"}
    # botrunner refuses a call with no token, a junk token, and a valid token of the wrong caller.
    assert http.get(botrunner + "/api/bots", headers=user).status_code == 401
    assert http.get(botrunner + "/api/bots", headers={**user, "Authorization": "Bearer x"}).status_code == 401
    as_scheduler = stack.bearer("scheduler-invoker", botrunner)
    assert http.get(botrunner + "/api/bots", headers={**user, **as_scheduler}).status_code == 403
    assert (
        http.post(botrunner + "/internal/reconcile", headers=stack.bearer("qa", botrunner)).status_code == 403
    )
    assert stack.scheduler_call("reconcile").status_code == 200
    # No caller can make a user an admin with a header: ann sees only her bots even when qa says "admin".
    as_qa = {**user, **stack.bearer("qa", botrunner), "X-Askbase-Admin": "1"}
    assert http.get(botrunner + "/api/bots?all=1", headers=as_qa).json()["bots"] == []
    # The worker takes pushes only from the push account.
    push = {"message": {"data": "e30=", "messageId": "1"}, "subscription": "x"}
    assert http.post(botrunner + "/worker/push", json=push, headers=as_scheduler).status_code == 403
    # The scrape function refuses a caller without a token; qa refuses a malformed token before it
    # downloads any certificate.
    assert http.post(stack.urls["scrape"], content=b"{}").status_code == 401
    before = stack.issuer.certs_requests
    for junk in ("Bearer x", "Bearer a.b.c"):
        response = http.post(qa + "/api/ask", json={"question": "hi"}, headers={"Authorization": junk})
        assert response.status_code == 401
    assert stack.issuer.certs_requests == before
    # Only botrunner's account may ask as a service.
    as_fn = stack.bearer("telegram-fn", qa)
    assert http.post(qa + "/api/ask", json={"question": "hi"}, headers=as_fn).status_code == 401


def test_scheduled_scrape_publishes_and_qa_swaps_it_in(prod: dict[str, Any]) -> None:
    stack: ProductionStack = prod["stack"]
    run = stack.scheduler_call("scrape")
    assert run.status_code == 200, run.text
    snapshot = run.json()["snapshot_id"]
    if snapshot:  # nothing changed since the first crawl: the served snapshot stays
        assert _wait_for_snapshot(stack, snapshot)["status"] == "ready"
    else:
        assert stack.status()["snapshot_id"] == prod["first_scrape"].json()["snapshot_id"]
