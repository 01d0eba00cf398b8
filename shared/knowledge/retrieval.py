"""Hybrid retrieval scoring: BM25 keyword search fused with vector search.

MiniLM finds passages that *mean* the question; BM25 finds passages that *say* it. On exact-phrase
questions (error codes, option names, product terms) BM25 found the right chunk far more often than
MiniLM alone, so :meth:`KnowledgeIndex.search` asks both and fuses the two here.

Fusion is by score, not rank: ``W_VECTOR * cosine + W_KEYWORD * keyword coverage + W_HEADING *
heading score``. Reciprocal rank fusion was measured too and lost (top-1: 32 vs 29 of 34 on the probe
in ``bench/embeddings.py``; vector alone 10, BM25 alone 27): when a question names one error code
among many similar ones, BM25 gives the right chunk a decisive score and all the others a near-tie,
and RRF throws that margin away by looking only at ranks. The heading score (:func:`heading_scores`)
says whether a section is *about* the question ("Deploy" for "How do I deploy askbase?") rather than
mentioning its words; the weights were tuned on ``evals/sample-site.json`` with
``bench/answer_quality.py --grid`` (top-1 of the expected page 0.867 → 0.911; bench/README.md).

Words are stemmed lightly (:func:`stem`) and question filler ("the docs", "please") is not searched
for. The tokenizer is versioned: postings saved by another version are rebuilt, never mixed.

Everything in this module is pure (no Chroma, no model), so it is tested on its own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Words that carry no topic; BM25's IDF would shrink them anyway, but dropping them keeps the
# postings of a 10,000-chunk index small and question phrasing ("how do I ...") out of the scores.
# fmt: off
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from", "had",
    "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or",
    "our", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to",
    "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
    "your",
})
# fmt: on
# Words a *question* uses to talk about the docs or to be polite ("where in the docs ...", "please tell
# me ..."), not about its topic. They are still indexed (a page may be about docs), but a question's
# "docs" must not pull up every chunk that mentions a docs/ path.
QUERY_FILLER = ("doc", "docs", "please", "tell", "explain", "about", "thank", "thanks", "hi", "hello")
_TOKEN = re.compile(r"\w+(?:[.\-_]\w+)*", re.UNICODE)
_PARTS = re.compile(r"[.\-_]")
# Bump when tokenize() changes: BM25 postings saved with another version do not match the queries any
# more, so BM25.from_arrays refuses them and the index rebuilds its postings from the chunk texts.
TOKENIZER_VERSION = 5

# Reciprocal rank fusion constant: 60 is the value from Cormack et al. and works without tuning.
RRF_K = 60
# Score fusion weights (vector, keyword, heading); they sum to 1 so a fused score stays in [0, 1] (the
# refusal threshold is an absolute fused score). Tuned on evals/sample-site.json: every triple with heading
# 0.2-0.4 and vector 0.1-0.3 gets the expected page first for 41 of 45 questions (0.5/0.5/0: 39), and this
# one separates answerable from unanswerable questions by their best score with the widest margin. Searched
# again on both eval sets with re-ranking in place (bench/answer_quality.py --tune: 53 triples on grids of
# 0.1 and 0.05, tuned on a random half of each set's cases): no triple beat this one on both sets; this one
# ties for the best worse-set hit@5/MRR@5; a vector weight of 0.4-0.5 gains a PostgreSQL case but the sample
# site then answers an unanswerable question (bench/README.md, "Answer quality").
W_VECTOR = 0.25
W_KEYWORD = 0.4
W_HEADING = 0.35
WEIGHTS = (W_VECTOR, W_KEYWORD, W_HEADING)


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk. ``score`` is the fused relevance in [0, 1] (:data:`WEIGHTS`): the cosine
    similarity to the question, the share of the question's keyword weight the chunk contains, and how
    well its heading path names the question's topic. On the sample site with MiniLM, unrelated chunks
    score below ~0.1, questions the docs do not answer at most ~0.3 at their best chunk, answered ones
    0.32 and up (median 0.54)."""

    chunk_id: str
    text: str
    url: str
    title: str
    anchor: str
    source: str
    score: float
    # The parts of ``score``, for answerers that judge support (None when a search did not say):
    # cosine similarity, normalised keyword score, share of the question's keyword weight in the
    # heading path.
    vector_score: float | None = None
    keyword_score: float | None = None
    heading_score: float | None = None
    # True for a passage a search adds after its ``k`` because the embedding ranks its page among the
    # first few while fusion did not return it (:func:`shared.knowledge.reranking.semantic_picks`).
    semantic_pick: bool = False


