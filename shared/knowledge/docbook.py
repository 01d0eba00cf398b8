"""DocBook XSL pages (the PostgreSQL manual and many other books) prepared for main-text extraction.

trafilatura keeps none of a DocBook page's headings (see :data:`MARKER`), so :func:`docbook_content`
rewrites the page first: navigation bars and tables of contents dropped, the source's line wrapping
folded, each heading turned into a marked paragraph that carries its level and its section's id, and
a variable list's terms with ids turned into headings of their own. A page that is nothing but links
once its navigation is gone is not indexed. :mod:`shared.knowledge.extract` calls it for pages
:func:`is_docbook` recognises and reads the marked paragraphs back as headings.
"""

from __future__ import annotations

import copy
import re

import lxml.etree
import lxml.html

_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# DocBook XSL output (the PostgreSQL manual and many other books) loses every heading in trafilatura:
# on postgresql-doc-15 with trafilatura 2.3.1 not one <h2>/<h3> came out as a <head>, whether wrapped
# in div.titlepage or plain under div.refsect1, while paragraphs always do. So a DocBook page's
# headings are handed to trafilatura as paragraphs that carry this marker with their level and id,
# and extract._sections_from_xml reads them back as headings. The brackets (U+27E6/7) occur in no prose;
# trafilatura strips invisible format characters, so the marker has to be visible ones.
MARKER = re.compile(r"\u27e6h([1-6])#([^\u27e7\s]*)\u27e7 (.+)")
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


def _has_class(element: lxml.etree._Element, names: tuple[str, ...]) -> bool:
    return any(name in names for name in (element.get("class") or "").split())


def is_docbook(tree: lxml.html.HtmlElement) -> bool:
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


def docbook_content(tree: lxml.html.HtmlElement) -> tuple[str, str] | None:
    """The page as HTML trafilatura keeps the headings of, and the page's title; None for a page that
    is mostly links once its navigation is gone.

    Navigation bars and tables of contents are dropped; the source's line wrapping (DocBook wraps at
    about 70 columns) is folded to spaces outside ``<pre>`` so a sentence is one line; each heading
    becomes a :data:`MARKER` paragraph with the id of the section it opens (DocBook puts the id on
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
        marker.text = f"\u27e6h{here}#{anchor}\u27e7 {words}"  # read by MARKER
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
