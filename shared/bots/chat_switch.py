"""Per-chat switch: ``/enable`` and ``/disable`` by chat admins, stored in ``chat_settings``.

Document id ``{bot_id}:{chat_id}``, field ``enabled``. A chat without a document is enabled: a bot added
to a group answers there until an admin says otherwise. The webhook reads this before publishing a job
(a disabled chat costs no Pub/Sub message and no Q&A call); the worker writes it, after checking with
the platform that the sender really is an admin.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.cloud import firestore

CHAT_SETTINGS = "chat_settings"


def chat_key(bot_id: str, chat_id: str | int) -> str:
    """The ``chat_settings`` document id of one bot in one chat."""
    return f"{bot_id}:{chat_id}"


def is_enabled(db: firestore.Client, bot_id: str, chat_id: str | int) -> bool:
    """Whether the bot answers in this chat (default yes)."""
    snap = db.collection(CHAT_SETTINGS).document(chat_key(bot_id, chat_id)).get()
    if not snap.exists:
        return True
    return bool((snap.to_dict() or {}).get("enabled", True))


def set_enabled(db: firestore.Client, bot_id: str, chat_id: str | int, enabled: bool, by_user: str) -> None:
    """Persist the switch, with who flipped it and when (for the bot's activity view)."""
    db.collection(CHAT_SETTINGS).document(chat_key(bot_id, chat_id)).set(
        {
            "bot_id": bot_id,
            "chat_id": str(chat_id),
            "enabled": enabled,
            "updated_by": by_user,
            "updated_at": datetime.now(UTC),
        }
    )
