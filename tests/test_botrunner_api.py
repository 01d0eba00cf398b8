"""The botrunner control-plane HTTP API: routes, statuses, owner isolation, auth, no token leaks."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from flask.testing import FlaskClient

from services.botrunner.app import create_app
from services.botrunner.worker import MAX_PUSH_BYTES
from shared.bots.control import BotControl
from shared.devstack.issuer import LocalIssuer
from tests.fakes.telegram_api import FakeTelegram

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings, control.
pytest_plugins = ["tests.fakes.bot_fixtures"]
pytestmark = pytest.mark.emulators

ANN = {"X-Askbase-User": "ann@example.com"}
BOB = {"X-Askbase-User": "bob@example.com"}


@pytest.fixture
def client(bot_settings, control: BotControl) -> FlaskClient:
    settings = bot_settings.model_copy(update={"admin_emails": ["root@example.com"]})
    app = create_app(settings, control=control, reconcile_on_start=False)
    return app.test_client()


def _register(client: FlaskClient, tg: FakeTelegram, headers=ANN) -> tuple[dict, str]:
    token = tg.add_bot(username="docs_bot")
    response = client.post(
        "/api/bots",
        json={"platform": "telegram", "name": "Docs", "model": "extractive", "token": token},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json(), token


def test_requires_a_user(client: FlaskClient) -> None:
    assert client.get("/api/bots").status_code == 401
    assert client.get("/healthz").status_code == 200


def test_bad_input_is_4xx_never_500(client: FlaskClient, tg: FakeTelegram) -> None:
    bad_token = "1234567890:AAHk1H6tK7cbbX5fL9m3o0nV8rQ2wYzAbCd"
    response = client.post(
        "/api/bots", json={"platform": "telegram", "name": "x", "token": bad_token}, headers=ANN
    )
    assert response.status_code == 400
    assert "Telegram rejected this token" in response.get_json()["error"]
    assert (
        client.post("/api/bots", data="{nope", headers=ANN, content_type="application/json").status_code
        == 400
    )
    assert client.post("/api/bots", json=[1, 2], headers=ANN).status_code == 400
    assert client.post("/api/bots", json={"platform": "x"}, headers=ANN).status_code == 400
    assert client.get("/api/bots/unknown", headers=ANN).status_code == 404
    assert client.get("/api/bots/a%2Fb", headers=ANN).status_code in (404, 405)
    assert client.post("/api/bots/unknown/start", headers=ANN).status_code == 404
    bot, _ = _register(client, tg)
    assert client.post(f"/api/bots/{bot['id']}/explode", headers=ANN).status_code == 404
    assert client.patch(f"/api/bots/{bot['id']}", json={"model": "gpt"}, headers=ANN).status_code == 400
    assert client.get(f"/api/bots/{bot['id']}/activity?limit=0", headers=ANN).status_code == 400
    assert client.get(f"/api/bots/{bot['id']}/activity?cursor=zzz", headers=ANN).status_code == 400
    assert client.put(f"/api/bots/{bot['id']}", headers=ANN).status_code == 405


def test_a_lone_surrogate_escape_in_a_json_string_is_400(client: FlaskClient, tg: FakeTelegram) -> None:
    """``"\\ud800"`` is valid JSON whose string no UTF-8 encoder takes: a bot renamed to it was a 500
    (Firestore's write raised UnicodeEncodeError). Every JSON route refuses it as it parses the body."""
    bot, _ = _register(client, tg)
    headers = ANN | {"Content-Type": "application/json"}
    for method, path, body in [
        ("patch", f"/api/bots/{bot['id']}", '{"name": "Docs \\ud800"}'),
        ("patch", f"/api/bots/{bot['id']}", '{"system_prompt": "\\udfff"}'),
        ("post", "/api/bots", '{"platform": "telegram", "name": "\\ud800", "token": "1:x"}'),
    ]:
        response = getattr(client, method)(path, data=body.encode(), headers=headers)
        assert response.status_code == 400, (path, body, response.get_data(as_text=True))
        assert "not text" in response.get_json()["error"]
    assert client.get(f"/api/bots/{bot['id']}", headers=ANN).get_json()["name"] == bot["name"]


def test_every_refused_request_logs_one_line_with_its_reason(
    client: FlaskClient, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4xx tells the caller why, and the operator too: one WARNING per refused request (method, path,
    status, reason), as qa logs its own; never the body."""
    caplog.set_level(logging.INFO, logger="services.botrunner")
    secret_looking = "1234567890:AAHk1H6tK7cbbX5fL9m3o0nV8rQ2wYzAbCd"
    requests = [
        (lambda: client.post("/api/bots", json={"platform": "x", "token": secret_looking}, headers=ANN), 400),
        (lambda: client.post("/api/bots", data="{nope", headers=ANN, content_type="application/json"), 400),
        (lambda: client.get("/api/bots/unknown", headers=ANN), 404),
        (lambda: client.post("/api/bots/unknown/explode", headers=ANN), 404),
        (lambda: client.get("/api/bots"), 401),
        (lambda: client.put("/api/bots/unknown", headers=ANN), 405),
    ]
    for send, status in requests:
        caplog.clear()
        assert send().status_code == status
        lines = [r for r in caplog.records if r.name.startswith("services.botrunner")]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert lines[0].levelno == logging.WARNING and f"-> {status}" in lines[0].getMessage()
    caplog.clear()
    client.post("/api/bots", json={"platform": "x", "token": secret_looking}, headers=ANN)
    [line] = [r.getMessage() for r in caplog.records if r.name.startswith("services.botrunner")]
    assert "platform must be" in line and secret_looking not in line


def test_lifecycle_over_http(client: FlaskClient, tg: FakeTelegram) -> None:
    bot, token = _register(client, tg)
    bot_id = bot["id"]
    assert bot["status"] == "stopped" and bot["platform_info"]["username"] == "docs_bot"
    assert [b["id"] for b in client.get("/api/bots", headers=ANN).get_json()["bots"]] == [bot_id]

    started = client.post(f"/api/bots/{bot_id}/start", headers=ANN).get_json()
    assert started["status"] == "running"
    assert tg.webhook(token).url.endswith(f"/{bot_id}")

    edited = client.patch(f"/api/bots/{bot_id}", json={"name": "Renamed"}, headers=ANN).get_json()
    assert edited["name"] == "Renamed"

    assert client.post(f"/api/bots/{bot_id}/restart", headers=ANN).get_json()["status"] == "running"
    stopped = client.post(f"/api/bots/{bot_id}/stop", headers=ANN).get_json()
    assert stopped["status"] == "stopped" and tg.webhook(token) is None

    first = client.get(f"/api/bots/{bot_id}/activity?limit=2", headers=ANN).get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(f"/api/bots/{bot_id}/activity?limit=50&cursor={first['next_cursor']}", headers=ANN)
    kinds = [e["kind"] for e in first["items"] + rest.get_json()["items"]]
    assert kinds == ["stopped", "restarted", "edited", "started", "created"]
    assert rest.get_json()["next_cursor"] is None

    assert client.delete(f"/api/bots/{bot_id}", headers=ANN).get_json() == {"deleted": True}
    assert client.get(f"/api/bots/{bot_id}", headers=ANN).status_code == 404


def test_other_users_get_404_everywhere(client: FlaskClient, tg: FakeTelegram) -> None:
    bot, token = _register(client, tg)
    bot_id = bot["id"]
    assert client.get("/api/bots", headers=BOB).get_json() == {"bots": []}
    calls = [
        ("get", f"/api/bots/{bot_id}", None),
        ("patch", f"/api/bots/{bot_id}", {"name": "mine"}),
        ("delete", f"/api/bots/{bot_id}", None),
        ("post", f"/api/bots/{bot_id}/start", None),
        ("post", f"/api/bots/{bot_id}/stop", None),
        ("post", f"/api/bots/{bot_id}/restart", None),
        ("get", f"/api/bots/{bot_id}/activity", None),
        ("post", f"/api/bots/{bot_id}/token", {"token": token}),
    ]
    for method, path, body in calls:
        response = getattr(client, method)(path, json=body, headers=BOB)
        assert response.status_code == 404, (method, path)
        assert response.get_json() == {"error": "No such bot."}
    assert tg.webhook(token) is None
    assert client.get(f"/api/bots/{bot_id}", headers=ANN).get_json()["name"] == "Docs"
    # Admin rights come from botrunner's own admin_emails; no caller can assert them with a header.
    admin = {"X-Askbase-User": "root@example.com"}
    assert client.get(f"/api/bots/{bot_id}", headers=admin).status_code == 200
    assert len(client.get("/api/bots?all=1", headers=admin).get_json()["bots"]) == 1
    claims_admin = {**BOB, "X-Askbase-Admin": "1"}
    assert client.get(f"/api/bots/{bot_id}", headers=claims_admin).status_code == 404
    assert client.get("/api/bots?all=1", headers=claims_admin).get_json()["bots"] == []


def test_no_token_in_any_response_or_log_line(
    client: FlaskClient, tg: FakeTelegram, control: BotControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []

    def record(response):
        bodies.append(response.get_data(as_text=True))
        return response

    bot, token = _register(client, tg)
    bot_id = bot["id"]
    bodies.append(str(bot))
    for path in ("start", "restart", "stop"):
        record(client.post(f"/api/bots/{bot_id}/{path}", headers=ANN))
    tg.fail_next("setWebhook", status=500, times=5)
    record(client.post(f"/api/bots/{bot_id}/start", headers=ANN))  # an error is recorded and shown
    tg.revoke(token)
    record(client.post(f"/api/bots/{bot_id}/restart", headers=ANN))
    record(client.post("/internal/reconcile"))
    record(client.get(f"/api/bots/{bot_id}", headers=ANN))
    record(client.get("/api/bots", headers=ANN))
    record(client.get(f"/api/bots/{bot_id}/activity", headers=ANN))
    # A second registration attempt with the same (now revoked) token fails: the error names no token.
    record(client.post("/api/bots", json={"platform": "telegram", "name": "x", "token": token}, headers=ANN))
    # So does replacing it with itself; then the token @BotFather issued instead is accepted.
    record(client.post(f"/api/bots/{bot_id}/token", json={"token": token}, headers=ANN))
    old_secret = control.registry.webhook_secret(control.registry.get_bot(bot_id))
    new_token = tg.reissue_token(token)
    replaced = record(client.post(f"/api/bots/{bot_id}/token", json={"token": new_token}, headers=ANN))
    assert replaced.status_code == 200 and replaced.get_json()["status"] == "running"

    secret = control.registry.webhook_secret(control.registry.get_bot(bot_id))
    everything = "\n".join(bodies) + "\n" + caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "error" in everything  # the failures above really were reported
    for value in (token, token.split(":", 1)[1], new_token, new_token.split(":", 1)[1], old_secret, secret):
        assert value not in everything


def test_replace_token_over_http(client: FlaskClient, tg: FakeTelegram, control: BotControl) -> None:
    bot, token = _register(client, tg)
    path = f"/api/bots/{bot['id']}/token"
    assert client.post(path, data="{nope", headers=ANN, content_type="application/json").status_code == 400
    assert client.post(path, json={"token": "short"}, headers=ANN).status_code == 400
    other = client.post(path, json={"token": tg.add_bot(username="other_bot")}, headers=ANN)
    assert other.status_code == 400 and "@other_bot" in other.get_json()["error"]
    assert client.post("/api/bots/nope/token", json={"token": token}, headers=ANN).status_code == 404
    new_token = tg.reissue_token(token)
    replaced = client.post(path, json={"token": new_token}, headers=ANN)
    assert replaced.status_code == 200 and replaced.get_json()["id"] == bot["id"]
    assert control.registry.decrypt_token(control.registry.get_bot(bot["id"])) == new_token


def test_reconcile_endpoint(client: FlaskClient, tg: FakeTelegram) -> None:
    bot, token = _register(client, tg)
    client.post(f"/api/bots/{bot['id']}/start", headers=ANN)
    tg.lose_webhook(token)
    report = client.post("/internal/reconcile").get_json()
    assert report["repaired"] == {bot["id"]: "webhook set"}
    assert tg.webhook(token) is not None


def test_google_oidc_mode_requires_a_service_token_per_route(
    bot_settings, control: BotControl, issuer: LocalIssuer
) -> None:
    qa_sa = "qa@askbase-test.iam.gserviceaccount.com"
    scheduler_sa = "scheduler@askbase-test.iam.gserviceaccount.com"
    aud = "https://botrunner.example.run.app"
    settings = bot_settings.model_copy(
        update={
            "internal_auth": "google-oidc",
            "oidc_certs_url": issuer.certs_url,
            "oidc_issuers": [issuer.issuer],
            "botrunner_url": aud,
            "control_callers": [qa_sa],
            "reconcile_callers": [scheduler_sa],
        }
    )
    app = create_app(settings, control=control, reconcile_on_start=False)
    client = app.test_client()

    def bearer(email: str, audience: str = aud) -> dict[str, str]:
        return {"Authorization": "Bearer " + issuer.mint(email, audience)}

    assert client.get("/api/bots", headers=ANN).status_code == 401
    assert client.get("/api/bots", headers={**ANN, "Authorization": "Bearer bad"}).status_code == 401
    assert client.get("/api/bots", headers={**ANN, **bearer(qa_sa, "https://qa.example")}).status_code == 401
    assert client.get("/api/bots", headers={**ANN, **bearer(qa_sa)}).status_code == 200
    # Each route has its own callers: the scheduler cannot drive the control API, qa cannot reconcile.
    assert client.get("/api/bots", headers={**ANN, **bearer(scheduler_sa)}).status_code == 403
    assert client.post("/internal/reconcile").status_code == 401
    assert client.post("/internal/reconcile", headers=bearer(qa_sa)).status_code == 403
    assert client.post("/internal/reconcile", headers=bearer(scheduler_sa)).status_code == 200
    assert client.get("/api/bots", headers={**ANN, **bearer("someone@gmail.com")}).status_code == 403
    assert client.get("/healthz").status_code == 200


def test_certificates_out_of_reach_are_503_with_a_log_line(
    bot_settings, control: BotControl, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """While Google's certificates cannot be fetched (a fresh instance, a network fault) every caller is
    answered 503 so it tries again; the operator sees why, on the control API and on the worker's push."""
    import socket

    with socket.socket() as closed:  # a certificates URL nothing listens on
        closed.bind(("127.0.0.1", 0))
        certs = f"http://127.0.0.1:{closed.getsockname()[1]}/oauth2/v1/certs"
    qa_sa = "qa@askbase-test.iam.gserviceaccount.com"
    aud = "https://botrunner.example.run.app"
    settings = bot_settings.model_copy(
        update={
            "internal_auth": "google-oidc",
            "oidc_certs_url": certs,
            "oidc_issuers": [issuer.issuer],
            "botrunner_url": aud,
            "control_callers": [qa_sa],
            "worker_push_audience": aud + "/worker/push",
            "worker_push_service_account": "push@askbase-test.iam.gserviceaccount.com",
        }
    )
    client = create_app(settings, control=control, reconcile_on_start=False).test_client()
    caplog.set_level(logging.INFO, logger="services.botrunner")
    listed = client.get("/api/bots", headers={**ANN, "Authorization": "Bearer " + issuer.mint(qa_sa, aud)})
    push_token = issuer.mint("push@askbase-test.iam.gserviceaccount.com", aud + "/worker/push")
    pushed = client.post("/worker/push", data=b"{}", headers={"Authorization": "Bearer " + push_token})
    assert (listed.status_code, pushed.status_code) == (503, 503)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(line.startswith("GET /api/bots -> 503") for line in lines), lines
    assert any(line.startswith("POST /worker/push -> 503") for line in lines), lines


@pytest.mark.parametrize("error", ["Aborted", "ServiceUnavailable"])
def test_storage_unavailable_or_contended_is_503_with_retry_after(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    from google.api_core import exceptions as gexc

    def unavailable(*args: object, **kwargs: object) -> None:
        raise getattr(gexc, error)("Transaction lock timeout.")

    monkeypatch.setattr(BotControl, "list_bots", unavailable)
    response = client.get("/api/bots", headers=ANN)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_json() == {"error": "temporarily unavailable; try again"}


@pytest.mark.parametrize("bot_id", ["__x__", "__bot__"])
def test_reserved_bot_ids_are_404_on_every_bot_route(client: FlaskClient, bot_id: str) -> None:
    """Firestore refuses ids matching __.*__ (InvalidArgument, a 500 before): no bot has one."""
    responses = [
        client.get(f"/api/bots/{bot_id}", headers=ANN),
        client.patch(f"/api/bots/{bot_id}", json={"name": "x"}, headers=ANN),
        client.delete(f"/api/bots/{bot_id}", headers=ANN),
        client.post(f"/api/bots/{bot_id}/start", headers=ANN),
        client.post(f"/api/bots/{bot_id}/token", json={"token": "x"}, headers=ANN),
        client.get(f"/api/bots/{bot_id}/activity", headers=ANN),
    ]
    assert [r.status_code for r in responses] == [404] * 6, [r.get_json() for r in responses]


@pytest.mark.parametrize("limit", ["²", "9" * 4400, "-1", "1.5", "0x10"])
def test_an_activity_limit_that_is_no_plain_number_is_400(
    client: FlaskClient, tg: FakeTelegram, limit: str
) -> None:
    """``str.isdigit()`` took "²" and 4,400 nines, which ``int()`` then refused (a 500)."""
    bot, _ = _register(client, tg)
    response = client.get(f"/api/bots/{bot['id']}/activity", query_string={"limit": limit}, headers=ANN)
    assert response.status_code == 400, response.get_json()
    assert response.get_json() == {"error": "limit must be a number from 1 to 200."}


def test_json_nested_past_the_recursion_limit_is_400(client: FlaskClient) -> None:
    deep = "[" * 5000 + "]" * 5000
    response = client.post("/api/bots", data=deep, content_type="application/json", headers=ANN)
    assert response.status_code == 400 and response.get_json() == {"error": "Expected a JSON body."}


def _push(job_bytes: bytes) -> bytes:
    return json.dumps({"message": {"data": base64.b64encode(job_bytes).decode(), "messageId": "1"}}).encode()


def test_worker_push_keeps_its_1_mb_rule_while_the_control_api_keeps_64_kib(
    client: FlaskClient, bot_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The app's MAX_CONTENT_LENGTH (64 KiB) is the control API's. A push up to 1 MB is the worker's to
    judge (here: malformed, acked); a larger one is acked as "too large" with a log line, with or without
    a Content-Length. A 413 would be a nack: Pub/Sub redelivering the same bytes until the dead letter."""
    middling = _push(b"x" * 70_000)
    assert bot_settings.max_body_bytes < len(middling) < MAX_PUSH_BYTES
    response = client.post("/worker/push", data=middling, content_type="application/json")
    assert (response.status_code, response.get_json()) == (200, {"status": "malformed"})

    huge = _push(b"x" * MAX_PUSH_BYTES)
    with caplog.at_level(logging.WARNING, logger="services.botrunner.worker"):
        sized = client.post("/worker/push", data=huge, content_type="application/json")
        streamed = client.post(
            "/worker/push",
            input_stream=io.BytesIO(huge),
            content_type="application/json",
            environ_overrides={"wsgi.input_terminated": True},  # a chunked body: no Content-Length
        )
    for reply in (sized, streamed):
        assert (reply.status_code, reply.get_json()) == (200, {"status": "too large"})
    lines = [r.getMessage() for r in caplog.records if r.name == "services.botrunner.worker"]
    assert len(lines) == 2 and all("too" in line or "over" in line for line in lines)

    control = client.post("/api/bots", data=middling, content_type="application/json", headers=ANN)
    assert control.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": {"data": "e30=", "x": ' + b"1" * 4400 + b"}}",
        b"[" * 5000 + b"]" * 5000,
        _push(b'{"job_id": ' + b"1" * 4400 + b"}"),
    ],
    ids=["huge integer", "deep nesting", "huge integer in the job"],
)
def test_worker_push_of_json_python_cannot_read_is_acked_as_malformed(
    client: FlaskClient, body: bytes
) -> None:
    """json.loads raises a plain ValueError past 4,300 digits and RecursionError past ~1,000 levels: both
    are the same bytes on every redelivery, so they are acked like any malformed push."""
    response = client.post("/worker/push", data=body, content_type="application/json")
    assert (response.status_code, response.get_json()) == (200, {"status": "malformed"})
