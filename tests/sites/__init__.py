"""A fixture web site served on 127.0.0.1 for crawler, scrape and benchmark runs.

:class:`FixtureSite` is a real HTTP server (uvicorn, keep-alive) whose pages a test can edit or remove
between runs. :func:`standard_site` builds the site the tests crawl: docs pages with headings, a sitemap
index, robots.txt disallowing ``/private/``, an RSS feed, a redirect, a 404, a 500-then-200 page, a slow
page, an oversized page, a PDF and an image, duplicate content under two URLs, and ETag/Last-Modified
with 304s. :func:`generated_site` builds an N-page site for benchmarks.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from shared.devstack.site_server import SiteServer
from tests.fakes._server import LoopbackService

_WORDS = [
    "index",
    "snapshot",
    "crawler",
    "bucket",
    "deploy",
    "token",
    "bot",
    "answer",
    "question",
    "page",
    "source",
    "chunk",
    "embed",
    "vector",
    "search",
    "restore",
    "publish",
    "lease",
    "schedule",
    "region",
    "project",
    "service",
    "function",
    "webhook",
    "channel",
    "model",
    "retry",
    "timeout",
    "sitemap",
    "feed",
    "robots",
    "canonical",
    "header",
    "section",
    "anchor",
    "title",
    "config",
    "secret",
    "store",
    "cloud",
    "run",
    "firestore",
    "storage",
    "pubsub",
    "worker",
    "queue",
    "reply",
    "message",
    "user",
    "admin",
    "owner",
    "status",
]


def prose(seed: str, sentences: int = 6) -> str:
    """Deterministic filler text, different for every seed (so pages never look like duplicates)."""
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(9, 16))]
        out.append(" ".join(words).capitalize() + f" ({seed} {rng.randint(0, 10_000)}).")
    return " ".join(out)


def doc_html(title: str, sections: list[tuple[str, str]], links: list[str] = (), canonical: str = "") -> str:
    """A docs page: ``<h1>`` title, ``<h2>`` sections with paragraphs, a nav of links."""
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    body = "".join(f'<h2 id="{h.lower().replace(" ", "-")}">{h}</h2><p>{text}</p>' for h, text in sections)
    canon = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{canon}"
        f'<link rel="alternate" type="application/rss+xml" href="/feed.xml"></head>'
        f"<body><nav><ul>{nav}</ul></nav><main><article><h1>{title}</h1>{body}</article></main>"
        f"<footer>askbase fixture site</footer></body></html>"
    )


@dataclass
class FixturePage:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    in_sitemap: bool = True
    status: int = 200
    # Answer 500 this many more times before the real page (the 500-then-200 page).
    fail_times: int = 0
    delay: float = 0.0
    conditional: bool = True  # answer 304s to If-None-Match / If-Modified-Since

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


class FixtureSite(LoopbackService):
    """An editable web site on a free loopback port. Paths start with ``/``."""

    def __init__(self) -> None:
        self.pages: dict[str, FixturePage] = {}
        self.redirects: dict[str, str] = {}
        self.robots = "User-agent: *\nDisallow: /private/\n"
        self.feed_paths: list[str] = []
        self.hits: Counter[str] = Counter()
        self.statuses: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._server = SiteServer(self._app())

    # --- editing ---------------------------------------------------------------------------------
    def set_page(self, path: str, html: str | bytes, **options: object) -> FixturePage:
        body = html.encode() if isinstance(html, str) else html
        with self._lock:
            page = FixturePage(body=body, **options)  # type: ignore[arg-type]
            self.pages[path] = page
        return page

    def edit_page(self, path: str, html: str) -> None:
        """Replace a page's body; its ETag and Last-Modified change with it."""
        with self._lock:
            page = self.pages[path]
            page.body = html.encode()
            page.modified = datetime.now(UTC).replace(microsecond=0)

    def remove_page(self, path: str) -> None:
        with self._lock:
            self.pages.pop(path, None)

    def reset_hits(self) -> None:
        with self._lock:
            self.hits.clear()
            self.statuses.clear()

    def url(self, path: str = "/") -> str:
        return self._server.url(path)

    @property
    def base_url(self) -> str:
        return self._server.base_url

    # --- serving ---------------------------------------------------------------------------------
    def _sitemap(self) -> str:
        with self._lock:
            paths = sorted(p for p, page in self.pages.items() if page.in_sitemap)
        locs = "".join(f"<url><loc>{self.url(p)}</loc></url>" for p in paths)
        return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'

    def _feed(self) -> str:
        items = "".join(f"<item><title>{p}</title><link>{self.url(p)}</link></item>" for p in self.feed_paths)
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>{items}</channel></rss>'

    def _app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            path = "/" + request.path_params.get("path", "")
            with self._lock:
                self.hits[path] += 1
            response = await self._respond(request, path)
            with self._lock:
                self.statuses.append((path, response.status_code))
            return response

        return Starlette(routes=[Route("/", handle), Route("/{path:path}", handle)])

    async def _respond(self, request: Request, path: str) -> Response:
        if path == "/robots.txt":
            return PlainTextResponse(self.robots + f"Sitemap: {self.url('/sitemap.xml')}\n")
        if path == "/sitemap.xml":  # a sitemap index, so index parsing is exercised too
            loc = self.url("/sitemap-pages.xml")
            return Response(
                f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<sitemap><loc>{loc}</loc></sitemap></sitemapindex>",
                media_type="application/xml",
            )
        if path == "/sitemap-pages.xml":
            return Response(self._sitemap(), media_type="application/xml")
        if path == "/feed.xml":
            return Response(self._feed(), media_type="application/rss+xml")
        if path in self.redirects:
            return RedirectResponse(self.redirects[path], status_code=301)
        with self._lock:
            page = self.pages.get(path)
            if page is not None and page.fail_times > 0:
                page.fail_times -= 1
                return PlainTextResponse("temporary failure", status_code=500)
        if page is None:
            return PlainTextResponse("not found", status_code=404)
        if page.delay:
            await asyncio.sleep(page.delay)
        if page.status != 200:  # the page's body when it has one (an object store's XML error)
            if page.body:
                return Response(page.body, status_code=page.status, media_type=page.content_type)
            return PlainTextResponse("error", status_code=page.status)
        headers = {"ETag": page.etag, "Last-Modified": format_datetime(page.modified, usegmt=True)}
        if page.conditional and _not_modified(request, page):
            return Response(status_code=304, headers=headers)
        return Response(page.body, headers=headers, media_type=page.content_type)


