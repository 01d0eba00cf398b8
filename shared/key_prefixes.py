"""Firestore queries for the documents whose string field starts with a prefix.

Firestore has no "starts with" filter, but it orders strings by their UTF-8 bytes, so every string
starting with ``prefix`` sorts in ``[prefix, prefix + U+10FFFF)`` (U+10FFFF: the largest code point,
which no key askbase writes holds). Two range filters on one field: Firestore's automatic single-field
index serves them, no composite index needed. Used where a chat's key names its forum topics too
(``<chat>/<topic>``: :func:`shared.bots.platform_users.topic_chat`).
"""

from __future__ import annotations

from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter


def starts_with(query: Any, field: str, prefix: str) -> Any:
    """``query`` narrowed to documents whose ``field`` starts with ``prefix`` (non-empty)."""
    if not prefix:
        raise ValueError("an empty prefix matches every document")
    return query.where(filter=FieldFilter(field, ">=", prefix)).where(
        filter=FieldFilter(field, "<", prefix + "\U0010ffff")
    )
