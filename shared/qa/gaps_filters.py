"""What a gaps report covers, from a request's query parameters: a period, a source and a bot.

The web page, the API and ``askbase gaps`` take the same parameters; :func:`parse_filters` checks them
all at once and says what is wrong in :class:`InvalidFilter`'s message, which the caller shows as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

DEFAULT_DAYS = 30
MAX_DAYS = 366
WEB = "web"  # the bot filter's value for the web chat's traffic (no bot)
_BOT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class GapsFilters:
    """What a report covers: ``[since, until)``, optionally one source and one bot (or :data:`WEB`)."""

    since: datetime
    until: datetime
    source: str | None = None
    bot: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "source": self.source,
            "bot": self.bot,
        }


class InvalidFilter(ValueError):
    """A report filter the caller must fix; the message says what."""


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DAYS = re.compile(r"[0-9]{1,3}")
_SOURCE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _parse_date(value: str, name: str) -> datetime:
    if not _DATE.fullmatch(value):
        raise InvalidFilter(f"'{name}' must be a date like 2026-01-31")
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        raise InvalidFilter(f"'{name}' is not a real date") from None


def parse_filters(args: Mapping[str, str], now: datetime) -> GapsFilters:
    """Report filters from query parameters: ``since`` / ``until`` (UTC dates, both days included;
    ``since`` alone runs to now, ``until`` alone covers the 30 days up to it), else ``days`` (the last
    N days, default 30); ``source`` (a source name), ``bot`` (a bot id, or ``web`` for the web chat).
    Empty parameters are ignored. Raises :class:`InvalidFilter`."""
    days, since_arg, until_arg = (args.get(k, "").strip() for k in ("days", "since", "until"))
    if since_arg or until_arg:
        days = ""  # explicit dates win (the page's form sends both)
    if days:
        if not _DAYS.fullmatch(days) or not 1 <= int(days) <= MAX_DAYS:
            raise InvalidFilter(f"'days' must be a whole number from 1 to {MAX_DAYS}")
        since, until = now - timedelta(days=int(days)), now
    else:
        until = _parse_date(until_arg, "until") + timedelta(days=1) if until_arg else now
        since = _parse_date(since_arg, "since") if since_arg else until - timedelta(days=DEFAULT_DAYS)
    if since >= until:
        raise InvalidFilter("'since' must be before 'until'")
    if until - since > timedelta(days=MAX_DAYS):
        raise InvalidFilter(f"a report covers at most {MAX_DAYS} days")
    source = args.get("source", "").strip() or None
    if source is not None and not _SOURCE.fullmatch(source):
        raise InvalidFilter("'source' must be a source name (letters, digits, '_', '.', '-')")
    bot = args.get("bot", "").strip() or None
    if bot is not None and bot != WEB and not _BOT_ID.fullmatch(bot):
        raise InvalidFilter(f"'bot' must be a bot id or '{WEB}'")
    return GapsFilters(since=since, until=until, source=source, bot=bot)
