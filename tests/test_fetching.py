"""Fetching against loopback servers: the time budget of one request, the encoding of a page."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from shared.config import Source, SourceKind
from shared.devstack.site_server import SiteServer
from shared.knowledge import fetching as fetching_module
from shared.knowledge.crawler import CrawlConfig, Outcome, crawl_source
from shared.knowledge.fetching import Fetcher, http_client
from shared.knowledge.fetching import Response as FetchResponse

GUARD = 60.0  # only a failure guard: every wait below ends on an event or a budget long before it
TRICKLE_GAP = 0.05  # far under every budget below: no single read ever waits long enough to time out


class _SlowSite:
    """``/trickle`` sends one byte every :data:`TRICKLE_GAP` s for as long as the client reads, and
    counts the trickles still sending; ``/hop/N`` answers after ``hop_delay`` s with a redirect to
    ``/hop/N-1``, and ``/hop/0`` with a small page."""

    def __init__(self, hop_delay: float = 0.0) -> None:
        self.hop_delay = hop_delay
        self._streams = threading.Condition()
        self._sending = 0
        self._server = SiteServer(
            Starlette(
                routes=[
                    Route("/robots.txt", lambda _: Response(status_code=404)),
                    Route("/trickle", self._trickle),
                    Route("/sitemap.xml", self._finite_trickle),
                    Route("/hop/{n:int}", self._hop),
                ]
            )
        )

    async def _trickle(self, _: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            self._count(+1)
            try:
                while True:
                    yield b" "
                    await asyncio.sleep(TRICKLE_GAP)
            finally:
                self._count(-1)

        return StreamingResponse(body(), media_type="text/html")

    async def _finite_trickle(self, _: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(16):  # 0.8 s in all
                yield b" "
                await asyncio.sleep(TRICKLE_GAP)

        return StreamingResponse(body(), media_type="application/xml")

    def _count(self, change: int) -> None:
        with self._streams:
            self._sending += change
            self._streams.notify_all()

    def all_hung_up(self) -> bool:
        """Whether every trickle ended (the client closed its connection) before the failure guard ran
        out. One whose request the budget ended before the server answered never starts."""
        with self._streams:
            return self._streams.wait_for(lambda: self._sending == 0, GUARD)

    async def _hop(self, request: Request) -> Response:
        await asyncio.sleep(self.hop_delay)
        n = request.path_params["n"]
        if n == 0:
            return Response("<html><title>end</title></html>", media_type="text/html")
        return RedirectResponse(f"/hop/{n - 1}", status_code=302)

    def url(self, path: str) -> str:
        return self._server.url(path)

    def __enter__(self) -> _SlowSite:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


@pytest.fixture
def slow_site() -> Iterator[_SlowSite]:
    with _SlowSite(hop_delay=0.5) as site:
        yield site


def _get(
    site: _SlowSite, path: str, timeout_seconds: float, retries: int = 0, limit: int | None = None
) -> FetchResponse:
    async def fetch() -> FetchResponse:
        async with http_client(2, timeout_seconds, "askbase-test") as client:
            fetcher = Fetcher(
                client,
                site.url("/"),
                retries=retries,
                backoff_base_seconds=0.01,
                max_bytes=1_000_000,
                validators={},
                allowed=lambda _: True,
            )
            return await asyncio.wait_for(fetcher.get(site.url(path), limit=limit), GUARD)

    return asyncio.run(fetch())


def test_a_large_document_gets_a_budget_scaled_to_its_cap(slow_site: _SlowSite) -> None:
    # A sitemap, feed or robots.txt may be far larger than a page: its try's budget grows with the cap
    # it is read under (timeout + cap at MIN_BYTES_PER_SECOND), a page's stays the timeout.
    assert _get(slow_site, "/sitemap.xml", timeout_seconds=0.5).error == "timeout after 0.5 s"
    resp = _get(slow_site, "/sitemap.xml", timeout_seconds=0.5, limit=2_000_000)
    assert resp.status_code == 200 and resp.body == b" " * 16, resp.error


def test_a_trickling_body_ends_at_the_request_budget(slow_site: _SlowSite) -> None:
    # Every byte arrives well within the timeout of one read, so only a budget for the whole request
    # ends it (a per-read timeout kept it alive for as long as the server cared to trickle).
    resp = _get(slow_site, "/trickle", timeout_seconds=0.5)
    assert (resp.status_code, resp.error) == (0, "timeout after 0.5 s")
    assert slow_site.all_hung_up(), "the connection was left open"


def test_the_budget_covers_every_redirect_hop(slow_site: _SlowSite) -> None:
    # Six hops of 0.5 s: each well within 2 s, together over it.
    assert _get(slow_site, "/hop/0", timeout_seconds=2.0).status_code == 200
    resp = _get(slow_site, "/hop/5", timeout_seconds=2.0)
    assert (resp.status_code, resp.error) == (0, "timeout after 2 s")


def test_a_request_over_budget_is_retried_then_failed(slow_site: _SlowSite) -> None:
    # A transient slowness like any other timeout: each attempt has the whole budget again.
    seen: list[httpx.Request] = []

    async def fetch() -> FetchResponse:
        async with http_client(2, 0.3, "askbase-test") as client:
            client.event_hooks["request"].append(_record(seen))  # every attempt, on the wire
            fetcher = Fetcher(
                client,
                slow_site.url("/"),
                retries=2,
                backoff_base_seconds=0.01,
                max_bytes=1_000_000,
                validators={},
                allowed=lambda _: True,
            )
            return await asyncio.wait_for(fetcher.get(slow_site.url("/trickle")), GUARD)

    resp = asyncio.run(fetch())
    assert resp.error == "timeout after 0.3 s"
    assert len(seen) == 3


def _record(seen: list[httpx.Request]) -> Callable[[httpx.Request], Awaitable[None]]:
    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    return hook


def test_a_crawl_with_a_trickling_page_ends_with_it_failed(slow_site: _SlowSite) -> None:
    source = Source(name="slow", kind=SourceKind.CRAWL, url=slow_site.url("/trickle"))
    session = crawl_source(source, CrawlConfig(concurrency=2, timeout_seconds=0.5, retries=0))
    results: list = []
    consumer = threading.Thread(target=lambda: results.extend(session), daemon=True)
    consumer.start()
    consumer.join(GUARD)
    if consumer.is_alive():
        session.close()
        pytest.fail("the crawl did not end")
    [result] = results
    assert result.outcome is Outcome.FAILED and result.reason == "timeout after 0.5 s"
    assert not session.summary.complete  # every page failed: nothing may be removed


# --- the encoding a page is decoded with ------------------------------------------------------------
CAFE = "<h1>Crème brûlée</h1><p>The naïve façade of the café explains résumé handling.</p>"


def _page_response(body: bytes) -> Response:
    # The header set by hand: given a text/* media type, Starlette would add "; charset=utf-8" itself.
    return Response(body, headers={"content-type": "text/html"})


def test_a_meta_charset_is_read_when_the_header_names_none() -> None:
    # A bare text/html header made httpx assume UTF-8, and every é of these pages became U+FFFD in the
    # title, the chunks and the search terms.
    links = '<a href="/plain">plain</a><a href="/utf8">utf8</a>'
    head = '<head><meta charset="windows-1252"><title>Café</title></head>'
    declared = f"<html>{head}<body>{CAFE}{links}</body></html>"
    undeclared = f"<html><head><title>Café</title></head><body>{CAFE}</body></html>"
    bodies = {
        "/": declared.encode("cp1252"),
        "/plain": undeclared.encode("cp1252"),
        "/utf8": undeclared.encode("utf-8"),
    }
    app = Starlette(
        routes=[
            Route("/robots.txt", lambda _: Response(status_code=404)),
            *(Route(path, lambda _, body=body: _page_response(body)) for path, body in bodies.items()),
        ]
    )
    with SiteServer(app) as site:
        source = Source(name="d", kind=SourceKind.CRAWL, url=site.url("/"))
        session = crawl_source(source, CrawlConfig(concurrency=2, retries=0))
        html = {r.requested_url: r.html for r in session if r.outcome is Outcome.FETCHED}
    assert html == {
        site.url("/"): declared,
        site.url("/plain"): undeclared,  # no declaration and not UTF-8: windows-1252, as browsers do
        site.url("/utf8"): undeclared,
    }


def test_a_refusal_carries_the_head_of_its_body_only() -> None:
    # A 401/403's body tells an object store's "no such object" from a WAF's block: a few KB are read,
    # never the whole of a large (or endless) error page.
    sent = [0]

    async def endless() -> AsyncIterator[bytes]:
        while sent[0] < 10_000_000:
            sent[0] += 1024
            yield b"<Error><Code>AccessDenied</Code></Error>".ljust(1024)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, content=endless())

    async def fetch() -> FetchResponse:
        transport = httpx.MockTransport(handler)
        async with http_client(2, 5.0, "askbase-test", transport) as client:
            fetcher = Fetcher(
                client,
                "https://docs.example.com/",
                retries=0,
                backoff_base_seconds=0.01,
                max_bytes=1_000_000,
                validators={},
                allowed=lambda _: True,
            )
            return await asyncio.wait_for(fetcher.get("https://docs.example.com/gone", html_only=True), GUARD)

    resp = asyncio.run(fetch())
    assert resp.status_code == 403 and resp.body.startswith(b"<Error><Code>AccessDenied</Code>")
    assert len(resp.body) == fetching_module.REFUSAL_BODY_BYTES and sent[0] < 100_000
