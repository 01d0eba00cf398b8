"""pytest fixtures for bot tests: the fake platforms, stand-in webhook endpoints, wired settings.

Import the ones you use into a test module (``from tests.fakes.bot_fixtures import tg, ...  # noqa``):

* ``tg`` / ``dc`` — a started :class:`FakeTelegram` / :class:`FakeDiscord`;
* ``tg_hook`` — a :class:`RecordingEndpoint` standing in for the Telegram webhook function;
* ``dc_hook`` + ``discord_keys`` — a stand-in Discord interactions endpoint that verifies signatures
  with ``discord_keys[bot_id]`` (or ``discord_keys["*"]``) and PONGs;
* ``bot_settings`` — ``settings`` (emulators on) pointing at the fakes and the stand-ins;
* ``control`` — a :class:`BotControl` over those settings with short retry back-offs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.bots.control import BotControl
from shared.bots.platforms.errors import RetryPolicy
from shared.bots.registry import BotRegistry
from shared.config import Settings
from tests.fakes._server import RecordingEndpoint
from tests.fakes.discord_api import FakeDiscord, pong_endpoint
from tests.fakes.telegram_api import FakeTelegram


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def dc() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def tg_hook() -> Iterator[RecordingEndpoint]:
    with RecordingEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def discord_keys() -> dict[str, str]:
    """Application public key by bot id, read by the stand-in interactions endpoint."""
    return {}


@pytest.fixture
def dc_hook(discord_keys: dict[str, str]) -> Iterator[RecordingEndpoint]:
    def key_for(path: str) -> str | None:
        return discord_keys.get(path.rstrip("/").rsplit("/", 1)[-1]) or discord_keys.get("*")

    with RecordingEndpoint(pong_endpoint(key_for)) as endpoint:
        yield endpoint


@pytest.fixture
def bot_settings(
    emulators, settings: Settings, tg: FakeTelegram, dc: FakeDiscord, tg_hook, dc_hook
) -> Settings:
    return settings.model_copy(
        update={
            "telegram_api_base": tg.base_url,
            "discord_api_base": dc.base_url,
            "telegram_webhook_url": tg_hook.url + "/telegram",
            "discord_webhook_url": dc_hook.url + "/discord",
        }
    )


@pytest.fixture
def control(bot_settings: Settings) -> BotControl:
    return BotControl(
        bot_settings,
        BotRegistry.from_settings(bot_settings),
        policy=RetryPolicy(attempts=3, backoff=0.01, max_wait=5.0),
    )
