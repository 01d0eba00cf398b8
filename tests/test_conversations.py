"""Conversation repository on the Firestore emulator: per-owner isolation, paging, search, export,
retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa import conversations
from shared.qa.conversations import (
    ConversationNotFound,
    ConversationStore,
    InvalidCursor,
    export,
    message_slack,
)

pytestmark = pytest.mark.emulators

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


@pytest.mark.parametrize("clear_all", [False, True], ids=["delete-one", "clear-all"])
def test_a_turn_appended_while_its_conversation_is_deleted_leaves_no_message_behind(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch, clear_all: bool
) -> None:
    """An answer that lands while its conversation is being deleted (asked in one tab, deleted in
    another): its turn commits after the delete removed the messages it had listed and before it
    removed the conversation. Its two messages, question and answer text, stayed under the deleted
    conversation, out of every read's reach, until their expiry (a year by default; never with
    retention 0)."""
    from google.cloud.firestore import DocumentReference

    owner = "user:a@x.io"
    cid = store.record_turn(owner, None, "q0", "a0", [], "extractive")
    commit = conversations.retry_aborted
    appended: list[str] = []

    def the_answer_lands_just_before_the_conversation_goes(call, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(getattr(call, "__self__", None), DocumentReference) and not appended:
            appended.append(store.record_turn(owner, cid, "q1", "a1", [], "extractive"))
        return commit(call, *args, **kwargs)

    monkeypatch.setattr(conversations, "retry_aborted", the_answer_lands_just_before_the_conversation_goes)
    if clear_all:
        assert store.clear(owner) == 1
    else:
        store.delete(owner, cid)
    assert appended == [cid]  # the turn was written, onto the conversation that still existed
    doc = store._db.collection("conversations").document(cid)
    assert not doc.get().exists
    assert [m.id for m in doc.collection("messages").stream()] == []


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


class Clock:
    """A settable clock for the store: retention is tested in days without waiting for them."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _docs(store: ConversationStore, cid: str) -> tuple[dict, list[dict]]:
    doc = store._db.collection("conversations").document(cid)
    return doc.get().to_dict(), [s.to_dict() for s in doc.collection("messages").order_by("seq").stream()]


def _assert_no_message_expires_first(store: ConversationStore, cid: str) -> None:
    conv, msgs = _docs(store, cid)
    assert msgs and all(m["expire_at"] >= conv["expire_at"] for m in msgs), (conv, msgs)
    # The recorded bound is a true lower bound (so the next append decides correctly).
    assert conv["messages_expire_at"] <= min(m["expire_at"] for m in msgs)


def _ttl_sweep(store: ConversationStore, at: datetime, conversations: bool = True) -> int:
    """Do what a TTL policy may do by ``at``: delete any document whose expire_at has passed, each on
    its own (``conversations=False``: the worst order, the messages go first)."""
    db, deleted = store._db, 0
    groups = [db.collection_group("messages")] + ([db.collection("conversations")] if conversations else [])
    for group in groups:
        for snap in group.stream():
            expire = (snap.to_dict() or {}).get("expire_at")
            if expire is not None and expire <= at:
                snap.reference.delete()
                deleted += 1
    return deleted


def test_new_conversation_expiry_messages_outlive_it_by_the_slack(emulators, settings: Settings) -> None:
    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    cid = store.record_turn("user:a@x.io", None, "q", "a", [], "extractive")
    conv, msgs = _docs(store, cid)
    assert conv["expire_at"] == clock.now + timedelta(days=30)
    assert message_slack(30) == timedelta(days=7) and message_slack(2) == timedelta(days=1)
    assert {m["expire_at"] for m in msgs} == {clock.now + timedelta(days=37)}
    assert conv["messages_expire_at"] == clock.now + timedelta(days=37)


def test_an_active_conversation_never_has_a_message_expire_before_it(emulators, settings: Settings) -> None:
    # Today's bug: the conversation's expiry moved with every turn while old messages kept theirs
    # (refreshed only within half the window), so TTL could delete them first: a truncated history.
    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    start = clock.now
    cid = store.record_turn("user:a@x.io", None, "q0", "a0", [], "extractive")
    for day in (1, 3, 6.5, 8, 15, 16, 29, 58):
        clock.now = start + timedelta(days=day)
        store.record_turn("user:a@x.io", cid, f"q{day}", f"a{day}", [], "extractive")
        _assert_no_message_expires_first(store, cid)
    # TTL, at any moment, in the worst order, never leaves a visible but truncated conversation.
    conv, _ = _docs(store, cid)
    for at in (clock.now + timedelta(days=29), conv["expire_at"], conv["expire_at"] + timedelta(days=9)):
        clock.now = at
        _ttl_sweep(store, at, conversations=False)
        try:
            shown = store.get("user:a@x.io", cid)
        except ConversationNotFound:
            shown = None
        assert shown is None or len(shown.messages) == 18
        assert shown is not None or store.list("user:a@x.io") == []
    assert store.list("user:a@x.io") == []  # expired: hidden even before TTL deletes the document