def stem(word: str) -> str:
    """A light English suffix folding of one lower-cased word, so "deploying", "deployed" and "deploys"
    all match "deploy", and "stored" matches "store". Only plain ASCII alphabetic words of four letters
    or more are folded (the rules are English): identifiers, numbers, short words and words of other
    scripts are kept exactly as written.

    Deliberately weaker than Porter: it never merges words of different meaning that docs tell
    apart ("deployment" stays apart from "deploy"), at the price of missing a few inflections.
    """
    if len(word) <= 3 or not (word.isascii() and word.isalpha()):
        return word
    original = word
    if word.endswith("ation") and len(word) >= 9:
        return word[:-5]  # configuration → configur, like configure below; installation → install
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
        if word.endswith("ed"):
            return word  # "embeds" is "embed", not "emb"
    if word.endswith("ation") and len(word) >= 9:
        return word[:-5]  # configurations
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running → run, embedded → embed; "rolling" keeps its "ll"
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    if (
        word.endswith("at")
        and not word.endswith("eat")
        and len(word) >= 7
        and original[len(word) :] in ("e", "es", "ed", "ing")
    ):
        # authenticate, -s, -d, authenticating → "authentic", which is what the -ation rule makes of
        # "authentication": the verb meets its noun (replicate/replication, truncate/truncation). Only
        # an -ate verb of 8 letters or more: "format(ted)", "repeat(ed)", "combat(ed)", "private" and
        # "iterate" keep their "at" (a shorter stem would meet unrelated words: "priv", "comb").
        word = word[:-2]
    return word


