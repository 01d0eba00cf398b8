"""Cloud Functions entry points. Cloud Functions loads ``main.py``; each name here is one function.

Every function is deployed from the same source archive, so each imports only its own module when
functions-framework asks for it: the Telegram webhook's cold start doesn't pay for the scrape job's
imports.
"""

from __future__ import annotations

import importlib
from typing import Any

_ENTRY_POINTS = {
    "telegram_webhook": "functions.telegram_webhook",
    "discord_interactions": "functions.discord_interactions",
    "scrape": "functions.scrape",
}
__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module), name)
