"""Who a chat platform's user (or chat) is to askbase: the key ``<platform>:<id>`` (``telegram:42``).

The worker names a bot's chat and the sender of a vote, ``/forget``, ``/enable`` or ``/mode`` this way
when it calls the Q&A service (``user``, ``voter``) or writes a chat's settings (``by_user``); qa reads
the platform back from the key (:func:`user_platform`) to file an answer under its platform and to accept
only platform users where a bot acts for one. The platforms are the registered ones
(:mod:`shared.bots.platforms`): a new platform's ``_register(...)`` line is all it takes.

Public API::

    from shared.bots.platform_users import platform_user, user_platform

    platform_user("telegram", 42)     # "telegram:42"
    user_platform("telegram:42")      # "telegram"; None when the prefix names no registered platform
    topic_chat("telegram:-100", 55)   # "telegram:-100/55": a forum topic, a chat of its own to Q&A

A chat's topics are the keys that start with the chat's key and :data:`TOPIC_SEPARATOR`: a chat's
``/forget`` takes them all (:meth:`shared.qa.bot_chats.BotChats.forget`).
"""

from __future__ import annotations

SEPARATOR = ":"
# Between a chat's key and one of its topics (a Telegram forum topic): no platform's chat id holds it.
TOPIC_SEPARATOR = "/"


def platform_user(platform: str, user: str | int) -> str:
    """The key of ``user`` (a user or chat id on ``platform``)."""
    return f"{platform}{SEPARATOR}{user}"


def user_platform(key: str) -> str | None:
    """The registered platform ``key`` names, or None (another shape, or no platform of that name)."""
    # Imported here: the platform modules import the button store, which imports this module's
    # TOPIC_SEPARATOR.
    from shared.bots.platforms import find_platform

    name, separator, _ = key.partition(SEPARATOR)
    return name if separator and find_platform(name) is not None else None


def topic_chat(chat: str, topic: str | int) -> str:
    """The key of ``topic`` of the chat keyed ``chat`` (:func:`platform_user`)."""
    return f"{chat}{TOPIC_SEPARATOR}{topic}"
