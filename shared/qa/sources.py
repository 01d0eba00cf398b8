"""How a cited passage is shown to a reader: its title ("Page > Section") and its link.

Every answer surface (the web chat, the bots, ``askbase ask``, the Gemini prompt) names a source the same
way, so one module builds both from a retrieved passage: the chunker starts each chunk with its heading
path, and doc generators leave permalink marks and site names in headings and titles that a reader
should not see.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.knowledge.retrieval import heading_path

if TYPE_CHECKING:
    from shared.knowledge.retrieval import Passage

# Permalink marks doc generators append to headings ("¶" Sphinx/MkDocs, zero-width space Docusaurus).
_PERMALINK = re.compile(r"[\s\u200b¶§🔗]+$")
# " · Site name", " | Site", " — Project 15 documentation": a site suffix on a page's <title>.
_SITE_SUFFIX = re.compile(r"\s+(?:[·|\u2014\u2013]|-{1,2})\s+[^·|\u2014\u2013]{1,80}$")
SECTION_SEPARATOR = " > "


def split_heading_path(passage: Passage) -> tuple[str, str]:
    """``(heading path, body)`` of a chunk: the chunker starts each chunk with "Title > Heading\n\n"."""
    head = heading_path(passage.text, passage.title)
    if head:
        return head, passage.text.split("\n\n", 1)[1]
    return (passage.title or passage.url), passage.text


def clean_title(text: str) -> str:
    """A heading or page title without a trailing permalink mark: ``"Requirements¶"`` → ``"Requirements"``."""
    return _PERMALINK.sub("", text.replace("\u200b", "")).strip()


def source_title(passage: Passage) -> str:
    """The title a reader sees for a cited passage: "Page > Section", without permalink marks, without the
    site name on the page title, and without the page title repeated as its first heading."""
    heading, _ = split_heading_path(passage)
    parts = [clean_title(part) for part in heading.split(SECTION_SEPARATOR)]
    if parts and len(parts[0]) > 3:
        trimmed = _SITE_SUFFIX.sub("", parts[0]).strip()
        parts[0] = trimmed or parts[0]
    shown: list[str] = []
    for part in parts:
        if part and (not shown or part.lower() != shown[-1].lower()):
            shown.append(part)
    return SECTION_SEPARATOR.join(shown) or passage.url


def source_link(passage: Passage) -> str:
    """The URL a reader should open for ``passage``: the page, at the section's anchor when known."""
    return passage.url + (f"#{passage.anchor}" if passage.anchor else "")
