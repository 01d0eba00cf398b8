"""Re-ranking of the fused top candidates by what each passage's own text says.

Fusion (:mod:`shared.knowledge.retrieval`) scores a chunk as a bag of words: a chunk that mentions
"cancel", "running" and "query" in three different paragraphs ties with one that says "cancel a running
query". On the PostgreSQL manual (9,826 chunks) the fused order put the right page first for 59 % of
the eval set's questions, though it was among the first five pages for 90 %. So the best :data:`POOL`
fused passages are re-ordered by fused score plus five signals, each in [0, 1]:

* **phrase**: the share of the question's adjacent content-word pairs ("running query", "cancel
  running") that occur adjacent in one sentence of the passage: the passage says what was asked, in
  the words it was asked in;
* **sentence**: the largest share of the question's keyword weight (IDF) that one sentence of the
  passage holds: the terms meet in one statement rather than across the chunk;
* **page**: how many of the pool's passages come from the same page (log-scaled): a page several
  chunks of which match is about the topic, not passing by it;
* **list** (subtracted): the share of the passage's lines that are short list entries or bare
  titles: tables of contents, navigation and link lists name every topic and answer none;
* **vector** (:func:`vector_ranks`): 1 / (1 + rank) of the passage's cosine similarity among the
  re-ordered ones: the passage MiniLM puts first gets the whole bonus, the next half of it. The
  cosine's own share of the fused score is small (weight 0.25, cosines of the candidates within
  ~0.3 of each other) and keyword scores of the best candidates saturate at 1, so on a large site the
  fused score ranks by headings and word counts where the embedding had a clear favourite: on the
  PostgreSQL set the page of the pool's best-cosine passage was right more often (57 of 94
  questions) than the fused first page (55).

The weights (:data:`WEIGHTS`) were chosen on both eval sets and held on a rebuilt index: first page
right 59 % → 70 %, within the first five 90 % → 91.5 % (PostgreSQL), the sample site unchanged
(bench/README.md, "Answer quality"; ``bench/answer_quality.py --rerank`` varies them). Cost: about
1.3 ms per search at p50 (20 passages tokenised). There is no model here: an offline cross-encoder
would need weights no PyPI package ships, and embedding each sentence at query time would cost ~6 ms
per sentence.

The re-ordered list is then made page-diverse (:func:`page_diverse`): at most :data:`PER_PAGE`
passages of one page among the first ``k``, so the answerer sees other pages too rather than five
chunks of one.

Passages keep their fused ``score``: the refusal threshold is calibrated on it, and a re-ranking that
only reorders cannot make the docs look more (or less) relevant than retrieval found them.

After the ``k`` a search returns come its **semantic picks** (:func:`semantic_picks`): the best passage
of each of the :data:`SEMANTIC_PAGES` pages MiniLM ranks first in the pool, when fusion left that page
out. Fusion's keyword and heading shares decide the order on a large site (the best candidates'
keyword shares saturate at 1), and there the embedding's favourite is often the page that answers in
other words: on the PostgreSQL eval set MiniLM put the right page first or second for "What is the
maximum size of a table?" (the limits appendix), "How do I attach a description to a table?"
(``COMMENT``) and "How can I track which queries take the most time?" (``pg_stat_statements``), which
fusion ranked below pages whose headings say "size", "attach" or "track". The picks are flagged
(``Passage.semantic_pick``) so an answerer can tell them from the ranked ``k``.

Pure (no index, no model), so it is tested on its own.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.knowledge.retrieval import Passage, heading_path, query_terms, tokenize

# How many fused passages are re-ordered. The right page was within the first 20 fused passages for
# every PostgreSQL question whose page was retrieved at all; a deeper pool adds tokenising cost and
# lets weak chunks of a many-chunk page climb on the page signal.
POOL = 20


@dataclass(frozen=True)
class RerankWeights:
    """How much each passage-level signal adds to (list: takes from) the fused score."""

    phrase: float = 0.2
    sentence: float = 0.1
    page: float = 0.18
    list: float = 0.1
    # A tie-breaker, not a vote: 0.03 moves a passage only over others within 0.03 of its value. On
    # the PostgreSQL set it put the right page first for 3 more questions and lost 1 (0.02: the
    # same; 0.06: the same there, generated-set hit@1 0.923 against 0.927; 0.1: hit@1 0.698);
    # the sample site and the generated sets were unchanged or better (bench/README.md,
    # "Retrieval ranking on PostgreSQL").
    vector: float = 0.03


WEIGHTS = RerankWeights()

# Only passages within this share of the best fused score are re-ordered; the rest keep their fused
# order below them. On the sample site a product name makes "deploy askbase" a phrase of the
# quickstart, which would otherwise climb over the Deploy page scored 0.75 against its 0.57; no
# PostgreSQL question gained from moving a passage up from further down than this.
SCORE_FLOOR = 0.8

# Sentence ends, and line breaks (list items, table rows and code lines are statements of their own).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
# A line that is a list entry or a bare title: short and not ending like a sentence or a clause.
_LIST_LINE_CHARS = 80
_SENTENCE_END = re.compile(r"[.:;!?)]$")

# At most this many passages of one page among the ``k`` a search returns (more only when too few pages
# were found to fill ``k``). The answerer quotes one section and cites one source per page, so a third
# chunk of the top page only pushes the page that answers out of its sight. Measured on the PostgreSQL
# eval set (20-passage re-ranked pool, top-k 5): hit@5 0.844 -> 0.865, MRR@5 0.759 -> 0.766, answer
# first 0.531 -> 0.542, hit@1 unchanged, the sample site unchanged (bench/README.md, "Answer quality");
# 1 passage per page lost answer first (0.500: a long section's answering chunk is often its second),
# 3 gained no page.
PER_PAGE = 2


# How many of the embedding's favourite pages a search makes sure the answerer sees (the pages of the
# pool's best-cosine passages). Measured on both eval sets with the extractive answerer listing a pick
# (bench/README.md, "The embedding's favourite pages"): PostgreSQL hit@5 0.885 with none, 0.896 with
# 1, 0.917 with 2 (citation precision 0.631), 0.917 with 3 (0.616, and the sample site's 0.902 ->
# 0.885); with 1 or 2 the sample site's answers are unchanged (its favourite pages are among the
# ranked k already).
SEMANTIC_PAGES = 2


@dataclass(frozen=True)
class Signals:
    """The passage-level signals of one passage for one question, each in [0, 1]."""

    phrase: float
    sentence: float
    page: float
    list: float


def passage_signals(
    question_terms: set[str],
    question_pairs: set[tuple[str, str]],
    weights: dict[str, float],
    passage: Passage,
    same_page: int,
    pool_size: int,
) -> Signals:
    """The :class:`Signals` of ``passage``: ``weights`` is each question term's IDF, ``same_page`` how
    many passages of the pool (this one included) come from its page, ``pool_size`` the pool's size."""
    head = heading_path(passage.text, passage.title)
    body = passage.text[len(head) :] if head else passage.text
    total = sum(weights.values()) or 1.0
    best_sentence = 0.0
    pairs_found: set[tuple[str, str]] = set()
    lines = 0
    list_lines = 0
    for sentence in _SENTENCE_BREAK.split(body):
        stripped = sentence.strip()
        if not stripped:
            continue
        tokens = tokenize(stripped)
        found = question_terms.intersection(tokens)
        if found:
            best_sentence = max(best_sentence, sum(weights[t] for t in found) / total)
            if question_pairs:
                pairs_found.update(question_pairs.intersection(itertools.pairwise(tokens)))
    for line in body.split("\n"):
        line = line.strip()
        if not line:
            continue
        lines += 1
        if len(line) < _LIST_LINE_CHARS and not _SENTENCE_END.search(line):
            list_lines += 1
    phrase = len(pairs_found) / len(question_pairs) if question_pairs else 0.0
    page = math.log(same_page) / math.log(pool_size) if pool_size > 1 and same_page > 1 else 0.0
    return Signals(
        phrase=phrase,
        sentence=min(1.0, best_sentence),
        page=min(1.0, page),
        list=list_lines / lines if lines else 0.0,
    )


