"""Activity messages are shown to a bot's owner: shared.logs.redact alone keeps tokens out of them."""

from __future__ import annotations

from typing import Any

import pytest

from shared.bots.activity import ActivityLog
from shared.logs import redact

TELEGRAM_TOKEN = "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
DISCORD_TOKEN = "MTA0NTQ4OTk4NDI1MzAwMjc1Mg.GhXz8Q.abcdefghijklmnopqrstuvwxyz0123456789AB"
BEARER = "ya29.a0AfH6SMBxxxxxxxxxxxxxxxxxxxx"

LEAKS = [
    # The Bot API puts the token in the path, right after "bot": what an HTTP client's error quotes.
    (f"telegram: 401 for https://api.telegram.org/bot{TELEGRAM_TOKEN}/getMe", TELEGRAM_TOKEN),
    (f"download failed: https://api.telegram.org/file/bot{TELEGRAM_TOKEN}/photos/1.jpg", TELEGRAM_TOKEN),
    (f"token {TELEGRAM_TOKEN} was revoked", TELEGRAM_TOKEN),
    (f"discord: Authorization: Bot {DISCORD_TOKEN} refused", DISCORD_TOKEN),
    (f"discord token {DISCORD_TOKEN} is invalid", DISCORD_TOKEN),
    (f"qa answered 401 to Authorization: Bearer {BEARER}", BEARER),
]
IDS = ["telegram api url", "telegram file url", "telegram bare", "discord header", "discord bare", "bearer"]


@pytest.mark.parametrize(("message", "secret"), LEAKS, ids=IDS)
def test_redact_alone_scrubs_tokens_in_urls_and_headers(message: str, secret: str) -> None:
    redacted = redact(message)
    assert secret not in redacted and "[REDACTED]" in redacted
    # Nothing of the secret part survives either (a Telegram token's id is not the secret; its key is).
    assert secret.rsplit(":", 1)[-1] not in redacted


class _Recorder:
    """The one Firestore path ActivityLog.record writes: collection/document/collection.add."""

    def __init__(self) -> None:
        self.added: list[dict[str, Any]] = []

    def collection(self, _name: str) -> _Recorder:
        return self

    def document(self, _name: str) -> _Recorder:
        return self

    def add(self, doc: dict[str, Any]) -> None:
        self.added.append(doc)


@pytest.mark.parametrize(("message", "secret"), LEAKS, ids=IDS)
def test_recorded_activity_is_redacted(message: str, secret: str) -> None:
    db = _Recorder()
    ActivityLog(db).record("bot-1", "error", message)  # type: ignore[arg-type]
    (doc,) = db.added
    assert doc["message"] == redact(message)
    assert secret not in doc["message"]


def test_recorded_activity_keeps_readable_text() -> None:
    db = _Recorder()
    line = "bot 0sPlUYHw1mBg7GW3h2HJ restarted: webhook set"
    ActivityLog(db).record("bot-1", "restarted", line)  # type: ignore[arg-type]
    assert db.added[0]["message"] == line
