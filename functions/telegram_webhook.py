"""Cloud Function ``telegram_webhook``: Telegram posts each update of bot ``{bot_id}`` to ``/{bot_id}``.

Thin entry point over the Telegram :class:`shared.bots.webhooks.Ingress` (secret check, chat rules,
dedupe, publishing a job; the rules are :mod:`shared.bots.platforms.telegram`'s), built once per
process. The answer is produced later by the worker behind Pub/Sub (this function's CPU is throttled as
soon as it has answered).
"""

from __future__ import annotations

from typing import Any

import flask

from shared.bots.webhooks import webhook_function

_serve = webhook_function("telegram", not_allowed={"ok": False, "error": "method not allowed"})


def telegram_webhook(request: flask.Request) -> tuple[dict[str, Any], int]:
    return _serve(request)
