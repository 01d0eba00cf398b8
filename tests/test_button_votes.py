"""Votes from bots' 👍/👎 buttons, on the emulators: :class:`shared.qa.button_votes.ButtonVotes` (the
answer a button sits under, or the button's own copy; a press delivered many times lands once; another
bot's, a missing or an expired button is unknown) and ``POST /api/bot-votes``, which only parses, calls
it and renders (bad input: 400 and one log line; an unknown button: 404); and a group chat's
``/forget`` taking every member's votes on the chat's answers. Who may call the routes is
``tests/test_authorization_matrix.py``'s."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from google.cloud import firestore

from shared.bots.buttons import STATE_TTL, ButtonStateStore
from shared.bots.formatting import SourceRef
from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.answer_log import AnswerFacts, AnswerLog
from shared.qa.button_votes import ButtonPress, ButtonVotes, UnknownButton
from shared.qa.feedback import VOTES, FeedbackStore, VoteState, VoteValue

pytestmark = pytest.mark.emulators

BOT = "bot7"
QUESTION = "Where is the token kept?"
ANSWER = "In Secret Manager. [1]"
SOURCES = [SourceRef(title="Tokens", url="https://docs.example.com/tokens")]
SERVICE = {"X-Askbase-Service": "botrunner"}


@pytest.fixture
def db(emulators: Any, settings: Settings) -> firestore.Client:
    return firestore_client(settings.project_id)


@pytest.fixture
def answers(db: firestore.Client) -> AnswerLog:
    return AnswerLog(db, retention_days=30)


@pytest.fixture
def buttons(db: firestore.Client) -> ButtonStateStore:
    return ButtonStateStore(db)


@pytest.fixture
def service(db: firestore.Client, answers: AnswerLog, buttons: ButtonStateStore) -> ButtonVotes:
    return ButtonVotes(buttons, answers, FeedbackStore(db, answers))


def _record(answers: AnswerLog, bot_id: str = BOT) -> str:
    """A bot answer's record, as ``/api/ask`` makes it for a Telegram chat; its id."""
    facts = AnswerFacts("c1", QUESTION, ANSWER, [], "extractive", False, bot_id=bot_id, platform="telegram")
    return answers.record(facts, f"bot:{bot_id}:telegram:100")


def _votes(db: firestore.Client) -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in db.collection(VOTES).stream()]


def _counters(db: firestore.Client, answer_id: str) -> tuple[int, int]:
    data = db.collection("answers").document(answer_id).get().to_dict() or {}
    return int(data.get("up_votes", 0)), int(data.get("down_votes", 0))


def test_a_press_votes_once_on_the_answer_record_its_button_sits_under(
    db: firestore.Client, answers: AnswerLog, buttons: ButtonStateStore, service: ButtonVotes
) -> None:
    aid = _record(answers)
    buttons.save("s1", BOT, QUESTION, ANSWER, SOURCES, answer_id=aid, chat="telegram:100")
    for _ in range(3):  # a platform may deliver one press several times
        state = service.cast(ButtonPress(BOT, "s1", "telegram:555", VoteValue.DOWN))
    assert state == VoteState(aid, VoteValue.DOWN)
    assert _counters(db, aid) == (0, 1)
    # Changed, not added: one vote per presser per answer.
    service.cast(ButtonPress(BOT, "s1", "telegram:555", VoteValue.UP))
    assert _counters(db, aid) == (1, 0)
    [vote] = _votes(db)
    assert (vote["answer_id"], vote["voter"], vote["value"]) == (aid, "telegram:555", "up")
    assert (vote["bot_id"], vote["platform"], vote["question"]) == (BOT, "telegram", QUESTION)


def test_without_its_record_a_press_votes_on_the_buttons_own_copy(
    db: firestore.Client, answers: AnswerLog, buttons: ButtonStateStore, service: ButtonVotes
) -> None:
    """No answer id kept, or the id of another bot's record: the state's copy is voted on, and no record's
    counters move (the gaps report does not count it)."""
    others = _record(answers, bot_id="bot8")
    buttons.save("s2", BOT, QUESTION, ANSWER, SOURCES, chat="telegram:100")
    buttons.save("s3", BOT, QUESTION, ANSWER, SOURCES, answer_id=others, chat="telegram:100")
    assert service.cast(ButtonPress(BOT, "s2", "discord:31", VoteValue.UP)).answer_id == "button-s2"
    assert service.cast(ButtonPress(BOT, "s3", "discord:31", VoteValue.UP)).answer_id == "button-s3"
    assert _counters(db, others) == (0, 0)
    votes = sorted(_votes(db), key=lambda v: str(v["answer_id"]))
    assert [(v["answer_id"], v["bot_id"], v["platform"]) for v in votes] == [
        ("button-s2", BOT, "discord"),
        ("button-s3", BOT, "discord"),
    ]
    assert votes[0]["question"] == QUESTION and votes[0]["answer"] == ANSWER