def rerank(
    question: str,
    passages: Sequence[Passage],
    k: int,
    idf: Callable[[str], float],
    weights: RerankWeights = WEIGHTS,
) -> list[Passage]:
    """The best ``k`` of ``passages`` (fused order, best first) after re-ordering those of the first
    :data:`POOL` that score at least :data:`SCORE_FLOOR` of the best by fused score plus the weighted
    :class:`Signals` and cosine rank (:func:`vector_ranks`), at most :data:`PER_PAGE` of one page
    (:func:`page_diverse`); ``idf`` gives a term's IDF in the index. Scores are unchanged; ties keep
    the fused order."""
    pool = list(passages[:POOL])
    if len(pool) <= 1 or k <= 0:
        return pool[: max(k, 0)]
    ordered = [term for term in tokenize(question) if term in query_terms(question)]
    wanted = set(ordered)
    if not wanted:
        return page_diverse(pool, k)
    term_weights = {term: idf(term) for term in wanted}
    pairs = {(a, b) for a, b in itertools.pairwise(ordered) if a != b}
    per_page = Counter(passage.url for passage in pool)
    floor = SCORE_FLOOR * pool[0].score
    reordered = [passage for passage in pool if passage.score >= floor]
    vector_bonus = vector_ranks(reordered)
    scored = []
    for position, passage in enumerate(pool):
        if passage.score < floor:
            scored.append((float("inf"), position, passage))  # after every re-ordered one, in fused order
            continue
        signals = passage_signals(wanted, pairs, term_weights, passage, per_page[passage.url], len(pool))
        value = (
            passage.score
            + weights.phrase * signals.phrase
            + weights.sentence * signals.sentence
            + weights.page * signals.page
            - weights.list * signals.list
            + weights.vector * vector_bonus[passage.chunk_id]
        )
        scored.append((-value, position, passage))
    scored.sort(key=lambda item: (item[0], item[1]))
    return page_diverse([passage for _, _, passage in scored], k)