def _expand(word: str) -> list[str]:
    """The index terms of one lower-cased word: none for a stopword, the stem of a plain word, the
    whole identifier plus its (stemmed) parts for one like ``max-retries``."""
    if word in STOPWORDS:
        return []
    if word.isalnum():
        return [stem(word)]
    parts = _PARTS.split(word)
    if len(parts) == 1:
        return [word]
    return [word, *(stem(part) for part in parts if part and part not in STOPWORDS)]


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens without stopwords. Dotted/dashed identifiers (``max-retries``,
    ``v1.2``) are kept whole *and* split into their parts, so either spelling matches."""
    return [term for word in _TOKEN.findall(text.lower()) for term in _expand(word)]


QUERY_STOPWORDS = frozenset(stem(word) for word in QUERY_FILLER)


def query_terms(question: str) -> set[str]:
    """The distinct index terms a question is searched by: :func:`tokenize` without question filler."""
    return set(tokenize(question)) - QUERY_STOPWORDS


def heading_path(text: str, title: str) -> str:
    """The "Title > Section > Subsection" line the chunker starts a chunk with ("" when it has none)."""
    if title and text.startswith(title) and "\n\n" in text:
        head = text.split("\n\n", 1)[0]
        if len(head) <= 300 and "\n" not in head:
            return head.strip()
    return ""


class BM25:
    """Okapi BM25 over a fixed list of documents. Immutable once built, so safe for concurrent reads.

    Building is on the path to the first answer of a freshly opened index, so it avoids Python work
    per token: words are mapped to ids with C-level ``dict``/``map`` calls, each distinct word is
    expanded into its terms once, and postings are laid out term-major (CSR) with one numpy sort.
    """

    def __init__(self, ids: Sequence[str], texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        if len(ids) != len(texts):
            raise ValueError("ids and texts must have the same length")
        self.ids = list(ids)
        self.k1 = k1
        self.b = b
        count = len(texts)

        words_per_doc = [_TOKEN.findall(text.lower()) for text in texts]
        words = list(itertools.chain.from_iterable(words_per_doc))
        distinct = list(dict.fromkeys(words))
        word_ids = np.fromiter(
            map({word: i for i, word in enumerate(distinct)}.__getitem__, words),
            dtype=np.int64,
            count=len(words),
        )
        # Expansion table: distinct word → its term ids (ragged, flattened).
        vocabulary: dict[str, int] = {}
        expansion: list[int] = []
        expansion_len = np.zeros(len(distinct), dtype=np.int64)
        for i, word in enumerate(distinct):
            word_terms = _expand(word)
            expansion_len[i] = len(word_terms)
            expansion.extend(vocabulary.setdefault(term, len(vocabulary)) for term in word_terms)
        expansion_start = np.cumsum(expansion_len) - expansion_len
        # Gather every word's terms in order: a vectorised ragged concatenation.
        per_word = expansion_len[word_ids]
        total = int(per_word.sum())
        first = np.repeat(expansion_start[word_ids], per_word)
        offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(per_word) - per_word, per_word)
        terms = np.asarray(expansion, dtype=np.int64)[first + offset] if total else np.zeros(0, np.int64)
        word_docs = np.repeat(np.arange(count, dtype=np.int64), [len(w) for w in words_per_doc])
        docs = np.repeat(word_docs, per_word)
        lengths = np.bincount(docs, minlength=count)

        self._vocabulary = vocabulary
        # One sort of (term, doc) keys gives every posting with its term frequency, term-major.
        keys, tfs = np.unique(terms * max(count, 1) + docs, return_counts=True)
        posting_terms = keys // max(count, 1)
        self._posting_docs = (keys % max(count, 1)).astype(np.int32)
        self._posting_tfs = tfs.astype(np.float32)
        self._indptr = np.searchsorted(posting_terms, np.arange(len(vocabulary) + 1))
        df = np.diff(self._indptr).astype(np.float64)
        self._idf = np.log(1 + (count - df + 0.5) / (df + 0.5))
        average = float(lengths.mean()) if count else 0.0
        lengths_f = lengths.astype(np.float32)
        self._norm = k1 * (1 - b + b * lengths_f / average) if average else np.full(count, k1, np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The built index as plain arrays (no pickle), for :meth:`from_arrays` in another process."""
        vocabulary = sorted(self._vocabulary, key=self._vocabulary.__getitem__)
        return {
            "vocabulary": np.frombuffer(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8"), np.uint8),
            "params": np.asarray([self.k1, self.b], dtype=np.float64),
            "tokenizer": np.asarray([TOKENIZER_VERSION], dtype=np.int64),
            "posting_docs": self._posting_docs,
            "posting_tfs": self._posting_tfs,
            "indptr": self._indptr,
            "idf": self._idf,
            "norm": self._norm,
        }

    @classmethod
    def from_arrays(cls, ids: Sequence[str], arrays: dict[str, np.ndarray]) -> BM25:
        """The index :meth:`to_arrays` saved for these ``ids``. Raises ValueError if the arrays do not fit."""
        saved_tokenizer = arrays.get("tokenizer")
        if saved_tokenizer is None or [int(v) for v in saved_tokenizer] != [TOKENIZER_VERSION]:
            # Postings of another tokenizer would silently miss every changed term.
            raise ValueError("saved BM25 arrays come from another tokenizer version")
        vocabulary = json.loads(arrays["vocabulary"].tobytes().decode("utf-8"))
        k1, b = (float(value) for value in arrays["params"])
        posting_docs = arrays["posting_docs"].astype(np.int32, copy=False)
        posting_tfs = arrays["posting_tfs"].astype(np.float32, copy=False)
        indptr = arrays["indptr"].astype(np.int64, copy=False)
        idf = arrays["idf"].astype(np.float64, copy=False)
        norm = arrays["norm"].astype(np.float32, copy=False)
        count = len(ids)
        if (
            not isinstance(vocabulary, list)
            or len(indptr) != len(vocabulary) + 1
            or len(idf) != len(vocabulary)
            or len(norm) != count
            or len(posting_docs) != len(posting_tfs)
            or (len(indptr) and int(indptr[-1]) != len(posting_docs))
            or (len(posting_docs) and not 0 <= int(posting_docs.min()) <= int(posting_docs.max()) < count)
        ):
            raise ValueError("saved BM25 arrays are inconsistent with each other or with the ids")
        bm25 = cls.__new__(cls)
        bm25.ids = list(ids)
        bm25.k1, bm25.b = k1, b
        bm25._vocabulary = {term: i for i, term in enumerate(vocabulary)}
        bm25._posting_docs, bm25._posting_tfs, bm25._indptr = posting_docs, posting_tfs, indptr
        bm25._idf, bm25._norm = idf, norm
        return bm25

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (0 where no query term occurs)."""
        total = np.zeros(len(self.ids), dtype=np.float32)
        for term in query_terms(query):
            term_id = self._vocabulary.get(term)
            if term_id is None:
                continue
            start, end = self._indptr[term_id], self._indptr[term_id + 1]
            docs = self._posting_docs[start:end]
            tfs = self._posting_tfs[start:end]
            total[docs] += self._idf[term_id] * tfs * (self.k1 + 1) / (tfs + self._norm[docs])
        return total

    def idf(self, term: str) -> float:
        """The IDF of one index term; a term no document contains gets the highest possible IDF."""
        term_id = self._vocabulary.get(term)
        if term_id is not None:
            return float(self._idf[term_id])
        return math.log(1 + (len(self.ids) + 0.5) / 0.5)

    def reference_score(self, query: str) -> float:
        """What a document of average length containing each query term once would score.

        Dividing by it turns BM25 into "share of the question's keyword weight matched" (about 0-1).
        Terms no document contains count at the highest IDF: a question about something the corpus
        never mentions should lean on the vector side.
        """
        count = len(self.ids)
        unseen_idf = math.log(1 + (count + 0.5) / 0.5)
        total = 0.0
        for term in query_terms(query):
            term_id = self._vocabulary.get(term)
            total += float(self._idf[term_id]) if term_id is not None else unseen_idf
        return total

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        """Each id's document number, built at the first search that needs it (not on the path to
        opening an index). Two threads may both build it; the results are equal."""
        return {item: i for i, item in enumerate(self.ids)}

    def top_normalized(self, query: str, n: int, also: Iterable[str] = ()) -> list[tuple[str, float]]:
        """Like :meth:`top`, scores divided by :meth:`reference_score` and capped at 1; then, after
        the top ``n``, the ids of ``also`` outside them that contain a query term (others and
        unknown ids are left out).

        ``also`` is for the vector search's candidates: fusion adds each candidate's keyword score,
        and a chunk the vector side ranks high but BM25 ranks just outside its top ``n`` would
        otherwise score 0 there, behind every chunk of that top ``n`` however poorly it matches. On
        the PostgreSQL eval set that was the case for the right page of "How do I restrict which rows
        each user can see in a table?" (its best chunk: cosine rank 1, BM25 rank 69, so
        keyword score 0 instead of 0.72); with ``also`` the first page cited was right for 2 more of
        the 96 answerable questions (bench/README.md).
        """
        reference = self.reference_score(query)
        if reference <= 0:
            return []
        scores = self.scores(query)
        best = self._top_of(scores, n)
        found = [(self.ids[i], min(1.0, float(scores[i]) / reference)) for i in best]
        taken = set(best)
        positions = self._positions if also else {}
        for item in also:
            i = positions.get(item)
            if i is not None and i not in taken and scores[i] > 0:
                taken.add(i)
                found.append((item, min(1.0, float(scores[i]) / reference)))
        return found

    def top(self, query: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` best (id, score) pairs with a positive score, best first."""
        if n <= 0 or not self.ids:
            return []
        scores = self.scores(query)
        return [(self.ids[i], float(scores[i])) for i in self._top_of(scores, n)]

    def _top_of(self, scores: np.ndarray, n: int) -> list[int]:
        """The document numbers of the ``n`` best positive ``scores``, best first."""
        if n <= 0 or not self.ids:
            return []
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return []
        best = positive[np.argpartition(-scores[positive], n - 1)[:n]] if positive.size > n else positive
        # Ties broken by id so the same index always answers the same way.
        return sorted(best.tolist(), key=lambda i: (-float(scores[i]), self.ids[i]))


