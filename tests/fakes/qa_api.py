"""A minimal stand-in for the Q&A service's ``POST /api/ask``, ``/api/bot-votes`` and ``/api/bot-forget``
on 127.0.0.1 (uvicorn, keep-alive).

For the bot worker's tests: it answers every question with a fixed, cited answer (or ``answer_text``),
records each request, and can fail on demand::

    with FakeQA() as qa:
        settings.qa_url = qa.url
        qa.answer_text = "a long answer ..."          # optional
        qa.refused = True                             # the answer is a refusal (as /api/ask marks it)
        qa.fail_next(status=503, times=2)             # the next two requests fail
        qa.requests                                   # [{"json": {...}, "headers": {...}}]: asks
        qa.votes / qa.forgets                         # the same for /api/bot-votes, /api/bot-forget
"""

from __future__ import annotations

import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.devstack.site_server import SiteServer
from tests.fakes._server import LoopbackService

DEFAULT_ANSWER = "Deploy with `askbase deploy` after setting <PROJECT> & region [1]."
ANSWER_ID = "a" * 32  # what every answer is recorded under
DEFAULT_SOURCES = [
    {
        "title": "Deploying askbase",
        "url": "https://docs.example.com/deploy#steps",
        "snippet": "Run askbase deploy ...",
        "score": 0.91,
    },
    {
        "title": "Configuration",
        "url": "https://docs.example.com/config",
        "snippet": "Settings are read from the environment",
        "score": 0.74,
    },
]


class FakeQA(LoopbackService):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.answer_text = DEFAULT_ANSWER
        self.sources = list(DEFAULT_SOURCES)
        self.refused = False
        self.votes: list[dict[str, Any]] = []
        self.forgets: list[dict[str, Any]] = []
        self._failures: list[int] = []
        self._server = SiteServer(
            Starlette(
                routes=[
                    Route("/api/ask", self._ask, methods=["POST"]),
                    Route("/api/bot-votes", self._vote, methods=["POST"]),
                    Route("/api/bot-forget", self._forget, methods=["POST"]),
                ]
            )
        )

    @property
    def url(self) -> str:
        return self._server.base_url

    def fail_next(self, status: int = 503, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    async def _ask(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self._lock:
            self.requests.append({"json": body, "headers": dict(request.headers)})
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return JSONResponse({"error": "failing on purpose"}, status_code=failure)
        if not isinstance(body, dict) or not str(body.get("question") or "").strip():
            return JSONResponse({"error": "question is required"}, status_code=400)
        return JSONResponse(
            {
                "answer": self.answer_text,
                "sources": self.sources,
                "conversation_id": "conv-1",
                "answer_id": ANSWER_ID,
                "refused": self.refused,
            }
        )

    async def _forget(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self._lock:
            self.forgets.append({"json": body, "headers": dict(request.headers)})
        return JSONResponse({"deleted": 1})

    async def _vote(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self._lock:
            self.votes.append({"json": body, "headers": dict(request.headers)})
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return JSONResponse({"error": "failing on purpose"}, status_code=failure)
        return JSONResponse({"answer_id": ANSWER_ID, "vote": body.get("vote"), "comment": None})
