"""botrunner's error body names the field a refusal is about, and the bot pages put it there; the add
form's defaults follow the deployment's allowed models."""

from __future__ import annotations

import re

import pytest

from services.botrunner.app import create_app as create_botrunner
from shared.bots.control import BotControl
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram
from tests.qa_support import fake_live_index, make_app, sign_in

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings, control.
pytest_plugins = ["tests.fakes.bot_fixtures"]
pytestmark = pytest.mark.emulators

ANN = {"X-Askbase-User": "ann@example.com"}


def test_the_error_body_names_the_field_only_when_there_is_one(
    bot_settings, control: BotControl, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    client = create_botrunner(bot_settings, control=control, reconcile_on_start=False).test_client()
    token = tg.add_bot(username="docs_bot")
    nameless = client.post(
        "/api/bots", json={"platform": "telegram", "name": " ", "token": token}, headers=ANN
    )
    assert nameless.status_code == 400 and nameless.get_json() == {
        "error": "name is required.",
        "field": "name",
    }

    app = dc.add_application()
    other = dc.add_application()
    mismatched = client.post(
        "/api/bots",
        json={
            "platform": "discord",
            "name": "D",
            "application_id": app.id,
            "public_key": other.public_key,
            "bot_token": app.bot_token,
        },
        headers=ANN,
    )
    assert mismatched.status_code == 400 and mismatched.get_json()["field"] == "public_key"

    nobody = client.get("/api/bots/nope", headers=ANN)
    assert nobody.status_code == 404 and nobody.get_json() == {"error": "No such bot."}
    no_json = client.post("/api/bots", data="{", content_type="application/json", headers=ANN)
    assert no_json.get_json() == {"error": "Expected a JSON body."}


def test_the_add_form_defaults_to_an_allowed_model(bot_settings, tmp_path, tg: FakeTelegram) -> None:
    live, _ = fake_live_index(tmp_path)
    try:
        app = make_app(bot_settings, live, bot_models=["gemini"])
        client = app.test_client()
        csrf = sign_in(client, "ann@example.com")
        page = client.get("/bots/new").get_data(as_text=True)
        assert re.search(r'<option value="gemini" selected>', page)
        # A form sent without a model gets the deployment's default, not a model it does not offer.
        token = tg.add_bot(username="docs_bot")
        response = client.post(
            "/bots/new", data={"csrf_token": csrf, "platform": "telegram", "name": "Docs", "token": token}
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        bot_id = response.headers["Location"].rsplit("/", 1)[-1]
        assert "<dt>Answer model</dt><dd>Gemini</dd>" in client.get(f"/bots/{bot_id}").get_data(as_text=True)
    finally:
        live.stop()


def test_the_add_form_starts_on_the_first_platform(bot_settings, tmp_path) -> None:
    from shared.bots.platforms import PLATFORM_NAMES

    live, _ = fake_live_index(tmp_path)
    try:
        client = make_app(bot_settings, live).test_client()
        sign_in(client, "ann@example.com")
        page = client.get("/bots/new").get_data(as_text=True)
        assert f'value="{PLATFORM_NAMES[0]}" checked' in page
    finally:
        live.stop()
