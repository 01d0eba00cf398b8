"""The bot pages of the web app: add / start / edit / delete / logs, live status JSON, isolation."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from tests.fakes.telegram_api import FakeTelegram
from tests.qa_support import fake_live_index, make_app, sign_in

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings, control.
pytest_plugins = ["tests.fakes.bot_fixtures"]
pytestmark = pytest.mark.emulators


@pytest.fixture
def app(bot_settings, tmp_path):
    live, _ = fake_live_index(tmp_path)
    yield make_app(bot_settings, live)
    live.stop()


def _client(app, email: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    return client, sign_in(client, email)


def test_add_start_edit_logs_delete(app, tg: FakeTelegram) -> None:
    client, csrf = _client(app, "ann@example.com")
    pages: list[str] = []

    def page(response) -> str:
        text = response.get_data(as_text=True)
        pages.append(text)
        return text

    assert "no bots yet" in page(client.get("/bots"))
    assert "BotFather" in page(client.get("/bots/new"))
    assert "developers/applications" in pages[-1]

    bad = "1234567890:AAHk1H6tK7cbbX5fL9m3o0nV8rQ2wYzAbCd"
    response = client.post(
        "/bots/new", data={"csrf_token": csrf, "platform": "telegram", "name": "Docs", "token": bad}
    )
    text = page(response)
    assert response.status_code == 400 and "Telegram rejected this token" in text
    assert bad not in pages[-1]

    token = tg.add_bot(username="docs_bot")
    form = {"csrf_token": csrf, "platform": "telegram", "name": "Docs", "token": token, "start": "1"}
    # The operator runs extractive only: a bot may not reach Gemini.
    response = client.post("/bots/new", data={**form, "model": "gemini"})
    assert response.status_code == 400 and "extractive" in page(response)
    assert tg.webhook(token) is None
    response = client.post("/bots/new", data={**form, "model": "extractive"})
    assert response.status_code == 302
    bot_id = response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert tg.webhook(token) is not None
    detail = page(client.get(f"/bots/{bot_id}"))
    assert "@docs_bot" in detail and 'data-bot-status="' + bot_id in detail and ">running<" in detail

    status = client.get("/bots/status.json").get_json()
    assert status == {"bots": [{"id": bot_id, "status": "running", "desired": "running", "last_error": None}]}

    client.post(f"/bots/{bot_id}/stop", data={"csrf_token": csrf, "next": "index"})
    assert tg.webhook(token) is None
    client.post(
        f"/bots/{bot_id}/edit",
        data={"csrf_token": csrf, "name": "Renamed", "model": "extractive", "system_prompt": "Be brief."},
    )
    detail = page(client.get(f"/bots/{bot_id}"))
    assert "Renamed" in detail and "Be brief." in detail
    kinds = re.findall(r'class="kind kind-(\w+)"', detail)
    assert kinds == ["edited", "stopped", "started", "created"]
    # Forms without the CSRF token are refused.
    assert client.post(f"/bots/{bot_id}/start").status_code == 403

    assert "Type the bot" in page(client.get(f"/bots/{bot_id}/delete"))
    wrong = client.post(f"/bots/{bot_id}/delete", data={"csrf_token": csrf, "confirm_name": "nope"})
    assert wrong.status_code == 400
    done = client.post(f"/bots/{bot_id}/delete", data={"csrf_token": csrf, "confirm_name": "Renamed"})
    assert done.status_code == 302
    assert client.get(f"/bots/{bot_id}").status_code == 404
    for text in pages:
        assert token not in text and token.split(":")[1] not in text


def test_replace_token_page(app, tg: FakeTelegram) -> None:
    client, csrf = _client(app, "ann@example.com")
    token = tg.add_bot(username="docs_bot")
    response = client.post(
        "/bots/new",
        data={"csrf_token": csrf, "platform": "telegram", "name": "Docs", "token": token, "start": "1"},
    )
    bot_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert 'id="replace-token"' in client.get(f"/bots/{bot_id}").get_data(as_text=True)

    wrong = client.post(
        f"/bots/{bot_id}/token", data={"csrf_token": csrf, "token": tg.add_bot(username="x_bot")}
    )
    assert wrong.status_code == 302
    assert "belongs to @x_bot" in client.get(f"/bots/{bot_id}").get_data(as_text=True)

    new_token = tg.reissue_token(token)
    done = client.post(
        f"/bots/{bot_id}/token", data={"csrf_token": csrf, "platform": "telegram", "token": new_token}
    )
    assert done.status_code == 302
    detail = client.get(f"/bots/{bot_id}").get_data(as_text=True)
    assert "Token replaced" in detail and ">running<" in detail
    assert re.findall(r'class="kind kind-(\w+)"', detail)[:2] == ["restarted", "token"]
    assert new_token not in detail and new_token.split(":")[1] not in detail
    assert tg.webhook(new_token) is not None
    assert client.post(f"/bots/{bot_id}/token", data={"token": new_token}).status_code == 403  # no CSRF


def test_other_users_cannot_see_or_touch(app, tg: FakeTelegram) -> None:
    ann, ann_csrf = _client(app, "ann@example.com")
    token = tg.add_bot()
    response = ann.post(
        "/bots/new", data={"csrf_token": ann_csrf, "platform": "telegram", "name": "Mine", "token": token}
    )
    bot_id = response.headers["Location"].rsplit("/", 1)[-1]
    bob, bob_csrf = _client(app, "bob@example.com")
    assert "Mine" not in bob.get("/bots").get_data(as_text=True)
    assert bob.get("/bots/status.json").get_json() == {"bots": []}
    assert bob.get(f"/bots/{bot_id}").status_code == 404
    assert bob.get(f"/bots/{bot_id}/delete").status_code == 404
    for path in ("start", "stop", "restart", "edit", "delete", "token"):
        data = {"csrf_token": bob_csrf, "name": "x", "confirm_name": "Mine", "token": token}
        assert bob.post(f"/bots/{bot_id}/{path}", data=data).status_code == 404, path
    assert tg.webhook(token) is None
    assert "Mine" in ann.get(f"/bots/{bot_id}").get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_sign_in(app) -> None:
    client = app.test_client()
    assert client.get("/bots").status_code == 302
    assert client.get("/bots/status.json").status_code == 401
