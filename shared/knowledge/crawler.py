"""Fetch a source's pages: discovery (sitemap, feed, links), robots.txt, conditional GET, retries.

The crawler only does I/O and reports what happened to every URL it considered; it never extracts,
chunks or indexes. Every decision it makes (same site? allowed? retry? how long to wait? HTML?) is a
pure function at the top of this module so it can be unit-tested without a network.

Page identity is the canonical URL: the ``<link rel="canonical">`` of the page when it points inside the
site, else the URL after redirects. Two URLs that resolve to the same identity are fetched but reported
once; duplicate *content* under distinct identities is caught by the caller from the extracted text.

Use :func:`crawl_source` from synchronous code: it runs the async crawl on a private event loop in a
worker thread and hands results over through a bounded queue, so the caller can embed page N while the
crawler fetches page N+8.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import queue
import random
import re
import threading
import time
import urllib.robotparser
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Protocol
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import httpx

from shared.backoff import exponential, parse_retry_after
from shared.config import Source, SourceKind

log = logging.getLogger(__name__)

# Extensions that are never HTML: skipped before any request is made.
_BINARY_EXTENSIONS = frozenset(
    [
        ".pdf",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".webp",
        ".svg",
        ".ico",
        ".bmp",
        ".tif",
        ".tiff",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".7z",
        ".rar",
        ".tar",
        ".mp3",
        ".mp4",
        ".m4a",
        ".wav",
        ".ogg",
        ".webm",
        ".mov",
        ".avi",
        ".mkv",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".eot",
        ".css",
        ".js",
        ".json",
        ".exe",
        ".dmg",
        ".iso",
        ".apk",
        ".doc",
        ".docx",
        ".xls",
        ".xlsx",
        ".ppt",
        ".pptx",
        ".csv",
    ]
)
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_MAX_SITEMAP_DEPTH = 3
# sitemaps.org: a sitemap may be at most 50 MiB *uncompressed*. This bounds both what a sitemap download
# may read and what a gzipped one (.xml.gz) may unpack to, so a gzip bomb stops at the cap. It is not
# crawl_max_page_bytes (2 MB by default), which a legitimate 50,000-URL sitemap exceeds.
MAX_SITEMAP_BYTES = 52_428_800
# Feeds are fetched (and, if gzipped, unpacked) up to this many bytes.
MAX_FEED_BYTES = 20_000_000
_MAX_RETRY_AFTER_SECONDS = 60.0
_MAX_REDIRECTS = 10


def _jitter() -> float:
    """Up to 25 % extra delay, so retries of many pages don't hit a struggling server in lockstep."""
    return random.random() * 0.25  # noqa: S311 - jitter, not cryptography


class Outcome(enum.StrEnum):
    """What happened to one URL."""

    FETCHED = "fetched"  # 200 with an HTML body
    UNCHANGED = "unchanged"  # 304 to our conditional GET
    GONE = "gone"  # 404/410: the page no longer exists
    FAILED = "failed"  # transient trouble (5xx, 429, timeout) after every retry; keep what we had
    SKIPPED = "skipped"  # by a rule: robots.txt, include/exclude, non-HTML, too large, off-site, dup


@dataclass(frozen=True)
class CrawlResult:
    """One URL's outcome. ``url`` is the page identity (canonical URL) for fetched pages."""

    url: str
    outcome: Outcome
    requested_url: str
    reason: str = ""
    status_code: int | None = None
    html: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    elapsed_ms: float = 0.0


