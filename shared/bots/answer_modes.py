"""When a bot answers in a chat: its answer mode, set per bot (the bot pages) and per chat (``/mode``).

=============  ======================================================================================
``mentions``   (the default) in groups only a message that mentions the bot, replies to one of its
               messages or uses ``/ask``; in a private chat every message. Refusals are posted.
``always``     every text message in the chat is a question (a Telegram bot sees every group message
               only with its privacy mode off in @BotFather). Refusals are posted.
``confident``  like ``always``, but an answer the answerers refused (their calibrated "the docs do not
               answer this", ``refused`` in ``/api/ask``'s result) is not posted: silence instead of a
               refusal in a busy community channel. On Discord, where an ``/ask`` is answered "thinking…"
               at once, that placeholder is deleted.
=============  ======================================================================================

Discord delivers only ``/ask`` interactions, each one addressed to the bot, so there ``always`` and
``mentions`` behave alike. A chat's own mode (``chat_settings``, :mod:`shared.bots.chat_switch`) wins over
the bot's (``bots.answer_mode``); a chat without one follows the bot.
"""

from __future__ import annotations

from enum import StrEnum


class AnswerMode(StrEnum):
    """A bot's or a chat's answer mode (the value is what is stored and typed after ``/mode``)."""

    MENTIONS = "mentions"
    ALWAYS = "always"
    CONFIDENT = "confident"


DEFAULT_MODE = AnswerMode.MENTIONS

# How the bot pages and the bot's own replies describe each mode.
DESCRIPTIONS = {
    AnswerMode.MENTIONS: (
        "Only when mentioned, replied to or asked with /ask (every message in a private chat)"
    ),
    AnswerMode.ALWAYS: "Every message in the chat",
    AnswerMode.CONFIDENT: (
        "Every message, but only when the docs answer it (stays silent instead of refusing)"
    ),
}


def parse_mode(value: object) -> AnswerMode | None:
    """The mode ``value`` names (any case, surrounding spaces ignored), or None."""
    if not isinstance(value, str):
        return None
    try:
        return AnswerMode(value.strip().lower())
    except ValueError:
        return None


def stored_mode(value: object) -> AnswerMode:
    """The mode a stored document holds, the default for anything else (a bot from before modes)."""
    return parse_mode(value) or DEFAULT_MODE


def answers_unaddressed(mode: AnswerMode) -> bool:
    """Whether a message that does not address the bot is a question in this mode."""
    return mode is not AnswerMode.MENTIONS


def posts_refusals(mode: AnswerMode) -> bool:
    """Whether a refused answer is posted in this mode."""
    return mode is not AnswerMode.CONFIDENT
