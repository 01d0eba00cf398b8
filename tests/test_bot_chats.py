"""Who a bot chat is to qa: platform user keys (``<platform>:<user>``) name any registered platform, a chat's
conversation owner is built in one place, and a chat's ``/forget`` is one service."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from shared.bots import platforms
from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa import bot_chats
from shared.qa.answer_log import platform_of
from shared.qa.bot_chats import Asker, BotChats, bot_owner
from shared.qa.bot_profiles import AnswerProfile, BotNotFound
from shared.qa.identity import User


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> str:
    """A third platform in the registry, as its ``_register(...)`` line would put it there."""
    monkeypatch.setitem(platforms._PLATFORMS, "slack", object())
    return "slack"


def test_platform_of_names_every_registered_platform(slack: str) -> None:
    assert platform_of("slack:1") == "slack"
    assert platform_of("telegram:42") == "telegram" and platform_of("discord:7") == "discord"
    assert platform_of(None) == "web"
    assert platform_of("web:1") == "bot"  # the web is no bot platform
    assert platform_of("teams:1") == "bot" and platform_of("nocolon") == "bot"


# --- BotChats, on fakes ---------------------------------------------------------------------------------
class Profiles:
    def __init__(self, *bots: AnswerProfile) -> None:
        self.bots = {b.id: b for b in bots}

    def get(self, bot_id: str) -> AnswerProfile:
        if bot_id not in self.bots:
            raise BotNotFound(bot_id)
        return self.bots[bot_id]


class Conversations:
    def __init__(self) -> None:
        self.cleared: list[str] = []

    def clear(self, owner: str) -> int:
        self.cleared.append(owner)
        return 1

    def owners_under(self, prefix: str) -> set[str]:
        return {
            owner for owner in ("bot:b1:telegram:-100/7", "bot:b1:telegram:-1001") if owner.startswith(prefix)
        }


OWNED = AnswerProfile(
    id="b1", owner="user:o@example.com", owner_email="o@example.com", model="", system_prompt=None
)


def chats(conversations: Any = None) -> BotChats:
    return BotChats(Profiles(OWNED), conversations or Conversations(), db=None)  # type: ignore[arg-type]


def test_a_bot_chat_asks_as_the_bots_owner_key_of_that_chat(slack: str) -> None:
    asker = chats().for_chat("b1", "slack:C1")
    assert asker == Asker("bot:b1:slack:C1", OWNED, "slack")
    assert bot_owner("b1", "telegram:-100") == "bot:b1:telegram:-100"
    with pytest.raises(BotNotFound):
        chats().for_chat("b2", "telegram:1")


def test_a_web_user_asks_as_themselves_with_their_own_bot_only() -> None:
    owner = User("o@example.com", "o", is_admin=False)
    assert chats().for_user(owner, None) == Asker("user:o@example.com", None, "web")
    assert chats().for_user(owner, "b1") == Asker("user:o@example.com", OWNED, "web")
    stranger = User("s@example.com", "s", is_admin=False)
    with pytest.raises(BotNotFound):  # someone else's bot: as if there were none
        chats().for_user(stranger, "b1")
    admin = User("a@example.com", "a", is_admin=True)
    assert chats().for_user(admin, "b1").bot == OWNED
    with pytest.raises(BotNotFound):
        chats().for_user(admin, "b2")


def test_forget_clears_the_chats_conversation_and_the_senders_votes(monkeypatch: pytest.MonkeyPatch) -> None:
    forgotten: list[str] = []
    monkeypatch.setattr(bot_chats, "forget_owner", lambda db, owner: forgotten.append(owner))
    conversations = Conversations()
    assert chats(conversations).forget("b1", "telegram:-100", "telegram:2") == 2
    assert conversations.cleared == ["bot:b1:telegram:-100", "bot:b1:telegram:-100/7"]
    assert forgotten == ["telegram:2"]
    with pytest.raises(BotNotFound):
        chats(conversations).forget("b2", "telegram:-100", "telegram:2")
    assert len(conversations.cleared) == 2


# --- the routes, on the emulators -----------------------------------------------------------------------
SERVICE = {"X-Askbase-Service": "botrunner"}


@pytest.mark.emulators
def test_the_bot_routes_take_a_voter_of_any_registered_platform(
    app: Flask, settings: Settings, slack: str
) -> None:
    db = firestore_client(settings.project_id)
    db.collection("bots").document("b9").set(
        {"owner": "o", "owner_email": "o@example.com", "platform": "slack"}
    )
    client = app.test_client()
    forget = {"bot_id": "b9", "user": "slack:C1", "voter": "slack:U1"}
    forgot = client.post("/api/bot-forget", json=forget, headers=SERVICE)
    assert forgot.status_code == 200, forgot.get_json()
    press = {"bot_id": "b9", "state_id": "gone", "voter": "slack:U1", "vote": "up"}
    assert client.post("/api/bot-votes", json=press, headers=SERVICE).status_code == 404  # not 400
    unknown = {**forget, "voter": "teams:U1"}
    assert client.post("/api/bot-forget", json=unknown, headers=SERVICE).status_code == 400


@pytest.mark.emulators
def test_forget_in_a_forum_clears_the_chat_and_every_topic_of_it(app: Flask, settings: Settings) -> None:
    """A forum's topics are conversations of their own (``telegram:-100/55``); ``/forget`` names the
    chat and takes all of them, the chat's own and its answers' records, and nothing of a chat whose id
    merely starts the same."""
    db = firestore_client(settings.project_id)
    db.collection("bots").document("b9").set(
        {"owner": "o", "owner_email": "o@example.com", "platform": "telegram"}
    )
    client = app.test_client()
    chats_asked = [
        "telegram:-100",
        "telegram:-100/55",
        "telegram:-100/66",
        "telegram:-1001",
        "telegram:-1001/55",
    ]
    for chat in chats_asked:
        asked = client.post(
            "/api/ask", json={"question": "How do I deploy?", "bot_id": "b9", "user": chat}, headers=SERVICE
        )
        assert asked.status_code == 200, asked.get_json()

    def owners(collection: str, field: str) -> set[str]:
        return {snap.get(field) for snap in db.collection(collection).select([field]).stream()}

    assert owners("conversations", "owner") == {f"bot:b9:{chat}" for chat in chats_asked}
    forget = {"bot_id": "b9", "user": "telegram:-100", "voter": "telegram:2"}
    forgot = client.post("/api/bot-forget", json=forget, headers=SERVICE)
    assert forgot.status_code == 200, forgot.get_json()
    kept = {"bot:b9:telegram:-1001", "bot:b9:telegram:-1001/55"}
    assert owners("conversations", "owner") == kept
    assert owners("answers", "asker") == kept
