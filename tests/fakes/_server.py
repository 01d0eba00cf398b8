"""Loopback stand-ins for the tests, each served by a :class:`shared.devstack.site_server.SiteServer`:
the shared lifecycle (:class:`LoopbackService`, :class:`PlatformFake`) and a recording endpoint."""

from __future__ import annotations

import threading
from typing import Any, Self

import httpx

from shared.bots.transport import new_http_client
from shared.devstack.site_server import SiteServer


class LoopbackService:
    """A stand-in served on 127.0.0.1 by ``self._server``: ``start()`` / ``stop()``, or ``with``."""

    _server: SiteServer

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PlatformFake(LoopbackService):
    """A fake platform API (Telegram, Discord): also holds a keep-alive client for sending to the
    endpoints a test registered with it, as the real platform would."""

    _http: httpx.Client | None = None

    def start(self) -> Self:
        super().start()
        self._http = new_http_client(timeout=30.0)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        super().stop()

    @property
    def base_url(self) -> str:
        """Use as the settings' API base (``telegram_api_base`` / ``discord_api_base``)."""
        return self._server.base_url


class RecordingEndpoint(LoopbackService):
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
