"""Chunking: size limit, overlap, heading-path prefix, metadata and hash/id stability."""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.knowledge.chunker import Chunk, chunk_page, page_content_hash, split_text
from shared.knowledge.extract import ExtractedPage, Section
from tests.fuzzing import property_settings

URL = "https://acme.dev/docs/install"


def _sentences(count: int, seed: int = 0) -> list[str]:
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "theta",
        "kappa",
        "lambda",
        "sigma",
        "omega",
    ]
    return [
        " ".join(words[(seed + i * 7 + j * 3) % len(words)] for j in range(9)).capitalize() + f" s{i}."
        for i in range(count)
    ]


def _page(*sections: Section, title: str = "Install Guide") -> ExtractedPage:
    return ExtractedPage(url=URL, title=title, sections=list(sections), canonical_url=None)


def _body(chunk: Chunk) -> str:
    return chunk.text.split("\n\n", 1)[1]


SMALL = _page(
    Section("Install Guide", "install-guide", 1, "This guide explains how to install Acme."),
    Section("Requirements", "reqs", 2, "You need Python 3.11."),
    Section("Empty parent", "empty", 2, ""),
    Section("Troubleshooting", "trouble", 3, "Error E42 means a stale lock file."),
)


def test_one_chunk_per_small_section_with_metadata() -> None:
    chunks = chunk_page(SMALL, source="acme-docs", max_chars=500, overlap=50)
    assert [c.anchor for c in chunks] == ["install-guide", "reqs", "trouble"]
    assert [c.position for c in chunks] == [0, 1, 2]
    for chunk in chunks:
        assert chunk.url == URL
        assert chunk.title == "Install Guide"
        assert chunk.source == "acme-docs"
        assert chunk.content_hash == hashlib.sha256(chunk.text.encode()).hexdigest()
    assert len({c.id for c in chunks}) == 3


def test_text_is_prefixed_with_the_heading_path() -> None:
    chunks = chunk_page(SMALL, source="s", max_chars=500, overlap=50)
    # The <h1> repeating the title is said once; an empty section still names its subsections.
    assert chunks[0].text == "Install Guide\n\nThis guide explains how to install Acme."
    assert chunks[1].text == "Install Guide > Requirements\n\nYou need Python 3.11."
    assert (
        chunks[2].text
        == "Install Guide > Empty parent > Troubleshooting\n\nError E42 means a stale lock file."
    )


def test_long_section_is_split_within_the_limit_at_sentence_boundaries() -> None:
    text = " ".join(_sentences(40))
    chunks = chunk_page(_page(Section("Big", "big", 2, text)), source="s", max_chars=400, overlap=80)
    assert len(chunks) > 3
    assert all(len(c.text) <= 400 for c in chunks)
    assert all(c.anchor == "big" for c in chunks)
    for chunk in chunks:
        body = _body(chunk)
        assert body.endswith("."), body  # cut after a sentence, never inside one
        assert re.match(r"[A-Z]", body), body  # and the next piece starts at a sentence
    # Nothing is lost.
    joined = " ".join(_body(c) for c in chunks)
    for sentence in _sentences(40):
        assert sentence in joined


def test_consecutive_pieces_overlap() -> None:
    text = " ".join(_sentences(40))
    chunks = chunk_page(_page(Section("Big", "big", 2, text)), source="s", max_chars=400, overlap=120)
    for previous, current in itertools.pairwise(chunks):
        before, after = _body(previous), _body(current)
        shared = max(n for n in range(len(after) + 1) if before.endswith(after[:n]))
        assert 30 <= shared <= 120, (before, after)


def test_zero_overlap_repeats_nothing() -> None:
    text = " ".join(_sentences(30))
    chunks = chunk_page(_page(Section("Big", "big", 2, text)), source="s", max_chars=300, overlap=0)
    bodies = [_body(c) for c in chunks]
    assert " ".join(bodies) == text


def test_paragraphs_are_preferred_over_sentences() -> None:
    paragraphs = [" ".join(_sentences(3, seed=i)) for i in range(6)]
    chunks = chunk_page(
        _page(Section("P", "p", 2, "\n\n".join(paragraphs))), source="s", max_chars=400, overlap=0
    )
    for chunk in chunks:
        for piece in _body(chunk).split("\n\n"):
            assert piece in paragraphs  # whole paragraphs only


def test_run_on_text_and_huge_words_are_still_cut_to_size() -> None:
    text = "word " * 300 + "x" * 1000
    pieces = split_text(text, budget=200, overlap=30)
    assert all(len(p) <= 200 for p in pieces)
    assert "".join(pieces).count("x") >= 1000


def test_long_titles_never_push_a_chunk_over_the_limit() -> None:
    page = _page(Section("H" * 300, "h", 2, " ".join(_sentences(20))), title="T" * 500)
    chunks = chunk_page(page, source="s", max_chars=300, overlap=40)
    assert chunks
    assert all(len(c.text) <= 300 for c in chunks)


def test_ids_and_hashes_are_stable_and_track_content() -> None:
    first = chunk_page(SMALL, source="s", max_chars=500, overlap=50)
    again = chunk_page(SMALL, source="s", max_chars=500, overlap=50)
    assert [(c.id, c.content_hash) for c in first] == [(c.id, c.content_hash) for c in again]
    assert page_content_hash(first) == page_content_hash(again)

    changed = _page(
        SMALL.sections[0],
        Section("Requirements", "reqs", 2, "You need Python 3.12."),
        *SMALL.sections[2:],
    )
    edited = chunk_page(changed, source="s", max_chars=500, overlap=50)
    assert edited[0].id == first[0].id
    assert edited[1].id != first[1].id
    assert edited[1].content_hash != first[1].content_hash
    assert edited[2].id == first[2].id
    assert page_content_hash(edited) != page_content_hash(first)

    elsewhere = chunk_page(_page(*SMALL.sections), source="s", max_chars=500, overlap=50)
    moved = [
        c.id
        for c in chunk_page(ExtractedPage(URL + "/v2", "Install Guide", SMALL.sections, None), "s", 500, 50)
    ]
    assert [c.id for c in elsewhere] == [c.id for c in first]
    assert not set(moved) & {c.id for c in first}  # same text at another URL is another chunk


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        chunk_page(SMALL, source="s", max_chars=200, overlap=200)
    with pytest.raises(ValueError):
        chunk_page(SMALL, source="s", max_chars=10, overlap=0)


def test_empty_page_gives_no_chunks() -> None:
    assert chunk_page(_page(Section("Only", "only", 2, "  ")), source="s", max_chars=300, overlap=0) == []


@property_settings(60)
@given(
    text=st.text(alphabet=st.sampled_from("abc de.\n!?"), min_size=0, max_size=3000),
    max_chars=st.integers(min_value=60, max_value=900),
    overlap_share=st.floats(min_value=0, max_value=0.9),
)
def test_any_text_respects_the_limit_and_keeps_every_word(
    text: str, max_chars: int, overlap_share: float
) -> None:
    overlap = int(max_chars * overlap_share)
    chunks = chunk_page(_page(Section("S", "s", 2, text)), source="s", max_chars=max_chars, overlap=overlap)
    assert all(len(c.text) <= max_chars for c in chunks)
    joined = " ".join(_body(c) for c in chunks)
    for word in text.split():
        if len(word) <= 30:  # longer words than the budget are cut mid-word by design
            assert word in joined
