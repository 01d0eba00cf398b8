"""The stack the browser tests drive: qa under gunicorn, botrunner on loopback, the fake platforms.

``tests/test_browser_pages.py`` and ``tests/test_browser_ux.py`` load this module as a plugin
(``pytest_plugins = ["tests.fakes.bot_fixtures", "tests.browser_stack"]``) and take the
:func:`browser_stack` fixture. qa runs as it does in production (gunicorn, the production
Content-Security-Policy, one snapshot published by ``serve_qa``) with its bot pages wired to an
in-process botrunner that shares its Firestore, and botrunner to the fake Telegram and Discord APIs.

A module that needs qa configured differently overrides :func:`qa_env` (a fixture defined in a test
module takes precedence over this plugin's): ``tests/test_browser_ux.py`` sets the read limit its 429
page spends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.botrunner.app import create_app as create_botrunner
from shared.config import Settings
from tests.bot_stack import LoopbackServer
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram
from tests.test_browser_e2e import serve_qa


@dataclass
class BrowserStack:
    """The running stack: qa's base URL, botrunner (a test may stop it to see the bot pages' 503) and
    the fake platforms, with the public keys the stand-in Discord endpoint verifies with."""

    qa: str
    botrunner: LoopbackServer
    tg: FakeTelegram
    dc: FakeDiscord
    discord_keys: dict[str, str]


@pytest.fixture
def qa_env() -> dict[str, str]:
    """Environment added to qa's on top of the stack's wiring; none unless a test module overrides it."""
    return {}


@pytest.fixture
def browser_stack(
    bot_settings: Settings,
    settings: Settings,
    tmp_path: Path,
    tg: FakeTelegram,
    dc: FakeDiscord,
    discord_keys: dict[str, str],
    qa_env: dict[str, str],
) -> Iterator[BrowserStack]:
    """qa under gunicorn wired to the fake platforms, plus botrunner on loopback (same Firestore)."""
    from playwright.sync_api import expect

    # expect()'s default is 5 s (actions already wait 30 s): too short while qa competes for the CPU.
    expect.set_options(timeout=15_000)
    with LoopbackServer(create_botrunner(bot_settings, reconcile_on_start=False)) as botrunner:
        env = {
            "ASKBASE_TELEGRAM_API_BASE": bot_settings.telegram_api_base,
            "ASKBASE_DISCORD_API_BASE": bot_settings.discord_api_base,
            "ASKBASE_TELEGRAM_WEBHOOK_URL": bot_settings.telegram_webhook_url,
            "ASKBASE_DISCORD_WEBHOOK_URL": bot_settings.discord_webhook_url,
            "ASKBASE_BOTRUNNER_URL": botrunner.url,
            **qa_env,
        }
        with serve_qa(settings, tmp_path, env) as qa:
            yield BrowserStack(qa, botrunner, tg, dc, discord_keys)
