"""robots.txt: where a site keeps it and what its answer means for a crawl (RFC 9309).

Pure: the crawler fetches the file and hands the status and text here. The rules are applied as RFC 9309
says, not as :mod:`urllib.robotparser` does (first matching rule wins, no ``*`` or ``$``): a site's
``Allow: /`` before ``Disallow: /private/`` would otherwise let ``/private/`` through, and the usual guard
against query-string traps, ``Disallow: /*?``, would be ignored.

- Group: the one whose user-agent is our product token (case-insensitive; a shorter token of ours
  that ends at a ``-``, such as ``askbase`` for ``askbase-crawler``, also matches, and the longest
  matching token wins), else the ``*`` group; all groups naming that same token are merged. No group
  and an empty group both allow everything.
- Rule: the longest matching pattern wins, an ``Allow`` on a tie; ``*`` is any run of characters and
  a final ``$`` anchors the end of the URL's path and query. Patterns and URLs are compared with
  their percent-encoding normalised (section 2.2.2). ``/robots.txt`` itself is always allowed.
"""

from __future__ import annotations

import string
import urllib.robotparser
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

# Read at most this much of a robots.txt; a larger one is treated like a missing one (allow all).
MAX_ROBOTS_BYTES = 512_000

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 reserved characters keep their meaning literally; "*" and "$" are left out because a robots.txt
# pattern gives them one, so in a URL they are compared by their percent-encoding (RFC 9309 2.2.3).
_KEPT = frozenset(":/?#[]@!&'()+,;=")
_HEX = frozenset(string.hexdigits)
_TOKEN_CHARS = frozenset(string.ascii_letters + "_-")


def robots_url(site: str) -> str:
    """Where ``site`` (``scheme://host[:port]``: :func:`~shared.knowledge.urls.site_of`) keeps its rules."""
    return site + "/robots.txt"


def robots_unreachable(status_code: int) -> bool:
    """True for a 5xx or no answer at all (status 0).

    RFC 9309: an unreachable robots.txt means "assume complete disallow", so nothing may be fetched and
    the crawl cannot tell removed pages from pages it was not allowed to see.
    """
    return status_code == 0 or status_code >= 500


def product_token(user_agent: str) -> str:
    """The lower-cased product token of a User-Agent header or of a robots.txt user-agent line.

    The leading letters, ``_`` and ``-``: ``askbase-crawler/0.1 (+https://…)`` → ``askbase-crawler``.
    ``*`` stays ``*``; a value with no token is ``""``, which no crawler matches.
    """
    value = user_agent.strip()
    if value.startswith("*"):
        return "*"
    end = 0
    while end < len(value) and value[end] in _TOKEN_CHARS:
        end += 1
    return value[:end].lower()