def reciprocal_rank_fusion(rankings: Iterable[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse ranked id lists: each id scores sum(1 / (k + rank)), ranks from 1.

    Returns (id, score) best first, scores scaled so that first place in every list is 1.0.
    """
    rankings = [list(r) for r in rankings]
    totals: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            totals[item] = totals.get(item, 0.0) + 1.0 / (k + rank)
    best_possible = len(rankings) / (k + 1) if rankings else 1.0
    return sorted(
        ((item, score / best_possible) for item, score in totals.items()),
        key=lambda pair: (-pair[1], pair[0]),
    )


def dedupe_key(text: str, title: str) -> str:
    """A key equal for passages that say the same thing: the body without the heading-path prefix,
    case- and whitespace-folded. The same section reached through two URLs collapses to one."""
    body = text
    if title and text.startswith(title) and "\n\n" in text:
        body = text.split("\n\n", 1)[1]
    folded = " ".join(body.lower().split())
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


# A heading score at or above this says the section's heading names the question itself (the FAQ entry
# "How much does it cost?" scores 1.0 for that question): a follow-up with a pronoun may then stand
# alone (shared/qa/followups.py), and the answerer trusts the section over the embedding's favourite
# page (shared/qa/extractive.py). Each use is measured where it is made.
NAMING_HEADING = 0.8


def heading_scores(bm25: BM25, question: str, headings: dict[str, str]) -> dict[str, float]:
    """Per id, how well its heading path names the question's topic, in [0, 1].

    A section titled "Deploy" is *about* deploying, while a passage that merely mentions the word is
    not; BM25 over the whole chunk cannot tell the two apart, this score can. It is the share of the
    question's keyword weight (IDF) the heading path contains, scaled down when the section's own
    heading (the last one) says much else besides: "Deploy" names "How do I deploy?" better than
    "After the first deploy" does.
    """
    wanted = query_terms(question)
    if not wanted:
        return {}
    weights = {term: bm25.idf(term) for term in wanted}
    total = sum(weights.values())
    scores = {}
    for item, heading in headings.items():
        covered = wanted.intersection(tokenize(heading))
        if not covered:
            continue
        own = set(tokenize(heading.rsplit(" > ", 1)[-1]))
        precision = len(own & wanted) / len(own) if own else 0.0
        scores[item] = sum(weights[term] for term in covered) / total * (0.5 + 0.5 * precision)
    return scores


def fuse_scores(
    vector_scores: dict[str, float],
    keyword_scores: dict[str, float],
    heading: dict[str, float] | None = None,
    weights: tuple[float, float, float] | None = None,
) -> list[tuple[str, float]]:
    """Weighted sum of cosine similarity (negatives count as 0), normalised keyword score and heading
    score, each clipped to [0, 1]; ``weights`` defaults to :data:`WEIGHTS`.

    An id missing from one side scores 0 there. Returns (id, score) best first, ties by id.
    """
    w_vector, w_keyword, w_heading = weights or WEIGHTS
    heading = heading or {}

    def clip(value: float) -> float:
        return max(0.0, min(1.0, value))

    fused = {
        item: w_vector * clip(vector_scores.get(item, 0.0))
        + w_keyword * clip(keyword_scores.get(item, 0.0))
        + w_heading * clip(heading.get(item, 0.0))
        for item in {*vector_scores, *keyword_scores}
    }
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


def fuse_and_dedupe(
    vector_scores: dict[str, float],
    keyword_scores: dict[str, float],
    passages: dict[str, Passage],
    k: int,
    content_hashes: dict[str, str] | None = None,
    heading: dict[str, float] | None = None,
    weights: tuple[float, float, float] | None = None,
) -> list[Passage]:
    """The top ``k`` passages by :func:`fuse_scores`, one per distinct content, with their scores.

    ``passages`` maps chunk id → passage (score ignored); ids missing from it are skipped (deleted
    between the two searches). Two passages are duplicates when their content hashes are equal or
    their :func:`dedupe_key` is; the better-scored one is kept.
    """
    content_hashes = content_hashes or {}
    heading = heading or {}
    results: list[Passage] = []
    seen: set[str] = set()
    for chunk_id, score in fuse_scores(vector_scores, keyword_scores, heading, weights):
        passage = passages.get(chunk_id)
        if passage is None:
            continue
        keys = {"t:" + dedupe_key(passage.text, passage.title)}
        if chunk_id in content_hashes:
            keys.add("h:" + content_hashes[chunk_id])
        if keys & seen:
            continue
        seen |= keys
        results.append(
            dataclasses.replace(
                passage,
                score=round(score, 6),
                vector_score=round(max(0.0, vector_scores.get(chunk_id, 0.0)), 6),
                keyword_score=round(keyword_scores.get(chunk_id, 0.0), 6),
                heading_score=round(heading.get(chunk_id, 0.0), 6),
            )
        )
        if len(results) >= k:
            break
    return results
