"""Sitemaps and RSS/Atom feeds: the XML documents that list a source's pages, read defensively.

Both come from servers we do not control, so both are read the same guarded way: gzipped data is
unpacked under a cap (a gzip bomb stops there) and a document with a DTD is refused (no entity
expansion). Parsing is pure; fetching them is the crawler's job.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zlib

# How many levels of sitemap index below the first document are followed; deeper ones are ignored.
MAX_SITEMAP_DEPTH = 3
# sitemaps.org: a sitemap may be at most 50 MiB *uncompressed*. This bounds both what a sitemap download
# may read and what a gzipped one (.xml.gz) may unpack to, so a gzip bomb stops at the cap. It is not
# crawl_max_page_bytes (2 MB by default), which a legitimate 50,000-URL sitemap exceeds.
MAX_SITEMAP_BYTES = 52_428_800
# Feeds are fetched (and, if gzipped, unpacked) up to this many bytes.
MAX_FEED_BYTES = 20_000_000


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
