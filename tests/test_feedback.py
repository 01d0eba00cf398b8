"""Feedback on answers, on the emulators: what ``/api/ask`` records, votes through the API (one per user
per answer, changeable, with a bounded comment on 👎), bad input, retention, redelivered votes landing
once, and clearing a history taking the records and votes with it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.answer_log import AnswerFacts, AnswerLog, answer_id
from shared.qa.feedback import (
    BUTTON_VOTES,
    VOTES,
    FeedbackStore,
    VoteTarget,
    VoteValue,
    bot_vote_target,
    vote_id,
)
from shared.qa.live_index import LiveIndex
from tests.fakes.scripted_answerer import CLOSEST_URL, ScriptedAnswerer
from tests.qa_support import ask, make_app, sign_in

pytestmark = pytest.mark.emulators

REFUSED = "Can I log in with SAML single sign-on?"


@pytest.fixture
def app(emulators, settings: Settings, live: LiveIndex) -> Flask:
    return make_app(settings, live, answerer_factory=lambda name: ScriptedAnswerer(refuse=[REFUSED]))


def _vote(client: FlaskClient, token: str | None, aid: str, body: object, method: str = "PUT"):
    headers = {"X-CSRF-Token": token} if token else {}
    return client.open(f"/api/answers/{aid}/vote", method=method, json=body, headers=headers)


def _answers(settings: Settings) -> dict[str, dict]:
    db = firestore_client(settings.project_id)
    return {s.id: s.to_dict() for s in db.collection("answers").stream()}


def _votes(settings: Settings) -> dict[str, dict]:
    db = firestore_client(settings.project_id)
    return {s.id: s.to_dict() for s in db.collection(VOTES).stream()}


# --- what /api/ask records -------------------------------------------------------------------------------
def test_ask_returns_an_answer_id_and_records_what_votes_and_reports_need(
    app: Flask, settings: Settings
) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    answered = ask(client, token, {"question": "How do I deploy?"}).json
    refused = ask(client, token, {"question": REFUSED, "conversation_id": answered["conversation_id"]}).json
    cid = answered["conversation_id"]
    assert answered["answer_id"] == answer_id(cid, "How do I deploy?", answered["answer"])
    assert refused["answer_id"] == answer_id(cid, REFUSED, refused["answer"]) and refused["refused"]

    records = _answers(settings)
    assert set(records) == {answered["answer_id"], refused["answer_id"]}
    ok = records[answered["answer_id"]]
    assert ok["question"] == "How do I deploy?" and ok["answer"] == answered["answer"]
    assert ok["sources"] == [{"title": s["title"], "url": s["url"]} for s in answered["sources"]]
    assert ok["answerer"] == "scripted" and ok["snapshot_id"] == "s1"
    assert ok["bot_id"] is None and ok["platform"] == "web" and ok["asker"] == "user:a@example.com"
    assert ok["cited_pages"] == ["docs\tPage of s1\thttps://docs.example.com/s1"]
    assert "vector" not in ok  # a confident answer is no gap: nothing to embed
    gap = records[refused["answer_id"]]
    assert gap["refused"] is True and gap["cited_pages"] == []
    assert gap["closest_pages"] == [f"docs\tClosest page\t{CLOSEST_URL}"]
    assert len(gap["vector"]) == 384 * 2  # float16, embedded when recorded
    # Retention follows the conversations': 365 days by default.
    assert gap["expire_at"] - gap["created_at"] == timedelta(days=settings.conversation_retention_days)


def test_a_bot_answer_is_recorded_with_its_bot_and_platform(app: Flask, settings: Settings) -> None:
    firestore_client(settings.project_id).collection("bots").document("bot1").set(
        {"owner": "owner@example.com", "owner_email": "owner@example.com", "platform": "discord"}
    )
    response = app.test_client().post(
        "/api/ask",
        json={"question": "How do I deploy?", "bot_id": "bot1", "user": "discord:77"},
        headers={"X-Askbase-Service": "botrunner"},
    )
    assert response.status_code == 200, response.json
    record = _answers(settings)[response.json["answer_id"]]
    assert record["bot_id"] == "bot1" and record["platform"] == "discord"
    assert record["bot_time"].startswith("bot1|")


# --- voting ----------------------------------------------------------------------------------------------
def test_one_vote_per_user_per_answer_that_can_be_changed_commented_and_withdrawn(
    app: Flask, settings: Settings
) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    answered = ask(client, token, {"question": "How do I deploy?"}).json
    aid = answered["answer_id"]

    for _ in range(3):  # a double (triple) click lands once
        response = _vote(client, token, aid, {"vote": "up"})
        assert response.status_code == 200 and response.json == {
            "answer_id": aid,
            "vote": "up",
            "comment": None,
        }
    votes = _votes(settings)
    assert list(votes) == [vote_id(aid, "user:a@example.com")]
    assert (votes[vote_id(aid, "user:a@example.com")]["value"], _answers(settings)[aid]["up_votes"]) == (
        "up",
        1,
    )

    changed = _vote(client, token, aid, {"vote": "down", "comment": "  It skips the bucket step.  "})
    assert changed.json == {"answer_id": aid, "vote": "down", "comment": "It skips the bucket step."}
    (vote,) = _votes(settings).values()
    assert vote["value"] == "down" and vote["comment"] == "It skips the bucket step."
    assert vote["question"] == "How do I deploy?" and vote["answer"] == answered["answer"]
    assert vote["sources"] == [{"title": s["title"], "url": s["url"]} for s in answered["sources"]]
    assert (vote["answerer"], vote["snapshot_id"], vote["bot_id"], vote["platform"]) == (
        "scripted",
        "s1",
        None,
        "web",
    )
    record = _answers(settings)[aid]
    assert (record["up_votes"], record["down_votes"]) == (0, 1)
    assert len(record["vector"]) == 384 * 2  # a 👎 makes it a gap: it is given its grouping vector

    withdrawn = _vote(client, token, aid, None, method="DELETE")
    assert withdrawn.status_code == 200 and withdrawn.json["vote"] is None
    assert _votes(settings) == {}
    record = _answers(settings)[aid]
    assert (record["up_votes"], record["down_votes"]) == (0, 0)


def test_a_reloaded_conversation_shows_each_answers_vote(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    first = ask(client, token, {"question": "How do I deploy?"}).json
    second = ask(
        client, token, {"question": "And the bots?", "conversation_id": first["conversation_id"]}
    ).json
    _vote(client, token, second["answer_id"], {"vote": "down", "comment": "Too short"})

    html = client.get(f"/c/{first['conversation_id']}").get_data(as_text=True)
    assert (
        f'data-answer-id="{first["answer_id"]}"' in html and f'data-answer-id="{second["answer_id"]}"' in html
    )
    after_second = html.split(f'data-answer-id="{second["answer_id"]}"', 1)[1]
    assert 'data-vote="down" aria-pressed="true"' in after_second
    assert 'data-vote="up" aria-pressed="false"' in after_second and "Too short</textarea>" in after_second
    before_second = html.split(f'data-answer-id="{second["answer_id"]}"', 1)[0]
    assert 'aria-pressed="true"' not in before_second


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("not json", "JSON"),
        ([1, 2], "JSON object"),
        ({"vote": "meh"}, '"up" or "down"'),
        ({"vote": None}, '"up" or "down"'),
        ({"vote": "up", "comment": "great"}, "only a 👎"),
        ({"vote": "down", "comment": 5}, "'comment' must be a string"),
        ({"vote": "down", "comment": "x" * 1001}, "longer than 1000"),
        ({"vote": "down", "extra": 1}, "unknown field"),
    ],
)
def test_bad_votes_are_400_with_a_message_and_a_log_line(
    app: Flask, body: object, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    aid = ask(client, token, {"question": "How do I deploy?"}).json["answer_id"]
    with caplog.at_level(logging.WARNING, logger="askbase.qa"):
        if isinstance(body, str):
            response = client.put(f"/api/answers/{aid}/vote", data=body, headers={"X-CSRF-Token": token})
        else:
            response = _vote(client, token, aid, body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert fragment in response.json["error"]
    assert any(f"/api/answers/{aid}/vote -> 400" in r.getMessage() for r in caplog.records)


def test_votes_on_answers_that_are_not_yours_or_do_not_exist_are_404(app: Flask, settings: Settings) -> None:
    alice, bob = app.test_client(), app.test_client()
    alice_token, bob_token = sign_in(alice, "alice@example.com"), sign_in(bob, "bob@example.com")
    aid = ask(alice, alice_token, {"question": "How do I deploy?"}).json["answer_id"]
    for target in (aid, "0" * 32, "not-an-id", "x" * 200):
        for method, body in (("PUT", {"vote": "up"}), ("DELETE", None)):
            response = _vote(bob, bob_token, target, body, method=method)
            assert response.status_code == 404, (target, method)
            assert response.json == {"error": "answer not found"}  # the same for another user's answer
    assert _votes(settings) == {}
    assert _vote(alice, None, aid, {"vote": "up"}).status_code == 403  # no CSRF token
    assert _vote(app.test_client(), None, aid, {"vote": "up"}).status_code == 401


def test_an_expired_answer_can_no_longer_be_voted_on(emulators, settings: Settings) -> None:
    db = firestore_client(settings.project_id)
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    answers = AnswerLog(db, retention_days=10, clock=lambda: now[0])
    votes = FeedbackStore(db, answers, clock=lambda: now[0])
    facts = AnswerFacts("c1", "How do I deploy?", "Like this. [1]", [], "extractive", refused=False)
    aid = answers.record(facts, "user:a@example.com")
    assert votes.vote_on_own_answer("user:a@example.com", aid, VoteValue.UP).value == "up"
    vote = db.collection(VOTES).document(vote_id(aid, "user:a@example.com")).get().to_dict()
    assert vote["expire_at"] == now[0] + timedelta(days=10)
    now[0] += timedelta(days=10)  # TTL may take a day to delete it: reads hide it at once
    assert answers.get(aid) is None and votes.votes_of("user:a@example.com", [aid]) == {}
    from shared.qa.feedback import AnswerNotFound

    with pytest.raises(AnswerNotFound):
        votes.vote_on_own_answer("user:a@example.com", aid, VoteValue.DOWN)


def test_a_redelivered_bot_vote_lands_once(emulators, settings: Settings) -> None:
    """What a bot's button does with the store: every press delivered three times counts once."""
    db = firestore_client(settings.project_id)
    answers = AnswerLog(db, retention_days=30)
    store = FeedbackStore(db, answers)
    facts = AnswerFacts(
        "c9",
        "Where is the token kept?",
        "In Secret Manager. [1]",
        [],
        "extractive",
        False,
        bot_id="bot7",
        platform="telegram",
    )
    aid = answers.record(facts, "bot:bot7:telegram:100")
    target = VoteTarget.from_record(answers.get(aid))
    for value in (VoteValue.DOWN, VoteValue.UP):
        for _ in range(3):
            store.cast(target, "telegram:555", value)
    store.cast(target, "telegram:556", VoteValue.DOWN)
    votes = _votes(settings)
    assert len(votes) == 2 and {v["platform"] for v in votes.values()} == {"telegram"}
    assert {v["bot_id"] for v in votes.values()} == {"bot7"}
    record = db.collection("answers").document(aid).get().to_dict()
    assert (record["up_votes"], record["down_votes"]) == (1, 1)


