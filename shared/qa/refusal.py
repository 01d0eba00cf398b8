"""Calibrated refusal: when the retrieved passages cannot support an answer, and the answer that says so.

An answerer gets passages only when the best one is close enough (the calibrated threshold
:data:`MIN_SCORE` on the best passage's fused score) and the question names nothing that none of them
mentions (:func:`unsupported_names`). Otherwise the answer says the docs don't cover it, cites nothing,
and names the closest pages the docs do have, with links. Both answerers refuse through here, so a
question is refused the same way whichever one answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.knowledge.retrieval import tokenize
from shared.qa.answerers import Answer
from shared.qa.sources import source_link, source_title

if TYPE_CHECKING:
    from shared.knowledge.retrieval import Passage

NOTHING_FOUND = (
    "I couldn't find anything about that in the knowledge base, so I won't guess. "
    "Try rephrasing the question, or ask about something the indexed sites cover."
)
NOT_COVERED = "The docs don't seem to cover that, so I won't guess."
CLOSEST_INTRO = "The closest topics they do cover:"

# Refusal threshold on the best passage's fused retrieval score (vector + keyword + heading, 0-1), the
# default of ASKBASE_ANSWER_MIN_SCORE. Tuned on evals/sample-site.json with the fusion weights of
# shared.knowledge.retrieval: the best passage of every answerable question scores 0.317 or more, of
# every unanswerable one 0.291 or less (Slack, Confluence: "askbase" and "support" occur, the product
# asked about never does, and a word no page contains weighs fully against the keyword score). The
# margin is thin on 61 cases; bench/answer_quality.py --grid shows it for other weights. On the larger
# PostgreSQL docs unanswerable questions reach 0.49 (common words match everywhere): no one threshold
# serves both, so those are refused by what their passages lack (NAME_CEILING below), not by score.
MIN_SCORE = 0.3
# A question that names something (a product, a service: "Slack", "Django", "SQLAlchemy") that none of
# the retrieved passages mentions is refused unless its best passage scores at least this: the docs'
# closest passages are about something else. On the two eval sets no answerable question (of 139)
# names a thing its passages lack, and 29 of the 33 unanswerable ones do, the best of them scoring 0.49
# (bench/README.md, "Answer quality"); the other four are refused by MIN_SCORE.
NAME_CEILING = 0.6
# ... unless the name is common across the corpus: the product's own name ("PostgreSQL" in its docs) is
# on nearly every page, so the few passages retrieved need not repeat it. A passage's keyword score is
# the share of the question's keyword weight it matches, each word weighted by its BM25 IDF (a word no
# page contains at the highest IDF; shared.knowledge.retrieval.BM25.reference_score), so a name missing
# from a passage that still scores this much carries little weight: it occurs in many documents. On the
# two eval sets every unanswerable question the rule refuses has a best keyword score of 0.65 or less;
# "Why does PostgreSQL need to freeze old rows?" scores 1.0 without the word "PostgreSQL".
COMMON_NAME_KEYWORD_SHARE = 0.8
_NAME_WORD = re.compile(r"[A-Za-z][\w+#./-]*[\w+#]|[A-Za-z]")
# Closest pages a refusal names, and the lowest score at which a page is "close" at all.
RELATED_PAGES = 3
RELATED_MIN_SCORE = 0.12


def relevant_passages(
    question: str, passages: Sequence[Passage], min_score: float, limit: int
) -> list[Passage]:
    """Passages worth giving an answerer: the best one scores at least ``min_score`` (else none: the
    question is refused), then every passage above ``min_score`` / 2, at most ``limit``.

    The threshold is on the fused retrieval score, which already weighs how much of the question's
    rare words a passage contains (a word no page contains counts fully against it) together with its
    meaning and its heading; see :data:`MIN_SCORE` for how it was tuned.
    """
    if not passages or max(p.score for p in passages) < min_score:
        return []
    if (
        max(p.score for p in passages) < NAME_CEILING
        and not names_are_common(passages)
        and unsupported_names(question, passages)
    ):
        return []
    return usable(passages, min_score)[:limit]


def usable(passages: Sequence[Passage], min_score: float) -> list[Passage]:
    """The ``passages`` an answer may use once its best passage reached ``min_score``: those scoring
    at least half of it, in their order."""
    return [p for p in passages if p.score >= min_score / 2]


def question_names(question: str) -> list[str]:
    """The names a question asks about: words written as names (capitalised, or with a capital inside:
    "Slack", "SQLAlchemy", "HNSW"), except a sentence's first word when only its first letter is
    capital ("And how do I restore it?" after a merged previous question)."""
    names = []
    for match in _NAME_WORD.finditer(question):
        word = match.group()
        before = question[: match.start()].rstrip()
        starts_sentence = not before or before[-1] in ".?!:;\"'("
        inner_capital = any(c.isupper() for c in word[1:])
        if len(word) > 1 and (inner_capital or (word[0].isupper() and not starts_sentence)):
            names.append(word)
    return names


def unsupported_names(question: str, passages: Sequence[Passage]) -> list[str]:
    """The names in ``question`` that none of ``passages`` contains: "Does askbase support Slack?"
    retrieves pages about askbase's integrations, none of which says "Slack". An answer quoting them
    would answer another question, so the question is refused (see :data:`NAME_CEILING`)."""
    found: set[str] = set()
    for passage in passages:
        found.update(tokenize(passage.text))
    return [name for name in question_names(question) if not set(tokenize(name)) & found]


def names_are_common(passages: Sequence[Passage]) -> bool:
    """Whether a passage matches so much of the question's IDF-weighted keyword weight that any name it
    lacks must be common across the corpus (high document frequency, low IDF) rather than something
    the docs never mention (see :data:`COMMON_NAME_KEYWORD_SHARE`). Passages from a search that did
    not report keyword scores never count as proof."""
    return any(p.keyword_score is not None and p.keyword_score >= COMMON_NAME_KEYWORD_SHARE for p in passages)


def related_pages(passages: Sequence[Passage], limit: int = RELATED_PAGES) -> list[Passage]:
    """The closest passages, one per page, that are close at all (for a refusal to point to)."""
    chosen: list[Passage] = []
    for passage in sorted(passages, key=lambda p: -p.score):
        if passage.score < RELATED_MIN_SCORE or any(p.url == passage.url for p in chosen):
            continue
        chosen.append(passage)
        if len(chosen) >= limit:
            break
    return chosen


def refusal(passages: Sequence[Passage], answerer: str) -> Answer:
    """The "I don't know" answer, naming the closest pages the docs have (with links), citing nothing."""
    related = related_pages(passages)
    if not related:
        return Answer(text=NOTHING_FOUND, sources=[], answerer=answerer, refused=True)
    lines = [NOT_COVERED, CLOSEST_INTRO]
    lines += [f"- {source_title(p)}: {source_link(p)}" for p in related]
    return Answer(text="\n".join(lines), sources=[], answerer=answerer, refused=True, related=related)
