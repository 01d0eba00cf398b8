"""Main-text extraction: turn a fetched HTML page into a title and a list of heading sections.

trafilatura finds the main content and drops navigation, headers, footers and other boilerplate. Its
XML output keeps headings (``<head rend="h2">``) but not their ``id`` attributes, so anchors are
recovered from the original HTML by matching heading text; a heading without an id gets a GitHub-style
slug. Sections are what the chunker cuts along, and anchors let answers link to the exact section.

DocBook XSL pages (the PostgreSQL manual) are prepared first (:mod:`shared.knowledge.docbook`): trafilatura
keeps none of their headings, so they are passed through as marked paragraphs with their section ids;
navigation bars and tables of contents are dropped, and a page that is nothing else is not indexed.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html
import trafilatura

from shared.knowledge.docbook import MARKER, docbook_content, is_docbook

log = logging.getLogger(__name__)

_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HTML_PARSER = lxml.html.HTMLParser(encoding="utf-8")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# Permalink markers doc generators append to headings (MkDocs/Sphinx "¶", Docusaurus a zero-width
# space). "#" is not one of them: "C#" is a heading.
_PERMALINK_TAIL = re.compile(r"[\s\u200b¶§🔗]+$")


@dataclass(frozen=True)
class Section:
    """One heading and the text under it (up to the next heading of any level).

    ``level`` is 1-6 for ``<h1>``..``<h6>``; the text before the first heading is a section with an
    empty heading, empty anchor and level 0.
    """

    heading: str
    anchor: str
    level: int
    text: str


@dataclass(frozen=True)
class ExtractedPage:
    """The main content of one page. ``canonical_url`` is absolute, from ``<link rel=canonical>``."""

    url: str
    title: str
    sections: list[Section]
    canonical_url: str | None


def extract_page(html: str, url: str) -> ExtractedPage | None:
    """Extract the title, headings and main text of ``html`` fetched from ``url``.

    Returns None when the page has no main text (empty, boilerplate-only or unparseable).
    """
    if not html or not html.strip():
        return None
    try:
        # Bytes, because lxml refuses a str that carries an XML encoding declaration (XHTML pages).
        source_tree = lxml.html.fromstring(html.encode("utf-8"), parser=_HTML_PARSER)
    except (lxml.etree.ParserError, ValueError):
        return None
    docbook_title = ""
    if is_docbook(source_tree):
        docbook = docbook_content(source_tree)
        if docbook is None:
            return None  # a table of contents or the book's index: it answers nothing itself
        html, docbook_title = docbook
    try:
        xml = _trafilatura_xml(html, url)
    except Exception:  # one malformed page must not stop a crawl; the caller logs the None
        log.warning("trafilatura failed on %s", url, exc_info=True)
        return None
    if not xml:
        return None
    try:
        doc = lxml.etree.fromstring(xml.encode("utf-8"))
    except lxml.etree.XMLSyntaxError:
        return None
    main = doc.find("main")
    if main is None:
        return None

    raw_sections = _sections_from_xml(main)
    if not any(text for _, _, text, _ in raw_sections):
        return None
    sections = _assign_anchors(raw_sections, _heading_ids(source_tree))
    title = docbook_title or _title(doc, source_tree, sections)
    return ExtractedPage(url=url, title=title, sections=sections, canonical_url=_canonical(source_tree, url))


def _trafilatura_xml(html: str, url: str) -> str | None:
    return trafilatura.extract(
        html,
        url=url,
        output_format="xml",
        include_formatting=True,
        include_links=False,
        include_images=False,
        include_comments=False,
        include_tables=True,
        favor_recall=True,
        with_metadata=True,
        deduplicate=False,
    )


def slugify(text: str) -> str:
    """A URL fragment for a heading, like GitHub and most doc generators make: ``"A & B!"`` → ``"a--b"``."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _sections_from_xml(main: lxml.etree._Element) -> list[tuple[str, int, str, str]]:
    """(heading, level, text, anchor) per heading in trafilatura's XML; the text before any heading
    comes first. ``anchor`` is "" unless the heading came as a DocBook marker paragraph
    (:data:`shared.knowledge.docbook.MARKER`), which names it."""
    sections: list[tuple[str, int, list[str], str]] = [("", 0, [], "")]
    for element in _blocks(main):
        if element.tag == "head":
            heading = clean_heading(_inline_text(element))
            if not heading:
                continue
            sections.append((heading, _heading_level(element), [], ""))
            continue
        block = _block_text(element)
        marker = MARKER.match(block)
        if marker is not None:
            heading = clean_heading(marker.group(3))
            if heading:
                sections.append((heading, int(marker.group(1)), [], marker.group(2)))
            block = block[marker.end() :].strip()  # text trafilatura joined to the heading's block
        if block:
            sections[-1][2].append(block)
    result = [
        (heading, level, "\n\n".join(blocks).strip(), anchor) for heading, level, blocks, anchor in sections
    ]
    if not result[0][2]:
        result = result[1:]  # nothing before the first heading
    return result


