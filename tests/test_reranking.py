"""Re-ranking of fused passages by their own text: phrase, sentence, page support, list-likeness."""

from __future__ import annotations

import pytest

from shared.knowledge.reranking import (
    PER_PAGE,
    POOL,
    SCORE_FLOOR,
    RerankWeights,
    page_diverse,
    passage_signals,
    rerank,
    semantic_picks,
    vector_ranks,
)
from shared.knowledge.retrieval import Passage, query_terms


def _passage(
    name: str, text: str, score: float, url: str | None = None, vector: float | None = None
) -> Passage:
    return Passage(
        chunk_id=name,
        text=f"Manual > {name}\n\n{text}",
        url=url or f"https://docs.test/{name}.html",
        title="Manual",
        anchor="",
        source="docs",
        score=score,
        vector_score=vector,
    )


def _idf(term: str) -> float:
    return 2.0


def test_a_passage_that_says_the_question_in_one_sentence_moves_above_one_that_scatters_it() -> None:
    scattered = _passage(
        "scattered",
        "A query can be planned in many ways.\n\nRunning servers log slowly.\n\nCancel buttons exist.",
        0.60,
    )
    says_it = _passage(
        "says-it", "Use pg_cancel_backend to cancel a running query from another session.", 0.55
    )
    ranked = rerank("How do I cancel a running query?", [scattered, says_it], 2, _idf)
    assert [p.chunk_id for p in ranked] == ["says-it", "scattered"]


def test_scores_are_left_as_fusion_gave_them() -> None:
    first = _passage("first", "Nothing relevant here at all.", 0.60)
    second = _passage("second", "Cancel a running query with pg_cancel_backend.", 0.55)
    ranked = rerank("How do I cancel a running query?", [first, second], 2, _idf)
    assert {p.chunk_id: p.score for p in ranked} == {"first": 0.60, "second": 0.55}


def test_a_passage_far_below_the_best_is_not_moved_up() -> None:
    best = _passage("best", "Deploy with the deploy command of the tool.", 1.0)
    weak = _passage("weak", "Cancel a running query with pg_cancel_backend.", SCORE_FLOOR * 1.0 - 0.01)
    ranked = rerank("How do I cancel a running query?", [best, weak], 2, _idf)
    assert [p.chunk_id for p in ranked] == ["best", "weak"]


def test_only_k_passages_come_back_and_the_pool_is_bounded() -> None:
    passages = [_passage(f"p{i}", f"Text number {i} about tables.", 0.9 - i * 0.001) for i in range(POOL + 5)]
    assert len(rerank("tables", passages, 5, _idf)) == 5
    # Passages beyond the pool are never returned, however many are asked for.
    assert {p.chunk_id for p in rerank("tables", passages, POOL + 5, _idf)} == {f"p{i}" for i in range(POOL)}


def test_a_question_without_content_words_keeps_the_fused_order() -> None:
    passages = [_passage("a", "Alpha.", 0.5), _passage("b", "What is it?", 0.49)]
    assert [p.chunk_id for p in rerank("What is it?", passages, 2, _idf)] == ["a", "b"]


def test_signals_of_a_table_of_contents_and_of_page_support() -> None:
    question = "How do I cancel a running query?"
    wanted = query_terms(question)
    pairs = {("cancel", "run"), ("run", "query")}
    weights = dict.fromkeys(wanted, 1.0)
    toc = _passage("toc", "- Queries\n- Running a Query\n- Cancelling\n- Indexes", 0.5)
    prose = _passage("prose", "To cancel a running query, call pg_cancel_backend.", 0.5)
    toc_signals = passage_signals(wanted, pairs, weights, toc, 1, POOL)
    prose_signals = passage_signals(wanted, pairs, weights, prose, 3, POOL)
    assert toc_signals.list == 1.0 and prose_signals.list == 0.0
    assert prose_signals.phrase == 1.0 and prose_signals.sentence == 1.0
    assert toc_signals.page == 0.0 < prose_signals.page < 1.0


def test_a_page_several_chunks_of_which_match_wins_a_near_tie() -> None:
    alone = _passage("alone", "The checkpointer writes dirty buffers.", 0.50, url="https://docs.test/a.html")
    page = [
        _passage(f"wal{i}", "The checkpointer writes dirty buffers.", 0.49, url="https://docs.test/wal.html")
        for i in range(3)
    ]
    weights = RerankWeights(phrase=0.0, sentence=0.0, page=0.2, list=0.0)
    ranked = rerank("checkpointer dirty buffers", [alone, *page], 4, _idf, weights)
    assert ranked[0].url == "https://docs.test/wal.html"


