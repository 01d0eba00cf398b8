"""A fake Vertex AI ``generateContent`` endpoint on loopback, for the gemini answerer's tests.

It speaks the REST shape google-genai uses (``POST .../models/<model>:generateContent`` → ``candidates``)
and is served by uvicorn with keep-alive, like the real API, so connection reuse is exercised too.
Tests set :attr:`FakeGemini.reply`, :attr:`FakeGemini.delay` or :attr:`FakeGemini.status` and read
:attr:`FakeGemini.requests`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FakeGemini:
    """Run with ``with FakeGemini() as fake: ... fake.base_url``."""

    def __init__(self) -> None:
        self.reply = "The answer is in the passages [1]."
        self.delay = 0.0
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _generate(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        self.paths.append(request.url.path)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return JSONResponse(
                {"error": {"code": self.status, "message": "fake failure", "status": "INTERNAL"}},
                status_code=self.status,
            )
        return JSONResponse(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": self.reply}]},
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
                "modelVersion": "fake",
            }
        )

    def start(self) -> FakeGemini:
        app = Starlette(routes=[Route("/{path:path}", self._generate, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="fake-gemini"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake gemini did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
