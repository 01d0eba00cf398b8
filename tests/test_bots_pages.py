"""The bot pages of the web app: add / start / edit / delete / logs, live status JSON, isolation, and
what a refused form says (every mistake at once, beside its field, platform verdicts marked)."""

from __future__ import annotations

import html
import re

import pytest
from flask.testing import FlaskClient

from tests.fakes.discord_api import FakeDiscord
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
    assert _field_error(text, "token").startswith("Checked with Telegram:")  # Telegram's verdict
    assert bad not in pages[-1]

    token = tg.add_bot(username="docs_bot")
    form = {"csrf_token": csrf, "platform": "telegram", "name": "Docs", "token": token, "start": "1"}
    # The operator runs extractive only: a bot may not reach Gemini.
    response = client.post("/bots/new", data={**form, "model": "gemini"})
    assert response.status_code == 400
    assert "Choose one of the answer models" in _field_error(page(response), "model")
    assert tg.webhook(token) is None
    response = client.post("/bots/new", data={**form, "model": "extractive"})
    assert response.status_code == 302
    bot_id = response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert tg.webhook(token) is not None
    detail = page(client.get(f"/bots/{bot_id}"))
    assert "@docs_bot" in detail and 'data-bot-status="' + bot_id in detail and ">running<" in detail
    # The model by its label, as on the form: never the raw "extractive".
    assert "<dt>Answer model</dt><dd>Extractive</dd>" in detail
    assert re.search(r"·\s*Extractive\s*</p>", page(client.get("/bots")))

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
    assert wrong.status_code == 400
    message = _field_error(wrong.get_data(as_text=True), "new-token")
    assert message.startswith("Checked with Telegram:") and "belongs to @x_bot" in message
    calls = len(tg.calls)
    malformed = client.post(f"/bots/{bot_id}/token", data={"csrf_token": csrf, "token": "12345:short"})
    assert malformed.status_code == 400 and len(tg.calls) == calls  # a shape check: nothing sent
    message = _field_error(malformed.get_data(as_text=True), "new-token")
    assert "too short" in message and "Telegram" not in message.split(":")[0]

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


def test_answer_mode_is_chosen_on_the_add_form_and_changed_in_settings(
    app, tg: FakeTelegram, control
) -> None:
    client, csrf = _client(app, "ann@example.com")
    form = client.get("/bots/new").get_data(as_text=True)
    assert '<option value="mentions" selected>When addressed' in form and "/setprivacy" in form
    token = tg.add_bot(username="docs_bot")
    response = client.post(
        "/bots/new",
        data={
            "csrf_token": csrf,
            "platform": "telegram",
            "name": "Docs",
            "token": token,
            "answer_mode": "always",
        },
    )
    bot_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert control.registry.get_bot(bot_id).answer_mode == "always"
    detail = client.get(f"/bots/{bot_id}").get_data(as_text=True)
    assert "<dt>Answers</dt><dd>Every message</dd>" in detail
    assert '<option value="always" selected>' in detail and "/setprivacy" in detail

    saved = client.post(f"/bots/{bot_id}/edit", data={"csrf_token": csrf, "answer_mode": "confident"})
    assert saved.status_code == 302
    assert control.registry.get_bot(bot_id).answer_mode == "confident"
    assert "<dd>Only when confident</dd>" in client.get(f"/bots/{bot_id}").get_data(as_text=True)
    refused = client.post(f"/bots/{bot_id}/edit", data={"csrf_token": csrf, "answer_mode": "loud"})
    assert refused.status_code == 400
    assert "Choose when the bot answers" in _field_error(refused.get_data(as_text=True), "answer_mode")
    assert control.registry.get_bot(bot_id).answer_mode == "confident"


def test_the_gaps_link_is_shown_to_bot_owners_and_admins(bot_settings, tmp_path, tg: FakeTelegram) -> None:
    live, _ = fake_live_index(tmp_path)
    try:
        app = make_app(bot_settings.model_copy(update={"admin_emails": ["root@example.com"]}), live)
        owner, csrf = _client(app, "ann@example.com")
        gaps_link = 'href="/gaps"'
        assert gaps_link not in owner.get("/").get_data(as_text=True)  # no bot yet
        token = tg.add_bot(username="docs_bot")
        owner.post(
            "/bots/new", data={"csrf_token": csrf, "platform": "telegram", "name": "D", "token": token}
        )
        # A new owner sees the link once the cached answer ("owns no bot") has expired: ask a new app.
        app = make_app(bot_settings.model_copy(update={"admin_emails": ["root@example.com"]}), live)
        owner, _ = _client(app, "ann@example.com")
        assert gaps_link in owner.get("/bots").get_data(as_text=True)
        admin, _ = _client(app, "root@example.com")
        assert gaps_link in admin.get("/").get_data(as_text=True)
        other, _ = _client(app, "bob@example.com")
        assert gaps_link not in other.get("/").get_data(as_text=True)
    finally:
        live.stop()


