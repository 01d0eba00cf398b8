"""Follow-up questions: whether a question continues the previous one, and what to search for then.

"And for Discord?" or "Where is its token kept?" mean little alone; "How much does it cost?" after
"How do I deploy askbase?" is a new question that happens to be short. Word count cannot tell these
apart, so the decision reads the question itself:

* an **ellipsis** (it opens with "and", "what about", "also", ..., is a bare interrogative such as
  "how often?", or has no content word at all) is
  a follow-up: it is searched together with the previous question, and passages that contain the
  follow-up's own words come first (they are its focus; the previous question is only context);
* a **reference** (a pronoun such as "it", "its", "they", "that" that the question does not resolve
  itself) is a follow-up unless the docs themselves ask the question alone: the first passage it
  finds alone scores confidently *and* sits under a heading that says what the question says ("How
  much does it cost?" matches the FAQ entry titled that way). "Where is its token kept?" matches
  nothing well on its own; "Which lock does it take?" after a question about VACUUM FULL matches the
  pages about locks well, but no heading asks it, so "it" is still VACUUM FULL;
* anything else is a new question and is never merged.

Pure: retrieval is passed in as a callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from shared.knowledge.reranking import semantic_picks, split_picks
from shared.knowledge.retrieval import NAMING_HEADING, Passage, tokenize

_WORD = re.compile(r"[\w']+")
ELLIPSIS_OPENERS = (
    ("and",),
    ("also",),
    ("or",),
    ("but",),
    ("what", "about"),
    ("how", "about"),
    ("what", "else"),
    ("same", "for"),
    ("then",),
)
# A question made of these words alone ("How often?", "Why?", "How long exactly?") asks something
# more about the previous question: it names nothing of its own to search for.
# fmt: off
BARE_INTERROGATIVE = frozenset({
    "how", "often", "long", "much", "many", "why", "when", "where", "who", "which", "what", "else",
    "exactly", "so", "really", "again", "then", "is", "does", "do", "can",
})
REFERENCES = frozenset({
    "it", "its", "it's", "itself", "they", "them", "their", "theirs", "those", "these", "that", "this",
    "there", "one", "ones", "he", "she", "him", "her",
})
# fmt: on
# A question alone is answered "confidently" when its best passage scores at least this. On the
# sample-site eval set the self-contained questions' best passages score 0.32-0.94 (median 0.54);
# "How much does it cost?" scores 0.81 alone, "Where is its token kept?" 0.38. A question with a
# reference whose words happen to match a heading well ("What does it create?") is taken alone:
# the price of never merging a new question into an old one.
STANDALONE_SCORE = 0.45
# ... and its heading names the question (NAMING_HEADING, 0.8): the FAQ heading "How much does it
# cost?" scores 1.0 for that question; on the PostgreSQL manual "Which lock does it take?" (after
# "What does VACUUM FULL do that plain VACUUM doesn't?") finds the LOCK command's page at 0.72 with a
# heading score of 0.52, and taking it alone answered about locks in general instead of VACUUM FULL's.


class TurnKind(StrEnum):
    NEW = "new"
    ELLIPSIS = "ellipsis"
    REFERENCE = "reference"


@dataclass(frozen=True)
class Retrieval:
    """What :func:`retrieve_for_turn` searched for and found."""

    query: str
    passages: list[Passage]
    kind: TurnKind
    merged: bool


def classify(question: str) -> TurnKind:
    """How ``question`` relates to whatever was asked before it (see the module docstring)."""
    words = [w.lower() for w in _WORD.findall(question)]
    if not words or not tokenize(question) or all(w in BARE_INTERROGATIVE for w in words):
        return TurnKind.ELLIPSIS
    for opener in ELLIPSIS_OPENERS:
        if tuple(words[: len(opener)]) == opener:
            return TurnKind.ELLIPSIS
    if any(w in REFERENCES for w in words):
        return TurnKind.REFERENCE
    return TurnKind.NEW


def merged_query(previous: str, question: str) -> str:
    """The text searched for a follow-up: the previous question as context, then the follow-up."""
    return f"{previous}\n{question}"


def _focus_first(passages: list[Passage], question: str) -> list[Passage]:
    """``passages`` with those containing the follow-up's own content words first (stable)."""
    focus = set(tokenize(question))
    if not focus:
        return passages
    return sorted(passages, key=lambda p: not focus & set(tokenize(p.text)))


def retrieve_for_turn(
    search: Callable[[str, int], list[Passage]],
    question: str,
    previous: str | None,
    k: int,
    standalone_score: float = STANDALONE_SCORE,
) -> Retrieval:
    """Search for ``question`` asked after ``previous`` (None: first question of a conversation)."""
    kind = classify(question)
    if not previous or kind is TurnKind.NEW:
        return Retrieval(question, search(question, k), kind, merged=False)
    if kind is TurnKind.REFERENCE:
        alone = search(question, k)
        if alone and alone[0].score >= standalone_score and (alone[0].heading_score or 0.0) >= NAMING_HEADING:
            return Retrieval(question, alone, kind, merged=False)
    query = merged_query(previous, question)
    # Twice as deep, so the follow-up's focus can bring a passage up from below the cut. The semantic
    # picks are chosen again after the cut, among the deeper search's passages and its picks: the
    # embedding's favourite pages are among those, and the cut may leave one out.
    found = search(query, 2 * k)
    ranked, _ = split_picks(found)
    kept = _focus_first(ranked, question)[:k]
    return Retrieval(query, kept + semantic_picks(found, kept), kind, merged=True)
