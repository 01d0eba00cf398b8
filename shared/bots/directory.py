"""What the webhooks and the worker need to know about a bot, read from the registry and cached briefly.

:class:`BotInfo` is a flat, decrypted view of a ``bots`` document: the ingress needs the Telegram
webhook secret or the Discord public key, the worker the platform token. Both come from
:class:`shared.bots.registry.BotRegistry`; this module only adapts and caches.

The cache matters for latency: without it every update costs a Firestore read plus an AES-GCM
decryption before the real work. A few seconds of staleness is harmless: a rotated secret or a stopped
bot is seen within ``ttl`` (and a stopped Telegram bot has no webhook anyway). Unknown ids are not
cached, so a bot registered a moment ago is found at once (Discord PINGs the endpoint right after
registration).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.bots.registry import BotRegistry


@dataclass(frozen=True)
class BotInfo:
    """A bot as ingress and worker see it. Holds decrypted secrets: never log it (repr hides them)."""

    bot_id: str
    platform: str
    active: bool = True  # the owner wants it running
    name: str = ""
    webhook_secret: str | None = field(default=None, repr=False)  # Telegram secret_token
    token: str | None = field(default=None, repr=False)  # platform token (worker only)
    username: str | None = None  # Telegram bot username, without "@"
    telegram_user_id: int | None = None
    public_key: str | None = None  # Discord application public key (hex)
    application_id: str | None = None


BotLookup = Callable[[str], "BotInfo | None"]


def registry_lookup(registry: BotRegistry, *, with_token: bool = False) -> BotLookup:
    """A :data:`BotLookup` over the registry. ``with_token`` decrypts the platform token too (worker)."""

    def lookup(bot_id: str) -> BotInfo | None:
        bot = registry.get_bot(bot_id)
        if bot is None:
            return None
        info = bot.platform_info
        secret = None
        if bot.platform == "telegram" and bot.webhook_secret_enc:
            secret = registry.webhook_secret(bot)
        user_id = info.get("bot_user_id")
        return BotInfo(
            bot_id=bot.id,
            platform=bot.platform,
            active=bot.is_running,
            name=bot.name,
            webhook_secret=secret,
            token=registry.decrypt_token(bot) if with_token and bot.token_enc else None,
            username=(str(info["username"]).lstrip("@") if info.get("username") else None),
            telegram_user_id=int(user_id) if bot.platform == "telegram" and str(user_id).isdigit() else None,
            public_key=info.get("public_key"),
            application_id=(str(info["application_id"]) if info.get("application_id") else None),
        )

    return lookup


class CachedLookup:
    """Wrap a :data:`BotLookup` with a short per-process cache (thread-safe)."""

    def __init__(self, lookup: BotLookup, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, BotInfo]] = {}
        self._lock = threading.Lock()

    def __call__(self, bot_id: str) -> BotInfo | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(bot_id)
        if hit and hit[0] > now:
            return hit[1]
        info = self._lookup(bot_id)
        if info is not None:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[bot_id] = (now + self._ttl, info)
        return info

    def forget(self, bot_id: str) -> None:
        with self._lock:
            self._cache.pop(bot_id, None)
