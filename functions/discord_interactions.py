"""Cloud Function ``discord_interactions``: the interactions endpoint URL of Discord bot ``{bot_id}``.

Thin entry point over the Discord :class:`shared.bots.webhooks.Ingress` (Ed25519 verification, PING,
``/ask`` → deferred response + job, buttons from Firestore state; the rules are
:mod:`shared.bots.platforms.discord`'s), built once per process. Discord wants the first response
within 3 seconds; the answer itself is sent by the worker.
"""

from __future__ import annotations

from typing import Any

import flask

from shared.bots.webhooks import webhook_function

_serve = webhook_function("discord", not_allowed={"error": "method not allowed"})


def discord_interactions(request: flask.Request) -> tuple[dict[str, Any], int]:
    return _serve(request)