@dataclass
class CrawlSummary:
    """Totals for one source. ``complete`` is False after a site-wide failure: the caller must then not
    treat pages it did not see as removed."""

    source: str
    complete: bool = True
    error: str = ""
    discovered: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Validators(Protocol):
    """What the crawler needs from a previous page record to make a conditional GET."""

    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class CrawlConfig:
    """The knobs, normally taken from :class:`~shared.config.Settings` by :meth:`from_settings`."""

    concurrency: int = 8
    timeout_seconds: float = 15.0
    retries: int = 3
    max_page_bytes: int = 2_000_000
    user_agent: str = "askbase-crawler/0.1"
    backoff_base_seconds: float = 0.5
    max_sitemap_bytes: int = MAX_SITEMAP_BYTES  # download and gunzip cap of one sitemap

    @classmethod
    def from_settings(cls, settings: object, **overrides: object) -> CrawlConfig:
        values = {
            "concurrency": settings.crawl_concurrency,  # type: ignore[attr-defined]
            "timeout_seconds": settings.crawl_timeout_seconds,  # type: ignore[attr-defined]
            "retries": settings.crawl_retries,  # type: ignore[attr-defined]
            "max_page_bytes": settings.crawl_max_page_bytes,  # type: ignore[attr-defined]
            "user_agent": settings.crawl_user_agent,  # type: ignore[attr-defined]
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Pure decisions
# --------------------------------------------------------------------------------------------------


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Absolute http(s) URL without fragment, lower-cased scheme and host, default port dropped.

    Returns None for anything that is not a web page address (mailto:, javascript:, garbage).
    """
    url = url.strip()
    if not url:
        return None
    if base is not None:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    url, _ = urldefrag(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if port is not None and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = parts.path or "/"
    return urlunsplit((scheme, host, path, parts.query, ""))


def site_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what "same site" compares."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_site(url: str, root: str) -> bool:
    """True when ``url`` is on the same scheme, host and port as ``root``.

    http and https of one host count as the same site: many sites redirect one to the other.
    """
    a, b = urlsplit(url), urlsplit(root)
    if a.hostname is None or b.hostname is None:
        return False

    def _port(p: object) -> int | None:
        return None if p.port in (None, 80, 443) else p.port  # type: ignore[attr-defined]

    return a.hostname.lower() == b.hostname.lower() and _port(a) == _port(b)


def compile_patterns(patterns: list[str], what: str) -> list[re.Pattern[str]]:
    """Compile a source's include/exclude regexes, naming the bad one in the error."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"invalid {what} regex {pattern!r}: {exc}") from None
    return compiled


def url_filter_reason(url: str, include: list[re.Pattern[str]], exclude: list[re.Pattern[str]]) -> str | None:
    """Why a URL is filtered out by the source's patterns, or None when it may be crawled."""
    if include and not any(p.search(url) for p in include):
        return "not matched by include patterns"
    for pattern in exclude:
        if pattern.search(url):
            return f"matched exclude pattern {pattern.pattern!r}"
    return None


def binary_extension(url: str) -> str | None:
    """The file extension when the URL names an obviously non-HTML file (``.pdf``, ``.png``...)."""
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    if dot == -1 or "/" in path[dot:]:
        return None
    ext = path[dot:]
    return ext if ext in _BINARY_EXTENSIONS else None


def is_html_type(content_type: str | None) -> bool:
    """True for HTML responses; a missing Content-Type is given the benefit of the doubt."""
    if not content_type:
        return True
    return content_type.split(";", 1)[0].strip().lower() in _HTML_TYPES


def should_retry(status_code: int) -> bool:
    """429 and 5xx are worth another try; every other status is final."""
    return status_code == 429 or 500 <= status_code <= 599


def backoff_delay(attempt: int, base: float, retry_after: float | None, jitter: float = 0.0) -> float:
    """Delay before retry ``attempt`` (0-based): the server's Retry-After if given (capped), else
    exponential ``base * 2**attempt`` plus ``jitter`` (a fraction in [0, 1) of that delay)."""
    if retry_after is not None:
        return min(retry_after, _MAX_RETRY_AFTER_SECONDS)
    return exponential(attempt, base, jitter=jitter)


def conditional_headers(previous: Validators | None) -> dict[str, str]:
    """If-None-Match / If-Modified-Since from the previous fetch, so an unchanged page costs one 304."""
    headers: dict[str, str] = {}
    if previous is None:
        return headers
    if previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    return headers


class _LinkParser(HTMLParser):
    """Collects ``<a href>``, the canonical link and feed links from an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.canonical: str | None = None
        self.feeds: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "a" and values.get("href"):
            rel = values.get("rel", "").lower().split()
            if "nofollow" not in rel:
                self.links.append(values["href"])
        elif tag == "link":
            rel = values.get("rel", "").lower().split()
            href = values.get("href", "")
            if "canonical" in rel and href and self.canonical is None:
                self.canonical = href
            elif (
                "alternate" in rel
                and href
                and values.get("type", "").lower()
                in (
                    "application/rss+xml",
                    "application/atom+xml",
                )
            ):
                self.feeds.append(href)
        elif tag == "base" and values.get("href") and self.base is None:
            self.base = values["href"]


@dataclass(frozen=True)
class PageLinks:
    """What a page tells the crawler: absolute links, canonical URL and feed links (normalized)."""

    links: list[str]
    canonical: str | None
    feeds: list[str]


def parse_links(html: str, page_url: str) -> PageLinks:
    """Extract normalized links, canonical and feed links from HTML (never raises on bad markup)."""
    parser = _LinkParser()
    with contextlib.suppress(Exception):  # html.parser is lenient; a pathological page is just linkless
        parser.feed(html)
        parser.close()
    base = normalize_url(parser.base, page_url) if parser.base else page_url
    base = base or page_url
    links = []
    seen = set()
    for href in parser.links:
        url = normalize_url(href, base)
        if url and url not in seen:
            seen.add(url)
            links.append(url)
    canonical = normalize_url(parser.canonical, base) if parser.canonical else None
    feeds = [u for u in (normalize_url(h, base) for h in parser.feeds) if u]
    return PageLinks(links=links, canonical=canonical, feeds=feeds)


def page_identity(final_url: str, canonical: str | None) -> str:
    """The page's identity: its canonical URL when that stays on the site, else the final URL."""
    if canonical and same_site(canonical, final_url):
        return canonical
    return final_url


class FeedError(ValueError):
    """A sitemap or feed document that cannot be parsed."""


class DocumentTooLarge(FeedError):
    """A gzipped sitemap or feed unpacks to more than its cap (a gzip bomb, or just too big)."""


def gunzip_capped(data: bytes, max_bytes: int) -> bytes:
    """Gunzip ``data`` incrementally, refusing to produce more than ``max_bytes`` bytes.

    Never holds more than ``max_bytes + 1`` unpacked bytes, however well the input compresses. Raises
    :class:`DocumentTooLarge` over the cap, :class:`FeedError` for corrupt or truncated data.
    """
    out = bytearray()
    pending = data
    try:
        while pending:  # one pass per gzip member: concatenated members are legal gzip
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # expect a gzip header
            while True:
                piece = inflater.decompress(pending, max_bytes + 1 - len(out))
                out += piece
                if len(out) > max_bytes:
                    raise DocumentTooLarge(f"gzip data unpacks to more than {max_bytes} bytes")
                if inflater.eof:
                    break
                tail = inflater.unconsumed_tail
                if not piece and len(tail) == len(pending):  # no progress: the input ran out
                    raise FeedError("bad gzip data: truncated")
                pending = tail
            rest = inflater.unused_data
            pending = rest if rest[:2] == b"\x1f\x8b" else b""  # trailing padding is ignored
    except zlib.error as exc:
        raise FeedError(f"bad gzip data: {exc}") from None
    return bytes(out)


def _parse_xml(data: bytes, max_bytes: int) -> ET.Element:
    if data[:2] == b"\x1f\x8b":  # sitemap.xml.gz
        data = gunzip_capped(data, max_bytes)
    # Sitemaps and feeds never need a DTD; refusing one rules out entity-expansion tricks.
    if b"<!DOCTYPE" in data[:4096].upper() or b"<!ENTITY" in data.upper():
        raise FeedError("XML with a DOCTYPE/ENTITY declaration is refused")
    try:
        return ET.fromstring(data)  # noqa: S314 - DTDs refused above
    except ET.ParseError as exc:
        raise FeedError(f"not well-formed XML: {exc}") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def parse_sitemap(data: bytes, max_bytes: int = MAX_SITEMAP_BYTES) -> tuple[list[str], list[str]]:
    """``(page_urls, child_sitemap_urls)`` from a sitemap or sitemap index document.

    Gzipped data is unpacked up to ``max_bytes`` (:class:`DocumentTooLarge` beyond).
    """
    root = _parse_xml(data, max_bytes)
    kind = _local(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        raise FeedError(f"not a sitemap (root element <{kind}>)")
    urls: list[str] = []
    for entry in root:
        for child in entry:
            if _local(child.tag) == "loc" and child.text and child.text.strip():
                urls.append(child.text.strip())
    return (urls, []) if kind == "urlset" else ([], urls)


def parse_feed(data: bytes, max_bytes: int = MAX_FEED_BYTES) -> list[str]:
    """Entry links of an RSS 2.0, RSS 1.0 (RDF) or Atom feed (gzipped data unpacked up to ``max_bytes``)."""
    root = _parse_xml(data, max_bytes)
    kind = _local(root.tag)
    links: list[str] = []
    if kind == "feed":  # Atom
        for entry in root:
            if _local(entry.tag) != "entry":
                continue
            chosen = None
            for child in entry:
                if _local(child.tag) == "link":
                    rel = child.get("rel", "alternate")
                    if rel == "alternate" and child.get("href"):
                        chosen = child.get("href")
                        break
            if chosen:
                links.append(chosen.strip())
    elif kind in ("rss", "rdf"):
        for item in root.iter():
            if _local(item.tag) != "item":
                continue
            for child in item:
                if _local(child.tag) == "link" and child.text and child.text.strip():
                    links.append(child.text.strip())
                    break
    else:
        raise FeedError(f"not an RSS or Atom feed (root element <{kind}>)")
    return links


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------------


@dataclass
class _Response:
    status_code: int
    url: str
    headers: httpx.Headers
    body: bytes = b""
    encoding: str = "utf-8"
    too_large: bool = False
    error: str = ""
    skip_reason: str = ""


class _SiteWideFailure(Exception):
    """Discovery could not even start (robots.txt 5xx, sitemap or feed unreachable)."""


class SourceCrawler:
    """Crawls one source with an :class:`httpx.AsyncClient`.

    ``previous`` maps page identity → the validators stored at the last fetch; those pages are also
    re-checked (crawl and feed kinds) because an unchanged page answers 304 without a body, so links
    would not be rediscovered from it, and feeds drop old posts that still exist.
    """

    def __init__(
        self,
        source: Source,
        config: CrawlConfig,
        previous: Mapping[str, Validators] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.previous = dict(previous or {})
        self.include = compile_patterns(source.include, "include")
        self.exclude = compile_patterns(source.exclude, "exclude")
        start = normalize_url(source.url)
        if start is None:
            raise ValueError(f"source {source.name!r}: start URL {source.url!r} is not an http(s) URL")
        self.start = start
        self.site = site_of(start)
        self._transport = transport
        self.summary = CrawlSummary(source=source.name)
        self._robots: urllib.robotparser.RobotFileParser | None = None
        self._queued: set[str] = set()
        self._identities: set[str] = set()
        self._fetch_budget = source.max_pages
        # Parts of discovery that were skipped (a sitemap over its cap): the crawl goes on without them
        # but is reported incomplete, so the caller removes nothing it did not see.
        self._discovery_problems: list[str] = []

    # --- HTTP ------------------------------------------------------------------------------------
    async def _get(
        self,
        client: httpx.AsyncClient,
        url: str,
        conditional: bool = False,
        limit: int | None = None,
        html_only: bool = False,
    ) -> _Response:
        """GET with retries on 429/5xx/network errors, following same-site redirects by hand.

        The body is streamed and reading stops over ``limit``. With ``html_only`` a non-HTML 200 returns
        before its body is read (a PDF costs no download). With ``conditional`` every hop carries the
        validators stored for that hop's URL, so ``/docs/`` → ``/docs/index.html`` can still end in a 304.
        """
        limit = self.config.max_page_bytes if limit is None else limit
        attempt = 0
        while True:
            try:
                result = await self._follow(client, url, conditional, limit, html_only)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt >= self.config.retries:
                    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "network error"
                    return _Response(
                        0, url, httpx.Headers(), error=f"{kind}: {str(exc) or type(exc).__name__}"
                    )
                wait = backoff_delay(attempt, self.config.backoff_base_seconds, None, _jitter())
                log.info("%s: %s; retry %d in %.2fs", url, type(exc).__name__, attempt + 1, wait)
            except httpx.RequestError as exc:  # decoding errors and the like: retrying won't help
                return _Response(0, url, httpx.Headers(), error=f"{type(exc).__name__}: {exc}")
            else:
                if not should_retry(result.status_code) or attempt >= self.config.retries:
                    return result
                retry_after = parse_retry_after(result.headers.get("retry-after"))
                wait = backoff_delay(attempt, self.config.backoff_base_seconds, retry_after, _jitter())
                log.info("%s answered %s; retry %d in %.2fs", url, result.status_code, attempt + 1, wait)
            attempt += 1
            await asyncio.sleep(wait)

    async def _follow(
        self, client: httpx.AsyncClient, url: str, conditional: bool, limit: int, html_only: bool
    ) -> _Response:
        """One GET and its redirects. An off-site redirect is returned, not followed: same-site only."""
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            headers = conditional_headers(self.previous.get(current)) if conditional else None
            async with client.stream("GET", current, headers=headers) as resp:
                result = _Response(resp.status_code, current, resp.headers)
                if resp.is_redirect and resp.headers.get("location"):
                    target = normalize_url(resp.headers["location"], current)
                    if target is None:
                        result.error = f"redirect to an unusable location {resp.headers['location']!r}"
                        return result
                    if not same_site(target, self.start):
                        result.url = target
                        return result
                    if self._robots is not None and not self._allowed_by_robots(target):
                        result.url = target
                        result.skip_reason = f"redirects to {target}, disallowed by robots.txt"
                        return result
                    current = target
                    continue
                if resp.status_code == 200:
                    length = resp.headers.get("content-length")
                    if length and length.isdigit() and int(length) > limit:
                        result.too_large = True
                        return result
                    if html_only and not is_html_type(resp.headers.get("content-type")):
                        return result
                    chunks = []
                    size = 0
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            result.too_large = True
                            return result
                        chunks.append(chunk)
                    result.body = b"".join(chunks)
                    result.encoding = resp.encoding or "utf-8"
                return result
        return _Response(0, current, httpx.Headers(), error=f"more than {_MAX_REDIRECTS} redirects")

    # --- discovery --------------------------------------------------------------------------------
    async def _load_robots(self, client: httpx.AsyncClient) -> list[str]:
        """Read robots.txt; returns the sitemaps it lists. 5xx/unreachable → site-wide failure."""
        robots = urllib.robotparser.RobotFileParser()
        resp = await self._get(client, self.site + "/robots.txt", limit=512_000)
        if resp.status_code == 200 and not resp.too_large:
            robots.parse(resp.body.decode(resp.encoding, errors="replace").splitlines())
        elif resp.status_code in (401, 403):
            robots.disallow_all = True
        elif resp.status_code == 0 or resp.status_code >= 500:
            # RFC 9309: an unreachable robots.txt means "assume complete disallow".
            raise _SiteWideFailure(f"robots.txt unavailable ({resp.error or resp.status_code})")
        else:
            robots.allow_all = True
        self._robots = robots
        return list(robots.site_maps() or [])

    def _allowed_by_robots(self, url: str) -> bool:
        return self._robots is None or self._robots.can_fetch(self.config.user_agent, url)

    async def _sitemap_urls(self, client: httpx.AsyncClient, robots_sitemaps: list[str]) -> list[str]:
        if self.start.endswith((".xml", ".xml.gz")):
            pending = [self.start]
        else:
            pending = [u for u in (normalize_url(s) for s in robots_sitemaps) if u] or [
                self.site + "/sitemap.xml"
            ]
        pages: list[str] = []
        seen: set[str] = set()
        depth = 0
        while pending and depth <= _MAX_SITEMAP_DEPTH:
            children: list[str] = []
            for sitemap in pending:
                if sitemap in seen or not same_site(sitemap, self.start):
                    continue
                seen.add(sitemap)
                resp = await self._get(client, sitemap, limit=self.config.max_sitemap_bytes)
                if resp.status_code != 200 or resp.too_large:
                    raise _SiteWideFailure(
                        f"sitemap {sitemap} unavailable ({resp.error or resp.status_code})"
                    )
                try:
                    urls, subs = parse_sitemap(resp.body, self.config.max_sitemap_bytes)
                except DocumentTooLarge as exc:
                    # A gzip bomb (or a sitemap over the protocol's limit): skip it, crawl the rest,
                    # and mark the crawl incomplete so pages it may have listed are not taken as removed.
                    log.warning("source %s: sitemap %s skipped: %s", self.source.name, sitemap, exc)
                    self._discovery_problems.append(f"sitemap {sitemap} skipped: {exc}")
                    continue
                except FeedError as exc:
                    raise _SiteWideFailure(f"sitemap {sitemap}: {exc}") from None
                # Relative <loc>s are out of spec but common on hand-written sitemaps: resolve them.
                pages.extend(u for u in (normalize_url(s, sitemap) for s in urls) if u)
                children.extend(u for u in (normalize_url(s, sitemap) for s in subs) if u)
            pending = children
            depth += 1
        return pages

    async def _feed_urls(self, client: httpx.AsyncClient) -> list[str]:
        resp = await self._get(client, self.start, limit=MAX_FEED_BYTES)
        if resp.status_code != 200 or resp.too_large:
            raise _SiteWideFailure(f"feed {self.start} unavailable ({resp.error or resp.status_code})")
        feed_url = self.start
        body = resp.body
        if (
            is_html_type(resp.headers.get("content-type"))
            and b"<rss" not in body[:2048]
            and b"<feed" not in body[:2048]
        ):
            # An HTML page: follow its <link rel="alternate" type="application/rss+xml">, on this site
            # only (the same rule as every other fetch: see same_site).
            found = parse_links(body.decode(resp.encoding, errors="replace"), str(resp.url)).feeds
            on_site = []
            for link in found:
                if same_site(link, self.start):
                    on_site.append(link)
                else:
                    log.warning(
                        "source %s: ignoring feed link %s on %s: not on %s",
                        self.source.name,
                        link,
                        resp.url,
                        self.site,
                    )
            if not on_site:
                off_site = f" (off-site feed links ignored: {', '.join(found)})" if found else ""
                raise _SiteWideFailure(
                    f"{self.start} is HTML and advertises no RSS/Atom feed on its own site{off_site}"
                )
            feed_url = on_site[0]
            resp = await self._get(client, feed_url, limit=MAX_FEED_BYTES)
            if resp.status_code != 200 or resp.too_large:
                raise _SiteWideFailure(f"feed {feed_url} unavailable ({resp.error or resp.status_code})")
            body = resp.body
        try:
            links = parse_feed(body, MAX_FEED_BYTES)
        except FeedError as exc:
            raise _SiteWideFailure(f"feed {feed_url}: {exc}") from None
        return [u for u in (normalize_url(link, feed_url) for link in links) if u]

    # --- the crawl ----------------------------------------------------------------------------------
    def _screen(self, url: str) -> CrawlResult | None:
        """A SKIPPED result when a rule rules the URL out before fetching, else None."""
        if not same_site(url, self.start):
            return CrawlResult(url, Outcome.SKIPPED, url, "off-site")
        reason = url_filter_reason(url, self.include, self.exclude)
        if reason:
            return CrawlResult(url, Outcome.SKIPPED, url, reason)
        ext = binary_extension(url)
        if ext:
            return CrawlResult(url, Outcome.SKIPPED, url, f"non-HTML ({ext})")
        if not self._allowed_by_robots(url):
            return CrawlResult(url, Outcome.SKIPPED, url, "disallowed by robots.txt")
        return None

    async def _fetch_page(self, client: httpx.AsyncClient, url: str) -> tuple[CrawlResult, list[str]]:
        started = time.perf_counter()
        resp = await self._get(client, url, conditional=True, html_only=True)
        ms = (time.perf_counter() - started) * 1000
        final = normalize_url(resp.url) or url
        previous = self.previous.get(final)
        etag = resp.headers.get("etag")
        modified = resp.headers.get("last-modified")
        if resp.error:
            return CrawlResult(url, Outcome.FAILED, url, resp.error, None, elapsed_ms=ms), []
        if resp.skip_reason:
            return CrawlResult(
                url, Outcome.SKIPPED, url, resp.skip_reason, resp.status_code, elapsed_ms=ms
            ), []
        if resp.status_code == 304:
            return CrawlResult(
                final,
                Outcome.UNCHANGED,
                url,
                "not modified",
                304,
                etag=etag or (previous.etag if previous else None),
                last_modified=modified or (previous.last_modified if previous else None),
                elapsed_ms=ms,
            ), []
        if not same_site(final, self.start):
            return CrawlResult(
                url, Outcome.SKIPPED, url, f"redirected off-site to {final}", resp.status_code, elapsed_ms=ms
            ), []
        if resp.status_code in (404, 410):
            return CrawlResult(
                url, Outcome.GONE, url, f"HTTP {resp.status_code}", resp.status_code, elapsed_ms=ms
            ), []
        if resp.status_code != 200:
            outcome = Outcome.FAILED if should_retry(resp.status_code) else Outcome.GONE
            return CrawlResult(
                url, outcome, url, f"HTTP {resp.status_code}", resp.status_code, elapsed_ms=ms
            ), []
        if resp.too_large:
            return CrawlResult(
                url,
                Outcome.SKIPPED,
                url,
                f"larger than {self.config.max_page_bytes} bytes",
                200,
                elapsed_ms=ms,
            ), []
        content_type = resp.headers.get("content-type")
        if not is_html_type(content_type):
            return CrawlResult(
                url, Outcome.SKIPPED, url, f"non-HTML ({content_type})", 200, elapsed_ms=ms
            ), []
        html = resp.body.decode(resp.encoding, errors="replace")
        parsed = parse_links(html, final)
        identity = page_identity(final, parsed.canonical)
        return (
            CrawlResult(identity, Outcome.FETCHED, url, "", 200, html, etag, modified, ms),
            parsed.links,
        )

    async def run(self, emit: _Emitter) -> CrawlSummary:
        """Crawl the source, calling ``emit(result)`` for every URL considered."""
        started = time.perf_counter()
        limits = httpx.Limits(
            max_connections=self.config.concurrency, max_keepalive_connections=self.config.concurrency
        )
        timeout = httpx.Timeout(self.config.timeout_seconds)
        async with httpx.AsyncClient(
            transport=self._transport,
            limits=limits,
            timeout=timeout,
            follow_redirects=False,  # followed by hand in _follow: never off the site
            headers={"User-Agent": self.config.user_agent},
        ) as client:
            try:
                await self._crawl(client, emit)
            except _SiteWideFailure as exc:
                self.summary.complete = False
                self.summary.error = str(exc)
                log.warning("source %s: %s", self.source.name, exc)
            else:
                if self._discovery_problems:
                    self.summary.complete = False
                    self.summary.error = "; ".join(
                        [*self._discovery_problems, *([self.summary.error] if self.summary.error else [])]
                    )
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    async def _crawl(self, client: httpx.AsyncClient, emit: _Emitter) -> None:
        robots_sitemaps = await self._load_robots(client)
        kind = self.source.kind
        if kind is SourceKind.SITEMAP:
            seeds = await self._sitemap_urls(client, robots_sitemaps)
        elif kind is SourceKind.FEED:
            seeds = await self._feed_urls(client) + sorted(self.previous)
        else:
            seeds = [self.start, *sorted(self.previous)]
        follow_links = kind is SourceKind.CRAWL

        frontier: asyncio.Queue[str | None] = asyncio.Queue()
        failures = 0
        fetched_ok = 0

        def count(result: CrawlResult) -> None:
            self.summary.counts[result.outcome.value] = self.summary.counts.get(result.outcome.value, 0) + 1
            emit(result)

        def enqueue(raw: str, base: str | None = None) -> None:
            url = normalize_url(raw, base)
            if url is None or url in self._queued:
                return
            self._queued.add(url)
            skipped = self._screen(url)
            if skipped is not None:
                # Off-site links are noise in a crawl; report only what the source itself listed.
                if skipped.reason != "off-site" or not follow_links:
                    count(skipped)
                return
            if self._fetch_budget <= 0:
                return
            self._fetch_budget -= 1
            self.summary.discovered += 1
            frontier.put_nowait(url)

        for seed in seeds:
            enqueue(seed, self.start)

        async def worker() -> None:
            nonlocal failures, fetched_ok
            while True:
                url = await frontier.get()
                try:
                    if url is None:
                        return
                    try:
                        result, links = await self._fetch_page(client, url)
                    except Exception as exc:  # one odd page must not stall the crawl
                        log.warning("%s: unexpected %s: %s", url, type(exc).__name__, exc)
                        result, links = (
                            CrawlResult(url, Outcome.FAILED, url, f"{type(exc).__name__}: {exc}"),
                            [],
                        )
                    if result.outcome in (Outcome.FETCHED, Outcome.UNCHANGED):
                        if result.url in self._identities:
                            result = CrawlResult(
                                result.url, Outcome.SKIPPED, url, f"same canonical URL as {result.url}", 200
                            )
                        else:
                            self._identities.add(result.url)
                            self._queued.add(result.url)
                    if result.outcome is Outcome.FAILED:
                        failures += 1
                    elif result.outcome in (Outcome.FETCHED, Outcome.UNCHANGED):
                        fetched_ok += 1
                    count(result)
                    if follow_links:
                        for link in links:
                            enqueue(link)
                finally:
                    frontier.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(self.config.concurrency)]
        try:
            await frontier.join()
        finally:
            for _ in workers:
                frontier.put_nowait(None)
            await asyncio.gather(*workers, return_exceptions=True)
        if failures and not fetched_ok:
            # Every page failed: the site is down, not the pages gone.
            self.summary.complete = False
            self.summary.error = f"all {failures} page fetches failed"


class _Emitter(Protocol):
    def __call__(self, result: CrawlResult) -> None: ...


class CrawlSession:
    """Iterator over a source's :class:`CrawlResult` s; :attr:`summary` is final once exhausted."""

    def __init__(self, crawler: SourceCrawler, buffer: int = 64) -> None:
        self._crawler = crawler
        self._queue: queue.Queue[CrawlResult | BaseException | None] = queue.Queue(maxsize=buffer)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"crawl-{crawler.source.name}", daemon=True)
        self._started = False

    @property
    def summary(self) -> CrawlSummary:
        return self._crawler.summary

    def _put(self, item: CrawlResult | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            asyncio.run(self._crawler.run(self._put))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        finally:
            self._put(None)

    def __iter__(self) -> Iterator[CrawlResult]:
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            item = self._queue.get()
            if item is None:
                self._thread.join()
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop early (the consumer gave up); the crawl thread exits at its next hand-over."""
        self._stop.set()


def crawl_source(
    source: Source,
    config: CrawlConfig,
    previous: Mapping[str, Validators] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CrawlSession:
    """Start crawling ``source``; iterate the returned session for results, then read its summary.

    Raises :class:`ValueError` at once for a bad start URL or include/exclude regex.
    """
    return CrawlSession(SourceCrawler(source, config, previous, transport))
