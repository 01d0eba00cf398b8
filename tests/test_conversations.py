"""Conversation repository on the Firestore emulator: per-owner isolation, search, export, retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.conversations import ConversationNotFound, ConversationStore, export

SRC = [{"title": "Snapshots", "url": "https://docs.example.com/snapshots#publishing", "snippet": "…"}]


@pytest.fixture
def store(emulators, settings: Settings) -> ConversationStore:
    return ConversationStore(firestore_client(settings.project_id), settings.conversation_retention_days)


def test_turns_are_recorded_listed_and_reopened(store: ConversationStore) -> None:
    cid = store.record_turn(
        "user:a@x.io", None, "How are snapshots published?", "Via GCS [1].", SRC, "extractive"
    )
    assert store.record_turn("user:a@x.io", cid, "And how often?", "Every 30 min.", [], "extractive") == cid
    conv = store.get("user:a@x.io", cid)
    assert conv.title == "How are snapshots published?"
    assert [(m.role, m.text) for m in conv.messages] == [
        ("user", "How are snapshots published?"),
        ("assistant", "Via GCS [1]."),
        ("user", "And how often?"),
        ("assistant", "Every 30 min."),
    ]
    assert conv.messages[1].sources == SRC
    assert [c.id for c in store.list("user:a@x.io")] == [cid]
    assert [m.text for m in store.recent_turns("user:a@x.io", cid, 2)] == ["And how often?", "Every 30 min."]


def test_owner_isolation(store: ConversationStore) -> None:
    cid = store.record_turn("user:a@x.io", None, "secret plans", "none", [], "extractive")
    assert store.list("user:b@x.io") == []
    with pytest.raises(ConversationNotFound):
        store.get("user:b@x.io", cid)
    with pytest.raises(ConversationNotFound):
        store.delete("user:b@x.io", cid)
    with pytest.raises(ConversationNotFound):
        store.record_turn("user:b@x.io", cid, "hijack", "no", [], "extractive")
    assert store.clear("user:b@x.io") == 0
    assert len(store.get("user:a@x.io", cid).messages) == 2


def test_unknown_and_malformed_ids(store: ConversationStore) -> None:
    for bad in ("nope", "", "a/b", "x" * 200):
        with pytest.raises(ConversationNotFound):
            store.get("user:a@x.io", bad)


def test_search_by_text_in_questions_and_answers(store: ConversationStore) -> None:
    a = store.record_turn("user:a@x.io", None, "Telegram webhooks?", "Set with setWebhook.", [], "extractive")
    b = store.record_turn("user:a@x.io", None, "Discord bots?", "Interactions endpoint.", [], "extractive")
    assert [c.id for c in store.list("user:a@x.io", "SETWEBHOOK")] == [a]
    assert [c.id for c in store.list("user:a@x.io", "discord")] == [b]
    assert {c.id for c in store.list("user:a@x.io", "")} == {a, b}
    assert store.list("user:a@x.io", "nothing like this") == []


def test_delete_one_and_clear_all(store: ConversationStore) -> None:
    a = store.record_turn("user:a@x.io", None, "one", "1", [], "extractive")
    b = store.record_turn("user:a@x.io", None, "two", "2", [], "extractive")
    other = store.record_turn("user:b@x.io", None, "theirs", "3", [], "extractive")
    store.delete("user:a@x.io", a)
    assert [c.id for c in store.list("user:a@x.io")] == [b]
    assert store.clear("user:a@x.io") == 1
    assert store.list("user:a@x.io") == []
    assert [c.id for c in store.list("user:b@x.io")] == [other]
    # Messages went with their conversations.
    db = store._db
    assert list(db.collection("conversations").document(a).collection("messages").stream()) == []


def test_export_json_and_markdown(store: ConversationStore) -> None:
    cid = store.record_turn(
        "user:a@x.io", None, "How are snapshots published?", "Via GCS [1].", SRC, "extractive"
    )
    conv = store.get("user:a@x.io", cid)
    body, mime = export(conv, "json")
    data = json.loads(body)
    assert mime == "application/json"
    assert data["id"] == cid and data["messages"][1]["sources"][0]["url"] == SRC[0]["url"]
    md, mime = export(conv, "md")
    assert mime.startswith("text/markdown")
    assert "## How are snapshots published?" in md
    assert "1. [Snapshots](https://docs.example.com/snapshots#publishing)" in md


def test_retention_sets_and_refreshes_expire_at(store: ConversationStore) -> None:
    before = datetime.now(UTC)
    cid = store.record_turn("user:a@x.io", None, "q", "a", [], "extractive")
    doc = store._db.collection("conversations").document(cid)
    first = doc.get().to_dict()["expire_at"]
    assert first >= before + timedelta(days=store.retention_days) - timedelta(seconds=5)
    msg = next(iter(doc.collection("messages").stream())).to_dict()
    assert msg["expire_at"] == first
    # Age the messages' expiry past half the window: the next turn refreshes all of them.
    stale = datetime.now(UTC) + timedelta(days=10)
    doc.update({"messages_expire_at": stale})
    for snap in doc.collection("messages").stream():
        snap.reference.update({"expire_at": stale})
    store.record_turn("user:a@x.io", cid, "q2", "a2", [], "extractive")
    latest = doc.get().to_dict()["expire_at"]
    assert latest > first
    assert {s.to_dict()["expire_at"] for s in doc.collection("messages").stream()} == {latest}


def test_retention_zero_keeps_forever(emulators, settings: Settings) -> None:
    store = ConversationStore(firestore_client(settings.project_id), retention_days=0)
    cid = store.record_turn("user:a@x.io", None, "q", "a", [], "extractive")
    doc = store._db.collection("conversations").document(cid).get().to_dict()
    assert "expire_at" not in doc
    msgs = [
        s.to_dict()
        for s in store._db.collection("conversations").document(cid).collection("messages").stream()
    ]
    assert all("expire_at" not in m for m in msgs)


def test_concurrent_turns_on_one_conversation_keep_every_message(store: ConversationStore) -> None:
    import threading

    cid = store.record_turn("user:a@x.io", None, "q0", "a0", [], "extractive")
    threads = [
        threading.Thread(
            target=store.record_turn, args=("user:a@x.io", cid, f"q{i}", f"a{i}", [], "extractive")
        )
        for i in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    texts = [m.text for m in store.get("user:a@x.io", cid).messages]
    assert len(texts) == 6 and set(texts) == {"q0", "a0", "q1", "a1", "q2", "a2"}
