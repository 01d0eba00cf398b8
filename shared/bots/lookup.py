"""How the webhooks and the worker look a bot up: :class:`BotInfo`, read from the registry, cached briefly.

:class:`BotInfo` is a flat view of a ``bots`` document (:mod:`shared.bots.registry`): what the ingress
needs (platform, running or not, ``platform_info`` with the Discord public key or the Telegram
username, the stored hash of the webhook secret) and, for the worker only, the decrypted platform token.
The platform reads its own keys of ``platform_info``; this module only adapts and caches.

The cache matters for latency: without it every update costs a Firestore read (plus an AES-GCM
decryption in the worker) before the real work. A few seconds of staleness is harmless: a rotated secret
or a stopped bot is seen within ``ttl`` (and a stopped Telegram bot has no webhook anyway). Unknown ids
are not cached, so a bot registered a moment ago is found at once (Discord PINGs the endpoint right
after registration).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.bots.answer_modes import DEFAULT_MODE, AnswerMode, stored_mode
from shared.bots.registry import BotReader, BotRegistry
from shared.ttl_cache import TtlCache


@dataclass(frozen=True)
class BotInfo:
    """A bot as ingress and worker see it. May hold the decrypted token: never log it (repr hides it)."""

    bot_id: str
    platform: str
    active: bool = True  # the owner wants it running
    platform_info: Mapping[str, Any] = field(default_factory=dict)
    webhook_secret_hash: str | None = field(default=None, repr=False)  # what the ingress checks against
    token: str | None = field(default=None, repr=False)  # platform token (worker only)
    answer_mode: AnswerMode = DEFAULT_MODE  # the bot's; a chat's own mode wins (shared.bots.chat_switch)


BotLookup = Callable[[str], "BotInfo | None"]


def bot_lookup(reader: BotReader, *, with_token: bool = False) -> BotLookup:
    """A :data:`BotLookup` over the registry. ``with_token`` decrypts the platform token too (the worker;
    ``reader`` must then be a :class:`BotRegistry`): the webhook functions read without the token key."""
    decrypt: Callable[[Any], str] | None = None
    if with_token:
        if not isinstance(reader, BotRegistry):
            raise TypeError("decrypting tokens needs a BotRegistry (the token key), not a BotReader")
        decrypt = reader.decrypt_token

    def lookup(bot_id: str) -> BotInfo | None:
        bot = reader.get_bot(bot_id)
        if bot is None:
            return None
        return BotInfo(
            bot_id=bot.id,
            platform=bot.platform,
            active=bot.is_running,
            platform_info=bot.platform_info,
            webhook_secret_hash=bot.webhook_secret_hash or None,
            token=decrypt(bot) if decrypt is not None and bot.token_enc else None,
            answer_mode=stored_mode(bot.answer_mode),
        )

    return lookup


class CachedLookup:
    """Wrap a :data:`BotLookup` with a short per-process cache (thread-safe; unknown ids not cached)."""

    def __init__(self, lookup: BotLookup, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._lookup = lookup
        self._cache: TtlCache[str, BotInfo | None] = TtlCache(ttl, cache_none=False, clock=clock)

    def refresh(self, bot_id: str) -> BotInfo | None:
        """Read the bot again, past the cache, and cache that (the platform refused a cached token)."""
        self._cache.forget(bot_id)
        return self(bot_id)

    def __call__(self, bot_id: str) -> BotInfo | None:
        return self._cache.get(bot_id, self._lookup)
