"""A bot's chats as qa knows them: whose conversation a question goes to, who may ask with a bot, and a
chat's ``/forget``.

A bot chat's conversation is owned by ``bot:<bot id>:<chat>`` (:func:`bot_owner`, the one place that
format lives), where ``<chat>`` is the platform's key of the chat as the worker sends it as ``user``
(``telegram:-100``: :func:`shared.bots.platform_users.platform_user`). A signed-in web user asks as
themselves (``user:<email>``), with a bot only if it is theirs (or they are an admin): anyone else's bot
is :class:`BotNotFound`, so its existence is not confirmed.

Public API::

    from shared.qa.bot_chats import BotChats, bot_owner

    chats = BotChats(profiles, conversations, db)
    asker = chats.for_chat(bot_id, chat)       # a service caller (the worker) speaking for a bot's chat
    asker = chats.for_user(user, bot_id)       # a signed-in web user, with a bot of theirs or none
    asker.owner / asker.bot / asker.platform   # what /api/ask answers and records with
    chats.forget(bot_id, chat, voter)          # a chat's /forget (with its topics); returns the
                                               # conversations deleted
"""

from __future__ import annotations

from dataclasses import dataclass

from google.cloud import firestore

from shared.bots.platform_users import TOPIC_SEPARATOR
from shared.qa.answer_log import platform_of
from shared.qa.bot_profiles import AnswerProfile, AnswerProfiles, BotNotFound
from shared.qa.conversations import ConversationStore
from shared.qa.feedback import forget_owner
from shared.qa.identity import User


def bot_owner(bot_id: str, chat: str) -> str:
    """The owner key of a bot chat's conversation (and of its answers' records)."""
    return f"bot:{bot_id}:{chat}"


@dataclass(frozen=True)
class Asker:
    """Who asks: the owner key the conversation is stored under, the bot answering (None: the web chat's
    own answerer) and where the question came from (:func:`shared.qa.answer_log.platform_of`)."""

    owner: str
    bot: AnswerProfile | None
    platform: str


class BotChats:
    """The rules of asking through a bot, and of forgetting a bot chat."""

    def __init__(
        self, profiles: AnswerProfiles, conversations: ConversationStore, db: firestore.Client
    ) -> None:
        self._profiles = profiles
        self._conversations = conversations
        self._db = db

    def for_chat(self, bot_id: str, chat: str) -> Asker:
        """A bot's chat asking, as a service caller relays it; :class:`BotNotFound` for an unknown bot."""
        bot = self._profiles.get(bot_id)
        return Asker(bot_owner(bot.id, chat), bot, platform_of(chat))

    def for_user(self, user: User, bot_id: str | None) -> Asker:
        """A signed-in user asking, with ``bot_id`` if given: :class:`BotNotFound` when there is no such
        bot or it is someone else's (and the user is no admin)."""
        bot = self._profiles.get(bot_id) if bot_id else None
        if bot is not None and bot.owner_email != user.email and not user.is_admin:
            raise BotNotFound(bot_id)
        return Asker(user.owner, bot, platform_of(None))

    def forget(self, bot_id: str, chat: str, voter: str) -> int:
        """A bot chat's ``/forget`` (the worker checked ``voter`` may): what a web user's "clear history"
        does, for the chat — its conversation with the bot, its answer records with every vote on them —
        and every vote ``voter`` cast. Returns the conversations deleted; :class:`BotNotFound` for an
        unknown bot."""
        self._profiles.get(bot_id)
        root = bot_owner(bot_id, chat)
        # A forum's topics are chats of their own to Q&A (shared.bots.platform_users.topic_chat), and the
        # forum's /forget takes every one of them, from whichever topic it was sent in. (A topic's answer
        # records expire no later than its conversation, whose expiry each turn renews.)
        owners = {root} | self._conversations.owners_under(root + TOPIC_SEPARATOR)
        deleted = sum(self._conversations.clear(owner) for owner in sorted(owners))
        forget_owner(self._db, voter)  # the sender's votes, on any answer
        return deleted
