"""``POST /worker/push``: the Pub/Sub push endpoint that answers bot jobs (blueprint ``bp``).

Thin on purpose: authenticate the push, hand the body to :class:`shared.bots.worker.BotWorker`, return
its status (2xx = ack, 503 = redeliver later; the table is in :mod:`shared.bots.worker`).

Authentication (``settings.internal_auth``):

* ``google-oidc`` (production): the push subscription signs each request with a Google ID token for
  the service account ``settings.worker_push_service_account`` and audience
  ``settings.worker_push_audience``. :mod:`shared.idtokens` checks signature (cached certificates),
  issuer, audience, expiry, ``email`` and ``email_verified``; anything else is 401/403. Cloud Run IAM
  (invoker) is the first gate, this is the second: botrunner also serves the control plane, so being
  able to reach it must not be enough to inject jobs.
* ``none`` (local stack, tests: the Pub/Sub emulator sends no token): no check.

The worker is built lazily, once per process (gunicorn forks after import and gRPC channels do not
survive a fork); tests may install their own :class:`BotWorker` under ``app.extensions["askbase.worker"]``
before registering the blueprint.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.sansio.app import App
from werkzeug.exceptions import RequestEntityTooLarge

from services.botrunner.control_api import app_settings
from shared.bots.worker import BotWorker, build_worker
from shared.config import Settings
from shared.idtokens import TokenError, require_service_caller
from shared.processes import PerProcess

log = logging.getLogger(__name__)

bp = Blueprint("worker", __name__)

EXTENSION_KEY = "askbase.worker"
MAX_PUSH_BYTES = 1_000_000  # a job is a few KB; Pub/Sub messages are at most 10 MB


def _settings(app: App) -> Settings:
    return app_settings(app)


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    # One worker per app and process, built on the first push (a forked child builds its own). An app
    # without settings fails here, when the blueprint is registered, not on the first push.
    settings = _settings(state.app)
    state.app.extensions.setdefault(EXTENSION_KEY, PerProcess(lambda: build_worker(settings)))


def _worker() -> BotWorker:
    installed: PerProcess[BotWorker] | BotWorker = current_app.extensions[EXTENSION_KEY]
    return installed.get() if isinstance(installed, PerProcess) else installed


@bp.post("/worker/push")
def push() -> tuple[Response, int]:
    settings = _settings(current_app)
    try:
        require_service_caller(
            settings,
            request.headers.get("Authorization"),
            settings.worker_push_audience,
            [settings.worker_push_service_account] if settings.worker_push_service_account else [],
        )
    except TokenError as exc:
        g.reject_reason = exc.reason  # logged by control_api.install_rejection_log
        return jsonify({"error": exc.reason}), exc.status
    # This route's own limit, not the app's MAX_CONTENT_LENGTH (the control API's 64 KiB): past that a
    # read raises a 413, which Pub/Sub takes for a nack and redelivers the same bytes until the
    # dead-letter topic. Set per request, it also bounds a body sent without a Content-Length.
    request.max_content_length = MAX_PUSH_BYTES
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        # Acked (200): an oversized message would be redelivered forever.
        log.warning("worker push dropped: body over %d bytes (%s)", MAX_PUSH_BYTES, request.content_length)
        return jsonify({"status": "too large"}), 200
    result = _worker().handle_push(body)
    return jsonify({"status": result.reason}), result.status
