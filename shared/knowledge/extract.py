"""Main-text extraction: turn a fetched HTML page into a title and a list of heading sections.

trafilatura finds the main content and drops navigation, headers, footers and other boilerplate. Its
XML output keeps headings (``<head rend="h2">``) but not their ``id`` attributes, so anchors are
recovered from the original HTML by matching heading text; a heading without an id gets a GitHub-style
slug. Sections are what the chunker cuts along, and anchors let answers link to the exact section.

DocBook XSL pages (the PostgreSQL manual) are prepared first (:func:`_docbook_content`): trafilatura
keeps none of their headings, so they are passed through as marked paragraphs with their section ids;
navigation bars and tables of contents are dropped, and a page that is nothing else is not indexed.
"""

from __future__ import annotations

import copy
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

log = logging.getLogger(__name__)

_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HTML_PARSER = lxml.html.HTMLParser(encoding="utf-8")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# Permalink markers doc generators append to headings (MkDocs/Sphinx "¶", Docusaurus a zero-width
# space). "#" is not one of them: "C#" is a heading.
_PERMALINK_TAIL = re.compile(r"[\s\u200b¶§🔗]+$")
# DocBook XSL output (the PostgreSQL manual and many other books) loses every heading in trafilatura:
# on postgresql-doc-15 with trafilatura 2.3.1 not one <h2>/<h3> came out as a <head>, whether wrapped
# in div.titlepage or plain under div.refsect1, while paragraphs always do. So a DocBook page's
# headings are handed to trafilatura as paragraphs that carry this marker with their level and id,
# and _sections_from_xml reads them back as headings. The brackets (U+27E6/7) occur in no prose;
# trafilatura strips invisible format characters, so the marker has to be visible ones.
_MARKER = re.compile(r"\u27e6h([1-6])#([^\u27e7\s]*)\u27e7 (.+)")
# DocBook's navigation bars, tables of contents and back-of-book index: links to other pages, never
# an answer.
_DOCBOOK_NAVIGATION = (
    "index",
    "navheader",
    "navfooter",
    "toc",
    "list-of-tables",
    "list-of-figures",
    "list-of-examples",
)
# DocBook's boxes whose heading is a label ("Note"), not a section.
_ADMONITIONS = ("note", "warning", "tip", "caution", "important")
# A page whose text, once its navigation is gone, is empty or nearly all link text is left out of
# the index: measured on postgresql-doc-15, chapter pages that were only a table of contents
# outranked the sections under them because their titles name the topic. 0.8, because a glossary of
# linked terms with their definitions (acronyms.html) is 0.74 links and answers questions.
MAX_LINK_SHARE = 0.8
# "Chapter 71. ", "71.1.1. ", "Part VII. ", "Appendix F. ", "F.3. ": DocBook's section labels, noise
# in a heading path (they make a heading look less about the question's words).
_SECTION_LABEL = re.compile(r"^(?:(?:Chapter|Part|Appendix)\s+)?(?:\d+|[A-Z]|[IVXLC]+)(?:\.\d+)*\.\s+")


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
    if _is_docbook(source_tree):
        docbook = _docbook_content(source_tree)
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
    comes first. ``anchor`` is "" unless the heading came as a :data:`_MARKER` paragraph, which names it."""
    sections: list[tuple[str, int, list[str], str]] = [("", 0, [], "")]
    for element in _blocks(main):
        if element.tag == "head":
            heading = clean_heading(_inline_text(element))
            if not heading:
                continue
            sections.append((heading, _heading_level(element), [], ""))
            continue
        block = _block_text(element)
        marker = _MARKER.match(block)
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


def _has_class(element: lxml.etree._Element, names: tuple[str, ...]) -> bool:
    return any(name in names for name in (element.get("class") or "").split())


def _is_docbook(tree: lxml.html.HtmlElement) -> bool:
    """Whether the page is DocBook XSL output: its generator says so, or it has DocBook's title blocks."""
    for meta in tree.iter("meta"):
        if (meta.get("name") or "").lower() == "generator" and (meta.get("content") or "").startswith(
            "DocBook"
        ):
            return True
    return any(_has_class(div, ("titlepage",)) for div in tree.iter("div"))


def strip_section_label(text: str) -> str:
    """A DocBook heading without its number: ``"71.1.1. Index Maintenance"`` → ``"Index Maintenance"``."""
    stripped = _SECTION_LABEL.sub("", text, count=1)
    return stripped or text


