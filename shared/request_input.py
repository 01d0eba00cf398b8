"""What a request may carry: its JSON body, the document ids and page sizes it names; one rule each for
every route.

An id that comes from a request (a URL path, a JSON field, a button's data) becomes a Firestore document
id only after :func:`is_document_id` said yes: anything else is an unknown id (a 404, a "too old" reply),
never a call Firestore refuses with ``InvalidArgument`` or the client refuses with ``ValueError`` (both
were 500s). A page size from a query string goes through :func:`page_size`, and a JSON body through
:func:`read_json`.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_ID_CHARS = 128

# The ids askbase makes fit: Firestore auto ids (20 letters and digits) for bots, uuid4 hex for
# conversations, sha256 hex for answers and button state. Letters, digits, "_" and "-" rule out a
# slash, "." and "..", whitespace and anything a URL would have to escape.
_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_CHARS}}}")

# Firestore's rules for a document id (firebase.google.com/docs/firestore/quotas, "Collections,
# documents, and fields"): valid UTF-8, at most 1,500 bytes, no "/", not "." or "..", not matching
# __.*__. Measured on the Firestore emulator (cloud-firestore-emulator, 2026-12-01): "__x__", "__\n__"
# and "__é__" are InvalidArgument ("reserved"), "." and ".." and "" InvalidArgument, "a/b" a ValueError
# from the client before any call, a lone surrogate a UnicodeEncodeError. The emulator took "____" and
# 1,501 bytes, which the documented rules refuse: refused here, as production would.
_RESERVED = re.compile(r"__.*__", re.DOTALL)
MAX_ID_BYTES = 1500


def firestore_accepts(value: object) -> bool:
    """Whether Firestore takes ``value`` as a document id at all (its documented rules above). For ids
    askbase stores under any shape (button state a test or an older version wrote); a request's ids go
    through the stricter :func:`is_document_id`."""
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value:
        return False
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON's "\ud800" decodes to
        return False
    return len(encoded) <= MAX_ID_BYTES and not _RESERVED.fullmatch(value)


def is_document_id(value: object) -> bool:
    """Whether ``value`` may name a document a request asks for: the shape of the ids askbase makes
    (at most :data:`MAX_ID_CHARS` letters, digits, ``_`` and ``-``) and one Firestore accepts (not
    reserved: ``__x__`` has that shape)."""
    return isinstance(value, str) and _SHAPE.fullmatch(value) is not None and firestore_accepts(value)


def page_size(raw: str | None, default: int, maximum: int) -> int | None:
    """A ``?limit=`` value: ``default`` when absent or empty, else a whole number from 1 to ``maximum``
    written in ASCII digits, or ``None`` (a 400 for the caller). A regex, not ``str.isdigit()``, which
    takes "²" (``int()`` refuses it), and at most as many digits as ``maximum`` has, so ``int()`` never
    sees more than 4,300 of them (its limit: a ``ValueError``)."""
    if not raw:
        return default
    if not re.fullmatch(rf"[0-9]{{1,{len(str(maximum))}}}", raw):
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


# NotJSON.reason of a body whose strings are not all text (see holds_lone_surrogate), and what a route
# answers it.
LONE_SURROGATE = "lone surrogate"
NOT_TEXT = "the body holds a string that is not text (a \\u escape of a lone surrogate)"


class NotJSON(ValueError):
    """A body Python's json module cannot read; ``reason`` names why (the exception's type)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not JSON ({reason})")
        self.reason = reason


def read_json(body: bytes | str) -> Any:
    """The JSON value of ``body``, or :class:`NotJSON`. Beyond malformed text that covers what valid JSON
    Python still cannot read, each once a 500 on some route: ``ValueError`` also for bytes that are not
    UTF-8 and for an integer of more than 4,300 digits (int()'s limit, which json.loads hits too),
    ``RecursionError`` for nesting about 1,000 deep, and a string that is no text (``reason``
    :data:`LONE_SURROGATE`: :func:`holds_lone_surrogate`)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise NotJSON(type(exc).__name__) from None
    if holds_lone_surrogate(value):
        raise NotJSON(LONE_SURROGATE)
    return value


def holds_lone_surrogate(value: Any) -> bool:
    """Whether a key or string of a parsed JSON value holds a lone surrogate.

    ``"\\ud800"`` is valid JSON and json.loads returns it as a str no UTF-8 encoder takes: stored (a
    question, a bot's name, a comment) or hashed (a vote's id), it raised UnicodeEncodeError, a 500, on
    qa's routes after the answer had been computed and on botrunner's bot edit. Iterative: the value may
    nest as deep as json.loads allows.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