def test_message_expiry_is_restamped_only_once_per_slack(emulators, settings: Settings) -> None:
    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    start = clock.now
    cid = store.record_turn("user:a@x.io", None, "q0", "a0", [], "extractive")
    first = _docs(store, cid)[1][0]["expire_at"]
    for day in (1, 2, 6):  # within the 7-day slack: the old messages are not rewritten
        clock.now = start + timedelta(days=day)
        store.record_turn("user:a@x.io", cid, "q", "a", [], "extractive")
        assert _docs(store, cid)[1][0]["expire_at"] == first
    clock.now = start + timedelta(days=7, seconds=1)  # past it: every message re-stamped, once
    store.record_turn("user:a@x.io", cid, "q", "a", [], "extractive")
    _, msgs = _docs(store, cid)
    assert {m["expire_at"] for m in msgs} == {clock.now + timedelta(days=37)}
    clock.now += timedelta(days=1)
    store.record_turn("user:a@x.io", cid, "q", "a", [], "extractive")
    assert _docs(store, cid)[1][0]["expire_at"] == clock.now - timedelta(days=1) + timedelta(days=37)


def test_a_crash_after_restamping_leaves_messages_longer_lived_not_shorter(
    emulators, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    cid = store.record_turn("user:a@x.io", None, "q0", "a0", [], "extractive")
    clock.now += timedelta(days=10)
    calls = []
    original = conversations._Turn.append_in_transaction

    def crash_on_retry(self, transaction, doc, refreshed):
        calls.append(refreshed)
        if refreshed is not None:
            raise RuntimeError("instance died")
        return original(self, transaction, doc, refreshed)

    monkeypatch.setattr(conversations._Turn, "append_in_transaction", crash_on_retry)
    with pytest.raises(RuntimeError):
        store.record_turn("user:a@x.io", cid, "q1", "a1", [], "extractive")
    assert len(calls) == 2  # refused, re-stamped, then died before the append committed
    _assert_no_message_expires_first(store, cid)
    monkeypatch.undo()
    store.record_turn("user:a@x.io", cid, "q1", "a1", [], "extractive")
    _assert_no_message_expires_first(store, cid)
    assert len(store.get("user:a@x.io", cid).messages) == 4


def test_concurrent_turns_that_both_restamp_keep_the_invariant(emulators, settings: Settings) -> None:
    import threading

    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    cid = store.record_turn("user:a@x.io", None, "q0", "a0", [], "extractive")
    for i in range(1, 5):
        store.record_turn("user:a@x.io", cid, f"q{i}", f"a{i}", [], "extractive")
    clock.now += timedelta(days=20)
    errors: list[BaseException] = []

    def turn(i: int) -> None:
        try:
            store.record_turn("user:a@x.io", cid, f"q{i}", f"a{i}", [], "extractive")
        except BaseException as exc:  # shown by the assertion below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=turn, args=(i,)) for i in (5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.get("user:a@x.io", cid).messages) == 14
    _assert_no_message_expires_first(store, cid)


def test_a_conversation_missing_messages_or_past_its_expiry_is_hidden_not_truncated(
    emulators, settings: Settings
) -> None:
    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    owner = "user:a@x.io"
    gap = store.record_turn(owner, None, "q0", "a0", [], "extractive")
    store.record_turn(owner, gap, "q1", "a1", [], "extractive")
    newest_gone = store.record_turn(owner, None, "q0", "a0", [], "extractive")
    store.record_turn(owner, newest_gone, "q1", "a1", [], "extractive")
    stale = store.record_turn(owner, None, "q0", "a0", [], "extractive")
    col = store._db.collection("conversations")
    # Data written by older code: a message gone before its conversation; a bound already passed.
    col.document(gap).collection("messages").document("000000").delete()
    col.document(newest_gone).collection("messages").document("000003").delete()
    col.document(stale).update({"messages_expire_at": clock.now - timedelta(seconds=1)})
    for cid in (gap, newest_gone, stale):
        with pytest.raises(ConversationNotFound):
            store.get(owner, cid)
    with pytest.raises(ConversationNotFound):
        store.record_turn(owner, stale, "q1", "a1", [], "extractive")
    assert stale not in {c.id for c in store.list(owner)}
    clock.now += timedelta(days=30)  # past every conversation's expire_at, before TTL ran
    assert store.list(owner) == []
    with pytest.raises(ConversationNotFound):
        store.get(owner, gap)


def test_retention_switched_to_forever_removes_message_expiry(emulators, settings: Settings) -> None:
    clock = Clock()
    db = firestore_client(settings.project_id)
    cid = ConversationStore(db, 30, clock=clock).record_turn("user:a@x.io", None, "q", "a", [], "extractive")
    ConversationStore(db, 0, clock=clock).record_turn("user:a@x.io", cid, "q2", "a2", [], "extractive")
    conv, msgs = _docs(ConversationStore(db, 0), cid)
    assert "expire_at" not in conv and "messages_expire_at" not in conv
    assert len(msgs) == 4 and all("expire_at" not in m for m in msgs)
    # And back: the new messages expire, the bound is theirs.
    clock.now += timedelta(days=1)
    ConversationStore(db, 30, clock=clock).record_turn("user:a@x.io", cid, "q3", "a3", [], "extractive")
    conv, msgs = _docs(ConversationStore(db, 30), cid)
    assert conv["expire_at"] == clock.now + timedelta(days=30)
    assert conv["messages_expire_at"] == clock.now + timedelta(days=37)


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


# --- paging ---------------------------------------------------------------------------------------
@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int | None, int]]:
    """(limit, documents read) of every query the store runs."""
    from google.cloud.firestore_v1.query import Query

    seen: list[tuple[int | None, int]] = []
    original = Query.stream

    def counting(self, *args, **kwargs):
        seen.append((self._limit, 0))
        slot = len(seen) - 1
        for snap in original(self, *args, **kwargs):
            seen[slot] = (self._limit, seen[slot][1] + 1)
            yield snap

    monkeypatch.setattr(Query, "stream", counting)
    return seen


