"""Run an ASGI app with uvicorn on a loopback port in a daemon thread (shared by the fakes).

The listening socket is created here with TCP_NODELAY (and asyncio sets it on every accepted
connection too), so a fake adds no Nagle / delayed-ACK stalls to the calls it serves. uvicorn keeps
connections alive, so connection-pool bugs in the code under test show up instead of being hidden.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn


class ThreadedServer:
    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, 0))
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            loop="asyncio",
            http="h11",
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        def run() -> None:
            asyncio.run(self._server.serve(sockets=[self._sock]))

        self._thread = threading.Thread(target=run, name=f"fake-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()


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

        self._server = ThreadedServer(Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])]))

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> RecordingEndpoint:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> RecordingEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
