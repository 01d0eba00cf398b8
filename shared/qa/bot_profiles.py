"""What of a bot shapes its answers: :class:`AnswerProfile`, read from the ``bots`` collection.

The ``bots`` documents belong to :mod:`shared.bots.registry` (its :data:`COLLECTION`); qa only reads the
few fields an answer depends on (the answerer, the prompt) and whose bot it is (the owner, for access),
never the token or the platform state.

Public API::

    from shared.qa.bot_profiles import AnswerProfiles, BotNotFound

    profiles = AnswerProfiles(db)            # per process: a short cache in front of Firestore
    profile = profiles.get(bot_id)           # AnswerProfile; BotNotFound for unknown or malformed ids
    load_answer_profile(db, bot_id)          # the same, uncached
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from google.cloud import firestore

from shared.bots.registry import COLLECTION
from shared.request_input import is_document_id
from shared.ttl_cache import TtlCache


class BotNotFound(LookupError):
    """No bot with that id (or the caller may not use it)."""


@dataclass(frozen=True)
class AnswerProfile:
    """The parts of a bot's document that shape its answers, and whose bot it is."""

    id: str
    owner: str
    owner_email: str
    model: str
    system_prompt: str | None


def load_answer_profile(db: firestore.Client, bot_id: str) -> AnswerProfile:
    """The bot's profile, read now; :class:`BotNotFound` for unknown or malformed ids."""
    if not is_document_id(bot_id):
        raise BotNotFound(bot_id)
    snap = db.collection(COLLECTION).document(bot_id).get()
    if not snap.exists:
        raise BotNotFound(bot_id)
    data = snap.to_dict() or {}
    return AnswerProfile(
        id=bot_id,
        owner=str(data.get("owner", "")),
        owner_email=str(data.get("owner_email", "")).lower(),
        model=str(data.get("model") or ""),
        system_prompt=data.get("system_prompt") or None,
    )


class AnswerProfiles:
    """Answer profiles read through a short-lived cache: a bot's every question would otherwise cost a
    Firestore read before the search even starts. An edit of a bot's model or prompt applies within
    ``ttl_seconds``; unknown ids are never cached, so a new bot works at once."""

    def __init__(
        self, db: firestore.Client, ttl_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._cache: TtlCache[str, AnswerProfile] = TtlCache(ttl_seconds, clock=clock)

    def get(self, bot_id: str) -> AnswerProfile:
        """The bot's profile; :class:`BotNotFound` for unknown or malformed ids (never cached)."""
        return self._cache.get(bot_id, self._load)

    def _load(self, bot_id: str) -> AnswerProfile:
        return load_answer_profile(self._db, bot_id)
