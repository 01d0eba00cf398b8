"""Discovery: the URLs a source lists before any link is followed.

A crawl starts by reading robots.txt (its rules, and the sitemaps it names), then, by the source's kind,
its sitemaps (through sitemap indexes) or its RSS/Atom feed (or the feed its HTML page advertises). When
this cannot even start, the crawl cannot tell a removed page from one it could not see, so the failure
is site-wide (:class:`SiteWideFailure`) and the caller removes nothing.
"""

from __future__ import annotations

import logging
import urllib.robotparser
from collections.abc import Callable

from shared.knowledge.fetching import Fetcher, is_html_type
from shared.knowledge.links import parse_links
from shared.knowledge.robots import MAX_ROBOTS_BYTES, robots_rules, robots_unreachable, robots_url
from shared.knowledge.sitemaps import (
    MAX_FEED_BYTES,
    MAX_SITEMAP_DEPTH,
    DocumentTooLarge,
    FeedError,
    parse_feed,
    parse_sitemap,
)
from shared.knowledge.urls import normalize_url, same_site, site_of

log = logging.getLogger(__name__)


class SiteWideFailure(Exception):
    """Discovery could not even start (robots.txt 5xx, sitemap or feed unreachable)."""


async def load_robots(fetcher: Fetcher, site: str) -> urllib.robotparser.RobotFileParser:
    """Read ``site``'s robots.txt. 5xx/unreachable → :class:`SiteWideFailure`."""
    resp = await fetcher.get(robots_url(site), limit=MAX_ROBOTS_BYTES)
    if robots_unreachable(resp.status_code):
        raise SiteWideFailure(f"robots.txt unavailable ({resp.error or resp.status_code})")
    text = None
    if resp.status_code == 200 and not resp.too_large:
        text = resp.body.decode(resp.encoding, errors="replace")
    return robots_rules(resp.status_code, text)


