"""The botrunner service: the bot control plane and the worker's ``/worker/push``.

``create_app(settings=None)`` is the app factory (gunicorn: ``services.botrunner.app:create_app()``).
It registers :mod:`services.botrunner.control_api` and :mod:`services.botrunner.worker`, and starts
one background reconcile so that running bots get their webhooks back after any redeploy (see
:mod:`shared.bots.reconcile`). The reconcile thread is kept in
``app.extensions["askbase.reconcile_thread"]`` (tests join it).
"""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from services.botrunner import control_api, worker
from shared import logs
from shared.bots.control import BotControl
from shared.bots.reconcile import start_background_reconcile
from shared.config import Settings, get_settings

log = logging.getLogger(__name__)

RECONCILE_THREAD_KEY = "askbase.reconcile_thread"


def create_app(
    settings: Settings | None = None,
    *,
    control: BotControl | None = None,
    reconcile_on_start: bool = True,
) -> Flask:
    settings = settings or get_settings()
    logs.configure(settings.log_level, json_output=settings.is_production)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions[control_api.SETTINGS_KEY] = settings  # before the blueprints: they require them
    control = control or BotControl(settings)
    app.extensions[control_api.CONTROL_KEY] = control
    app.register_blueprint(control_api.bp)
    app.register_blueprint(worker.bp)
    control_api.install_error_pages(app)
    control_api.install_rejection_log(app)
    if settings.is_production:
        # One trusted hop: Cloud Run's front end (see services.qa.app.trust_front_end).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=0)  # type: ignore[method-assign]
    if reconcile_on_start:
        app.extensions[RECONCILE_THREAD_KEY] = start_background_reconcile(control)
    return app