def test_a_bot_button_votes_on_the_answer_record_or_else_on_its_own_copy(
    emulators, settings: Settings
) -> None:
    db = firestore_client(settings.project_id)
    answers = AnswerLog(db, retention_days=30)
    store = FeedbackStore(db, answers)
    facts = AnswerFacts(
        "c5", "Is there SSO?", "No.", [], "extractive", True, bot_id="bot7", platform="discord"
    )
    aid = answers.record(facts, "bot:bot7:discord:9")
    state = {"question": "Is there SSO?", "answer": "No.", "sources": [], "platform": "discord"}
    kept = bot_vote_target(answers, aid, state_id="s1", bot_id="bot7", **state)
    assert kept == VoteTarget.from_record(answers.get(aid))
    for value in ("not_helpful",) * 3:  # the fake platforms deliver every press three times
        store.cast(kept, "discord:31", BUTTON_VOTES[value])
    assert db.collection("answers").document(aid).get().to_dict()["down_votes"] == 1
    # No answer id kept, an unknown one, or another bot's: the button state's own copy, counted nowhere.
    for kept_id in (None, "f" * 32, aid):
        target = bot_vote_target(answers, kept_id, state_id="s2", bot_id="bot8", **state)
        assert (
            target.answer_id == "button-s2"
            and target.facts.bot_id == "bot8"
            and target.facts.question == "Is there SSO?"
        )
    store.cast(target, "discord:31", VoteValue.UP)
    assert len(_votes(settings)) == 2