# --- refused forms ----------------------------------------------------------------------------------------
def _field_error(page: str, field_id: str) -> str:
    """The message shown under the input ``field_id`` (tied to it by aria-describedby), as text."""
    match = re.search(rf'<p class="field-error[^"]*" id="{re.escape(field_id)}-error">(.*?)</p>', page, re.S)
    assert match, f"no error beside #{field_id}"
    control = re.search(rf'<(?:input|select|textarea)[^>]*\bid="{re.escape(field_id)}"[^>]*>', page)
    assert control, f"no control #{field_id}"
    assert 'aria-invalid="true"' in control.group(0), f"#{field_id} is not marked invalid"
    assert f"{field_id}-error" in control.group(0), f"#{field_id} is not described by its error"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def test_add_form_lists_every_mistake_beside_its_field_in_plain_words(
    app, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    client, csrf = _client(app, "ann@example.com")
    response = client.post(
        "/bots/new",
        data={
            "csrf_token": csrf,
            "platform": "discord",
            "name": "",
            "application_id": "12345678",  # numeric, but too short
            "public_key": "not-a-key",
            "bot_token": "",
            "system_prompt": "x" * 4001,
        },
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "There are 5 problems" in text
    application_id = _field_error(text, "application_id")
    assert "too short" in application_id and "has 8 digits" in application_id
    assert "must be the numeric" not in text and "application_id" not in application_id
    assert "Give the bot a name" in _field_error(text, "name")
    assert "0 to 9 and the letters a to f" in _field_error(text, "public_key")
    assert "Reset Token" in _field_error(text, "bot_token")
    assert "4,000 characters or fewer" in _field_error(text, "system_prompt")
    for field in ("name", "application_id", "public_key", "bot_token", "system_prompt"):
        assert f'<a href="#{field}">' in text, f"the summary does not link to #{field}"
    assert "Checked with" not in text  # nothing was sent to Discord
    assert dc.calls == []
    assert 'value="12345678"' in text  # what was typed comes back (secrets do not)

    # A malformed Telegram token is our own check, not Telegram's verdict.
    response = client.post(
        "/bots/new", data={"csrf_token": csrf, "platform": "telegram", "name": "Docs", "token": "abc"}
    )
    message = _field_error(response.get_data(as_text=True), "token")
    assert response.status_code == 400 and "doesn't look like a Telegram bot token" in message
    assert "rejected" not in message and tg.calls == []


def test_settings_form_errors_stay_beside_their_fields(app, tg: FakeTelegram) -> None:
    client, csrf = _client(app, "ann@example.com")
    token = tg.add_bot(username="docs_bot")
    response = client.post(
        "/bots/new", data={"csrf_token": csrf, "platform": "telegram", "name": "Docs", "token": token}
    )
    bot_id = response.headers["Location"].rsplit("/", 1)[-1]
    refused = client.post(
        f"/bots/{bot_id}/edit",
        data={"csrf_token": csrf, "name": " ", "model": "gpt-9", "system_prompt": "Be brief."},
    )
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "There are 2 problems" in text
    assert "Give the bot a name" in _field_error(text, "name")
    assert "Choose one of the answer models" in _field_error(text, "model")
    assert ">Be brief.</textarea>" in text  # what was typed is kept
    assert "Docs" in client.get(f"/bots/{bot_id}").get_data(as_text=True)  # nothing was saved


@pytest.mark.parametrize(
    "value",
    ["123456789:" + "A" * 35, "12:" + "A" * 35, "123456789:" + "A" * 19, "123456789:" + "A" * 81,
     "123456789:AA/BBBBBBBBBBBBBBBBBBBBBBBBBB", "abc", "", "123456789" + "A" * 35],
)  # fmt: skip
def test_the_forms_telegram_rule_is_telegrams(value: str) -> None:
    from shared.bots.platforms.telegram import token_problem
    from shared.bots.platforms.telegram_api import looks_like_token

    assert (token_problem(value) is None) == looks_like_token(value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [("app", "1" * 14), ("app", "1" * 15), ("app", "1" * 20), ("app", "1" * 21), ("app", "12a45678901234567"),
     ("app", "\u0661" * 17),
     ("key", "a" * 64), ("key", "A" * 64), ("key", "a" * 63), ("key", "g" * 64),
     ("token", "x" * 19), ("token", "x" * 20), ("token", "ab.cd-ef_" * 5), ("token", "a b" * 10)],
)  # fmt: skip
def test_the_forms_discord_rules_are_discords(kind: str, value: str) -> None:
    from shared.bots.platforms import discord, discord_api

    ours, theirs = {
        "app": (discord.application_id_problem, discord_api.SNOWFLAKE_RE),
        "key": (discord.public_key_problem, discord_api.PUBLIC_KEY_RE),
        "token": (discord.bot_token_problem, discord_api.BOT_TOKEN_RE),
    }[kind]
    assert (ours(value) is None) == bool(theirs.match(value))
