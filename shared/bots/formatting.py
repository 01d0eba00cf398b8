"""Render answers for Telegram and Discord: escape, then split at the platforms' length limits.

Answers are plain text (the Q&A service's extractive or generated text). Each platform interprets some
characters as markup, so the text is escaped before it is sent:

* Telegram, HTML parse mode: only ``<``, ``>`` and ``&`` are special (``"`` too, inside attributes).
* Discord: markdown; every special ASCII punctuation character is backslash-escaped.

Splitting happens on the *raw* text and each part is escaped afterwards, with the limit measured on the
escaped form: a part can therefore never end in the middle of an escape (``&amp;`` or ``\\*``), and every
part is a complete, valid piece of markup on its own. Breaks prefer paragraph ends, then line ends, then
spaces, and fall back to a hard cut only for a single "word" longer than the limit.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TELEGRAM_LIMIT = 4096
"""Telegram's maximum message text length (sendMessage ``text``)."""

DISCORD_LIMIT = 2000
"""Discord's maximum message ``content`` length."""

_TELEGRAM_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_TELEGRAM_ATTR = {**_TELEGRAM_HTML, '"': "&quot;"}
# Discord markdown: emphasis, code, strike, spoiler, quotes, headings, lists, masked links, escapes.
_DISCORD_SPECIAL = frozenset("\\*_~`|>#-[]()<:@")


@dataclass(frozen=True)
class SourceRef:
    """One source under an answer: what the Q&A service cited."""

    title: str
    url: str


def escape_telegram_html(text: str) -> str:
    """Escape text for Telegram's HTML parse mode (``<``, ``>``, ``&``)."""
    return "".join(_TELEGRAM_HTML.get(ch, ch) for ch in text)


def _escape_telegram_attr(text: str) -> str:
    return "".join(_TELEGRAM_ATTR.get(ch, ch) for ch in text)


def escape_discord_markdown(text: str) -> str:
    """Backslash-escape every character Discord markdown could interpret.

    ``@`` and ``:`` are escaped too so ``@everyone`` and ``<:emoji:id>`` stay literal even if a caller
    forgets ``allowed_mentions``.
    """
    return "".join("\\" + ch if ch in _DISCORD_SPECIAL else ch for ch in text)


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


def pack_blocks(blocks: Sequence[str], limit: int, separator: str = "\n") -> list[str]:
    """Join already-rendered atomic blocks into messages of at most ``limit`` characters.

    A block is never cut (it may hold markup such as ``<a href=...>``); a block longer than the limit
    must have been shortened by the caller.
    """
    messages: list[str] = []
    current = ""
    for block in blocks:
        if len(block) > limit:
            raise ValueError("a block is longer than the limit")
        candidate = block if not current else current + separator + block
        if len(candidate) <= limit:
            current = candidate
        else:
            messages.append(current)
            current = block
    if current:
        messages.append(current)
    return messages


def _shorten(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def render_telegram(answer: str, sources: Sequence[SourceRef] = (), limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Telegram messages (HTML parse mode) for an answer and its numbered source links."""
    messages = split_escaped(answer, limit, escape_telegram_html) or [escape_telegram_html("(no answer)")]
    if not sources:
        return messages
    lines = ["<b>Sources</b>"]
    for number, source in enumerate(sources, start=1):
        title = escape_telegram_html(_shorten(source.title or source.url, 200))
        if source.url.startswith(("https://", "http://")) and len(source.url) <= 2000:
            lines.append(f'{number}. <a href="{_escape_telegram_attr(source.url)}">{title}</a>')
        else:
            lines.append(f"{number}. {title}")
    section = "\n".join(lines)
    if len(messages[-1]) + 2 + len(section) <= limit:
        messages[-1] = messages[-1] + "\n\n" + section
    else:
        messages.extend(pack_blocks(lines, limit))
    return messages


def render_discord(answer: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Discord message contents for an answer (sources live behind the "Sources" button)."""
    return split_escaped(answer, limit, escape_discord_markdown) or ["(no answer)"]


def render_discord_sources(sources: Sequence[SourceRef], limit: int = DISCORD_LIMIT) -> str:
    """One ephemeral message listing the sources as masked links (trimmed to fit one message)."""
    if not sources:
        return "This answer has no sources."
    lines = ["**Sources**"]
    for number, source in enumerate(sources, start=1):
        title = escape_discord_markdown(_shorten(source.title or source.url, 150))
        url = source.url
        if url.startswith(("https://", "http://")) and not any(c in url for c in " <>()"):
            # <url> suppresses the embed preview; masked links are allowed in interaction responses.
            lines.append(f"{number}. [{title}](<{url}>)")
        else:
            lines.append(f"{number}. {title}")
    packed = pack_blocks(lines, limit)
    return packed[0]
