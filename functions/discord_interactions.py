"""Cloud Function ``discord_interactions``: the interactions endpoint URL of Discord bot ``{bot_id}``.

Thin entry point: path → bot id, bounded body read, :class:`shared.bots.webhooks.DiscordIngress`
(Ed25519 verification, PING, ``/ask`` → deferred response + job, buttons from Firestore state), JSON
reply. Discord wants the first response within 3 seconds; the answer itself is sent by the worker.
"""

from __future__ import annotations

import flask

from shared import logs
from shared.bots.webhooks import (
    DISCORD_SIGNATURE_HEADER,
    DISCORD_TIMESTAMP_HEADER,
    DiscordIngress,
    bot_id_from_path,
    build_discord_ingress,
    read_body,
)
from shared.config import get_settings
from shared.processes import PerProcess


def _build() -> DiscordIngress:
    settings = get_settings()
    logs.configure(settings.log_level, json_output=settings.is_production)
    return build_discord_ingress(settings)


# Built on the first request, once per process (see shared.processes.PerProcess).
_ingress = PerProcess(_build)


def discord_interactions(request: flask.Request) -> tuple[dict, int]:
    if request.method != "POST":
        return {"error": "method not allowed"}, 405
    ingress = _ingress.get()
    body = read_body(request.stream, request.content_length, ingress.max_body_bytes)
    reply = ingress.handle(
        bot_id_from_path(request.path),
        request.headers.get(DISCORD_SIGNATURE_HEADER),
        request.headers.get(DISCORD_TIMESTAMP_HEADER),
        body,
    )
    return reply.body, reply.status
