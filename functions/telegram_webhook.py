"""Cloud Function ``telegram_webhook``: Telegram posts each update of bot ``{bot_id}`` to ``/{bot_id}``.

Thin entry point: path → bot id, bounded body read, :class:`shared.bots.webhooks.TelegramIngress`,
JSON reply. Verification, dedupe, the chat rules and publishing live in ``shared/bots/webhooks.py``;
the answer is produced later by the worker behind Pub/Sub (this function's CPU is throttled as soon as
it has answered).
"""

from __future__ import annotations

import flask

from shared import logs
from shared.bots.webhooks import (
    TELEGRAM_SECRET_HEADER,
    TelegramIngress,
    bot_id_from_path,
    build_telegram_ingress,
    read_body,
)
from shared.config import get_settings
from shared.processes import PerProcess


def _build() -> TelegramIngress:
    settings = get_settings()
    logs.configure(settings.log_level, json_output=settings.is_production)
    return build_telegram_ingress(settings)


# Built on the first request, once per process (see shared.processes.PerProcess).
_ingress = PerProcess(_build)


def telegram_webhook(request: flask.Request) -> tuple[dict, int]:
    if request.method != "POST":
        return {"ok": False, "error": "method not allowed"}, 405
    ingress = _ingress.get()
    body = read_body(request.stream, request.content_length, ingress.max_body_bytes)
    reply = ingress.handle(bot_id_from_path(request.path), request.headers.get(TELEGRAM_SECRET_HEADER), body)
    return reply.body, reply.status
