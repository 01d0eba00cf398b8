"""Shared helpers for the Q&A service tests: build the app on the emulators and sign in through it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from services.qa.app import create_app
from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.live_index import LiveIndex
from tests.fakes.knowledge import FakeIndex, FakeStore


def fake_live_index(tmp_path: Path, publish: str | None = "s1") -> tuple[LiveIndex, FakeStore]:
    store = FakeStore()
    if publish:
        store.publish(publish)
    live = LiveIndex(store, lambda p: FakeIndex(p, p.name), tmp_path / "qa-data", poll_seconds=3600)
    live.start()
    return live, store


def make_app(settings: Settings, live: LiveIndex, answerer_factory: Any = None, **overrides: Any) -> Flask:
    settings = settings.model_copy(update=overrides) if overrides else settings
    app = create_app(
        settings,
        live_index=live,
        db=firestore_client(settings.project_id),
        answerer_factory=answerer_factory,
    )
    app.testing = True
    install_botrunner(app, settings)
    return app


class _LazyWsgi:
    """A WSGI app built on its first request (botrunner needs a token key only if a test uses bots)."""

    def __init__(self, build: Any) -> None:
        self._build = build
        self._app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        if self._app is None:
            self._app = self._build()
        return self._app(environ, start_response)


def install_botrunner(app: Flask, settings: Settings, control: Any = None) -> None:
    """Point the qa app's bot pages at an in-process botrunner app over HTTP semantics (httpx's WSGI
    transport): the pages talk to botrunner's real control API, without a second server process."""
    import httpx

    from services.botrunner.app import create_app as create_botrunner
    from services.qa.bots_pages import CONTROL_KEY
    from shared.bots.control_client import BotControlClient

    wsgi = _LazyWsgi(lambda: create_botrunner(settings, control=control, reconcile_on_start=False))
    http = httpx.Client(transport=httpx.WSGITransport(app=wsgi), timeout=30)
    app.extensions[CONTROL_KEY] = BotControlClient("http://botrunner.internal", http=http)


def csrf_of(client: FlaskClient, path: str = "/signin") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF meta tag on " + path
    return match.group(1)


def sign_in(client: FlaskClient, email: str) -> str:
    """Dev sign-in; returns the session's CSRF token."""
    token = csrf_of(client)
    response = client.post("/signin/dev", data={"email": email, "csrf_token": token, "next": "/"})
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf_of(client, "/")


def ask(client: FlaskClient, token: str | None, body: Any, **kwargs: Any):
    headers = {"X-CSRF-Token": token} if token else {}
    return client.post("/api/ask", json=body, headers=headers, **kwargs)