async def sitemap_pages(
    fetcher: Fetcher,
    start: str,
    robots_sitemaps: list[str],
    max_bytes: int,
    source_name: str,
    stop: Callable[[], bool] | None = None,
    gone: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """``(page_urls, problems)`` from the sitemaps of the site of ``start``.

    The roots: ``start`` itself when it names a sitemap, else the sitemaps robots.txt lists, else
    ``/sitemap.xml``. A sitemap robots.txt lists may be on another host (a CDN, a storage bucket): the
    Sitemaps protocol allows that when the site's robots.txt references it, since only the site's owner
    can write it. Sitemap indexes are followed :data:`~shared.knowledge.sitemaps.MAX_SITEMAP_DEPTH`
    levels deep, on the site and on the hosts of the sitemaps robots.txt lists only; every download is
    capped at ``max_bytes``. The page URLs are returned as listed: the crawler keeps only those on the
    site (``same_site``).

    ``problems`` names what was skipped: a child sitemap on another host, one that cannot be read (5xx,
    a timeout, over ``max_bytes``) or parsed, or "no page listed". The crawl goes on without them but
    must be reported incomplete, since they may list pages still indexed. A child sitemap answering
    404/410 lists nothing (it was removed, as pages are; an index naming it for ever would otherwise
    leave the source incomplete on every run). Only when no root sitemap can be read is it a
    :class:`SiteWideFailure`, whose message names every problem met on the way. So is ``stop()``
    turning true (the run's deadline) before the next sitemap is fetched: each may take minutes.

    Every sitemap (root or child) that answered 404/410 is appended to ``gone``: the pages it listed
    are not known, so the crawler re-checks the source's indexed pages (a sitemap 404 for one run, a
    deploy or a CDN hiccup, must not make every page it listed look removed).
    """
    problems: list[str] = []

    def problem(text: str) -> None:
        log.warning("source %s: %s", source_name, text)
        problems.append(text)

    if start.endswith((".xml", ".xml.gz")):
        roots = [start]
    else:
        roots = [u for u in (normalize_url(s) for s in robots_sitemaps) if u]
        roots = list(dict.fromkeys(roots)) or [site_of(start) + "/sitemap.xml"]
    # Hosts robots.txt vouches for: an index there may list its children there.
    vouched = [start, *roots]
    pages: list[str] = []
    seen: set[str] = set()
    pending, depth = roots, 0
    root_failures: list[str] = []
    roots_read = 0
    while pending and depth <= MAX_SITEMAP_DEPTH:
        children: list[str] = []
        for sitemap in pending:
            if sitemap in seen:
                continue
            if depth and not any(same_site(sitemap, host) for host in vouched):
                problem(f"sitemap index lists {sitemap}, which is not on {site_of(start)}; not read")
                continue
            if stop is not None and stop():
                raise SiteWideFailure(
                    "; ".join(["stopped at the run's deadline while reading its sitemaps", *problems])
                )
            seen.add(sitemap)
            resp = await fetcher.get(sitemap, limit=max_bytes)
            trouble = ""
            if resp.status_code in (404, 410) and not resp.error:
                if gone is not None:
                    gone.append(sitemap)
                if depth:
                    log.info(
                        "source %s: sitemap %s is gone (%d); it lists nothing",
                        source_name,
                        sitemap,
                        resp.status_code,
                    )
                    continue
                trouble = f"sitemap {sitemap} unavailable ({resp.status_code})"
            elif resp.status_code != 200 or resp.too_large:
                trouble = f"sitemap {sitemap} unavailable ({resp.error or resp.status_code})"
            else:
                try:
                    urls, subs = parse_sitemap(resp.body, max_bytes)
                except DocumentTooLarge as exc:
                    # A gzip bomb (or a sitemap over the protocol's limit).
                    trouble = f"sitemap {sitemap} skipped: {exc}"
                except FeedError as exc:
                    trouble = f"sitemap {sitemap}: {exc}"
            if trouble:
                if depth == 0:
                    root_failures.append(trouble)
                problem(trouble)
                continue
            if depth == 0:
                roots_read += 1
            # Relative <loc>s are out of spec but common on hand-written sitemaps: resolve them.
            pages.extend(u for u in (normalize_url(s, sitemap) for s in urls) if u)
            children.extend(u for u in (normalize_url(s, sitemap) for s in subs) if u)
        if depth == 0:
            if not roots_read:
                # Not one root could be read: nothing says which pages the site still has.
                raise SiteWideFailure("; ".join(problems))
            # A root that is gone while another was read lists nothing, as a gone child does.
            for failure in root_failures:
                if failure.endswith(("(404)", "(410)")):
                    problems.remove(failure)
        pending = children
        depth += 1
    if not pages:
        problem("its sitemaps list no page")
    return pages, problems


async def feed_pages(fetcher: Fetcher, start: str, source_name: str) -> list[str]:
    """Entry URLs of the feed at ``start``, or of the on-site feed the HTML page at ``start`` advertises.

    No feed, an unreachable or unreadable one → :class:`SiteWideFailure`.
    """
    site = site_of(start)
    resp = await fetcher.get(start, limit=MAX_FEED_BYTES)
    if resp.status_code != 200 or resp.too_large:
        raise SiteWideFailure(f"feed {start} unavailable ({resp.error or resp.status_code})")
    feed_url = start
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
            if same_site(link, start):
                on_site.append(link)
            else:
                log.warning(
                    "source %s: ignoring feed link %s on %s: not on %s", source_name, link, resp.url, site
                )
        if not on_site:
            off_site = f" (off-site feed links ignored: {', '.join(found)})" if found else ""
            raise SiteWideFailure(
                f"{start} is HTML and advertises no RSS/Atom feed on its own site{off_site}"
            )
        feed_url = on_site[0]
        resp = await fetcher.get(feed_url, limit=MAX_FEED_BYTES)
        if resp.status_code != 200 or resp.too_large:
            raise SiteWideFailure(f"feed {feed_url} unavailable ({resp.error or resp.status_code})")
        body = resp.body
    try:
        links = parse_feed(body, MAX_FEED_BYTES)
    except FeedError as exc:
        raise SiteWideFailure(f"feed {feed_url}: {exc}") from None
    return [u for u in (normalize_url(link, feed_url) for link in links) if u]
