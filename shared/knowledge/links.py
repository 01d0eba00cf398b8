"""What an HTML page tells the crawler: the links to follow, its canonical URL, the feeds it advertises.

Page identity is the canonical URL: the ``<link rel="canonical">`` of the page when it points inside the
site, else the URL after redirects. Two URLs that resolve to the same identity are fetched but reported
once; duplicate *content* under distinct identities is caught by the caller from the extracted text.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from html.parser import HTMLParser

from shared.knowledge.urls import normalize_url, same_site


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