def test_another_bots_a_missing_or_an_expired_button_is_unknown(
    db: firestore.Client, answers: AnswerLog, buttons: ButtonStateStore, service: ButtonVotes
) -> None:
    aid = _record(answers)
    buttons.save("mine", BOT, QUESTION, ANSWER, SOURCES, answer_id=aid, chat="telegram:100")
    # Saved a day longer ago than the state is kept: Firestore's TTL may not have deleted it yet.
    stale = datetime.now(UTC) - STATE_TTL - timedelta(days=1)
    buttons.save("old", BOT, QUESTION, ANSWER, SOURCES, now=stale, answer_id=aid, chat="telegram:100")
    for bot_id, state_id in (("bot8", "mine"), (BOT, "never-saved"), (BOT, "old")):
        with pytest.raises(UnknownButton):
            service.cast(ButtonPress(bot_id, state_id, "telegram:555", VoteValue.UP))
    assert _votes(db) == [] and _counters(db, aid) == (0, 0)


def test_the_route_casts_a_press_and_answers_4xx_on_bad_input(
    app: Flask, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    db = firestore_client(settings.project_id)
    aid = _record(AnswerLog(db, retention_days=30))
    ButtonStateStore(db).save("s1", BOT, QUESTION, ANSWER, SOURCES, answer_id=aid, chat="telegram:100")
    client = app.test_client()
    press = {"bot_id": BOT, "state_id": "s1", "voter": "telegram:555", "vote": "down"}

    voted = client.post("/api/bot-votes", json=press, headers=SERVICE)
    assert voted.status_code == 200, voted.json
    assert voted.json == {"answer_id": aid, "vote": "down", "comment": None}

    refused: list[tuple[dict[str, Any] | None, int, str]] = [
        ({**press, "vote": "meh"}, 400, '\'vote\' must be "up" or "down"'),
        ({**press, "voter": "555"}, 400, "a platform 'voter' are required"),
        ({**press, "state_id": ""}, 400, "a platform 'voter' are required"),
        ({**press, "bot_id": 7}, 400, "'bot_id' must be a string"),
        (None, 400, "send JSON like {bot_id, state_id, voter, vote}"),
        ({**press, "state_id": "gone"}, 404, "unknown or expired button"),
        ({**press, "bot_id": "bot8"}, 404, "unknown or expired button"),
    ]
    for body, status, error in refused:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="askbase.qa"):
            if body is None:
                response = client.post("/api/bot-votes", data="not json", headers=SERVICE)
            else:
                response = client.post("/api/bot-votes", json=body, headers=SERVICE)
        reply = response.get_json()
        assert response.status_code == status, (body, reply)
        assert error in reply["error"], (body, reply)
        lines = [r.getMessage() for r in caplog.records if r.name == "askbase.qa"]
        assert lines == [f"POST /api/bot-votes -> {status} {reply['error']}"], (body, lines)
    # None of the refused presses changed the vote.
    assert [(v["voter"], v["value"]) for v in _votes(db)] == [("telegram:555", "down")]


def test_a_group_chats_forget_takes_every_members_votes_on_its_answers(
    app: Flask, settings: Settings
) -> None:
    """``POST /api/bot-forget`` (a chat's ``/forget``): the chat's answer records go, and with them every
    vote cast on them, by whichever member, since each vote keeps a copy of the exchange; the sender's
    votes go everywhere (as before); another member's vote on another chat's answer stays."""
    db = firestore_client(settings.project_id)
    db.collection("bots").document(BOT).set(
        {"owner": "owner@example.com", "owner_email": "owner@example.com", "platform": "telegram"}
    )
    client = app.test_client()
    answer_ids: dict[str, str] = {}
    for chat in ("telegram:-100", "telegram:-200"):
        asked = client.post(
            "/api/ask", json={"question": QUESTION, "bot_id": BOT, "user": chat}, headers=SERVICE
        )
        assert asked.status_code == 200, asked.get_json()
        answer_ids[chat] = asked.get_json()["answer_id"]
        ButtonStateStore(db).save(
            f"state{chat}", BOT, QUESTION, ANSWER, SOURCES, answer_id=answer_ids[chat], chat=chat
        )
    for voter, chat in (("telegram:1", "-100"), ("telegram:2", "-100"), ("telegram:1", "-200")):
        press = {"bot_id": BOT, "state_id": f"statetelegram:{chat}", "voter": voter, "vote": "down"}
        assert client.post("/api/bot-votes", json=press, headers=SERVICE).status_code == 200
    assert len(_votes(db)) == 3

    forget = {"bot_id": BOT, "user": "telegram:-100", "voter": "telegram:2"}  # an admin of chat -100
    assert client.post("/api/bot-forget", json=forget, headers=SERVICE).status_code == 200
    assert [(v["voter"], v["answer_id"]) for v in _votes(db)] == [("telegram:1", answer_ids["telegram:-200"])]
    remaining = [s.id for s in db.collection("answers").stream()]
    assert remaining == [answer_ids["telegram:-200"]]
