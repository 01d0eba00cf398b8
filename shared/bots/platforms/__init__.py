"""The chat platforms askbase bots run on, by name: the one place that lists them.

Public API::

    from shared.bots.platforms import PLATFORM_NAMES, find_platform, get_platform

    platform = get_platform(bot.platform)     # a shared.bots.platforms.base.Platform; KeyError if unknown
    find_platform(data.get("platform"))       # the same, or None for anything that is not a name
    PLATFORM_NAMES                            # ("telegram", "discord"), in registration order
    all_platforms()                           # the Platform objects, in the same order

The interface is :class:`shared.bots.platforms.base.Platform`; each platform is a module of its own
(``telegram.py``, ``discord.py``) with its API client beside it (``telegram_api.py``,
``discord_api.py``, imported only by botrunner). Adding a platform: docs/architecture.md, "Adding a
platform".
"""

from __future__ import annotations

from shared.bots.platforms.base import Platform
from shared.bots.platforms.discord import Discord
from shared.bots.platforms.telegram import Telegram

_PLATFORMS: dict[str, Platform] = {}


def _register(platform: Platform) -> None:
    if platform.name in _PLATFORMS:
        raise ValueError(f"platform {platform.name!r} is registered twice")
    _PLATFORMS[platform.name] = platform


# One line per platform.
_register(Telegram())
_register(Discord())

PLATFORM_NAMES: tuple[str, ...] = tuple(_PLATFORMS)


def get_platform(name: str) -> Platform:
    """The platform called ``name``; ``KeyError`` if there is none (a bug: stored names are checked)."""
    return _PLATFORMS[name]


def all_platforms() -> tuple[Platform, ...]:
    """Every platform, in registration order."""
    return tuple(_PLATFORMS.values())


def find_platform(name: object) -> Platform | None:
    """The platform called ``name``, or ``None`` (for input that may name none: forms, jobs, documents)."""
    return _PLATFORMS.get(name) if isinstance(name, str) else None


__all__ = ["PLATFORM_NAMES", "Platform", "all_platforms", "find_platform", "get_platform"]