def semantic_picks(
    pool: Sequence[Passage], found: Sequence[Passage], pages: int = SEMANTIC_PAGES
) -> list[Passage]:
    """The best-cosine passage of each of the ``pages`` pages whose passages in ``pool`` have the
    highest cosine similarity, for the pages ``found`` holds none of, in cosine order and flagged
    ``semantic_pick``. A passage whose search did not say its cosine is never picked."""
    favourites: list[Passage] = []
    for passage in sorted(pool, key=lambda p: -(p.vector_score or 0.0)):
        if len(favourites) >= pages or passage.vector_score is None:
            break
        if all(passage.url != p.url for p in favourites):
            favourites.append(passage)
    shown = {passage.url for passage in found}
    return [dataclasses.replace(p, semantic_pick=True) for p in favourites if p.url not in shown]


def split_picks(passages: Sequence[Passage]) -> tuple[list[Passage], list[Passage]]:
    """``passages`` as (the ranked ones, the semantic picks), each in its order. Answerers decide
    refusal on, quote from and list near-ties of the ranked ones alone: the picks are a search's
    second opinion, never its answer."""
    ranked = [passage for passage in passages if not passage.semantic_pick]
    return ranked, [passage for passage in passages if passage.semantic_pick]


def vector_ranks(passages: Sequence[Passage]) -> dict[str, float]:
    """Per chunk id, 1 / (1 + its passage's rank by cosine similarity among ``passages``): 1 for the
    best, 1/2 for the next. Ties keep the given order; a passage whose search did not say its cosine
    counts as 0. Fusion leaves one passage per chunk, so the ids are distinct."""
    ordered = sorted(enumerate(passages), key=lambda item: (-(item[1].vector_score or 0.0), item[0]))
    return {passage.chunk_id: 1.0 / (1 + rank) for rank, (_, passage) in enumerate(ordered)}


def page_diverse(passages: Sequence[Passage], k: int, per_page: int = PER_PAGE) -> list[Passage]:
    """The first ``k`` of ``passages`` (best first) taking at most ``per_page`` from one page, in their
    order; when that leaves fewer than ``k`` (a small site, one long page), the passages skipped are
    added after them in their order, so a search still returns ``k`` when it found ``k``."""
    if k <= 0:
        return []
    kept: list[Passage] = []
    skipped: list[Passage] = []
    per_url: Counter[str] = Counter()
    for passage in passages:
        if per_url[passage.url] < per_page:
            per_url[passage.url] += 1
            kept.append(passage)
            if len(kept) >= k:
                return kept
        else:
            skipped.append(passage)
    return (kept + skipped)[:k]
