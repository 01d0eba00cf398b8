"""Per-chat settings by chat admins, stored in ``chat_settings``: ``/enable`` ``/disable`` and ``/mode``.

Document id ``{bot_id}:{chat_id}``, fields ``bot_id``, ``chat_id``, ``enabled`` and ``answer_mode``
(:mod:`shared.bots.answer_modes`). A chat without a document is enabled and follows the bot's answer
mode: a bot added to a group answers there until an admin says otherwise. The webhook reads this before
publishing a job (a disabled chat, or a message the chat's mode does not answer, costs no Pub/Sub
message and no Q&A call); the worker writes it, after checking with the platform that the sender really
is an admin. Each setting is written with a merge, so switching one keeps the other. A deleted bot's
settings go with it (:func:`delete_bot_settings`); a chat's settings follow it to a new id
(:func:`move_settings`: a Telegram group upgraded to a supergroup), whose document then also lists the
chat's earlier ids (``previous_chat_ids``: :func:`previous_chat_ids`, for its ``/forget``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.bots.answer_modes import AnswerMode, parse_mode
from shared.transactions import delete_all

CHAT_SETTINGS = "chat_settings"
# A chat's earlier ids (a group upgraded to a supergroup), on its settings document.
PREVIOUS = "previous_chat_ids"


@dataclass(frozen=True)
class ChatSettings:
    """One chat's settings for one bot: on or off, and its own answer mode (None: the bot's)."""

    enabled: bool = True
    answer_mode: AnswerMode | None = None


def chat_key(bot_id: str, chat_id: str | int) -> str:
    """The ``chat_settings`` document id of one bot in one chat."""
    return f"{bot_id}:{chat_id}"


def read_settings(db: firestore.Client, bot_id: str, chat_id: str | int) -> ChatSettings:
    """The chat's settings (defaults when it has none): one read for both."""
    snap = db.collection(CHAT_SETTINGS).document(chat_key(bot_id, chat_id)).get()
    if not snap.exists:
        return ChatSettings()
    data = snap.to_dict() or {}
    return ChatSettings(bool(data.get("enabled", True)), parse_mode(data.get("answer_mode")))


def is_enabled(db: firestore.Client, bot_id: str, chat_id: str | int) -> bool:
    """Whether the bot answers in this chat (default yes)."""
    return read_settings(db, bot_id, chat_id).enabled


def _write(
    db: firestore.Client, bot_id: str, chat_id: str | int, fields: dict[str, object], by_user: str
) -> None:
    db.collection(CHAT_SETTINGS).document(chat_key(bot_id, chat_id)).set(
        {
            "bot_id": bot_id,
            "chat_id": str(chat_id),
            **fields,
            "updated_by": by_user,
            "updated_at": datetime.now(UTC),
        },
        merge=True,
    )


def set_enabled(db: firestore.Client, bot_id: str, chat_id: str | int, enabled: bool, by_user: str) -> None:
    """Persist the switch, with who flipped it and when (for the bot's activity view)."""
    _write(db, bot_id, chat_id, {"enabled": enabled}, by_user)


def set_answer_mode(
    db: firestore.Client, bot_id: str, chat_id: str | int, mode: AnswerMode, by_user: str
) -> None:
    """Persist the chat's answer mode, with who set it and when."""
    _write(db, bot_id, chat_id, {"answer_mode": str(mode)}, by_user)


def move_settings(db: firestore.Client, bot_id: str, from_chat: str | int, to_chat: str | int) -> bool:
    """A chat got a new id (a Telegram group upgraded to a supergroup): its settings go with it, unless
    the new chat has settings of its own already (an admin set them there first); the old chat's are
    deleted, nothing is posted there any more. True if settings moved. Running it again changes nothing.
    """
    old = db.collection(CHAT_SETTINGS).document(chat_key(bot_id, from_chat))
    new = db.collection(CHAT_SETTINGS).document(chat_key(bot_id, to_chat))
    snapshot = old.get()
    created = False
    if snapshot.exists:
        moved = {**(snapshot.to_dict() or {}), "chat_id": str(to_chat), "moved_from": str(from_chat)}
        try:
            new.create(moved)
            created = True
        except gexc.AlreadyExists:
            pass
    # The new chat remembers its old id, settings or none: Q&A keeps what was asked before under that id,
    # and the chat's /forget must take it too (previous_chat_ids). Before the old document goes, so a
    # move cut short is finished by the retry.
    new.set(
        {"bot_id": bot_id, "chat_id": str(to_chat), PREVIOUS: firestore.ArrayUnion([str(from_chat)])},
        merge=True,
    )
    if snapshot.exists:
        old.delete()
    return created


def previous_chat_ids(db: firestore.Client, bot_id: str, chat_id: str | int) -> list[str]:
    """The ids the chat had before (a Telegram group upgraded to a supergroup), oldest first."""
    snap = db.collection(CHAT_SETTINGS).document(chat_key(bot_id, chat_id)).get()
    previous = (snap.to_dict() or {}).get(PREVIOUS) if snap.exists else None
    return [str(chat) for chat in previous] if isinstance(previous, list) else []


def delete_bot_settings(db: firestore.Client, bot_id: str) -> int:
    """Delete every chat's settings of ``bot_id`` (the bot is being deleted); returns how many. They
    never expire by themselves and name who set them. A single-field query: no composite index."""
    query = db.collection(CHAT_SETTINGS).where(filter=FieldFilter("bot_id", "==", bot_id))
    return delete_all(db, (snapshot.reference for snapshot in query.select([]).stream()))