# --- clearing history ------------------------------------------------------------------------------------
def test_clearing_history_deletes_the_users_answer_records_and_votes(app: Flask, settings: Settings) -> None:
    alice, bob = app.test_client(), app.test_client()
    alice_token, bob_token = sign_in(alice, "alice@example.com"), sign_in(bob, "bob@example.com")
    first = ask(alice, alice_token, {"question": REFUSED}).json
    second = ask(alice, alice_token, {"question": "How do I deploy?"}).json
    kept = ask(bob, bob_token, {"question": REFUSED}).json
    for client, token, answer in (
        (alice, alice_token, first),
        (alice, alice_token, second),
        (bob, bob_token, kept),
    ):
        _vote(client, token, answer["answer_id"], {"vote": "down"})

    # Deleting one conversation takes its answers and their votes.
    assert (
        alice.delete(
            f"/api/conversations/{first['conversation_id']}", headers={"X-CSRF-Token": alice_token}
        ).status_code
        == 200
    )
    assert set(_answers(settings)) == {second["answer_id"], kept["answer_id"]}
    assert len(_votes(settings)) == 2
    # Clearing the history takes the rest of Alice's; Bob's stay.
    assert alice.delete("/api/conversations", headers={"X-CSRF-Token": alice_token}).status_code == 200
    assert set(_answers(settings)) == {kept["answer_id"]}
    assert [v["voter"] for v in _votes(settings).values()] == ["user:bob@example.com"]


