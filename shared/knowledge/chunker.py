"""Chunking: cut an extracted page into embedding-sized pieces along its headings.

Each section becomes one chunk if it fits in ``max_chars``; a longer section is split at paragraph
boundaries, then sentence boundaries, then (for a run-on sentence) word boundaries, and consecutive
pieces share about ``overlap`` characters so a fact straddling a cut is still whole in one of them.

Every chunk's text starts with its heading path (``Page title > Section > Subsection``): MiniLM sees
only the chunk, and "Requirements" alone says little without the page it belongs to. Ids are stable
(url + position + content hash), so re-chunking an unchanged page yields the same ids.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.text_packing import pack_blocks

if TYPE_CHECKING:
    # Types only: the index imports this module, and extraction pulls in trafilatura (0.2 s), which
    # a service that only reads the index never needs.
    from shared.knowledge.extract import ExtractedPage

PATH_SEPARATOR = " > "
# The heading path never takes more than this share of a chunk; the body is what gets retrieved.
_MAX_PREFIX_SHARE = 3
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=\S)")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a page. ``text`` includes the heading-path prefix."""

    id: str
    text: str
    url: str
    title: str
    anchor: str
    source: str
    content_hash: str
    position: int


def content_hash(text: str) -> str:
    """sha256 hex of ``text`` (UTF-8): the identity of a chunk's content."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def page_content_hash(chunks: list[Chunk]) -> str:
    """One hash over a page's chunks, in order: equal exactly when re-chunking produced the same chunks."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.content_hash.encode("ascii"))
        digest.update(b"\n")
    return digest.hexdigest()


def chunk_id(url: str, position: int, text_hash: str) -> str:
    """Stable chunk id: the same page content at the same URL always gets the same ids."""
    return hashlib.sha256(f"{url}\n{position}\n{text_hash}".encode()).hexdigest()


def chunk_page(page: ExtractedPage, source: str, max_chars: int, overlap: int) -> list[Chunk]:
    """Split ``page`` into chunks of at most ``max_chars`` characters (prefix included).

    ``overlap`` is the approximate number of characters repeated from the end of one piece at the
    start of the next when a section has to be split; it must be smaller than ``max_chars``.
    """
    if max_chars < 50:
        raise ValueError("max_chars must be at least 50")
    if not 0 <= overlap < max_chars:
        raise ValueError("overlap must be >= 0 and smaller than max_chars")

    chunks: list[Chunk] = []
    stack: list[tuple[int, str]] = []  # (level, heading) of the enclosing headings
    for section in page.sections:
        if section.level > 0:
            while stack and stack[-1][0] >= section.level:
                stack.pop()
            stack.append((section.level, section.heading))
        if not section.text.strip():
            continue  # a heading with nothing under it lives on in its subsections' paths
        prefix = _prefix(page.title, [heading for _, heading in stack], max_chars)
        budget = max_chars - len(prefix) - (2 if prefix else 0)
        for piece in split_text(section.text, budget, min(overlap, budget // 2)):
            text = f"{prefix}\n\n{piece}" if prefix else piece
            text_hash = content_hash(text)
            position = len(chunks)
            chunks.append(
                Chunk(
                    id=chunk_id(page.url, position, text_hash),
                    text=text,
                    url=page.url,
                    title=page.title,
                    anchor=section.anchor,
                    source=source,
                    content_hash=text_hash,
                    position=position,
                )
            )
    return chunks


def _prefix(title: str, headings: list[str], max_chars: int) -> str:
    parts = [title.strip()] if title.strip() else []
    for heading in headings:
        # The page's <h1> usually repeats its title; saying it twice only dilutes the embedding.
        if heading and (not parts or heading.strip().lower() != parts[-1].lower()):
            parts.append(heading.strip())
    prefix = PATH_SEPARATOR.join(parts)
    limit = max_chars // _MAX_PREFIX_SHARE
    if len(prefix) > limit:
        prefix = prefix[: limit - 1].rstrip() + "…"
    return prefix


def split_text(text: str, budget: int, overlap: int) -> list[str]:
    """Split ``text`` into pieces of at most ``budget`` chars at paragraph > sentence > word boundaries.

    Each piece after the first starts with up to ``overlap`` characters from the end of the previous
    piece, cut at a sentence or word boundary.
    """
    text = text.strip()
    if not text:
        return []
    if len(text) <= budget:
        return [text]

    units = _units(text, budget)
    pieces: list[str] = []
    current = ""
    for separator, unit in units:
        candidate = f"{current}{separator}{unit}" if current else unit
        if len(candidate) <= budget:
            current = candidate
            continue
        pieces.append(current)
        room = budget - len(unit) - 1
        tail = _overlap_tail(current, min(overlap, room)) if room > 0 else ""
        current = f"{tail} {unit}" if tail else unit
    if current:
        pieces.append(current)
    return pieces


def _units(text: str, budget: int) -> list[tuple[str, str]]:
    """(separator, unit) pairs, each unit at most ``budget`` chars; joining them rebuilds the text."""
    units: list[tuple[str, str]] = []
    for p_index, paragraph in enumerate(re.split(r"\n\s*\n", text)):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        separator = "\n\n" if p_index and units else ""
        if len(paragraph) <= budget:
            units.append((separator, paragraph))
            continue
        for s_index, sentence in enumerate(_sentences(paragraph)):
            sep = separator if s_index == 0 else " "
            if len(sentence) <= budget:
                units.append((sep, sentence))
                continue
            for w_index, part in enumerate(_hard_split(sentence, budget)):
                units.append((sep if w_index == 0 else " ", part))
    return units


def _sentences(paragraph: str) -> list[str]:
    # Lines of a list or code block are better boundaries than sentence ends inside them.
    lines = paragraph.split("\n")
    if len(lines) > 1:
        return [line for line in (raw.rstrip() for raw in lines) if line.strip()]
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def _hard_split(sentence: str, budget: int) -> list[str]:
    """Cut a run-on sentence at spaces; a single word longer than ``budget`` is cut mid-word."""
    # A word that does not fit a part alone is cut into pieces that do; a full piece then stands alone.
    pieces = [
        word[start : start + budget] for word in sentence.split() for start in range(0, len(word), budget)
    ]
    return pack_blocks(pieces, budget, " ")


def _overlap_tail(text: str, size: int) -> str:
    """The last ``size``-or-fewer chars of ``text``, starting at a sentence start if that keeps at
    least half of them, else at a word start."""
    if size <= 0 or not text:
        return ""
    if len(text) <= size:
        window = text
    else:
        window = text[-size:]
        cut = re.search(r"\s", window)
        window = window[cut.end() :] if cut else ""
    match = _SENTENCE_END.search(window)
    if match is not None and len(window) - match.end() >= size // 2:
        window = window[match.end() :]
    return window.strip()
