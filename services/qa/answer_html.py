"""Chat text → safe HTML: answers (quotes become blockquotes, ``[n]`` markers link to the cited
source), a source's page and section, and the search match in a history snippet.

Everything is escaped first; only the markup built here is trusted. ``static/chat.js`` renders what
arrives over the API the same way, so a reload looks exactly like the live page.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

_CITATION = re.compile(r"\[(\d{1,2})\]")


def _inline(text: str, sources: list[dict[str, Any]]) -> str:
    out = []
    last = 0
    for match in _CITATION.finditer(text):
        out.append(str(escape(text[last : match.start()])))
        n = int(match.group(1))
        if 1 <= n <= len(sources):
            url = str(sources[n - 1].get("url", ""))
            title = str(sources[n - 1].get("title", ""))
            out.append(
                f'<a class="cite" href="{escape(url)}" target="_blank" rel="noopener noreferrer" '
                f'title="{escape(title)}">[{n}]</a>'
            )
        else:
            out.append(str(escape(match.group(0))))
        last = match.end()
    out.append(str(escape(text[last:])))
    return "".join(out)


def answer_html(text: str, sources: list[dict[str, Any]] | None = None) -> Markup:
    """Render an answer: paragraphs, ``> `` quote blocks and citation links."""
    sources = sources or []
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.split("\n")
        head = [line for line in lines if not line.startswith(">")]
        quote = [line[1:].strip() for line in lines if line.startswith(">")]
        if head:
            blocks.append("<p>" + "<br>".join(_inline(line, sources) for line in head) + "</p>")
        if quote:
            blocks.append(
                "<blockquote><p>"
                + "<br>".join(_inline(line, sources) for line in quote)
                + "</p></blockquote>"
            )
    return Markup("".join(blocks))  # noqa: S704 - every fragment above was escaped


SECTION_SEPARATOR = " > "  # how the API's source titles join page title and headings
SECTION_JOIN = " \u203a "  # a single right angle quote: how the sources list joins nested headings


def source_heading(source: dict[str, Any]) -> tuple[str, str]:
    """``(page, section)`` of a cited source: its ``title`` is the heading path "Page > Section";
    section is "" for a passage directly under the page title."""
    parts = [p.strip() for p in str(source.get("title") or source.get("url") or "").split(SECTION_SEPARATOR)]
    parts = [p for p in parts if p]
    if not parts:
        return "", ""
    return parts[0], SECTION_JOIN.join(parts[1:])


def highlight(text: str | None, query: str) -> Markup:
    """``text`` escaped, with every case-insensitive occurrence of ``query`` wrapped in ``<mark>``."""
    if not text:
        return Markup("")
    needle = " ".join(query.split())
    if not needle:
        return escape(text)
    out, last = [], 0
    for match in re.finditer(re.escape(needle), text, re.IGNORECASE):
        out.append(str(escape(text[last : match.start()])))
        out.append(f"<mark>{escape(match.group(0))}</mark>")
        last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))  # noqa: S704 - every fragment above was escaped
