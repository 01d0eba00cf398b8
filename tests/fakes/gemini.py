"""A fake Vertex AI ``generateContent`` endpoint on loopback, for the gemini answerer's tests.

It speaks the REST shape google-genai uses (``POST .../models/<model>:generateContent`` → ``candidates``)
and is served by uvicorn with keep-alive, like the real API, so connection reuse is exercised too.
Tests set :attr:`FakeGemini.reply`, :attr:`FakeGemini.delay` or :attr:`FakeGemini.status` and read
:attr:`FakeGemini.requests` (every request received) and :attr:`FakeGemini.responded` (how many
responses were sent: a request still held by ``delay`` is received but not responded). ``stop()`` ends
any delay still running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.devstack.site_server import SiteServer


class FakeGemini:
    """Run with ``with FakeGemini() as fake: ... fake.base_url``."""

    def __init__(self) -> None:
        self.reply = "The answer is in the passages [1]."
        self.delay = 0.0
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.responded = 0
        self._released = threading.Event()
        self._server: SiteServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return self._server.base_url + "/"

    async def _generate(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        self.paths.append(request.url.path)
        until = time.monotonic() + self.delay
        while time.monotonic() < until and not self._released.is_set():
            await asyncio.sleep(min(0.02, until - time.monotonic()))
        self.responded += 1
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
        self._server = SiteServer(app).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
