"""Where the bot forms put botrunner's refusals (by the error's ``field``, never by its wording), the one
name rule of the form and the control plane, and the platforms naming the field a verdict is about.
No emulators: the platform checks used here refuse before anything is sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.qa import bot_form
from services.qa.bot_form import check_new_bot, check_settings, place_control_error
from shared.bots.control import NAME_MAX, BadRequest, Caller, Conflict, ControlError, Upstream
from shared.bots.control_client import BotControlClient
from shared.bots.platforms import find_platform
from shared.bots.platforms.base import RegistrationField
from shared.bots.platforms.discord import Discord
from shared.bots.platforms.errors import InvalidRegistration, RetryPolicy

ANN = Caller(user="ann@example.com")
NOWHERE = "http://127.0.0.1:9"  # never reached: every check below refuses before a request


def _api() -> Any:
    from shared.bots.platforms.base import ApiEndpoint

    return ApiEndpoint(NOWHERE, RetryPolicy(attempts=1))


# --- placement by field -----------------------------------------------------------------------------------


def test_a_refusal_goes_beside_the_field_it_names_whatever_its_words() -> None:
    # Words that once meant another field ("token", "model") no longer move the message.
    errors = place_control_error(BadRequest("the token model is odd", field="name"), "telegram")
    assert list(errors.fields) == ["name"] and errors.fields["name"].platform is None
    assert not errors.general


def test_a_registration_field_gets_the_platforms_verdict() -> None:
    errors = place_control_error(BadRequest("does not match", field="public_key"), "discord")
    assert errors.fields["public_key"].platform == "Discord"
    errors = place_control_error(BadRequest("nope", field="bot_token"), "discord", token_field="bot_token")
    assert errors.fields["bot_token"].platform == "Discord"


def test_the_platforms_token_field_lands_in_the_forms_token_input() -> None:
    # The replace-token form names its input "token" for every platform.
    errors = place_control_error(BadRequest("another application", field="bot_token"), "discord")
    assert list(errors.fields) == ["token"] and errors.fields["token"].platform == "Discord"


def test_a_new_platforms_fields_get_its_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    class Matrix(Discord):
        label = "Matrix"
        registration_fields = (
            RegistrationField("homeserver"),
            RegistrationField("access_token", secret=True),
        )

    monkeypatch.setattr(bot_form, "find_platform", lambda name: Matrix() if name == "matrix" else None)
    errors = place_control_error(BadRequest("unknown server", field="homeserver"), "matrix")
    assert errors.fields["homeserver"].platform == "Matrix"
    errors = place_control_error(BadRequest("bad", field="access_token"), "matrix", "access_token")
    assert errors.fields["access_token"].platform == "Matrix"


def test_a_refusal_without_a_field_is_about_the_whole_form() -> None:
    errors = place_control_error(BadRequest("Telegram's name for the model"), "telegram")
    assert not errors.fields and errors.general[0].platform is None
    unreachable = place_control_error(Upstream("Could not reach Telegram"), "telegram")
    assert not unreachable.fields and unreachable.general[0].platform == "Telegram"
    taken = place_control_error(Conflict("already registered", field="token"), "telegram")
    assert not taken.fields and taken.general[0].message == "already registered"


def test_bot_form_keeps_no_word_table() -> None:
    assert not hasattr(bot_form, "_FIELD_WORDS")


# --- the platforms name the field ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "data", "field"),
    [
        ("telegram", {}, "token"),
        ("telegram", {"token": "not-a-token"}, "token"),
        (
            "discord",
            {"application_id": "12", "public_key": "a" * 64, "bot_token": "x" * 30},
            "application_id",
        ),
        ("discord", {"application_id": "1" * 18, "public_key": "nope", "bot_token": "x" * 30}, "public_key"),
        ("discord", {"application_id": "1" * 18, "public_key": "a" * 64, "bot_token": ""}, "bot_token"),
    ],
)
def test_a_platforms_refusal_names_its_field(platform: str, data: dict[str, str], field: str) -> None:
    from shared.bots.control import _checked

    checker = find_platform(platform)
    assert checker is not None
    with pytest.raises(InvalidRegistration) as raised:
        checker.check_registration(_api(), data)
    assert getattr(raised.value, "field", None) == field
    with pytest.raises(BadRequest) as refused:
        _checked(lambda: checker.check_registration(_api(), data))
    assert refused.value.field == field and refused.value.message == raised.value.message


def test_the_control_planes_own_refusals_name_their_field() -> None:
    from shared.bots import control

    for check, value, field in [
        (control._name, " ", "name"),
        (control._prompt, "x" * (control.PROMPT_MAX + 1), "system_prompt"),
        (control._answer_mode, "loudly", "answer_mode"),
        (lambda v: control._model(v, ("extractive",)), "gemini", "model"),
    ]:
        with pytest.raises(BadRequest) as refused:
            check(value)
        assert refused.value.field == field
    assert ControlError("x").field is None


# --- the client reads the field back ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "field"),
    [
        (400, {"error": "The public key does not match.", "field": "public_key"}, BadRequest, "public_key"),
        (400, {"error": "Expected a JSON body."}, BadRequest, None),
        (409, {"error": "already registered"}, Conflict, None),
        (400, {"error": "odd", "field": 7}, BadRequest, None),
    ],
)  # fmt: skip
def test_the_client_reads_the_field_back(status: int, body: dict, kind: type, field: str | None) -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, json=body)))
    client = BotControlClient("http://botrunner.internal", http=http)
    with pytest.raises(kind) as refused:
        client.create_bot(ANN, {"platform": "discord"})
    assert refused.value.message == body["error"] and refused.value.field == field


def test_one_user_header() -> None:
    from services.botrunner import control_api
    from shared.bots import control_client

    assert control_api.USER_HEADER is control_client.USER_HEADER


# --- one name rule ---------------------------------------------------------------------------------------


def test_the_form_and_the_control_plane_measure_a_name_alike() -> None:
    from shared.bots import control

    spaced = "Docs" + " " * NAME_MAX + "Bot"  # short once its spaces are squeezed, long as typed
    errors = check_settings({"name": spaced, "model": "extractive"}, ("extractive",))
    assert "name" in errors.fields and f"has {len(spaced)}" in errors.fields["name"].message
    with pytest.raises(BadRequest):
        control._name(spaced)
    assert control.normalize_name("  Docs  Bot ") == "Docs  Bot" == control._name("  Docs  Bot ")
    fits = " " + "x" * NAME_MAX + " "
    assert not check_settings({"name": fits, "model": "extractive"}, ("extractive",))
    assert control._name(fits) == "x" * NAME_MAX
    assert bot_form.NAME_MAX is control.NAME_MAX and bot_form.PROMPT_MAX is control.PROMPT_MAX


def test_default_model_follows_the_allowed_models() -> None:
    from shared.bots.control import default_model

    assert default_model(("extractive", "gemini")) == "extractive"
    assert default_model(("gemini", "extractive")) == "extractive"
    assert default_model(("gemini",)) == "gemini"


def test_the_new_bot_form_checks_every_registration_field() -> None:
    errors = check_new_bot({"platform": "discord", "name": "D", "model": "extractive"}, ("extractive",))
    assert set(errors.fields) == {"application_id", "public_key", "bot_token"}
