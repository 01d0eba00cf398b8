"""Gunicorn entry point: ``gunicorn -c services/qa/gunicorn.conf.py services.qa.wsgi:app``.

Imported in each worker after the fork (``preload_app`` is off), so the index watcher thread started by
``create_app`` lives in the process that serves requests.
"""

from __future__ import annotations

from services.qa.app import create_app
from shared import logs
from shared.config import get_settings

settings = get_settings()
logs.configure(settings.log_level, json_output=settings.is_production)
app = create_app(settings)