def _history(store: ConversationStore, owner: str, n: int, clock: Clock, same_time: int = 0) -> list[str]:
    """``n`` conversations, one second apart except the last ``same_time`` (equal updated_at);
    returns their ids in the order history must show them."""
    made = []
    for i in range(n):
        if i < n - same_time:
            clock.now += timedelta(seconds=1)
        made.append((clock.now, store.record_turn(owner, None, f"question {i}", f"answer {i}", [], "x")))
    return [cid for _, cid in sorted(made, reverse=True)]  # updated_at desc, then id desc


def test_history_is_paged_in_firestore_and_cursors_visit_each_conversation_once(
    emulators, settings: Settings, streamed: list
) -> None:
    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    expected = _history(store, "user:a@x.io", 11, clock, same_time=3)
    _history(store, "user:b@x.io", 4, clock)  # somebody else's: never on a's pages
    streamed.clear()
    pages, cursor = [], None
    while True:
        page = store.page("user:a@x.io", limit=4, cursor=cursor)
        pages.append([c.id for c in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 3]
    assert [cid for p in pages for cid in p] == expected
    # Each page was one query limited to a page plus one (to know whether more exist).
    assert [limit for limit, _ in streamed] == [5, 5, 5]
    assert all(read <= 5 for _, read in streamed)
    # An exact multiple of the page size ends without an empty page.
    first_two = store.page("user:a@x.io", limit=11)
    assert len(first_two.items) == 11 and first_two.next_cursor is None
    assert [c.id for c in store.list("user:a@x.io", limit=3)] == expected[:3]


def test_history_cursor_is_opaque_and_checked(emulators, settings: Settings) -> None:
    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    _history(store, "user:a@x.io", 3, clock)
    cursor = store.page("user:a@x.io", limit=1).next_cursor
    assert cursor and "/" not in cursor and "=" not in cursor
    import base64

    reserved = base64.urlsafe_b64encode(b'["2030-01-01T00:00:00+00:00","__x__"]').decode()
    naive = base64.urlsafe_b64encode(b'["2030-01-01T00:00:00","abc"]').decode()
    for bad in ("nonsense", "e30", "W10", cursor[:-3], "!!", reserved, naive):
        with pytest.raises(InvalidCursor):
            store.page("user:a@x.io", cursor=bad)
    # Somebody else's cursor is only a position: it never reveals a's conversations.
    assert store.page("user:b@x.io", cursor=cursor).items == []


def test_search_reads_a_bounded_window_and_continues_by_cursor(
    emulators, settings: Settings, streamed: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conversations, "SEARCH_SCAN_LIMIT", 4)
    clock = Clock()
    store = ConversationStore(firestore_client(settings.project_id), 30, clock=clock)
    expected = _history(store, "user:a@x.io", 10, clock)
    matching = [cid for cid in expected if cid in set(expected[1::3])]  # every third conversation
    for cid in matching:
        store._db.collection("conversations").document(cid).update({"search_text": "about webhooks"})
    streamed.clear()
    found, cursor, calls = [], None, 0
    while True:
        page = store.page("user:a@x.io", "WEBHOOKS", limit=2, cursor=cursor)
        found += [c.id for c in page.items]
        calls += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert found == matching
    assert all(limit == 5 and read <= 5 for limit, read in streamed)
    assert calls == len(streamed) >= 3  # 10 conversations, at most 4 scanned per call
