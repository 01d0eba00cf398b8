"""Every route, every kind of caller → the right status, and no secret in any response or log line.

The rows are checked against the apps' own ``url_map`` (qa, botrunner) and the function targets: a new
route without a row fails :func:`test_every_route_has_a_row`. Callers: anonymous, another signed-in
user, the owner of the resource, an admin, a service caller with a valid ID token for the service
(botrunner's account for qa; qa's for botrunner's control API) and a token for the wrong audience.
Someone else's conversation or bot is a 404 (never a 403 that would confirm it exists). Admins may
trigger a refresh and see every bot, but conversations are private even from them. Tokens come from the
loopback issuer and are checked by the real verifier (``shared.idtokens``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from services.botrunner.app import create_app as create_botrunner
from shared.bots.control import BotControl, Caller
from shared.config import Settings
from shared.devstack.issuer import LocalIssuer
from tests.fakes.telegram_api import FakeTelegram
from tests.qa_support import fake_live_index, install_botrunner, make_app, sign_in

pytestmark = pytest.mark.emulators
pytest_plugins = ["tests.fakes.bot_fixtures"]

OWNER, OTHER, ADMIN = "owner@example.com", "other@example.com", "admin@example.com"
ROLES = ("anonymous", "other", "owner", "admin", "service", "wrong_audience")
QA_URL = "https://qa.askbase.test"
BOTRUNNER_URL = "https://botrunner.askbase.test"
BOTRUNNER_SA = "askbase-botrunner@askbase-test.iam.gserviceaccount.com"
QA_SA = "askbase-qa@askbase-test.iam.gserviceaccount.com"
SCHEDULER_SA = "askbase-scheduler@askbase-test.iam.gserviceaccount.com"


@pytest.fixture
def world(
    bot_settings: Settings,
    control: BotControl,
    tg: FakeTelegram,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    issuer: LocalIssuer,
) -> dict[str, Any]:
    caplog.set_level(logging.DEBUG)
    live, _ = fake_live_index(tmp_path)
    oidc = {
        "internal_auth": "google-oidc",
        "oidc_certs_url": issuer.certs_url,
        "oidc_issuers": [issuer.issuer],
        "admin_emails": [ADMIN],
        "rate_limit_per_minute": 10_000,
        "qa_url": QA_URL,
        "botrunner_url": BOTRUNNER_URL,
        "service_callers": [BOTRUNNER_SA],
        "control_callers": [QA_SA],
        "reconcile_callers": [SCHEDULER_SA],
    }
    app = make_app(bot_settings, live, **oidc)
    # The bot pages' calls to botrunner are covered on the production shape; here qa reaches an
    # in-process botrunner without service tokens so the matrix isolates qa's own checks.
    install_botrunner(app, bot_settings.model_copy(update={"admin_emails": [ADMIN]}), control)
    clients: dict[str, tuple[FlaskClient, str | None, dict[str, str]]] = {
        "anonymous": (app.test_client(), None, {}),
        "service": (app.test_client(), None, _bearer(issuer, BOTRUNNER_SA, QA_URL)),
        "wrong_audience": (app.test_client(), None, _bearer(issuer, BOTRUNNER_SA, BOTRUNNER_URL)),
    }
    for role, email in (("other", OTHER), ("owner", OWNER), ("admin", ADMIN)):
        client = app.test_client()
        clients[role] = (client, sign_in(client, email), {})
    owner_client, owner_csrf, _ = clients["owner"]
    asked = owner_client.post(
        "/api/ask", json={"question": "How do I deploy?"}, headers={"X-CSRF-Token": owner_csrf}
    )
    assert asked.status_code == 200
    token = tg.add_bot(username="matrix_bot")
    bot = control.create_bot(
        Caller(user=OWNER, email=OWNER), {"platform": "telegram", "name": "Matrix", "token": token}
    )
    yield {
        "clients": clients,
        "conversation": asked.get_json()["conversation_id"],
        "answer": asked.get_json()["answer_id"],
        "bot": bot.id,
        "token": token,
        "control": control,
        "settings": bot_settings.model_copy(update=oidc),
        "caplog": caplog,
        "issuer": issuer,
        "qa_app": app,
    }
    live.stop()


def _bearer(issuer: LocalIssuer, email: str, audience: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(email, audience)}


def _call(world: dict[str, Any], role: str, method: str, path: str, **kwargs: Any) -> int:
    client, csrf, auth = world["clients"][role]
    headers = {**auth, **kwargs.pop("headers", {})}
    if csrf:
        headers["X-CSRF-Token"] = csrf
        if "data" in kwargs:
            kwargs["data"] = {**kwargs["data"], "csrf_token": csrf}
    response = client.open(path, method=method, headers=headers, **kwargs)
    body = response.get_data(as_text=True)
    assert world["token"] not in body, f"{method} {path} as {role} leaked the bot token"
    return response.status_code


# (method, url_map rule) -> (path, kwargs, expected status per role:
#  anonymous, other, owner, admin, service, wrong_audience). A service token counts only on routes
#  marked service_route (/api/ask); elsewhere the caller is judged as an anonymous browser.
QA_MATRIX: dict[tuple[str, str], tuple[str, dict, tuple]] = {
    ("GET", "/"): ("/", {}, (302, 200, 200, 200, 302, 401)),
    ("GET", "/c/<conversation_id>"): ("/c/{conv}", {}, (302, 404, 200, 404, 302, 401)),
    ("GET", "/status"): ("/status", {}, (302, 200, 200, 200, 302, 401)),
    ("GET", "/healthz"): ("/healthz", {}, (200, 200, 200, 200, 200, 401)),
    ("GET", "/readyz"): ("/readyz", {}, (200, 200, 200, 200, 200, 401)),
    ("GET", "/signin"): ("/signin", {}, (200, 200, 200, 200, 200, 401)),
    # Only redirects to a same-site page (the chat without a cookie); the page itself decides access.
    ("GET", "/signin/resume"): ("/signin/resume", {}, (302, 302, 302, 302, 302, 401)),
    # Browser POSTs are checked for CSRF before anything else: anonymous callers have no token → 403.
    ("POST", "/signin/dev"): (
        "/signin/dev",
        {"data": {"email": "x@example.com"}},
        (403, 302, 302, 302, 403, 401),
    ),
    # No Google CSRF cookie → 403 for everyone (Google Sign-In proves its origin its own way).
    ("POST", "/signin/google"): ("/signin/google", {"data": {}}, (403, 403, 403, 403, 403, 401)),
    ("POST", "/signout"): ("/signout", {"data": {}}, (403, 302, 302, 302, 403, 401)),
    ("POST", "/status/refresh"): ("/status/refresh", {"data": {}}, (403, 403, 403, 302, 403, 401)),
    ("POST", "/api/ask"): (
        "/api/ask",
        {"json": {"question": "What is askbase?"}},
        (401, 200, 200, 200, 400, 401),
    ),
    ("GET", "/api/conversations"): ("/api/conversations", {}, (401, 200, 200, 200, 401, 401)),
    ("DELETE", "/api/conversations"): ("/api/conversations", {}, (401, 200, None, 200, 401, 401)),
    ("GET", "/api/conversations/<conversation_id>"): (
        "/api/conversations/{conv}",
        {},
        (401, 404, 200, 404, 401, 401),
    ),
    ("GET", "/api/conversations/<conversation_id>/export"): (
        "/api/conversations/{conv}/export?format=md",
        {},
        (401, 404, 200, 404, 401, 401),
    ),
    # Rename: only the owner; an admin is not the owner of someone else's conversation.
    ("PATCH", "/api/conversations/<conversation_id>"): (
        "/api/conversations/{conv}",
        {"json": {"title": "Renamed"}},
        (401, 404, 200, 404, 401, 401),
    ),
    ("DELETE", "/api/conversations/<conversation_id>"): (
        "/api/conversations/{conv}",
        {},
        (401, 404, 200, 404, 401, 401),
    ),
    # Votes: only on your own answers (someone else's answer id is a 404, even for an admin).
    ("PUT", "/api/answers/<answer_id>/vote"): (
        "/api/answers/{answer}/vote",
        {"json": {"vote": "up"}},
        (401, 404, 200, 404, 401, 401),
    ),
    ("DELETE", "/api/answers/<answer_id>/vote"): (
        "/api/answers/{answer}/vote",
        {},
        (401, 404, 200, 404, 401, 401),
    ),
    # A bot's 👍/👎 press, cast for botrunner's worker: service callers only (an unknown button: 404).
    ("POST", "/api/bot-votes"): (
        "/api/bot-votes",
        {"json": {"bot_id": "some-bot", "state_id": "gone", "voter": "telegram:1", "vote": "up"}},
        (401, 403, 403, 403, 404, 401),
    ),
    # A bot chat's /forget, for botrunner's worker: service callers only (an unknown bot: 404).
    ("POST", "/api/bot-forget"): (
        "/api/bot-forget",
        {"json": {"bot_id": "some-bot", "user": "telegram:1", "voter": "telegram:1"}},
        (401, 403, 403, 403, 404, 401),
    ),
    # The gaps report: admins, and bot owners (the owner has a bot); anyone else is refused.
    ("GET", "/gaps"): ("/gaps", {}, (302, 403, 200, 200, 302, 401)),
    ("GET", "/api/gaps"): ("/api/gaps", {}, (401, 403, 200, 200, 401, 401)),
    ("GET", "/bots"): ("/bots", {}, (302, 200, 200, 200, 302, 401)),
    ("GET", "/bots/new"): ("/bots/new", {}, (302, 200, 200, 200, 302, 401)),
    # An incomplete form: signed-in users get it back with an error; nobody else gets past the gate.
    ("POST", "/bots/new"): ("/bots/new", {"data": {"platform": "telegram"}}, (403, 400, 400, 400, 403, 401)),
    ("GET", "/bots/status.json"): ("/bots/status.json", {}, (401, 200, 200, 200, 401, 401)),
    ("GET", "/bots/<bot_id>"): ("/bots/{bot}", {}, (302, 404, 200, 200, 302, 401)),
    ("GET", "/bots/<bot_id>/delete"): ("/bots/{bot}/delete", {}, (302, 404, 200, 200, 302, 401)),
    # A wrong confirmation: the owner and admins see the form again, nothing is deleted.
    ("POST", "/bots/<bot_id>/delete"): (
        "/bots/{bot}/delete",
        {"data": {"confirm_name": "not it"}},
        (403, 404, 400, 400, 403, 401),
    ),
    ("POST", "/bots/<bot_id>/edit"): (
        "/bots/{bot}/edit",
        {"data": {"name": "Renamed", "model": "extractive", "system_prompt": ""}},
        (403, 404, 302, 302, 403, 401),
    ),
    ("POST", "/bots/<bot_id>/<action>"): ("/bots/{bot}/stop", {"data": {}}, (403, 404, 302, 302, 403, 401)),
    # No token in the form: the owner gets the page back with the error beside the field (400), others
    # never learn the bot exists.
    ("POST", "/bots/<bot_id>/token"): ("/bots/{bot}/token", {"data": {}}, (403, 404, 400, 400, 403, 401)),
}


def _routes(app: Any) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_route_has_a_row(world: dict[str, Any]) -> None:
    """A new route fails here until someone decides who may call it."""
    assert _routes(world["qa_app"]) == set(QA_MATRIX)
    botrunner = create_botrunner(world["settings"], control=world["control"], reconcile_on_start=False)
    assert _routes(botrunner) == set(BOTRUNNER_MATRIX)
    from functions.main import __all__ as targets

    assert set(targets) == set(FUNCTION_ROWS)


@pytest.mark.parametrize(
    ("method", "rule"), sorted(QA_MATRIX), ids=[f"{m} {r}" for m, r in sorted(QA_MATRIX)]
)
def test_qa_endpoints(world: dict[str, Any], method: str, rule: str) -> None:
    template, kwargs, expected = QA_MATRIX[(method, rule)]
    path = template.format(conv=world["conversation"], bot=world["bot"], answer=world["answer"])
    got = {}
    # The owner goes last on deletes, so the other roles are checked against a resource that exists.
    order = ("anonymous", "other", "admin", "service", "wrong_audience", "owner")
    for role, want in zip(ROLES, expected, strict=True):
        if want is None:
            order = tuple(r for r in order if r != role)
    for role in order:
        got[role] = _call(world, role, method, path, **kwargs)
    assert tuple(got.get(r) for r in ROLES) == expected, f"{method} {path}: {got}"


def test_a_service_caller_asks_for_a_bot(world: dict[str, Any]) -> None:
    body = {"question": "What is askbase?", "bot_id": world["bot"], "user": "telegram:1"}
    assert _call(world, "service", "POST", "/api/ask", json=body) == 200
    # Users cannot speak for a bot, and a token for another audience is no service caller.
    assert _call(world, "other", "POST", "/api/ask", json=body) in (400, 404)
    assert _call(world, "wrong_audience", "POST", "/api/ask", json=body) == 401


def test_anonymous_state_changes_without_csrf_are_refused(world: dict[str, Any]) -> None:
    client, _, _ = world["clients"]["owner"]
    assert client.post("/api/ask", json={"question": "hi"}).status_code == 403
    assert client.delete(f"/api/conversations/{world['conversation']}").status_code == 403
    assert client.post(f"/bots/{world['bot']}/stop", data={}).status_code in (400, 403)
    assert client.get(f"/api/conversations/{world['conversation']}").status_code == 200  # still there


# (method, url_map rule) -> (path, kwargs, expected per role). On botrunner the "users" are qa calling
# with its own token and X-Askbase-User; "admin" is an admin by botrunner's admin_emails (no caller can
# assert it); "service" is the scheduler's token; "wrong_audience" is qa's token for qa's own URL.
BOTRUNNER_MATRIX: dict[tuple[str, str], tuple[str, dict, tuple]] = {
    ("GET", "/healthz"): ("/healthz", {}, (200, 200, 200, 200, 200, 200)),
    ("GET", "/api/bots"): ("/api/bots", {}, (401, 200, 200, 200, 403, 401)),
    ("POST", "/api/bots"): ("/api/bots", {"json": {"platform": "nope"}}, (401, 400, 400, 400, 403, 401)),
    ("GET", "/api/bots/<bot_id>"): ("/api/bots/{bot}", {}, (401, 404, 200, 200, 403, 401)),
    ("PATCH", "/api/bots/<bot_id>"): (
        "/api/bots/{bot}",
        {"json": {"name": "Renamed"}},
        (401, 404, 200, 200, 403, 401),
    ),
    ("GET", "/api/bots/<bot_id>/activity"): ("/api/bots/{bot}/activity", {}, (401, 404, 200, 200, 403, 401)),
    ("POST", "/api/bots/<bot_id>/<action>"): ("/api/bots/{bot}/stop", {}, (401, 404, 200, 200, 403, 401)),
    # A token Telegram rejects: 400, not 404, for those who may see the bot.
    ("POST", "/api/bots/<bot_id>/token"): (
        "/api/bots/{bot}/token",
        {"json": {"token": "123456789:AA-not-a-token-telegram-knows"}},
        (401, 404, 400, 400, 403, 401),
    ),
    ("DELETE", "/api/bots/<bot_id>"): ("/api/bots/{bot}", {}, (401, 404, 200, None, 403, 401)),
    # Only the scheduler reconciles; qa's token (a "user" here) is refused.
    ("POST", "/internal/reconcile"): ("/internal/reconcile", {}, (401, 403, 403, 403, 200, 401)),
    # Only the push account may deliver jobs: everyone else, 401 without a valid token, 403 with one.
    ("POST", "/worker/push"): ("/worker/push", {"data": b"{}"}, (401, 403, 403, 403, 403, 401)),
}
# Function target -> who may call it (their own checks; Cloud Run IAM is the first gate in production).
FUNCTION_ROWS = {
    "telegram_webhook": "public: the per-bot secret header (tests/test_webhooks_telegram.py)",
    "discord_interactions": "public: Ed25519 signature (tests/test_webhooks_discord.py)",
    "scrape": "scheduler and qa accounts (test_scrape_function_callers below)",
}


def test_botrunner_endpoints(world: dict[str, Any]) -> None:
    settings = world["settings"].model_copy(
        update={"worker_push_audience": BOTRUNNER_URL, "worker_push_service_account": "push@askbase-test.iam"}
    )
    app = create_botrunner(settings, control=world["control"], reconcile_on_start=False)
    client = app.test_client()
    issuer: LocalIssuer = world["issuer"]
    as_qa = _bearer(issuer, QA_SA, BOTRUNNER_URL)
    headers = {
        "anonymous": {},
        "other": {"X-Askbase-User": OTHER, **as_qa},
        "owner": {"X-Askbase-User": OWNER, **as_qa},
        "admin": {"X-Askbase-User": ADMIN, **as_qa},
        "service": {"X-Askbase-User": OWNER, **_bearer(issuer, SCHEDULER_SA, BOTRUNNER_URL)},
        "wrong_audience": {"X-Askbase-User": OWNER, **_bearer(issuer, QA_SA, QA_URL)},
    }
    # In the table's order: the owner's DELETE comes after every row that needs the bot.
    for (method, _rule), (template, kwargs, expected) in BOTRUNNER_MATRIX.items():
        path = template.format(bot=world["bot"])
        got = {}
        order = ("anonymous", "other", "admin", "service", "wrong_audience", "owner")
        for role in order:
            if expected[ROLES.index(role)] is None:
                continue
            response = client.open(path, method=method, headers=headers[role], **kwargs)
            assert world["token"] not in response.get_data(as_text=True)
            got[role] = response.status_code
        assert tuple(got.get(r) for r in ROLES) == expected, f"{method} {path}: {got}"
    other_list = client.get("/api/bots", headers=headers["other"]).get_json()
    assert other_list["bots"] == []
    # X-Askbase-Admin means nothing: admin rights are botrunner's own admin_emails.
    claims = client.get("/api/bots?all=1", headers={**headers["other"], "X-Askbase-Admin": "1"})
    assert claims.get_json()["bots"] == []


def test_scrape_function_callers(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The scrape target refuses every caller but the scheduler's and qa's accounts, before any work."""
    import flask

    import functions.scrape as scrape_fn
    from shared.config import get_settings

    issuer: LocalIssuer = world["issuer"]
    settings = world["settings"].model_copy(
        update={"scrape_url": "https://scrape.askbase.test", "scrape_callers": [SCHEDULER_SA, QA_SA]}
    )
    monkeypatch.setattr(scrape_fn, "get_settings", lambda: settings)
    ran: list[bool] = []

    def fake_run(_settings: Any) -> Any:
        ran.append(True)
        raise scrape_fn.ScrapeError("stop here: authorization was the point")

    monkeypatch.setattr(scrape_fn, "run_scrape", fake_run)
    app = flask.Flask("scrape")
    cases = {
        None: 401,
        "Bearer x": 401,
        "Bearer " + issuer.mint(SCHEDULER_SA, "https://elsewhere"): 401,
        "Bearer " + issuer.mint(BOTRUNNER_SA, "https://scrape.askbase.test"): 403,
        "Bearer " + issuer.mint(SCHEDULER_SA, "https://scrape.askbase.test"): 500,  # allowed: ran
    }
    for auth, status in cases.items():
        headers = {"Authorization": auth} if auth else {}
        with app.test_request_context("/", method="POST", headers=headers):
            _body, got = scrape_fn.scrape(flask.request)
        assert got == status, auth
    assert ran == [True]
    get_settings.cache_clear()


def test_no_secret_in_any_captured_log_line(world: dict[str, Any]) -> None:
    for role in ROLES:
        _call(world, role, "GET", f"/bots/{world['bot']}")
        _call(world, role, "POST", "/api/ask", json={"question": "token?"})
    settings: Settings = world["settings"]
    secrets = [
        world["token"],
        settings.token_key.get_secret_value(),
        settings.session_secret.get_secret_value(),
    ]
    text = "\n".join(r.getMessage() for r in world["caplog"].records)
    assert text, "nothing was logged: the scan would prove nothing"
    for secret in secrets:
        assert secret not in text
