"""A stand-in HTTP endpoint for the bot tests (served by :class:`shared.devstack.site_server.SiteServer`)."""

from __future__ import annotations

import threading
from typing import Any

from shared.devstack.site_server import SiteServer


class RecordingEndpoint:
    """A stand-in webhook / interactions endpoint that records every POST and answers via ``respond``.

    ``respond(path, headers, body) -> (status, json)``; the default answers 200 ``{"ok": true}``.
    ``requests`` holds ``(path, headers, body)`` tuples. Used by tests that exercise the control
    plane without the real webhook functions.
    """

    def __init__(self, respond: Any = None) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._respond = respond or (lambda path, headers, body: (200, {"ok": True}))
        self._lock = threading.Lock()

        async def handle(request: Request) -> Response:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            with self._lock:
                self.requests.append((request.url.path, headers, body))
            status, payload = self._respond(request.url.path, headers, body)
            return JSONResponse(payload, status_code=status)

        self._server = SiteServer(Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])]))

    @property
    def url(self) -> str:
        return self._server.base_url

    def start(self) -> RecordingEndpoint:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> RecordingEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
