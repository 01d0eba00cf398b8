"""HTTP for the crawler: conditional GETs with retries, redirects followed by hand and only on the site.

How long to wait between tries comes from :mod:`shared.backoff` (the server's ``Retry-After``, else
exponential backoff), the one definition every retrying client here uses; this module only decides
*whether* to retry and caps what a server may ask for.

Every try of a request has one time budget (the crawl's ``timeout_seconds``) for all of it: its redirect
hops, headers and body. httpx's own timeouts only bound each network operation, so a server trickling a
byte every few seconds would otherwise hold a request, and the crawl, open for ever.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Protocol

import httpx

from shared.backoff import exponential, parse_retry_after
from shared.knowledge.charsets import html_encoding
from shared.knowledge.urls import normalize_url, same_site

log = logging.getLogger(__name__)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_MAX_RETRY_AFTER_SECONDS = 60.0
_MAX_REDIRECTS = 10
# The slowest transfer rate a document read under an explicit cap (Fetcher.get's ``limit``: sitemaps,
# feeds, robots.txt) is given time for: its try's budget is the timeout plus cap / this, so a 50 MB
# sitemap cap gets the timeout + 52 s, a 20 MB feed cap the timeout + 20 s. Pages (no explicit limit)
# keep the timeout alone: they are small, and a slow one should not hold a worker.
MIN_BYTES_PER_SECOND = 1_000_000
# How much of a 401/403's body is read: enough for an object store's XML error (S3/CloudFront and Cloud
# Storage name a missing object that way), which the crawler tells from a WAF's or login wall's refusal.
REFUSAL_BODY_BYTES = 4096


def _jitter() -> float:
    """Up to 25 % extra delay, so retries of many pages don't hit a struggling server in lockstep."""
    return random.random() * 0.25  # noqa: S311 - jitter, not cryptography


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


class Validators(Protocol):
    """What a conditional GET needs from a previous page record."""

    etag: str | None
    last_modified: str | None


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


@dataclass
class Response:
    """What one GET (after its redirects and retries) came to.

    ``status_code`` 0 with ``error`` set: no answer (timeout, network error, too many redirects).
    ``url`` is the last hop: off the site when a redirect left it. ``too_large``: the body was over the
    limit and not kept. A 401/403 carries at most :data:`REFUSAL_BODY_BYTES` of its body.
    ``skip_reason``: a rule (robots.txt) stopped a redirect.
    """

    status_code: int
    url: str
    headers: httpx.Headers
    body: bytes = b""
    encoding: str = "utf-8"
    too_large: bool = False
    error: str = ""
    skip_reason: str = ""


