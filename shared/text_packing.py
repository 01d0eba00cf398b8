"""Greedy packing of text pieces into parts of at most a given length.

Two places cut text to a length: a bot's answer into chat messages (:mod:`shared.bots.formatting`,
whose pieces are rendered blocks that must not be cut) and the chunker's run-on sentences into words
(:mod:`shared.knowledge.chunker`). Both fill each part with as many whole pieces, in order, as fit, and
start the next part with the piece that did not: one function, so the two cannot disagree on an edge
(a piece that fills a part exactly, the separator's length).
"""

from __future__ import annotations

from collections.abc import Iterable


def pack_blocks(blocks: Iterable[str], limit: int, separator: str = "\n") -> list[str]:
    """Join atomic ``blocks`` with ``separator`` into parts of at most ``limit`` characters, in order.

    A block is never cut (it may hold markup such as ``<a href=...>``): one longer than the limit is a
    ``ValueError``, and the caller must have shortened it.
    """
    parts: list[str] = []
    current = ""
    for block in blocks:
        if len(block) > limit:
            raise ValueError("a block is longer than the limit")
        candidate = block if not current else current + separator + block
        if len(candidate) <= limit:
            current = candidate
        else:
            parts.append(current)
            current = block
    if current:
        parts.append(current)
    return parts
