"""A bot's model is held to the deployment's allowed answerers when it answers, not only when it is
saved: switching the deployment off Gemini stops every existing bot from reaching it
(``Settings.allowed_bot_models``: "a bot must not reach a paid model the operator never enabled")."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.answerers import Answer, get_answerer
from shared.qa.ask import AskService
from shared.qa.bot_profiles import AnswerProfile
from shared.qa.live_index import LiveIndex
from tests.qa_support import make_app

TOKEN_MARKER = "v1:stored-token-ciphertext-0123456789"  # what a bot document keeps of its token


class GeminiSpy:
    """Stands in for Vertex AI: counts the questions that reached the paid model."""

    name = "gemini"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def answer(self, question: str, passages: list[Any], system_prompt: str | None) -> Answer:
        self.asked.append(question)
        return Answer(text="from gemini [1]", sources=passages[:1], answerer="gemini")


def _bot(settings: Settings, bot_id: str, model: str) -> None:
    doc = {
        "owner": "user:owner@example.com",
        "owner_email": "owner@example.com",
        "platform": "telegram",
        "model": model,
        "token": TOKEN_MARKER,
    }
    firestore_client(settings.project_id).collection("bots").document(bot_id).set(doc)


def _ask_as_botrunner(app, bot_id: str) -> Any:
    return app.test_client().post(
        "/api/ask",
        json={"question": "hello", "bot_id": bot_id, "user": "telegram:42"},
        headers={"X-Askbase-Service": "botrunner"},
    )


@pytest.mark.emulators
def test_a_gemini_bot_is_answered_by_the_deployments_answerer_once_gemini_is_off(
    emulators, settings: Settings, live: LiveIndex, caplog: pytest.LogCaptureFixture
) -> None:
    spy = GeminiSpy()

    def factory(name: str):
        return spy if name == "gemini" else get_answerer(name, settings)

    _bot(settings, "gembot", "gemini")
    # Deployed with Gemini: the bot's choice was allowed when it was saved, and it is used.
    with_gemini = make_app(settings, live, answerer_factory=factory, answerer="gemini")
    response = _ask_as_botrunner(with_gemini, "gembot")
    assert response.status_code == 200 and response.json["answerer"] == "gemini"
    assert spy.asked == ["hello"]

    # The operator switches the deployment to extractive (askbase:answerer): same bot document.
    extractive = make_app(settings, live, answerer_factory=factory, answerer="extractive")
    with caplog.at_level(logging.WARNING, logger="shared.qa.ask"):
        response = _ask_as_botrunner(extractive, "gembot")
    assert response.status_code == 200 and response.json["answerer"] == "extractive"
    assert spy.asked == ["hello"]  # the paid model was not called again
    warnings = [r for r in caplog.records if r.name == "shared.qa.ask" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "bot gembot" in message and "gemini" in message and "answering with extractive" in message
    assert TOKEN_MARKER not in caplog.text  # the bot is named by its id, never by its token

    # An operator who offers Gemini to bots explicitly (ASKBASE_BOT_MODELS) keeps it reachable.
    offered = make_app(
        settings, live, answerer_factory=factory, answerer="extractive", bot_models=["extractive", "gemini"]
    )
    assert _ask_as_botrunner(offered, "gembot").json["answerer"] == "gemini"
    assert spy.asked == ["hello", "hello"]


@pytest.mark.emulators
def test_allowed_bots_and_web_users_answer_without_a_warning(
    emulators, settings: Settings, live: LiveIndex, caplog: pytest.LogCaptureFixture
) -> None:
    _bot(settings, "plainbot", "extractive")
    _bot(settings, "nomodel", "")
    app = make_app(settings, live, answerer="extractive")
    with caplog.at_level(logging.WARNING, logger="shared.qa.ask"):
        assert _ask_as_botrunner(app, "plainbot").json["answerer"] == "extractive"
        assert _ask_as_botrunner(app, "nomodel").json["answerer"] == "extractive"
    assert not [r for r in caplog.records if r.name == "shared.qa.ask"]


def _service(default: str, allowed: tuple[str, ...] | None = None) -> AskService:
    return AskService(None, None, None, lambda name: None, default, 5, allowed_models=allowed)  # type: ignore[arg-type]


def _profile(model: str) -> AnswerProfile:
    return AnswerProfile(id="b1", owner="o", owner_email="o@example.com", model=model, system_prompt=None)


@pytest.mark.parametrize(
    ("default", "allowed", "stored", "used"),
    [
        ("extractive", None, "gemini", "extractive"),  # Gemini never enabled, or switched off
        ("gemini", None, "gemini", "gemini"),
        ("gemini", None, "extractive", "extractive"),
        ("extractive", ("extractive", "gemini"), "gemini", "gemini"),  # offered to bots explicitly
        ("gemini", ("extractive",), "gemini", "gemini"),  # the deployment's own answerer is the fallback
        ("extractive", None, "", "extractive"),
        ("extractive", None, "something-else", "extractive"),
    ],
)
def test_model_in_effect(default: str, allowed: tuple[str, ...] | None, stored: str, used: str) -> None:
    assert _service(default, allowed).model_for(_profile(stored)) == used
    assert _service(default, allowed).model_for(None) == default


@pytest.mark.parametrize("answerer", ["extractive", "gemini"])
def test_the_default_allowance_is_the_settings_one(answerer: str) -> None:
    """qa's default equals what botrunner offers bot owners (Settings.allowed_bot_models) when no
    ASKBASE_BOT_MODELS is set, as in every deployment infra makes."""
    settings = Settings(_env_file=None, answerer=answerer, bot_models="")
    assert _service(answerer).allowed_models == settings.allowed_bot_models
