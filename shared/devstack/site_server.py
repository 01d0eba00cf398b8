"""Serve a web site on 127.0.0.1 from a background thread: a directory of static files, or any ASGI app.

``askbase dev`` serves the bundled sample docs site (``shared/devstack/sample_site/``) with it so the first
crawl has something to read; the tests serve their fixture site and the fake Telegram, Discord, Gemini and
qa APIs with the same runner. uvicorn keeps
connections alive, as a real docs host does, so connection-pool bugs in the crawler show up locally.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import socket
import threading
import time
from email.utils import formatdate
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

SAMPLE_SITE = Path(__file__).parent / "sample_site"


class SiteServer:
    """Runs an ASGI app with uvicorn on ``127.0.0.1:<port>`` in a daemon thread.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. ``port=0`` picks a free port.
    """

    def __init__(
        self,
        app: ASGIApp,
        port: int = 0,
        host: str = "127.0.0.1",
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Without TCP_NODELAY every small request/response pair can stall ~40 ms on delayed ACKs.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        self.scheme = "https" if ssl_certfile else "http"
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            proxy_headers=False,  # the peer is who connected: a stand-in must not trust X-Forwarded-*
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=f"site-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def _serve(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 10.0) -> SiteServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"site server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def static_app(root: Path) -> Starlette:
    """An app serving files under ``root`` (``/x/`` → ``x/index.html``) with ETag/Last-Modified and 304s.

    ``{{base}}`` in ``.xml`` files is replaced by the server's base URL (sitemaps need absolute URLs).
    """
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"static site directory not found: {root}")

    async def serve(request: Request) -> Response:
        rel = request.path_params.get("path", "")
        target = (root / rel).resolve()
        if not target.is_relative_to(root):  # no ../ escapes
            return PlainTextResponse("not found", status_code=404)
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file() and target.with_suffix(".html").is_file():
            target = target.with_suffix(".html")
        if not target.is_file():
            return PlainTextResponse("not found", status_code=404)
        body = target.read_bytes()
        if target.suffix == ".xml":
            # Sitemaps need absolute URLs but the port is only known at run time.
            body = body.replace(b"{{base}}", str(request.base_url).rstrip("/").encode())
        stat = target.stat()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        headers = {"ETag": etag, "Last-Modified": formatdate(stat.st_mtime, usegmt=True)}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return Response(body, media_type=media_type, headers=headers)

    return Starlette(routes=[Route("/", serve), Route("/{path:path}", serve)])


def serve_sample_site(port: int = 0) -> SiteServer:
    """Start serving the bundled sample docs site; the caller stops it."""
    return SiteServer(static_app(SAMPLE_SITE), port=port).start()
