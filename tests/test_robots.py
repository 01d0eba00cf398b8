"""robots.txt rules as RFC 9309 defines them: the group for our product token, longest match, wildcards."""

from __future__ import annotations

import pytest

from shared.knowledge.robots import robots_rules

UA = "askbase-crawler/0.1 (+https://github.com/askbase)"
SITE = "https://d.example.com"


def _allowed(text: str, path: str, agent: str = UA) -> bool:
    return robots_rules(200, text).can_fetch(agent, SITE + path)


# RFC 9309 section 5.1.
RFC_EXAMPLE = """\
User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
"""


@pytest.mark.parametrize(
    ("agent", "path", "allowed"),
    [
        ("foobot/1.0", "/example/page.html", True),
        ("foobot/1.0", "/example/allowed.gif", True),
        ("foobot/1.0", "/example/other.html", False),
        ("foobot/1.0", "/", False),
        ("FooBot", "/publications/", False),  # product tokens match case-insensitively
        ("barbot", "/example/page.html", False),
        ("barbot", "/example/other.html", True),
        ("bazbot/2", "/example/page.html", False),
        ("bazbot/2", "/a.gif", True),  # its own group: the * group's rules are not added
        ("quxbot", "/example/page.html", True),  # an empty group allows everything
        ("otherbot", "/example/x", False),
        ("otherbot", "/images/a.gif", False),
        ("otherbot", "/images/a.gif?x", True),  # $ ends the match
        ("otherbot", "/publications/a", True),
        ("otherbot", "/", True),
    ],
)
def test_rfc_example(agent: str, path: str, allowed: bool) -> None:
    assert _allowed(RFC_EXAMPLE, path, agent) is allowed


def test_rfc_longest_match() -> None:
    # RFC 9309 section 5.2.
    text = "User-Agent: foobot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n"
    assert _allowed(text, "/example/page/", "foobot")
    assert not _allowed(text, "/example/page/disallowed.gif", "foobot")


def test_the_most_specific_rule_wins_not_the_first() -> None:
    assert not _allowed("User-agent: *\nAllow: /\nDisallow: /private/\n", "/private/x")
    assert _allowed("User-agent: *\nDisallow: /docs/\nAllow: /docs/public/\n", "/docs/public/a")
    assert not _allowed("User-agent: *\nDisallow: /docs/\nAllow: /docs/public/\n", "/docs/internal")
    # Equally long: allow wins.
    assert _allowed("User-agent: *\nDisallow: /page\nAllow: /page\n", "/page")
    assert _allowed("User-agent: *\nDisallow: /*.htm\nAllow: /page.\n", "/page.htm")
    assert not _allowed("User-agent: *\nDisallow: /*.htm\nAllow: /page\n", "/page.htm")  # 6 > 5 octets


def test_wildcards_and_end_anchor() -> None:
    traps = "User-agent: *\nDisallow: /*?\nDisallow: /*.php$\n"
    assert not _allowed(traps, "/cal?month=1")
    assert _allowed(traps, "/cal")
    assert not _allowed(traps, "/index.php")
    assert _allowed(traps, "/index.php5")
    assert not _allowed("User-agent: *\nDisallow: /a*b*c\n", "/a/x/b/y/cz")
    assert _allowed("User-agent: *\nDisallow: /a*b*c$\n", "/a/x/b/y/cz")
    assert not _allowed("User-agent: *\nDisallow: /this/*/exactly$\n", "/this/path/exactly")
    assert _allowed("User-agent: *\nDisallow: /fish*$\n", "/Fish")  # paths are case-sensitive
    # A $ before the end is an ordinary character.
    assert not _allowed("User-agent: *\nDisallow: /a$b\n", "/a$b/c")
    # Wildcard patterns are matched without backtracking blow-up.
    assert _allowed("User-agent: *\nDisallow: /" + "*a" * 40 + "*b\n", "/" + "a" * 5000)