def _docbook_content(tree: lxml.html.HtmlElement) -> tuple[str, str] | None:
    """The page as HTML trafilatura keeps the headings of, and the page's title; None for a page that
    is mostly links once its navigation is gone.

    Navigation bars and tables of contents are dropped; the source's line wrapping (DocBook wraps at
    about 70 columns) is folded to spaces outside ``<pre>`` so a sentence is one line; each heading
    becomes a :data:`_MARKER` paragraph with the id of the section it opens (DocBook puts the id on
    the section's ``<div>``, not on the heading); a variable list's terms with an id (a configuration
    parameter, a libpq function, a glossary entry) become headings one level below the enclosing one,
    so each gets its own chunks and anchor. A section page's title gets its chapter's name in front
    ("BRIN Indexes: Introduction" for "71.1. Introduction"): the bare title says nothing of the topic.
    """
    tree = copy.deepcopy(tree)
    body = tree.find("body")
    if body is None:
        return None
    title = _docbook_title(tree)  # before the navigation bar that names the chapter is dropped
    for element in list(body.iter("div", "table")):
        if _has_class(element, _DOCBOOK_NAVIGATION) and element.getparent() is not None:
            element.drop_tree()
    text = " ".join(body.text_content().split())
    link_text = sum(len(" ".join(a.text_content().split())) for a in body.iter("a"))
    if not text or link_text / len(text) > MAX_LINK_SHARE:
        return None
    _fold_source_wrapping(body)
    _terms_to_headings(body)
    level = 1
    for heading in list(body.iter(*_HEADING_TAGS)):
        words = " ".join(heading.text_content().split())
        parent = heading.getparent()
        if parent is not None and _has_class(parent, _ADMONITIONS):
            # "Note", "Warning": a label of the box, not a section; it must not end the section.
            label = lxml.html.Element("p")
            label.text, label.tail = words, heading.tail
            parent.replace(heading, label)
            continue
        named_level = heading.get("data-term-level")
        if named_level is None:
            level = int(heading.tag[1])
            here = level
        else:
            here = min(6, level + 1)
        anchor, replaced = _docbook_heading_target(heading)
        if not words:
            continue
        if named_level is None:
            words = title if title and _same_heading(words, tree) else strip_section_label(words)
        marker = lxml.html.Element("p")
        marker.text = f"\u27e6h{here}#{anchor}\u27e7 {words}"
        marker.tail = replaced.tail
        container = replaced.getparent()
        if container is not None:
            container.replace(replaced, marker)
    return lxml.html.tostring(tree, encoding="unicode"), title


def _fold_source_wrapping(body: lxml.html.HtmlElement) -> None:
    """Whitespace runs in text outside ``<pre>`` become one space, as a browser shows them."""
    # A set of the elements themselves: lxml keeps a proxy alive (and its identity) while referenced.
    preformatted = {node for pre in body.iter("pre") for node in pre.iter()}
    for node in body.iter():
        if not isinstance(node.tag, str):
            continue
        if node not in preformatted and node.text:
            node.text = re.sub(r"\s+", " ", node.text)
        parent = node.getparent()
        if node.tail and (parent is None or parent not in preformatted):
            node.tail = re.sub(r"\s+", " ", node.tail)


def _docbook_title(tree: lxml.html.HtmlElement) -> str:
    found = tree.find(".//title")
    title = " ".join(found.text_content().split()) if found is not None else ""
    if not title or _SECTION_LABEL.match(title) is None or title.startswith(("Chapter", "Part", "Appendix")):
        return title
    for link in tree.iter("a"):
        if link.get("accesskey") == "u":
            up = strip_section_label(" ".join((link.get("title") or "").split()))
            if up:
                return f"{up}: {strip_section_label(title)}"
    return title


def _same_heading(words: str, tree: lxml.html.HtmlElement) -> bool:
    found = tree.find(".//title")
    return found is not None and words == " ".join(found.text_content().split())


def _terms_to_headings(body: lxml.html.HtmlElement) -> None:
    """Turn each ``<dl>`` whose terms carry ids into headings (``data-term-level`` set) and blocks."""
    for dl in list(body.iter("dl")):
        if not any(child.tag == "dt" and child.get("id") for child in dl):
            continue
        replacement = lxml.html.Element("div")
        for child in dl:
            if child.tag == "dt" and child.get("id"):
                heading = lxml.html.Element("h6", {"id": child.get("id") or "", "data-term-level": "1"})
                heading.text = child.text_content()
                replacement.append(heading)
            elif child.tag == "dt":
                term = lxml.html.Element("p")
                term.text = child.text_content()
                replacement.append(term)
            elif child.tag == "dd":
                block = lxml.html.Element("div")
                block.text = child.text
                for grandchild in list(child):
                    block.append(grandchild)
                replacement.append(block)
        replacement.tail = dl.tail
        parent = dl.getparent()
        if parent is not None:
            parent.replace(dl, replacement)


def _docbook_heading_target(heading: lxml.html.HtmlElement) -> tuple[str, lxml.html.HtmlElement]:
    """The id a DocBook heading's section is linked by, and the element the marker replaces: the
    whole ``div.titlepage`` around the heading when there is one (its parent holds the id), else the
    heading (the id is its own, or its parent's when it opens the parent: ``div.refsect1 > h2``)."""
    if heading.get("id"):
        return heading.get("id") or "", heading
    for ancestor in heading.iterancestors():
        if _has_class(ancestor, ("titlepage",)):
            parent = ancestor.getparent()
            return (parent.get("id") or "" if parent is not None else ""), ancestor
    parent = heading.getparent()
    if parent is not None and parent.get("id"):
        first = next((child for child in parent if isinstance(child.tag, str)), None)
        if first is heading:
            return parent.get("id") or "", heading
    return "", heading


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
