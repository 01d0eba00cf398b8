"""Hybrid retrieval scoring: BM25 keyword search fused with vector search.

MiniLM finds passages that *mean* the question; BM25 finds passages that *say* it. On exact-phrase
questions (error codes, option names, product terms) BM25 found the right chunk far more often than
MiniLM alone, so :meth:`KnowledgeIndex.search` asks both and fuses the two here.

Fusion is by score, not rank: ``W_VECTOR * cosine + W_KEYWORD * keyword coverage``. Reciprocal rank
fusion was measured too and lost (top-1: 32 vs 29 of 34 on the probe in ``bench/embeddings.py``;
vector alone 10, BM25 alone 27): when a question names one error code among many similar ones, BM25
gives the right chunk a decisive score and all the others a near-tie, and RRF throws that margin away
by looking only at ranks.

Everything in this module is pure (no Chroma, no model), so it is tested on its own.
"""

from __future__ import annotations

import dataclasses
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
_TOKEN = re.compile(r"\w+(?:[.\-_]\w+)*", re.UNICODE)
_PARTS = re.compile(r"[.\-_]")

# Reciprocal rank fusion constant: 60 is the value from Cormack et al. and works without tuning.
RRF_K = 60
# Score fusion weights. Recall on the probe was flat from 0.3 to 0.7: the middle is the safe choice.
W_VECTOR = 0.5
W_KEYWORD = 0.5


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk. ``score`` is the fused relevance in [0, 1]: half the cosine similarity
    to the question (MiniLM: 0.3 and up is usually on topic) plus half the share of the question's keyword
    weight the chunk contains. Measured with MiniLM: unrelated chunks score below ~0.1, a good
    paraphrase without shared words 0.15-0.35, a chunk that also contains the question's rare words
    (an error code, an option name) 0.4 and up."""

    chunk_id: str
    text: str
    url: str
    title: str
    anchor: str
    source: str
    score: float


def _expand(word: str) -> list[str]:
    """The index terms of one lower-cased word: none for a stopword, the word plus its parts for an
    identifier like ``max-retries``."""
    if word in STOPWORDS:
        return []
    if word.isalnum():
        return [word]
    parts = _PARTS.split(word)
    return [word, *(part for part in parts if part and part not in STOPWORDS)] if len(parts) > 1 else [word]


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords. Dotted/dashed identifiers (``max-retries``,
    ``v1.2``) are kept whole *and* split into their parts, so either spelling matches."""
    return [term for word in _TOKEN.findall(text.lower()) for term in _expand(word)]


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
            terms = _expand(word)
            expansion_len[i] = len(terms)
            expansion.extend(vocabulary.setdefault(term, len(vocabulary)) for term in terms)
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
            "posting_docs": self._posting_docs,
            "posting_tfs": self._posting_tfs,
            "indptr": self._indptr,
            "idf": self._idf,
            "norm": self._norm,
        }

    @classmethod
    def from_arrays(cls, ids: Sequence[str], arrays: dict[str, np.ndarray]) -> BM25:
        """The index :meth:`to_arrays` saved for these ``ids``. Raises ValueError if the arrays do not fit."""
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
        for term in set(tokenize(query)):
            term_id = self._vocabulary.get(term)
            if term_id is None:
                continue
            start, end = self._indptr[term_id], self._indptr[term_id + 1]
            docs = self._posting_docs[start:end]
            tfs = self._posting_tfs[start:end]
            total[docs] += self._idf[term_id] * tfs * (self.k1 + 1) / (tfs + self._norm[docs])
        return total

    def reference_score(self, query: str) -> float:
        """What a document of average length containing each query term once would score.

        Dividing by it turns BM25 into "share of the question's keyword weight matched" (about 0-1).
        Terms no document contains count at the highest IDF: a question about something the corpus
        never mentions should lean on the vector side.
        """
        count = len(self.ids)
        unseen_idf = math.log(1 + (count + 0.5) / 0.5)
        total = 0.0
        for term in set(tokenize(query)):
            term_id = self._vocabulary.get(term)
            total += float(self._idf[term_id]) if term_id is not None else unseen_idf
        return total

    def top_normalized(self, query: str, n: int) -> list[tuple[str, float]]:
        """Like :meth:`top`, scores divided by :meth:`reference_score` and capped at 1."""
        reference = self.reference_score(query)
        if reference <= 0:
            return []
        return [(doc, min(1.0, score / reference)) for doc, score in self.top(query, n)]

    def top(self, query: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` best (id, score) pairs with a positive score, best first."""
        if n <= 0 or not self.ids:
            return []
        scores = self.scores(query)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return []
        best = positive[np.argpartition(-scores[positive], n - 1)[:n]] if positive.size > n else positive
        # Ties broken by id so the same index always answers the same way.
        ordered = sorted(best.tolist(), key=lambda i: (-float(scores[i]), self.ids[i]))
        return [(self.ids[i], float(scores[i])) for i in ordered]


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


def fuse_scores(
    vector_scores: dict[str, float],
    keyword_scores: dict[str, float],
    w_vector: float = W_VECTOR,
    w_keyword: float = W_KEYWORD,
) -> list[tuple[str, float]]:
    """Weighted sum of cosine similarity (negatives count as 0) and normalised keyword score.

    An id missing from one side scores 0 there. Returns (id, score) best first, ties by id.
    """
    fused = {
        item: w_vector * max(0.0, min(1.0, vector_scores.get(item, 0.0)))
        + w_keyword * max(0.0, min(1.0, keyword_scores.get(item, 0.0)))
        for item in {*vector_scores, *keyword_scores}
    }
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


def fuse_and_dedupe(
    vector_scores: dict[str, float],
    keyword_scores: dict[str, float],
    passages: dict[str, Passage],
    k: int,
    content_hashes: dict[str, str] | None = None,
) -> list[Passage]:
    """The top ``k`` passages by :func:`fuse_scores`, one per distinct content.

    ``passages`` maps chunk id → passage (score ignored); ids missing from it are skipped (deleted
    between the two searches). Two passages are duplicates when their content hashes are equal or
    their :func:`dedupe_key` is; the better-scored one is kept.
    """
    content_hashes = content_hashes or {}
    results: list[Passage] = []
    seen: set[str] = set()
    for chunk_id, score in fuse_scores(vector_scores, keyword_scores):
        passage = passages.get(chunk_id)
        if passage is None:
            continue
        keys = {"t:" + dedupe_key(passage.text, passage.title)}
        if chunk_id in content_hashes:
            keys.add("h:" + content_hashes[chunk_id])
        if keys & seen:
            continue
        seen |= keys
        results.append(dataclasses.replace(passage, score=round(score, 6)))
        if len(results) >= k:
            break
    return results