def test_percent_encoding_is_normalised_before_comparing() -> None:
    # RFC 9309 section 2.2.2: unreserved characters decoded, others encoded, hex digits in one case.
    assert not _allowed("User-agent: *\nDisallow: /foo/bar/%62%61%7A\n", "/foo/bar/baz")
    assert not _allowed("User-agent: *\nDisallow: /foo/bar/baz\n", "/foo/bar/%62%61%7a")
    assert not _allowed("User-agent: *\nDisallow: /foo/bar/ツ\n", "/foo/bar/%E3%83%84")
    assert not _allowed("User-agent: *\nDisallow: /foo/bar/%e3%83%84\n", "/foo/bar/%E3%83%84")
    # An encoded reserved character is not the character itself.
    assert _allowed("User-agent: *\nDisallow: /a%2Fb\n", "/a/b")
    # A literal * or $ in a URL is matched by its percent-encoding (section 2.2.3).
    assert not _allowed("User-agent: *\nDisallow: /path/file-with-a-%2A.html\n", "/path/file-with-a-*.html")
    assert not _allowed("User-agent: *\nDisallow: /path/foo-%24\n", "/path/foo-$")


def test_group_selection() -> None:
    ours = "User-agent: askbase-crawler\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    assert not _allowed(ours, "/")
    assert _allowed(ours, "/", "otherbot")
    # The most specific group only: a longer token of ours beats a shorter one, and * is the fallback.
    layered = (
        "User-agent: *\nDisallow: /\n\n"
        "User-agent: askbase\nDisallow: /a\n\n"
        "User-agent: ASKBASE-Crawler/2.0\nDisallow: /b\n"
    )
    assert _allowed(layered, "/a") and not _allowed(layered, "/b") and _allowed(layered, "/c")
    assert not _allowed(layered, "/a", "askbase-indexer") and _allowed(layered, "/b", "askbase-indexer")
    assert not _allowed(layered, "/c", "askbasebot")  # not a token of ours: the * group
    # Groups of one agent are merged, wherever they are in the file.
    split = (
        "User-agent: askbase-crawler\nDisallow: /a\n\n"
        "User-agent: x\nDisallow: /\n\n"
        "User-agent: askbase-crawler\nDisallow: /b\n"
    )
    assert not _allowed(split, "/a") and not _allowed(split, "/b") and _allowed(split, "/c")
    # No group for us and no * group: everything is allowed.
    assert _allowed("User-agent: otherbot\nDisallow: /\n", "/")
    # Rules before any user-agent line belong to no group.
    assert _allowed("Disallow: /\nUser-agent: *\nDisallow: /x\n", "/")


def test_file_syntax() -> None:
    text = (
        "\ufeff# A comment line\r\n"
        "USER-AGENT:  *   # a trailing comment\r\n"
        "crawl-delay: 10\r\n"  # a record the RFC does not define: ignored, the group goes on
        "disallow: /x # not part of the path\r\n"
        "Disallow:\r\n"  # an empty rule matches nothing
        "this line has no colon\r\n"
        "Sitemap: https://d.example.com/s.xml\r\n"
        "Disallow: /y\r\n"
    )
    rules = robots_rules(200, text)
    assert not rules.can_fetch(UA, SITE + "/x") and not rules.can_fetch(UA, SITE + "/y/z")
    assert rules.can_fetch(UA, SITE + "/z")
    assert rules.site_maps() == ["https://d.example.com/s.xml"]


def test_robots_txt_itself_is_always_allowed() -> None:
    assert _allowed("User-agent: *\nDisallow: /\n", "/robots.txt")
    assert not _allowed("User-agent: *\nDisallow: /\n", "/robots.txt.bak")


def test_status_codes() -> None:
    assert robots_rules(404, None).can_fetch(UA, SITE + "/")
    assert robots_rules(200, None).can_fetch(UA, SITE + "/")  # over the size cap: allow all
    assert not robots_rules(403, None).can_fetch(UA, SITE + "/")
    assert not robots_rules(503, None).can_fetch(UA, SITE + "/")
