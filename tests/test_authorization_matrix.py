"""Every endpoint, every kind of caller → the right status, and no secret in any response or log line.

Callers: anonymous, another signed-in user, the owner of the resource, and an admin. Someone else's
conversation or bot is a 404 (never a 403 that would confirm it exists). Admins may trigger a refresh
and see every bot, but conversations are private even from them.
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
from tests.fakes.telegram_api import FakeTelegram
from tests.qa_support import fake_live_index, make_app, sign_in

pytestmark = pytest.mark.emulators
pytest_plugins = ["tests.fakes.bot_fixtures"]

OWNER, OTHER, ADMIN = "owner@example.com", "other@example.com", "admin@example.com"
ROLES = ("anonymous", "other", "owner", "admin")


@pytest.fixture
def world(
    bot_settings: Settings,
    control: BotControl,
    tg: FakeTelegram,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> dict[str, Any]:
    caplog.set_level(logging.DEBUG)
    live, _ = fake_live_index(tmp_path)
    app = make_app(bot_settings, live, admin_emails=[ADMIN], rate_limit_per_minute=10_000)
    clients: dict[str, tuple[FlaskClient, str | None]] = {"anonymous": (app.test_client(), None)}
    for role, email in (("other", OTHER), ("owner", OWNER), ("admin", ADMIN)):
        client = app.test_client()
        clients[role] = (client, sign_in(client, email))
    owner_client, owner_csrf = clients["owner"]
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
        "bot": bot.id,
        "token": token,
        "control": control,
        "settings": bot_settings,
        "caplog": caplog,
    }
    live.stop()


def _call(world: dict[str, Any], role: str, method: str, path: str, **kwargs: Any) -> int:
    client, csrf = world["clients"][role]
    headers = dict(kwargs.pop("headers", {}))
    if csrf:
        headers["X-CSRF-Token"] = csrf
        if "data" in kwargs:
            kwargs["data"] = {**kwargs["data"], "csrf_token": csrf}
    response = client.open(path, method=method, headers=headers, **kwargs)
    body = response.get_data(as_text=True)
    assert world["token"] not in body, f"{method} {path} as {role} leaked the bot token"
    return response.status_code


# (method, path template, kwargs, expected status per role: anonymous, other, owner, admin)
QA_MATRIX = [
    ("GET", "/", {}, (302, 200, 200, 200)),
    ("GET", "/c/{conv}", {}, (302, 404, 200, 404)),
    ("GET", "/status", {}, (302, 200, 200, 200)),
    # Browser POSTs are checked for CSRF before anything else: anonymous callers have no token → 403.
    ("POST", "/status/refresh", {"data": {}}, (403, 403, 403, 302)),
    ("POST", "/api/ask", {"json": {"question": "What is askbase?"}}, (401, 200, 200, 200)),
    ("GET", "/api/conversations", {}, (401, 200, 200, 200)),
    ("GET", "/api/conversations/{conv}", {}, (401, 404, 200, 404)),
    ("GET", "/api/conversations/{conv}/export?format=md", {}, (401, 404, 200, 404)),
    ("DELETE", "/api/conversations/{conv}", {}, (401, 404, 200, 404)),
    ("GET", "/bots", {}, (302, 200, 200, 200)),
    ("GET", "/bots/status.json", {}, (401, 200, 200, 200)),
    ("GET", "/bots/{bot}", {}, (302, 404, 200, 200)),
    (
        "POST",
        "/bots/{bot}/edit",
        {"data": {"name": "Renamed", "model": "extractive", "system_prompt": ""}},
        (403, 404, 302, 302),
    ),
    ("POST", "/bots/{bot}/start", {"data": {}}, (403, 404, 302, 302)),
    ("POST", "/bots/{bot}/stop", {"data": {}}, (403, 404, 302, 302)),
    # No token in the form: the owner is sent back with an error, others never learn the bot exists.
    ("POST", "/bots/{bot}/token", {"data": {}}, (403, 404, 302, 302)),
]


@pytest.mark.parametrize(
    ("method", "template", "kwargs", "expected"), QA_MATRIX, ids=[f"{m} {p}" for m, p, _, _ in QA_MATRIX]
)
def test_qa_endpoints(
    world: dict[str, Any], method: str, template: str, kwargs: dict, expected: tuple
) -> None:
    path = template.format(conv=world["conversation"], bot=world["bot"])
    got = {}
    # The owner goes last on deletes, so the other roles are checked against a resource that exists.
    order = ("anonymous", "other", "admin", "owner")
    for role in order:
        got[role] = _call(world, role, method, path, **kwargs)
    assert tuple(got[r] for r in ROLES) == expected, f"{method} {path}: {got}"


def test_anonymous_state_changes_without_csrf_are_refused(world: dict[str, Any]) -> None:
    client, _ = world["clients"]["owner"]
    assert client.post("/api/ask", json={"question": "hi"}).status_code == 403
    assert client.delete(f"/api/conversations/{world['conversation']}").status_code == 403
    assert client.post(f"/bots/{world['bot']}/stop", data={}).status_code in (400, 403)
    assert client.get(f"/api/conversations/{world['conversation']}").status_code == 200  # still there


BOTRUNNER_MATRIX = [
    ("GET", "/api/bots", (401, 200, 200, 200)),
    ("GET", "/api/bots/{bot}", (401, 404, 200, 200)),
    ("PATCH", "/api/bots/{bot}", (401, 404, 200, 200)),
    ("GET", "/api/bots/{bot}/activity", (401, 404, 200, 200)),
    ("POST", "/api/bots/{bot}/start", (401, 404, 200, 200)),
    ("POST", "/api/bots/{bot}/stop", (401, 404, 200, 200)),
    ("POST", "/api/bots/{bot}/token", (401, 404, 400, 400)),  # a token Telegram rejects: 400, not 404
    ("DELETE", "/api/bots/{bot}", (401, 404, 200, None)),  # the owner deletes it; admins: see below
]


def test_botrunner_endpoints(world: dict[str, Any]) -> None:
    app = create_botrunner(world["settings"], control=world["control"], reconcile_on_start=False)
    client = app.test_client()
    headers = {
        "anonymous": {},
        "other": {"X-Askbase-User": OTHER},
        "owner": {"X-Askbase-User": OWNER},
        "admin": {"X-Askbase-User": ADMIN, "X-Askbase-Admin": "1"},
    }
    for method, template, expected in BOTRUNNER_MATRIX:
        path = template.format(bot=world["bot"])
        got = {}
        for role in ("anonymous", "other", "admin", "owner") if method != "DELETE" else ROLES[:3]:
            kwargs: dict[str, Any] = {}
            if method == "PATCH":
                kwargs = {"json": {"name": "Renamed"}}
            elif template.endswith("/token"):
                kwargs = {"json": {"token": "123456789:AA-not-a-token-telegram-knows"}}
            response = client.open(path, method=method, headers=headers[role], **kwargs)
            assert world["token"] not in response.get_data(as_text=True)
            got[role] = response.status_code
        assert tuple(got.get(r) for r in ROLES) == expected, f"{method} {path}: {got}"
    other_list = client.get("/api/bots", headers=headers["other"]).get_json()
    assert other_list["bots"] == []


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
