"""What the log redaction scrubs, and what it must leave readable."""

from __future__ import annotations

import pytest

from shared.logs import redact

TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
DISCORD_TOKEN = "MTA0NTQ4OTk4NDI1MzAwMjc1Mg.GhXz8Q.abcdefghijklmnopqrstuvwxyz0123456789AB"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"GET https://api.telegram.org/bot{TELEGRAM_TOKEN}/getMe", TELEGRAM_TOKEN),
        (f"Authorization: Bot {DISCORD_TOKEN}", DISCORD_TOKEN),
        ("Authorization: Bearer ya29.a0AfH6SMBxxxxxxxxxxxxxxxxxxxx", "ya29.a0AfH6SMBxxxxxxxxxxxxxxxxxxxx"),
        ("authorization: bearer abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz"),
        ("webhook secret=s3cr3t-value-here", "s3cr3t-value-here"),
    ],
    ids=["telegram url", "discord header", "bearer header", "lower-case bearer", "key=value"],
)
def test_secrets_are_scrubbed(line: str, secret: str) -> None:
    assert secret not in redact(line)


def test_a_bot_id_in_a_log_line_stays_readable() -> None:
    # Firestore auto ids (20 letters and digits) name bots in log lines: an operator needs them.
    line = "bot 0sPlUYHw1mBg7GW3h2HJ was deleted while being started: webhook deleted"
    assert redact(line) == line


def test_a_telegram_token_with_a_longer_bot_id_is_scrubbed() -> None:
    """Telegram ids are 64-bit numbers: a bot id of 13 or 19 digits is a token all the same."""
    for digits in ("1234567890123", "1234567890123456789"):
        token = f"{digits}:AAH" + "x" * 32
        line = redact(f"GET https://api.telegram.org/bot{token}/getMe failed; token {token}")
        assert token not in line and "xxxx" not in line, line
