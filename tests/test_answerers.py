"""Answerers: extractive quotes and cites real passages and refuses when nothing is relevant; gemini goes
through a fake Vertex AI endpoint on loopback, and falls back to extractive on errors and timeouts."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.knowledge.retrieval import Passage
from shared.qa.answerers import NOTHING_FOUND, ExtractiveAnswerer, GeminiAnswerer, get_answerer
from tests.fakes.gemini import FakeGemini

PASSAGES = [
    Passage(
        chunk_id="c1",
        text=(
            "Snapshots are published to Cloud Storage after every crawl. "
            "The service checks the pointer every 30 seconds and swaps in the new snapshot "
            "without a restart. "
            "Unrelated filler text about colours."
        ),
        url="https://docs.example.com/snapshots",
        title="Snapshots",
        anchor="publishing",
        source="docs",
        score=0.82,
    ),
    Passage(
        chunk_id="c2",
        text="To rotate a bot token, stop the bot, paste the new token and start it again.",
        url="https://docs.example.com/bots",
        title="Bots",
        anchor="",
        source="docs",
        score=0.41,
    ),
]


def test_extractive_quotes_and_cites_the_relevant_passage() -> None:
    answer = ExtractiveAnswerer().answer("How often does the service check for a new snapshot?", PASSAGES)
    assert answer.answerer == "extractive"
    assert answer.sources[0].url == "https://docs.example.com/snapshots"
    assert "[1]" in answer.text
    assert "checks the pointer every 30 seconds" in answer.text
    # Only passages the text cites are returned as sources.
    assert len(answer.sources) == answer.text.count("[") or all(
        f"[{i}]" in answer.text for i in range(1, len(answer.sources) + 1)
    )


def test_extractive_cites_several_passages_in_order() -> None:
    answer = ExtractiveAnswerer().answer("snapshot crawl and bot token", PASSAGES)
    assert [p.chunk_id for p in answer.sources] == ["c1", "c2"]
    assert answer.text.index("[1]") < answer.text.index("[2]")


def test_extractive_refuses_when_nothing_is_relevant() -> None:
    answer = ExtractiveAnswerer().answer("What is the capital of Mongolia?", PASSAGES)
    assert answer.text == NOTHING_FOUND
    assert answer.sources == []


def test_extractive_refuses_below_the_score_threshold() -> None:
    answer = ExtractiveAnswerer(min_score=0.9).answer("snapshot pointer", PASSAGES)
    assert answer.sources == []
    assert answer.text == NOTHING_FOUND


def test_extractive_with_no_passages() -> None:
    assert ExtractiveAnswerer().answer("anything", []).text == NOTHING_FOUND


@pytest.fixture
def fake() -> FakeGemini:
    with FakeGemini() as server:
        yield server


def _gemini(fake: FakeGemini, settings: Settings, timeout: float = 5.0) -> GeminiAnswerer:
    answerer = get_answerer(
        "gemini",
        settings.model_copy(update={"gemini_base_url": fake.base_url, "gemini_timeout_seconds": timeout}),
    )
    assert isinstance(answerer, GeminiAnswerer)
    return answerer


def test_gemini_answers_with_system_prompt_passages_and_citations(
    fake: FakeGemini, settings: Settings
) -> None:
    fake.reply = "It polls every 30 seconds [2]. Tokens are rotated by restarting [9]."
    answer = _gemini(fake, settings).answer(
        "How often is the snapshot pointer checked? bot token", PASSAGES, "Answer like a pirate."
    )
    assert answer.answerer == "gemini"
    # [2] was the second passage; renumbered to [1]; [9] doesn't exist and is dropped.
    assert answer.text == "It polls every 30 seconds [1]. Tokens are rotated by restarting ."
    assert [p.chunk_id for p in answer.sources] == ["c2"]
    request = fake.requests[-1]
    assert "Answer like a pirate." in request["systemInstruction"]["parts"][0]["text"]
    prompt = request["contents"][0]["parts"][0]["text"]
    assert "[1] Snapshots" in prompt and "https://docs.example.com/snapshots#publishing" in prompt
    assert fake.paths[-1].endswith(f"models/{settings.gemini_model}:generateContent")
    assert f"projects/{settings.project_id}/locations/{settings.region}" in fake.paths[-1]


def test_gemini_falls_back_to_extractive_on_timeout(fake: FakeGemini, settings: Settings) -> None:
    fake.delay = 120.0  # the model holds the request until the fake is stopped
    answerer = _gemini(fake, settings, timeout=0.5)
    answer = answerer.answer("How often does the service check for a new snapshot?", PASSAGES, None)
    assert answer.answerer == "extractive"
    assert "[1]" in answer.text and answer.sources[0].chunk_id == "c1"
    # The answer came back while the model had not responded yet: the timeout cut the call short.
    assert len(fake.requests) == 1 and fake.responded == 0


def test_gemini_falls_back_to_extractive_on_server_error(fake: FakeGemini, settings: Settings) -> None:
    fake.status = 500
    answer = _gemini(fake, settings).answer("snapshot pointer", PASSAGES, None)
    assert answer.answerer == "extractive"
    assert len(fake.requests) == 1, "one attempt: the fallback is the retry"


def test_gemini_falls_back_on_empty_reply(fake: FakeGemini, settings: Settings) -> None:
    fake.reply = ""
    assert _gemini(fake, settings).answer("snapshot pointer", PASSAGES, None).answerer == "extractive"


def test_gemini_refuses_without_calling_the_model_when_nothing_is_relevant(
    fake: FakeGemini, settings: Settings
) -> None:
    answer = _gemini(fake, settings).answer("What is the capital of Mongolia?", PASSAGES, None)
    assert answer.text == NOTHING_FOUND and answer.sources == []
    assert fake.requests == []


def test_unknown_answerer_name_is_extractive(settings: Settings) -> None:
    assert get_answerer("nope", settings).name == "extractive"
