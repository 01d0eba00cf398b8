"""Text splitting for bot replies: cut an answer into messages that fit a platform's size limit.

Answers are plain text (the Q&A service's extractive or generated text). Each platform escapes it for its
markup and draws the sources its own way (``shared/bots/platforms/``); what they share is here.

Splitting happens on the *raw* text and each part is escaped afterwards, with the limit measured on the
escaped form: a part can therefore never end in the middle of an escape (``&amp;`` or ``\\*``), and every
part is a complete, valid piece of markup on its own. Breaks prefer paragraph ends, then line ends, then
spaces, and fall back to a hard cut only for a single "word" longer than the limit.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from shared.text_packing import pack_blocks as pack_blocks  # the platforms pack messages with it


@dataclass(frozen=True)
class SourceRef:
    """One source under an answer: what the Q&A service cited."""

    title: str
    url: str


def split_escaped(text: str, limit: int, escape: Callable[[str], str]) -> list[str]:
    """Split ``text`` into parts whose *escaped* form is at most ``limit`` characters; return them escaped.

    Every character's escaped length is computed once, so the cost is linear in the text length. Blank
    edges of each part are trimmed (a message cannot start or end with the whitespace we split at).
    """
    if limit < 8:
        raise ValueError("limit too small")
    text = text.strip()
    if not text:
        return []
    # cumulative[i] = escaped length of text[:i]
    cumulative = [0]
    for ch in text:
        cumulative.append(cumulative[-1] + len(escape(ch)))
    parts: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        # Largest end with escaped(text[start:end]) <= limit.
        end = bisect.bisect_right(cumulative, cumulative[start] + limit) - 1
        end = n if end >= n else _break_point(text, start, end)
        piece = text[start:end].strip()
        if piece:
            parts.append(escape(piece))
        start = end
        # Skip the whitespace we broke at so the next part does not start with it.
        while start < n and text[start].isspace():
            start += 1
    return parts


def _break_point(text: str, start: int, end: int) -> int:
    """Best place to cut ``text[start:end]``: paragraph, line, sentence, word; else a hard cut."""
    window = text[start:end]
    floor = len(window) // 2  # a break in the first half wastes too much of the message
    for sep in ("\n\n", "\n", ". ", " "):
        at = window.rfind(sep)
        if at > floor or (sep == " " and at > 0):
            # Keep a sentence's full stop with its sentence; whitespace separators are dropped.
            return start + at + (1 if sep == ". " else 0)
    # One unbroken run longer than the limit: a hard cut, moved back so combining marks and emoji
    # joiners stay with the character they modify.
    cut = end
    while cut > start + 1 and _is_combining(text[cut]):
        cut -= 1
    return cut


def _is_combining(ch: str) -> bool:
    return unicodedata.combining(ch) != 0 or ch in "\u200d\ufe0f"


def shorten(text: str, max_chars: int) -> str:
    """``text`` on one line, cut to ``max_chars`` with an ellipsis (source titles)."""
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"