def _not_modified(request: Request, page: FixturePage) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return page.etag in [tag.strip() for tag in inm.split(",")]
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            return page.modified <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False


# Paths of the standard site, named so tests read clearly.
DOC_PAGES = ["/docs/install", "/docs/configure", "/docs/deploy", "/docs/bots", "/docs/faq"]
BLOG_POSTS = ["/blog/hello", "/blog/release-1"]
DUPLICATE = "/docs/configure-copy"  # same bytes as /docs/configure
PRIVATE = "/private/secret"
FLAKY = "/docs/flaky"  # 500 once, then 200
SLOW = "/docs/slow"
BIG = "/docs/big"
PDF = "/files/manual.pdf"
PDF_NO_EXT = "/download/guide"  # a PDF without an extension: caught by Content-Type
IMAGE = "/img/logo.png"
MISSING = "/docs/missing"  # listed in the sitemap, answers 404
REDIRECT = "/docs/old-install"  # 301 → /docs/install


def page_for(path: str, version: int = 1) -> str:
    title = path.rsplit("/", 1)[-1].replace("-", " ").title() + " guide"
    sections = [(f"Part {i}", prose(f"{path}-{i}-v{version}")) for i in range(1, 4)]
    links = [*DOC_PAGES, REDIRECT, PDF, IMAGE, "https://example.com/elsewhere"]
    return doc_html(title, sections, links)


def standard_site(slow_seconds: float = 3.0, big_bytes: int = 3_000_000) -> FixtureSite:
    """The site the crawler and scrape tests use (not started)."""
    site = FixtureSite()
    for path in DOC_PAGES + BLOG_POSTS:
        site.set_page(path, page_for(path))
    site.set_page(DUPLICATE, page_for("/docs/configure"))
    site.set_page(PRIVATE, page_for(PRIVATE))
    site.set_page(FLAKY, page_for(FLAKY), fail_times=1)
    site.set_page(SLOW, page_for(SLOW), delay=slow_seconds)
    filler = prose("big", 40)
    big = doc_html("Big page", [("Huge", filler * (big_bytes // len(filler) + 1))])
    site.set_page(BIG, big)
    site.set_page(PDF, b"%PDF-1.4 fake pdf", content_type="application/pdf")
    site.set_page(PDF_NO_EXT, b"%PDF-1.4 fake pdf", content_type="application/pdf")
    site.set_page(IMAGE, b"\x89PNG fake", content_type="image/png", in_sitemap=False)
    site.set_page(MISSING, b"", status=404)
    site.set_page("/", doc_html("Home", [("Welcome", prose("home"))], DOC_PAGES), in_sitemap=False)
    site.redirects[REDIRECT] = "/docs/install"
    site.feed_paths = list(BLOG_POSTS)
    return site


def generated_site(pages: int, sections: int = 3, sentences: int = 5) -> FixtureSite:
    """An N-page docs site (``/gen/page-0000`` ...) in the sitemap, for benchmarks (not started)."""
    site = FixtureSite()
    for i in range(pages):
        path = f"/gen/page-{i:04d}"
        body = [(f"Topic {j}", prose(f"{path}-{j}", sentences)) for j in range(sections)]
        site.set_page(path, doc_html(f"Generated page {i}", body, [f"/gen/page-{(i + 1) % pages:04d}"]))
    return site
