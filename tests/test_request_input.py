"""The one rule for ids and page sizes that come from requests (shared/request_input.py), held against
what the Firestore emulator actually refuses."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from shared.bots.buttons import ButtonStateStore, state_id_for_job
from shared.bots.registry import BotReader
from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.bot_profiles import BotNotFound, load_answer_profile
from shared.qa.conversations import ConversationNotFound, ConversationStore
from shared.request_input import (
    LONE_SURROGATE,
    NotJSON,
    firestore_accepts,
    is_document_id,
    page_size,
    read_json,
)

# Ids a request can carry that name no document: reserved, path-like, or of another shape.
HOSTILE_IDS = ["__x__", "__", "____", "__.__", ".", "..", "...", "a/b", "/", "", " ", "a\n", "é", "\ud800"]
HOSTILE_IDS += ["x" * 129, "x" * 1501, "__\n__"]


@pytest.mark.parametrize(
    "value", ["a", "Okct9wdwRJULifbsmbxn", "0f" * 16, "bot-1", "my_bot", "_x_", "x" * 128]
)
def test_ids_askbase_makes_are_document_ids(value: str) -> None:
    assert is_document_id(value) and firestore_accepts(value)


@pytest.mark.parametrize(
    "value", ["__x__", "____", "__é__", ".", "..", "a/b", "", "a\n", "é", "x" * 129, "\ud800", None, 7]
)
def test_reserved_path_like_and_foreign_ids_are_not(value: object) -> None:
    assert not is_document_id(value)


def test_firestore_accepts_follows_the_documented_rules() -> None:
    assert firestore_accepts("statetelegram:-100") and firestore_accepts("é" * 750)
    for refused in ("__x__", "____", ".", "..", "", "a/b", "é" * 751, "\ud800"):
        assert not firestore_accepts(refused), refused


def test_every_id_the_rule_lets_through_is_one_the_emulator_takes(emulators, settings: Settings) -> None:
    """The measured fact the rule relies on: whatever :func:`firestore_accepts` passes, Firestore reads
    without an error; and every id the emulator refuses is refused by the rule first."""
    db = firestore_client(settings.project_id)
    for value in HOSTILE_IDS:
        try:
            db.collection("probe").document(value).get()
            refused = False
        except (gexc.InvalidArgument, ValueError, UnicodeEncodeError):
            refused = True
        if refused:
            assert not firestore_accepts(value), value
        if firestore_accepts(value):
            assert not refused, value


@pytest.mark.parametrize("value", ["__x__", "..", ".", "a/b", "__"])
def test_stores_answer_unknown_for_ids_no_document_can_have(
    emulators, settings: Settings, value: str
) -> None:
    """Each store a request's id reaches says "unknown", never passes the id on to Firestore's refusal."""
    db = firestore_client(settings.project_id)
    assert BotReader(db).get_bot(value) is None
    with pytest.raises(BotNotFound):
        load_answer_profile(db, value)
    store = ConversationStore(db, retention_days=30)
    with pytest.raises(ConversationNotFound):
        store.get("user:a@example.com", value)
    with pytest.raises(ConversationNotFound):
        store.record_turn("user:a@example.com", value, "q?", "a.", [], "extractive")
    assert ButtonStateStore(db).get(value) is None
    assert ButtonStateStore(db).get(state_id_for_job("never-saved")) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 50),
        ("", 50),
        ("1", 1),
        ("200", 200),
        ("007", 7),
        ("0", None),
        ("201", None),
        ("²", None),  # str.isdigit() says yes, int() refuses it
        ("٣", None),  # a decimal digit int() reads, but not an ASCII one
        (" 5", None),
        ("-1", None),
        ("1e2", None),
        ("9" * 4400, None),  # past int()'s 4,300 digits
    ],
)
def test_page_size(raw: str | None, expected: int | None) -> None:
    assert page_size(raw, 50, 200) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "JSONDecodeError"),
        (b"\xff\xfe{", "UnicodeDecodeError"),
        (b'{"id": ' + b"1" * 4301 + b"}", "ValueError"),  # past int()'s 4,300 digits
        (b"[" * 5000 + b"]" * 5000, "RecursionError"),
        (b'{"name": "\\ud800"}', LONE_SURROGATE),
        (b'{"a": [[{"\\udfff": 1}]]}', LONE_SURROGATE),  # a key, nested
    ],
    ids=["malformed", "not utf-8", "huge integer", "deep nesting", "lone surrogate", "lone surrogate key"],
)
def test_read_json_names_what_python_cannot_read(body: bytes, reason: str) -> None:
    with pytest.raises(NotJSON) as raised:
        read_json(body)
    assert raised.value.reason == reason


def test_read_json_reads_json() -> None:
    assert read_json(b'{"a": [1, 2.5, null, "\u00e9"]}') == {"a": [1, 2.5, None, "é"]}
    assert read_json('{"n": ' + "9" * 4300 + "}")["n"] == int("9" * 4300)
    assert read_json(b'"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is one character: text
