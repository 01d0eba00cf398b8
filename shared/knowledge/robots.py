"""robots.txt: where a site keeps it and what its answer means for a crawl (RFC 9309).

Pure: the crawler fetches the file and hands the status and text here.
"""

from __future__ import annotations

import urllib.robotparser

# Read at most this much of a robots.txt; a larger one is treated like a missing one (allow all).
MAX_ROBOTS_BYTES = 512_000


class _Rules(urllib.robotparser.RobotFileParser):
    """The standard parser, with the two switches it has at run time but its type stubs do not declare."""

    disallow_all: bool
    allow_all: bool


def robots_url(site: str) -> str:
    """Where ``site`` (``scheme://host[:port]``: :func:`~shared.knowledge.urls.site_of`) keeps its rules."""
    return site + "/robots.txt"


def robots_unreachable(status_code: int) -> bool:
    """True for a 5xx or no answer at all (status 0).

    RFC 9309: an unreachable robots.txt means "assume complete disallow", so nothing may be fetched and
    the crawl cannot tell removed pages from pages it was not allowed to see.
    """
    return status_code == 0 or status_code >= 500


def robots_rules(status_code: int, text: str | None) -> urllib.robotparser.RobotFileParser:
    """The rules a robots.txt answer sets.

    ``text`` is the body of a 200 that was read whole, else None. A 200 with text is parsed; 401/403 and
    an unreachable file (:func:`robots_unreachable`) disallow everything; anything else (404, a body over
    :data:`MAX_ROBOTS_BYTES`) allows everything.
    """
    robots = _Rules()
    if status_code == 200 and text is not None:
        robots.parse(text.splitlines())
    elif status_code in (401, 403) or robots_unreachable(status_code):
        robots.disallow_all = True
    else:
        robots.allow_all = True
    return robots
