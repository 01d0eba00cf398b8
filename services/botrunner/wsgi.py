"""The WSGI entry point for gunicorn (``services.botrunner.wsgi:app``): the app from the environment."""

from __future__ import annotations

from services.botrunner.app import create_app

app = create_app()