def _blocks(container: lxml.etree._Element) -> Iterator[lxml.etree._Element]:
    """The block elements of ``container`` in order, looking inside the ``<div>`` wrappers trafilatura
    sometimes leaves around a short page's content (a heading marker would be lost inside one)."""
    for element in container:
        if element.tag == "div":
            yield from _blocks(element)
        else:
            yield element


def _heading_level(element: lxml.etree._Element) -> int:
    rend = element.get("rend") or ""
    match = re.fullmatch(r"h([1-6])", rend)
    # trafilatura leaves rend off headings it synthesised; treat them as ordinary subsections.
    return int(match.group(1)) if match else 2


def _block_text(element: lxml.etree._Element) -> str:
    """Plain text of one block element, keeping list items and table rows on their own lines."""
    tag = element.tag
    if tag == "code":
        # Code keeps its whitespace: indentation is meaning there.
        return "".join(element.itertext()).strip("\n")
    if tag == "list":
        lines = []
        for item in element.iter("item"):
            text = _inline_text(item, skip_nested_lists=True)
            if text:
                lines.append(f"- {text}")
        return "\n".join(lines)
    if tag == "table":
        rows = []
        for row in element.iter("row"):
            cells = [_inline_text(cell) for cell in row.iter("cell")]
            if any(cells):
                rows.append(" | ".join(cells))
        return "\n".join(rows)
    return _inline_text(element)


def _inline_text(element: lxml.etree._Element, skip_nested_lists: bool = False) -> str:
    parts: list[str] = []

    def walk(node: lxml.etree._Element) -> None:
        if node.tag == "lb":
            parts.append("\n")
        elif skip_nested_lists and node is not element and node.tag == "list":
            # Nested items are visited on their own by element.iter("item").
            if node.tail:
                parts.append(node.tail)
            return
        elif node.text:
            parts.append(node.text)
        for child in node:
            walk(child)
            if child.tag == "lb" and child.tail:
                parts.append(child.tail)
        if node is not element and node.tag != "lb" and node.tail:
            parts.append(node.tail)

    walk(element)
    text = _SPACES.sub(" ", "".join(parts))
    lines = [line.strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean_heading(text: str) -> str:
    """Heading text without a trailing permalink marker: ``"Requirements¶"`` → ``"Requirements"``."""
    return _PERMALINK_TAIL.sub("", text.replace("\u200b", "")).strip()


def _normalise(text: str) -> str:
    return " ".join(clean_heading(text).split()).lower()


def _heading_ids(tree: lxml.html.HtmlElement) -> dict[str, list[str]]:
    """Heading text → the ids those headings carry in the original HTML, in document order."""
    ids: dict[str, list[str]] = defaultdict(list)
    for heading in tree.iter(*_HEADING_TAGS):
        anchor = heading.get("id")
        if not anchor:
            # Many doc generators put the id on an inner <a name=...> or <span id=...> instead.
            for inner in heading.iterdescendants():
                anchor = inner.get("id") or (inner.get("name") if inner.tag == "a" else None)
                if anchor:
                    break
        if not anchor:
            parent = heading.getparent()
            # <section id="x"><h2>…</h2> is the other common pattern (Sphinx, MkDocs).
            if parent is not None and parent.tag == "section" and parent.get("id"):
                first = next((c for c in parent if isinstance(c.tag, str)), None)
                if first is heading:
                    anchor = parent.get("id")
        if anchor:
            ids[_normalise(heading.text_content())].append(anchor.strip())
    return ids


def _assign_anchors(
    raw_sections: list[tuple[str, int, str, str]], heading_ids: dict[str, list[str]]
) -> list[Section]:
    used: dict[str, int] = {}
    sections = []
    for heading, level, text, named in raw_sections:
        if not heading:
            sections.append(Section(heading="", anchor="", level=0, text=text))
            continue
        candidates = heading_ids.get(_normalise(heading))
        if named:
            anchor = named
        elif candidates:
            anchor = candidates.pop(0)
        else:
            base = slugify(heading)
            count = used.get(base, 0)
            anchor = base if count == 0 else f"{base}-{count}"
        used[anchor] = used.get(anchor, 0) + 1
        sections.append(Section(heading=heading, anchor=anchor, level=level, text=text))
    return sections


def _title(doc: lxml.etree._Element, tree: lxml.html.HtmlElement, sections: list[Section]) -> str:
    title = (doc.get("title") or "").strip()
    if not title:
        found = tree.find(".//title")
        if found is not None and found.text_content():
            title = " ".join(found.text_content().split())
    if not title:
        title = next((s.heading for s in sections if s.heading), "")
    return title


def _canonical(tree: lxml.html.HtmlElement, url: str) -> str | None:
    for link in tree.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        href: str = (link.get("href") or "").strip()
        if "canonical" in rel and href:
            absolute = urljoin(url, href)
            if urlsplit(absolute).scheme in ("http", "https"):
                return absolute
    return None