def http_client(
    concurrency: int,
    timeout_seconds: float,
    user_agent: str,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The client one crawl uses: ``concurrency`` connections, kept alive, and no automatic redirects.

    ``timeout_seconds`` bounds every network operation, and a :class:`Fetcher` on this client takes it
    as the budget of a whole try too (:attr:`Fetcher.budget_seconds`).
    """
    return httpx.AsyncClient(
        transport=transport,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,  # followed by hand in Fetcher._follow: never off the site
        headers={"User-Agent": user_agent},
    )


@dataclass
class Fetcher:
    """GETs on one site through ``client``.

    ``site_root`` is the URL whose site every redirect must stay on, ``validators`` maps a URL to what
    was stored at its last fetch (for conditional GETs), ``allowed`` says whether robots.txt lets us
    follow a redirect to a URL, and ``max_bytes`` is the body limit when a call names none.
    ``timeout_seconds`` is the budget of one try (see :attr:`budget_seconds`); None takes the client's.
    """

    client: httpx.AsyncClient
    site_root: str
    _: KW_ONLY
    retries: int
    backoff_base_seconds: float
    max_bytes: int
    validators: Mapping[str, Validators]
    allowed: Callable[[str], bool]
    timeout_seconds: float | None = None

    @property
    def budget_seconds(self) -> float | None:
        """How long one try of a request may take, redirect hops, headers and body together.

        Each retry gets the whole budget again and the backoff between tries is not counted, so a
        request ends within ``(retries + 1) * budget`` plus the backoff. None: no limit (a client built
        with ``httpx.Timeout(None)`` and no ``timeout_seconds``).
        """
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        # The crawl's one timeout setting reaches the Fetcher only through the client it built.
        limits = [
            t
            for t in (self.client.timeout.connect, self.client.timeout.read, self.client.timeout.write)
            if t is not None
        ]
        return max(limits) if limits else None

    async def get(
        self,
        url: str,
        conditional: bool = False,
        limit: int | None = None,
        html_only: bool = False,
    ) -> Response:
        """GET with retries on 429/5xx/network errors, following same-site redirects by hand.

        The body is streamed and reading stops over ``limit``. With ``html_only`` a non-HTML 200 returns
        before its body is read (a PDF costs no download). With ``conditional`` every hop carries the
        validators stored for that hop's URL, so ``/docs/`` → ``/docs/index.html`` can still end in a 304.
        A try that outlasts :attr:`budget_seconds` (plus ``limit`` / :data:`MIN_BYTES_PER_SECOND` when a
        ``limit`` is given) is abandoned (its connection closed) and retried like a timeout; the last one
        ends as status 0 with ``error`` "timeout after N s".
        """
        budget = self.budget_seconds
        if limit is not None and budget is not None:
            # A document read under its own cap (a sitemap up to 50 MB, a feed up to 20 MB, robots.txt)
            # may take longer than a page: the cap's worth of bytes at MIN_BYTES_PER_SECOND on top.
            budget += limit / MIN_BYTES_PER_SECOND
        limit = self.max_bytes if limit is None else limit
        attempt = 0
        while True:
            deadline = asyncio.timeout(budget)
            try:
                async with deadline:
                    result = await self._follow(url, conditional, limit, html_only)
            except TimeoutError:
                if not deadline.expired():  # an OS-level timeout httpx let through: not our budget
                    raise
                if attempt >= self.retries:
                    return Response(0, url, httpx.Headers(), error=f"timeout after {budget:g} s")
                wait = backoff_delay(attempt, self.backoff_base_seconds, None, _jitter())
                log.info("%s: over its %gs budget; retry %d in %.2fs", url, budget, attempt + 1, wait)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt >= self.retries:
                    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "network error"
                    return Response(
                        0, url, httpx.Headers(), error=f"{kind}: {str(exc) or type(exc).__name__}"
                    )
                wait = backoff_delay(attempt, self.backoff_base_seconds, None, _jitter())
                log.info("%s: %s; retry %d in %.2fs", url, type(exc).__name__, attempt + 1, wait)
            except httpx.RequestError as exc:  # decoding errors and the like: retrying won't help
                return Response(0, url, httpx.Headers(), error=f"{type(exc).__name__}: {exc}")
            else:
                if not should_retry(result.status_code) or attempt >= self.retries:
                    return result
                retry_after = parse_retry_after(result.headers.get("retry-after"))
                wait = backoff_delay(attempt, self.backoff_base_seconds, retry_after, _jitter())
                log.info("%s answered %s; retry %d in %.2fs", url, result.status_code, attempt + 1, wait)
            attempt += 1
            await asyncio.sleep(wait)

    async def _follow(self, url: str, conditional: bool, limit: int, html_only: bool) -> Response:
        """One GET and its redirects. An off-site redirect is returned, not followed: same-site only."""
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            headers = conditional_headers(self.validators.get(current)) if conditional else None
            async with self.client.stream("GET", current, headers=headers) as resp:
                result = Response(resp.status_code, current, resp.headers)
                if resp.is_redirect and resp.headers.get("location"):
                    target = normalize_url(resp.headers["location"], current)
                    if target is None:
                        result.error = f"redirect to an unusable location {resp.headers['location']!r}"
                        return result
                    if not same_site(target, self.site_root):
                        result.url = target
                        return result
                    if not self.allowed(target):
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
                    content_type = resp.headers.get("content-type")
                    # The crawler decodes with result.encoding: an HTML page's <meta charset> counts
                    # where httpx would assume UTF-8.
                    result.encoding = (
                        html_encoding(content_type, result.body)
                        if is_html_type(content_type)
                        else resp.encoding or "utf-8"
                    )
                elif resp.status_code in (401, 403):
                    head = bytearray()
                    async for chunk in resp.aiter_bytes():
                        head += chunk
                        if len(head) >= REFUSAL_BODY_BYTES:
                            break  # the rest is not read: the connection is closed
                    result.body = bytes(head[:REFUSAL_BODY_BYTES])
                return result
        return Response(0, current, httpx.Headers(), error=f"more than {_MAX_REDIRECTS} redirects")