def _on_page(name: str, page: str, score: float) -> Passage:
    return _passage(name, f"Text of {name} about tables.", score, url=f"https://docs.test/{page}.html")


def test_a_page_gives_at_most_per_page_passages_so_other_pages_are_seen() -> None:
    passages = [_on_page(f"big{i}", "big", 0.9 - i * 0.01) for i in range(4)]
    passages += [_on_page("other", "other", 0.7), _on_page("third", "third", 0.6)]
    ranked = page_diverse(passages, PER_PAGE + 2)
    assert [p.chunk_id for p in ranked] == [*(f"big{i}" for i in range(PER_PAGE)), "other", "third"]
    assert sum(p.url.endswith("/big.html") for p in ranked) == PER_PAGE


def test_too_few_pages_to_fill_k_adds_the_skipped_passages_after_the_others_in_order() -> None:
    passages = [_on_page(f"big{i}", "big", 0.9 - i * 0.01) for i in range(4)]
    passages.append(_on_page("other", "other", 0.5))
    ranked = page_diverse(passages, 5, per_page=1)
    assert [p.chunk_id for p in ranked] == ["big0", "other", "big1", "big2", "big3"]
    assert page_diverse(passages, 0) == []


def test_rerank_returns_a_page_diverse_list() -> None:
    passages = [_on_page(f"big{i}", "big", 0.9 - i * 0.001) for i in range(5)]
    passages.append(_on_page("other", "other", 0.85))
    ranked = rerank("tables", passages, 3, _idf)
    assert "other" in {p.chunk_id for p in ranked}
    assert sum(p.url.endswith("/big.html") for p in ranked) == PER_PAGE


def test_the_passage_with_the_best_cosine_wins_a_near_tie_but_not_a_clear_margin() -> None:
    text = "Row security policies restrict which rows a user can see."
    keyword_favourite = _passage("keywords", text, 0.530, vector=0.35)
    embedding_favourite = _passage("meaning", text, 0.525, vector=0.63)
    order = rerank("restrict rows", [keyword_favourite, embedding_favourite], 2, _idf)
    assert [p.chunk_id for p in order] == ["meaning", "keywords"]
    clear = _passage("keywords", text, 0.60, vector=0.35)
    assert [p.chunk_id for p in rerank("restrict rows", [clear, embedding_favourite], 2, _idf)] == [
        "keywords",
        "meaning",
    ]
    without = RerankWeights(vector=0.0)
    assert [
        p.chunk_id
        for p in rerank("restrict rows", [keyword_favourite, embedding_favourite], 2, _idf, without)
    ] == ["keywords", "meaning"]


def test_vector_ranks_halve_down_the_cosine_order_and_count_an_unknown_cosine_as_zero() -> None:
    passages = [
        _passage("unknown", "x", 0.5),
        _passage("second", "x", 0.5, vector=0.4),
        _passage("first", "x", 0.5, vector=0.6),
    ]
    assert vector_ranks(passages) == {"first": 1.0, "second": 0.5, "unknown": pytest.approx(1 / 3)}


def test_semantic_picks_are_the_embeddings_favourite_pages_that_the_ranked_k_leave_out() -> None:
    pool = [
        _passage("ranked", "Fusion's first.", 0.7, vector=0.40),
        _passage("limits", "Table K.1 describes various hard limits.", 0.5, vector=0.53),
        _passage("limits-2", "More limits.", 0.45, url="https://docs.test/limits.html", vector=0.52),
        _passage("wal", "Maximum size to let the WAL grow.", 0.6, vector=0.50),
        _passage("unknown", "A keyword-only hit.", 0.55),
        _passage("other", "Something else.", 0.3, vector=0.2),
    ]
    found = [pool[0], pool[3]]
    picks = semantic_picks(pool, found, pages=2)
    # The two pages with the best cosines are "limits" (its best passage only) and "wal"; "wal" is
    # already among the ranked ones, so only "limits" is added, flagged, its scores untouched.
    assert [p.chunk_id for p in picks] == ["limits"]
    assert picks[0].semantic_pick and picks[0].score == 0.5 and not pool[1].semantic_pick
    assert [p.chunk_id for p in semantic_picks(pool, found, pages=3)] == ["limits"]  # 3rd: "ranked"
    assert semantic_picks(pool, pool, pages=2) == []
    assert semantic_picks(pool, found, pages=0) == []
    # A passage whose search did not say its cosine is never a pick.
    assert semantic_picks([pool[4]], [], pages=2) == []
