"""Gunicorn entry point: ``gunicorn -c services/qa/gunicorn.conf.py services.qa.wsgi:app``.

Imported in each worker after the fork (``preload_app`` is off), so the index watcher thread started by
``create_app`` lives in the process that serves requests.

The snapshot restore starts before the app is imported: importing Flask, the Firestore client and the
answerers is the longest step of a cold start, and the child process that downloads, checks and unpacks
the snapshot runs on the other CPU meanwhile (:mod:`shared.knowledge.coldstart`).
"""

from __future__ import annotations

from shared import logs
from shared.config import get_settings
from shared.knowledge.coldstart import ColdStartSource

settings = get_settings()
logs.configure(settings.log_level, json_output=settings.is_production)
cold_start = ColdStartSource.for_settings(settings)
cold_start.start()

from services.qa.app import create_app  # noqa: E402  (after the restore has started: see above)

app = create_app(settings, cold_start=cold_start)
