"""Hybrid retrieval: the pure scoring (tokenizer, BM25, rank fusion, dedupe) and, with the real
MiniLM model, that exact-phrase and paraphrased questions both find the right chunk."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.knowledge.chunker import chunk_page, page_content_hash
from shared.knowledge.embeddings import load_embedder
from shared.knowledge.extract import ExtractedPage, Section
from shared.knowledge.index import KnowledgeIndex, PageRecord
from shared.knowledge.reranking import SEMANTIC_PAGES
from shared.knowledge.retrieval import (
    BM25,
    WEIGHTS,
    Passage,
    dedupe_key,
    fuse_and_dedupe,
    fuse_scores,
    heading_scores,
    query_terms,
    reciprocal_rank_fusion,
    stem,
    tokenize,
)

# --- pure scoring --------------------------------------------------------------------------------


def test_tokenize_lowercases_drops_stopwords_and_keeps_identifiers() -> None:
    tokens = tokenize("How do I set MAX-RETRIES in v1.2 for ACME_ERR_7731?")
    # Identifiers stay whole; their plain-word parts are stemmed like any word ("retries" → "retry",
    # "acme" → "acm": the same folding applies to questions, so they still match).
    assert sorted(tokens) == sorted(
        ["set", "max-retries", "max", "retry", "v1.2", "v1", "2", "acme_err_7731", "acm", "err", "7731"]
    )
    assert tokenize("The and of") == []
    assert tokenize("Übergröße café") == ["übergröße", "café"]


def test_bm25_ranks_documents_with_the_rare_term_first() -> None:
    docs = {
        "a": "the installer configures services and the installer logs",
        "b": "error E42 means a stale lock file",
        "c": "services restart after the installer finishes",
        "d": "lock the door",
    }
    bm25 = BM25(list(docs), list(docs.values()))
    top = bm25.top("what does error E42 mean", 4)
    assert top[0][0] == "b"
    assert [doc for doc, _ in top] == ["b"]  # no other document shares a term
    ranked = [doc for doc, _ in bm25.top("installer services lock", 4)]
    assert set(ranked) == {"a", "b", "c", "d"}
    # "lock" is in two docs, "installer" in two: the shorter doc with more matches wins over "d".
    scores = dict(bm25.top("installer services lock", 4))
    assert scores["a"] > scores["d"]
    assert bm25.top("nothing matches zebra", 3) == []
    assert BM25([], []).top("anything", 3) == []


def test_bm25_term_frequency_saturates_and_length_normalises() -> None:
    bm25 = BM25(
        ["once", "many", "long"],
        ["quota exceeded", "quota quota quota quota exceeded", "quota " + "filler words here " * 30],
    )
    scores = dict(bm25.top("quota", 3))
    assert scores["many"] > scores["once"] > scores["long"]
    assert scores["many"] < 2.2 * scores["once"]  # k1 caps the reward for repetition


def naive_bm25(texts: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> list[float]:
    """BM25 straight from the formula, one document at a time: the reference for the fast one."""
    docs = [tokenize(text) for text in texts]
    average = sum(map(len, docs)) / len(docs)
    scores = []
    for doc in docs:
        score = 0.0
        for term in set(tokenize(query)):
            df = sum(term in other for other in docs)
            tf = doc.count(term)
            if tf:
                idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / average))
        scores.append(score)
    return scores


def test_bm25_matches_the_textbook_formula() -> None:
    rng = random.Random(5)
    vocabulary = [
        "quota",
        "max-retries",
        "v1.2",
        "lock",
        "the",
        "error",
        "E42",
        "install",
        "café",
        "node_pool",
    ]
    texts = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 25))) for _ in range(40)]
    bm25 = BM25([str(i) for i in range(len(texts))], texts)
    for query in [
        "quota error",
        "max retries",
        "max-retries v1.2",
        "E42 lock the",
        "node pool café",
        "zebra",
    ]:
        np.testing.assert_allclose(bm25.scores(query), naive_bm25(texts, query), rtol=1e-5, atol=1e-6)


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d", "a"]], k=60)
    order = [item for item, _ in fused]
    assert order[:2] == ["b", "a"]  # b: ranks 2+1 beat a: ranks 1+3
    assert set(order) == {"a", "b", "c", "d"}
    best = reciprocal_rank_fusion([["x", "y"], ["x"]])
    assert best[0][0] == "x"
    assert best[0][1] == pytest.approx(1.0)
    assert all(0 < score <= 1 for _, score in fused)


def _passage(chunk_id: str, text: str, url: str = "https://a/", title: str = "T") -> Passage:
    return Passage(chunk_id=chunk_id, text=text, url=url, title=title, anchor="", source="s", score=0.0)


def test_score_fusion_keeps_a_decisive_keyword_margin() -> None:
    # The exact-code case: the vector side slightly prefers a sibling, BM25 is sure about "right".
    vector = {"sibling": 0.55, "right": 0.48, "other": 0.40}
    keyword = {"right": 0.9, "sibling": 0.2, "other": 0.2}
    fused = fuse_scores(vector, keyword, weights=(0.5, 0.5, 0.0))
    assert fused[0][0] == "right"
    assert fused[0][1] == pytest.approx(0.5 * 0.48 + 0.5 * 0.9)
    assert fuse_scores(vector, keyword)[0][0] == "right"  # and with the tuned default weights
    # Rank fusion loses that margin: with the sibling first by vector and second by BM25 it ties
    # "right" at best, which is why search() fuses scores.
    rrf = dict(reciprocal_rank_fusion([["sibling", "right", "other"], ["right", "sibling", "other"]]))
    assert rrf["sibling"] == pytest.approx(rrf["right"])


def test_score_fusion_clips_and_fills_missing_sides() -> None:
    fused = dict(fuse_scores({"a": -0.3, "b": 1.2}, {"c": 0.5, "b": 3.0}, weights=(0.5, 0.5, 0.0)))
    assert fused == {"a": 0.0, "b": pytest.approx(1.0), "c": pytest.approx(0.25)}
    # The heading side counts for ids either retriever found, clipped like the others.
    fused = dict(fuse_scores({"a": 0.2}, {"b": 0.4}, {"a": 2.0, "z": 1.0}, weights=(0.25, 0.4, 0.35)))
    assert fused == {"a": pytest.approx(0.25 * 0.2 + 0.35), "b": pytest.approx(0.4 * 0.4)}


def test_default_fusion_scores_stay_within_zero_and_one() -> None:
    # The refusal threshold (ASKBASE_ANSWER_MIN_SCORE) is an absolute fused score, calibrated with
    # these weights: a chunk perfect on every side scores exactly 1, one matching nothing 0, so a
    # re-tuning of the weights that changed their sum would silently move every refusal.
    assert all(weight >= 0 for weight in WEIGHTS)
    fused = dict(fuse_scores({"all": 1.0, "none": 0.0}, {"all": 1.0, "none": 0.0}, {"all": 1.0}))
    assert fused == {"all": pytest.approx(1.0), "none": 0.0}


def test_fusion_drops_duplicates_and_missing_ids() -> None:
    passages = {
        "1": _passage("1", "T > Setup\n\nRun the installer."),
        # Same section reached through another URL: same body, same title.
        "2": _passage("2", "T > Setup\n\nRun   the installer.", url="https://a/?utm=x"),
        "3": _passage("3", "T > Billing\n\nInvoices are monthly."),
        "4": _passage("4", "Other text with the same content hash as 3."),
    }
    hashes = {"1": "h1", "2": "h2", "3": "h3", "4": "h3"}
    vector = {"1": 0.9, "2": 0.89, "gone": 0.95, "3": 0.5, "4": 0.3}
    keyword = {"2": 0.5, "4": 0.1}
    even = (0.5, 0.5, 0.0)
    result = fuse_and_dedupe(vector, keyword, passages, k=5, content_hashes=hashes, weights=even)
    ids = [p.chunk_id for p in result]
    assert ids == ["2", "3"]  # 2 beats its duplicate 1; 3 beats 4 (same hash); "gone" was deleted
    assert result[0].score == pytest.approx(0.5 * 0.89 + 0.5 * 0.5)
    assert (result[0].vector_score, result[0].keyword_score) == (0.89, 0.5)
    assert result[1].score == pytest.approx(0.25)
    assert [p.chunk_id for p in fuse_and_dedupe(vector, keyword, passages, k=1, weights=even)] == ["2"]


def test_bm25_normalised_scores_measure_coverage_of_the_question() -> None:
    bm25 = BM25(["both", "one", "none"], ["quota exceeded error", "quota limits", "unrelated words"])
    scores = dict(bm25.top_normalized("quota exceeded", 3))
    assert set(scores) == {"both", "one"}
    assert 0.7 < scores["both"] <= 1.0
    assert scores["one"] < 0.5 * scores["both"]
    # A question term no document contains weighs the keyword side down.
    diluted = dict(bm25.top_normalized("quota exceeded zanzibar", 3))
    assert diluted["both"] < 0.6 * scores["both"]


def test_normalised_scores_also_cover_the_vector_candidates_outside_the_keyword_top() -> None:
    texts = ["quota exceeded quota exceeded", "quota exceeded once", "quota mentioned", "unrelated words"]
    bm25 = BM25(["a", "b", "c", "d"], texts)
    full = dict(bm25.top_normalized("quota exceeded", 4))
    top_one = bm25.top_normalized("quota exceeded", 1, also=["c", "d", "a", "missing"])
    # The top 1 first, then the vector candidates that contain a query term, with the same scores
    # a deeper search gives them; one without any query term, one already listed and an unknown id
    # are left out.
    assert [item for item, _ in top_one] == ["a", "c"]
    assert dict(top_one) == {"a": full["a"], "c": full["c"]}
    assert dict(bm25.top_normalized("quota exceeded", 1)) == {"a": full["a"]}


def test_stemming_folds_inflections_but_not_identifiers_or_different_words() -> None:
    assert {stem(w) for w in ("deploy", "deploys", "deploying", "deployed")} == {"deploy"}
    assert stem("stored") == stem("store") == stem("storing")
    assert stem("configuration") == stem("configure")
    assert stem("embedded") == stem("embeds") == "embed"
    assert stem("rolling") == "roll" and stem("running") == "run"
    assert stem("deployment") != stem("deploy")
    # An -ate verb meets its -ation noun; a word that merely ends in "at" keeps it.
    verbs = ("authenticate", "authenticates", "authenticated", "authenticating", "authentication")
    assert {stem(w) for w in verbs} == {"authentic"}
    assert stem("replicated") == stem("replication") and stem("truncate") == stem("truncation")
    assert {stem(w) for w in ("format", "formats", "formatted")} == {"format"}
    assert {stem(w) for w in ("repeat", "repeated", "repeating")} == {"repeat"}
    assert stem("combated") == stem("combat") and stem("private") != "priv"
    assert stem("update") == stem("updated") == "updat"  # too short to lose its "at"
    assert [stem(w) for w in ("gzip", "v1", "s3", "status", "class")] == [
        "gzip",
        "v1",
        "s3",
        "status",
        "class",
    ]


def test_question_filler_is_not_searched_for() -> None:
    bm25 = BM25(["docs-path", "start"], ["See docs/configuration.md", "Where to start: read the quickstart"])
    assert [doc for doc, _ in bm25.top("Where should I start reading the docs?", 2)] == ["start"]
    assert query_terms("Please tell me about the docs") == set()


def test_heading_score_prefers_the_section_that_names_the_topic() -> None:
    bm25 = BM25(["a", "b", "c"], ["deploy it", "after deploying", "unrelated"])
    headings = {
        "deploy": "Deploying > Deploy",
        "after": "Deploying > After the first deploy",
        "other": "Snapshots > Publishing",
    }
    scores = heading_scores(bm25, "How do I deploy?", headings)
    assert scores["deploy"] == pytest.approx(1.0)
    assert 0 < scores["after"] < scores["deploy"]
    assert "other" not in scores
    assert heading_scores(bm25, "how do I", headings) == {}


def test_bm25_arrays_of_another_tokenizer_are_refused() -> None:
    arrays = BM25(["a"], ["alpha"]).to_arrays()
    with pytest.raises(ValueError, match="tokenizer"):
        BM25.from_arrays(["a"], {k: v for k, v in arrays.items() if k != "tokenizer"})
    with pytest.raises(ValueError, match="tokenizer"):
        BM25.from_arrays(["a"], dict(arrays, tokenizer=np.asarray([1])))


def test_dedupe_key_ignores_the_heading_prefix_case_and_spacing() -> None:
    assert dedupe_key("Guide > Setup\n\nRun  The installer.", "Guide") == dedupe_key(
        "Guide > Install\n\nrun the installer.", "Guide"
    )
    assert dedupe_key("Guide\n\nRun the installer.", "Guide") != dedupe_key(
        "Guide\n\nRun the uninstaller.", "Guide"
    )


# --- hybrid search with MiniLM -------------------------------------------------------------------

CORPUS: dict[str, tuple[str, dict[str, str]]] = {
    "https://docs.acme.dev/install": (
        "Installing Acme",
        {
            "System requirements": "Acme runs on Linux and macOS. It needs Python 3.11 and 2 GB of "
            "free disk space.",
            "Running the installer": "Download the installer and run it with administrator rights. "
            "It sets up the background services and adds acme to your PATH.",
            "Upgrading": "To move to a newer release, stop the services, run the installer again "
            "and restart.",
        },
    ),
    "https://docs.acme.dev/errors": (
        "Error reference",
        {
            "ACME_ERR_7731": "The ACME_ERR_7731 error is raised when the workspace quota is exhausted. "
            "Delete old builds or ask an administrator for a larger quota.",
            "Network errors": "Connection timeouts usually mean a proxy blocks outgoing traffic on port 443.",
            "Authentication failures": "An expired API token is rejected with HTTP 401; create a new token.",
        },
    ),
    "https://docs.acme.dev/billing": (
        "Billing",
        {
            "Invoices": "Invoices are emailed on the first day of each month as PDF attachments.",
            "Refund policy": "If you cancel within 30 days of purchase we return the full amount to your "
            "original payment method within five business days.",
            "Changing plans": "Plan changes take effect immediately and are prorated on the next invoice.",
        },
    ),
    "https://blog.acme.dev/team": (
        "Meet the team",
        {
            "Our office": "Our office is in Lisbon, a short walk from the river. We have a cat named Pixel.",
            "Hiring": "We are hiring engineers who enjoy building developer tools.",
        },
    ),
}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeIndex]:
    idx = KnowledgeIndex.open(tmp_path_factory.mktemp("retrieval") / "index", load_embedder())
    for url, (title, sections) in CORPUS.items():
        page = ExtractedPage(
            url=url,
            title=title,
            sections=[Section(h, h.lower().replace(" ", "-"), 2, t) for h, t in sections.items()],
            canonical_url=None,
        )
        chunks = chunk_page(page, source="blog" if "blog" in url else "docs", max_chars=600, overlap=60)
        record = PageRecord(
            url=url,
            source=chunks[0].source,
            content_hash=page_content_hash(chunks),
            title=title,
            chunk_count=len(chunks),
            etag=None,
            last_modified=None,
            fetched_at="2026-11-23T10:00:00+00:00",
        )
        idx.upsert_page(record, chunks)
    yield idx
    idx.close()


def test_exact_phrase_question_finds_its_chunk(index: KnowledgeIndex) -> None:
    hits = index.search("What is ACME_ERR_7731?", k=3)
    assert hits[0].anchor == "acme_err_7731"
    assert hits[0].url == "https://docs.acme.dev/errors"
    assert hits[0].title == "Error reference"
    assert hits[0].source == "docs"
    assert "workspace quota" in hits[0].text


def test_semantic_question_without_shared_words_finds_its_chunk(index: KnowledgeIndex) -> None:
    # No keyword of "Refund policy" appears in the question: only the vector side can find it.
    hits = index.search("Can I get my money back?", k=3)
    assert hits[0].anchor == "refund-policy"
    hits = index.search("Does it work on a Mac?", k=3)
    assert hits[0].anchor == "system-requirements"


ERROR_THINGS = [
    "workspace quota", "build cache", "artifact store", "deploy queue", "webhook relay", "audit log",
    "token vault", "metrics agent", "search shard", "backup job", "license server", "mail relay",
]  # fmt: skip
ERROR_STATES = ["is full", "timed out", "is unreachable", "rejected the request", "is misconfigured"]


def test_one_error_code_among_many_similar_ones(tmp_path: Path) -> None:
    # MiniLM alone ranks the right code first for few of these (the codes look alike to it); the
    # keyword side must carry them.
    sections = [
        Section(
            f"ACME_ERR_{7700 + 3 * i}",
            f"acme_err_{7700 + 3 * i}",
            2,
            f"The ACME_ERR_{7700 + 3 * i} error is raised when the {thing} "
            f"{ERROR_STATES[i % len(ERROR_STATES)]}. Check the {thing} settings and retry.",
        )
        for i, thing in enumerate(ERROR_THINGS)
    ]
    page = ExtractedPage("https://docs.acme.dev/codes", "Error codes", sections, None)
    chunks = chunk_page(page, "docs", 600, 60)
    with KnowledgeIndex.open(tmp_path / "index", load_embedder()) as idx:
        idx.upsert_page(PageRecord(page.url, "docs", "h", page.title, 0, None, None, "2026-11-23"), chunks)
        for section in sections:
            hits = idx.search(f"What does {section.heading} mean?", k=3)
            assert hits[0].anchor == section.anchor, (section.heading, [h.anchor for h in hits])


def test_results_are_ranked_distinct_and_bounded(index: KnowledgeIndex) -> None:
    found = index.search("installer", k=4)
    hits = [h for h in found if not h.semantic_pick]
    picks = [h for h in found if h.semantic_pick]
    assert found[: len(hits)] == hits and len(hits) == 4  # the k ranked ones, then any picks
    assert len(picks) <= SEMANTIC_PAGES and not {p.url for p in picks} & {h.url for h in hits}
    assert len({h.chunk_id for h in found}) == len(found)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert index.search("installer", k=4, picks=0) == hits
    assert all(0 <= h.score <= 1 for h in hits)
    assert hits[0].anchor in {"running-the-installer", "upgrading"}
    assert index.search("", k=3) == []
    assert index.search("installer", k=0) == []
    assert len(index.search("installer", k=50)) == index.chunk_count()


def test_identical_sections_on_two_urls_come_back_once(tmp_path: Path) -> None:
    text = "Rotate the signing key every ninety days using the key rotation wizard."
    with KnowledgeIndex.open(tmp_path / "index", load_embedder()) as idx:
        for url in ("https://docs.acme.dev/keys", "https://docs.acme.dev/keys?lang=en"):
            page = ExtractedPage(url, "Keys", [Section("Rotation", "rotation", 2, text)], None)
            chunks = chunk_page(page, "docs", 600, 60)
            idx.upsert_page(
                PageRecord(url, "docs", page_content_hash(chunks), "Keys", 1, None, None, "2026-11-23"),
                chunks,
            )
        other = ExtractedPage(
            "https://docs.acme.dev/other", "Other", [Section("X", "x", 2, "Unrelated.")], None
        )
        chunks = chunk_page(other, "docs", 600, 60)
        idx.upsert_page(PageRecord(other.url, "docs", "h", "Other", 1, None, None, "2026-11-23"), chunks)
        hits = idx.search("how often should the signing key be rotated", k=3)
        assert sum("signing key" in h.text for h in hits) == 1
        assert len(hits) == 2


def test_concurrent_readers_get_the_same_answers(index: KnowledgeIndex) -> None:
    questions = ["What is ACME_ERR_7731?", "Can I get my money back?", "proxy port 443 timeout"]
    expected = {q: [h.chunk_id for h in index.search(q, k=3)] for q in questions}
    mismatches: list[str] = []

    def reader(offset: int) -> None:
        for i in range(6):
            question = questions[(i + offset) % len(questions)]
            if [h.chunk_id for h in index.search(question, k=3)] != expected[question]:
                mismatches.append(question)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not mismatches


def test_bm25_round_trips_through_plain_arrays() -> None:
    ids = ["a", "b", "c"]
    texts = [
        "Error E42 means a stale lock file",
        "max-retries sets the retry budget",
        "Refunds take five days",
    ]
    built = BM25(ids, texts)
    restored = BM25.from_arrays(ids, built.to_arrays())
    for question in ["E42 lock", "max-retries", "retries", "days refund", "nothing matches"]:
        assert restored.top(question, 3) == built.top(question, 3)
        assert restored.reference_score(question) == built.reference_score(question)
    empty = BM25([], [])
    assert BM25.from_arrays([], empty.to_arrays()).top("anything", 3) == []


def test_bm25_arrays_that_do_not_fit_are_refused() -> None:
    arrays = BM25(["a", "b"], ["alpha beta", "beta gamma"]).to_arrays()
    with pytest.raises(ValueError, match="inconsistent"):
        BM25.from_arrays(["a"], arrays)  # norms for two documents, one id
    broken = dict(arrays, indptr=arrays["indptr"][:-1])
    with pytest.raises(ValueError, match="inconsistent"):
        BM25.from_arrays(["a", "b"], broken)
