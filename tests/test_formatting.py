"""Answer rendering: escaping for Telegram HTML and Discord markdown, splitting at 4096 / 2000.

The splitting is :mod:`shared.bots.formatting`'s; each platform's markup and layout is its module's."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from shared.bots.formatting import SourceRef, split_escaped
from shared.bots.platforms import discord, get_platform, telegram, telegram_api
from tests.fuzzing import property_settings

TELEGRAM, DISCORD = get_platform("telegram"), get_platform("discord")
TELEGRAM_LIMIT, DISCORD_LIMIT = telegram_api.MESSAGE_LIMIT, discord.MESSAGE_LIMIT

_DISCORD_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _telegram_plain(part: str) -> str:
    # Telegram HTML entities: every & must start one of ours, no raw < or > may remain.
    assert "<" not in part and ">" not in part
    assert re.fullmatch(r"(?:[^&]|&amp;|&lt;|&gt;)*", part, re.DOTALL), "a broken entity"
    return html.unescape(part)


def _words(text: str) -> list[str]:
    return text.split()


def test_telegram_escaping() -> None:
    assert telegram.escape_html("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert TELEGRAM.render("<b>not bold</b> & co") == ["&lt;b&gt;not bold&lt;/b&gt; &amp; co"]


def test_discord_escaping_neutralises_markdown_and_mentions() -> None:
    escaped = discord.escape_markdown("**bold** _it_ `code` @everyone ||spoiler|| > quote")
    assert "**" not in escaped.replace("\\*", "")
    assert "\\@everyone" in escaped
    assert _DISCORD_UNESCAPE.sub(r"\1", escaped) == "**bold** _it_ `code` @everyone ||spoiler|| > quote"


def test_short_answer_is_one_message() -> None:
    assert DISCORD.render("Deploy with `askbase deploy`.") == ["Deploy with \\`askbase deploy\\`."]


def test_long_answer_splits_at_telegram_limit_with_entities_intact() -> None:
    # Worst case for escaping: every character becomes a 4-5 character entity.
    paragraph = "Use <config> & <env> files. " * 120
    answer = "\n\n".join([paragraph] * 6)
    parts = TELEGRAM.render(answer)
    assert len(parts) > 1
    assert all(len(p) <= TELEGRAM_LIMIT for p in parts)
    text = " ".join(_telegram_plain(p) for p in parts)
    assert _words(text) == _words(answer)


def test_long_answer_splits_at_discord_limit() -> None:
    answer = "Step *one*: run `make` in the [repo](dir). " * 200
    parts = DISCORD.render(answer)
    assert len(parts) > 2
    assert all(len(p) <= DISCORD_LIMIT for p in parts)
    for part in parts:
        assert not part.endswith("\\") or part.endswith("\\\\")
    joined = " ".join(_DISCORD_UNESCAPE.sub(r"\1", p) for p in parts)
    assert _words(joined) == _words(answer)


def test_unbroken_run_is_hard_cut_never_inside_an_entity() -> None:
    answer = "&" * 5000  # 25,000 escaped characters, no break opportunity
    parts = TELEGRAM.render(answer)
    assert all(len(p) <= TELEGRAM_LIMIT for p in parts)
    assert "".join(_telegram_plain(p) for p in parts) == answer


def test_prefers_paragraph_breaks() -> None:
    first = "a" * 1500
    second = "b" * 1000
    parts = split_escaped(first + "\n\n" + second, DISCORD_LIMIT, discord.escape_markdown)
    assert parts == [first, second]


def test_sources_appended_as_links_and_escaped() -> None:
    parts = TELEGRAM.render(
        "Answer.", [SourceRef("Install <guide>", "https://docs.example.com/install?a=1&b=2")]
    )
    assert len(parts) == 1
    assert '<a href="https://docs.example.com/install?a=1&amp;b=2">Install &lt;guide&gt;</a>' in parts[0]


def test_sources_that_do_not_fit_go_to_their_own_message() -> None:
    answer = "x " * 2040
    sources = [SourceRef(f"Page {i}", f"https://docs.example.com/{i}") for i in range(5)]
    parts = TELEGRAM.render(answer, sources)
    assert len(parts) == 2
    assert parts[1].startswith("<b>Sources</b>")
    assert all(len(p) <= TELEGRAM_LIMIT for p in parts)


def test_discord_sources_message() -> None:
    text = discord.render_sources([SourceRef("Deploy_guide", "https://docs.example.com/deploy")])
    assert "[Deploy\\_guide](<https://docs.example.com/deploy>)" in text
    assert discord.render_sources([]) == "This answer has no sources."


@property_settings(150)
@given(st.text(alphabet=st.sampled_from(list("ab <>&*_`\\|\n.é")), min_size=0, max_size=700))
def test_split_roundtrip_property(text: str) -> None:
    for escape, limit, unescape in (
        (telegram.escape_html, 40, html.unescape),
        (discord.escape_markdown, 30, lambda s: _DISCORD_UNESCAPE.sub(r"\1", s)),
    ):
        parts = split_escaped(text, limit, escape)
        assert all(0 < len(p) <= limit for p in parts)
        # Hard cuts may split a long word, so compare the non-blank characters in order.
        assert "".join(_words("".join(unescape(p) for p in parts))) == "".join(_words(text))