def _normalise(text: str, pattern: bool) -> str:
    """``text`` with unreserved characters decoded, everything but reserved ones encoded, and hex in
    upper case, so that two spellings of one URL compare equal. In a ``pattern``, ``*`` stays a
    wildcard."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%" and i + 2 < len(text) and text[i + 1] in _HEX and text[i + 2] in _HEX:
            decoded = chr(int(text[i + 1 : i + 3], 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + text[i + 1 : i + 3].upper())
            i += 3
            continue
        if c in _UNRESERVED or c in _KEPT or (pattern and c == "*"):
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "replace"))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Rule:
    """One Allow/Disallow line: ``pattern`` normalised, with ``$`` only as its last character (the
    end anchor)."""

    allow: bool
    pattern: str

    @classmethod
    def parse(cls, allow: bool, value: str) -> _Rule:
        anchored = value.endswith("$")
        body = _normalise(value[:-1] if anchored else value, pattern=True)
        return cls(allow, body + ("$" if anchored else ""))

    def matches(self, path: str) -> bool:
        """Whether the pattern matches the start (or with ``$`` all) of a normalised path and query.

        The pieces between wildcards are found leftmost-first in one left-to-right pass, which finds a
        match whenever one exists, where a backtracking regex could take time exponential in a hostile
        pattern's wildcards.
        """
        anchored = self.pattern.endswith("$")
        pieces = (self.pattern[:-1] if anchored else self.pattern).split("*")
        first, rest = pieces[0], pieces[1:]
        if not path.startswith(first):
            return False
        if not rest:
            return not anchored or len(path) == len(first)
        pos = len(first)
        for piece in rest[:-1]:
            found = path.find(piece, pos)
            if found < 0:
                return False
            pos = found + len(piece)
        last = rest[-1]
        if anchored:
            return path.endswith(last) and len(path) - len(last) >= pos
        return path.find(last, pos) >= 0


@dataclass
class _Group:
    agents: list[str]
    rules: list[_Rule]
    # Any Allow/Disallow line seen, even an empty one that adds no rule: the next user-agent line
    # then starts a new group instead of naming this one.
    closed: bool = False


class RobotsRules(urllib.robotparser.RobotFileParser):
    """The rules a robots.txt sets, queried with :meth:`can_fetch` and :meth:`site_maps`.

    A :class:`~urllib.robotparser.RobotFileParser` only so that code typed against it keeps working:
    every method a crawl uses is answered here, and :meth:`read` (I/O) is refused. ``everything`` set
    answers every URL with it whatever the rules (a robots.txt that was missing or not readable).
    """

    def __init__(self, everything: bool | None = None) -> None:
        super().__init__()
        self._everything = everything
        self._groups: list[_Group] = []
        self._sitemaps: list[str] = []
        self._by_agent: dict[str, list[_Rule]] = {}

    def parse(self, lines: Iterable[str]) -> None:
        """Take the rules and sitemaps of a robots.txt, given as its lines."""
        groups: list[_Group] = []
        sitemaps: list[str] = []
        current: _Group | None = None
        for number, raw in enumerate(lines):
            line = raw.split("#", 1)[0]
            if number == 0:
                line = line.lstrip("\ufeff")
            key, colon, value = line.partition(":")
            if not colon:
                continue
            key, value = key.strip().lower(), value.strip()
            if key == "user-agent":
                # User-agent lines in a row name one group; one after a rule starts the next.
                if current is None or current.closed:
                    current = _Group([], [])
                    groups.append(current)
                current.agents.append(product_token(value))
            elif key in ("allow", "disallow"):
                if current is None:
                    continue  # before any user-agent line: in no group
                current.closed = True
                if value:  # "Disallow:" alone disallows nothing
                    current.rules.append(_Rule.parse(key == "allow", value))
            elif key == "sitemap" and value:
                sitemaps.append(value)
        self._groups, self._sitemaps, self._by_agent = groups, sitemaps, {}

    def _rules_for(self, user_agent: str) -> list[_Rule]:
        token = product_token(user_agent)
        rules = self._by_agent.get(token)
        if rules is None:
            mine = [
                agent
                for group in self._groups
                for agent in group.agents
                if agent not in ("", "*") and (token == agent or token.startswith(agent + "-"))
            ]
            chosen = max(mine, key=len) if mine else "*"
            rules = [rule for group in self._groups if chosen in group.agents for rule in group.rules]
            self._by_agent[token] = rules
        return rules

    def can_fetch(self, useragent: str, url: str) -> bool:
        """Whether a crawler sending User-Agent ``useragent`` may fetch ``url`` (of this site)."""
        if self._everything is not None:
            return self._everything
        parts = urlsplit(url)
        path = _normalise(parts.path or "/", pattern=False)
        if path == "/robots.txt" and not parts.query:
            return True
        if parts.query:
            path += "?" + _normalise(parts.query, pattern=False)
        best: _Rule | None = None
        for rule in self._rules_for(useragent):
            if rule.matches(path) and (
                best is None or (len(rule.pattern), rule.allow) > (len(best.pattern), best.allow)
            ):
                best = rule
        return best is None or best.allow

    def site_maps(self) -> list[str]:
        """The sitemap URLs the file lists, as written, in file order."""
        return list(self._sitemaps)

    def crawl_delay(self, useragent: str) -> str | None:
        """None: RFC 9309 defines no crawl-delay; the crawl's concurrency is what paces it."""
        return None

    def request_rate(self, useragent: str) -> urllib.robotparser.RequestRate | None:
        """None: RFC 9309 defines no request-rate."""
        return None

    def read(self) -> None:
        """Refused: this module does no I/O; fetch the file and give it to :func:`robots_rules`."""
        raise TypeError("RobotsRules does not fetch robots.txt; pass its text to robots_rules")


def parse_robots(text: str) -> RobotsRules:
    """The rules of the robots.txt ``text``."""
    rules = RobotsRules()
    rules.parse(text.splitlines())
    return rules


def robots_rules(status_code: int, text: str | None) -> RobotsRules:
    """The rules a robots.txt answer sets.

    ``text`` is the body of a 200 that was read whole, else None. A 200 with text is parsed; 401/403 and
    an unreachable file (:func:`robots_unreachable`) disallow everything; anything else (404, a body over
    :data:`MAX_ROBOTS_BYTES`) allows everything.
    """
    if status_code == 200 and text is not None:
        return parse_robots(text)
    if status_code in (401, 403) or robots_unreachable(status_code):
        return RobotsRules(everything=False)
    return RobotsRules(everything=True)