# --- deleting while a question or a vote is on its way ---------------------------------------------------
def _other_tab(app: Flask, client: FlaskClient) -> FlaskClient:
    """A second tab of the same signed-in browser: the same session cookie (and so CSRF token)."""
    tab = app.test_client()
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    tab.set_cookie(cookie.key, cookie.value)
    return tab


@pytest.mark.parametrize("clear_all", [False, True], ids=["delete-one", "clear-all"])
def test_an_answer_whose_conversation_is_deleted_while_it_is_answered_leaves_no_record(
    app: Flask, settings: Settings, monkeypatch: pytest.MonkeyPatch, clear_all: bool
) -> None:
    """The answer is written to the conversation, then recorded for feedback. A delete (or "Delete all")
    from another tab between the two ran its clearing before the record existed: the record, question
    and asker included, stayed in the gaps report after the user deleted the conversation."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    cid = ask(client, token, {"question": "How do I deploy?"}).json["conversation_id"]
    tab = _other_tab(app, client)
    answering = app.extensions["askbase"].ask  # the AskService RecordingAsk answers with
    answer_only = answering.ask

    def answered_then_deleted_elsewhere(*args: object, **kwargs: object) -> object:
        result = answer_only(*args, **kwargs)
        path = "/api/conversations" if clear_all else f"/api/conversations/{result.conversation_id}"
        assert tab.delete(path, headers={"X-CSRF-Token": token}).status_code == 200
        return result

    monkeypatch.setattr(answering, "ask", answered_then_deleted_elsewhere)
    response = ask(client, token, {"question": REFUSED, "conversation_id": cid})
    assert response.status_code == 200  # the answer was given; it was deleted right after, as asked
    assert response.json["answer_id"] is None  # nothing left to vote on
    assert _answers(settings) == {}
    assert client.get(f"/api/conversations/{cid}").status_code == 404


def test_a_vote_cast_while_its_conversation_is_deleted_is_refused_not_kept(
    app: Flask, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vote route checks the answer is the voter's, then casts in a transaction. A delete from
    another tab in between had already cleared the votes: the vote, with its copy of the question,
    stayed behind the deleted conversation. The transaction now requires the answer record."""
    client = app.test_client()
    token = sign_in(client, "a@example.com")
    asked = ask(client, token, {"question": "How do I deploy?"}).json
    tab = _other_tab(app, client)
    votes = app.extensions["askbase"].feedback.votes
    cast = votes.cast

    def deleted_elsewhere_first(*args: object, **kwargs: object) -> object:
        path = f"/api/conversations/{asked['conversation_id']}"
        assert tab.delete(path, headers={"X-CSRF-Token": token}).status_code == 200
        return cast(*args, **kwargs)

    monkeypatch.setattr(votes, "cast", deleted_elsewhere_first)
    response = _vote(client, token, asked["answer_id"], {"vote": "down", "comment": "stale"})
    assert response.status_code == 404 and response.json == {"error": "answer not found"}
    assert _votes(settings) == {} and _answers(settings) == {}


def test_a_vote_cast_while_the_clearing_deletes_the_records_is_deleted_with_them(
    app: Flask, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: the vote commits after the clearing collected the votes to delete but before
    it deleted the answer records (its transaction read the record while it still existed). The votes
    are looked for again once the records are gone."""
    import shared.qa.feedback as feedback

    client = app.test_client()
    token = sign_in(client, "a@example.com")
    asked = ask(client, token, {"question": "How do I deploy?"}).json
    delete_all = feedback.delete_all  # shared.transactions.delete_all, as feedback calls it
    voted: list[int] = []

    def vote_just_before_the_records_go(db: Any, refs: Iterable[Any]) -> int:
        pending = list(refs)
        if not voted and pending and pending[0].parent.id == "answers":
            voted.append(_vote(client, token, asked["answer_id"], {"vote": "up"}).status_code)
        return delete_all(db, pending)

    monkeypatch.setattr(feedback, "delete_all", vote_just_before_the_records_go)
    path = f"/api/conversations/{asked['conversation_id']}"
    assert client.delete(path, headers={"X-CSRF-Token": token}).status_code == 200
    assert voted == [200]  # the vote was cast, on a record that still existed
    assert _votes(settings) == {} and _answers(settings) == {}
