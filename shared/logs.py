"""Logging for every askbase process: one line per event, secrets scrubbed before they are written.

Cloud Run and Cloud Functions turn stdout JSON lines into structured log entries, so production logs
are JSON; the local stack logs plain text. :class:`RedactingFilter` is installed on the root handler:
bot tokens, bearer tokens and keys that reach a log call (for example inside an exception message from
an HTTP client that put the token in a URL) are replaced before formatting.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

# Telegram bot tokens (123456:ABC-...), Discord bot tokens (three dot-separated base64 parts),
# Authorization headers, and key=value pairs whose key says it is secret.
_PATTERNS = [
    # No \b before the digits: inside a Bot API URL the token follows "bot" directly (/bot123:AA.../getMe).
    # Up to 20 digits: bot ids are 10 digits today, but Telegram's ids are 64-bit numbers (its user ids
    # already pass 10 digits), and an id that outgrew the pattern would leave its token in the logs.
    re.compile(r"(?<![0-9])\d{5,20}:[A-Za-z0-9_-]{30,}"),
    re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{20,}\b"),
    # Authorization headers: "Bearer <token>" in any case, Discord's "Bot <token>" as it is written. Not a
    # lower-case "bot <id>": that is how log lines name a bot, and its id is no secret.
    re.compile(r"((?i:bearer)|Bot)\s+[A-Za-z0-9._~+/=-]{16,}"),
    re.compile(
        r"(?i)((?:token|secret|password|api[_-]?key|private[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&]+"
    ),
]
_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Scrub this exact value from every later log line (used for keys loaded at start-up)."""
    if value and len(value) >= 8:
        _known_secrets.add(value)


def redact(text: str) -> str:
    for secret in _known_secrets:
        text = text.replace(secret, "[REDACTED]")
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[REDACTED]", text)
        else:
            text = pattern.sub("[REDACTED]", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_text:
            entry["message"] += "\n" + record.exc_text
        for key in ("bot_id", "run_id", "snapshot_id", "request_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", json_output: bool = False) -> None:
    """Install one stdout handler with redaction on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_askbase", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler._askbase = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_output
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    # Client libraries log request URLs at DEBUG; Telegram's contain the bot token.
    for noisy in ("httpx", "httpcore", "urllib3", "telegram", "chromadb"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
