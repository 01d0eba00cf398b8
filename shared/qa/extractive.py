"""The extractive answerer: offline, it quotes the sentence(s) of the docs that answer and cites them.

It answers with the sentence(s) of the best section that answer the question (sought in every retrieved
chunk of that section), the best sentence first, keeping a leading "Yes." or "No."; a quote from an
entry named by an identifier (a setting, a function) starts with that name; a synopsis in grammar
notation gives way to another retrieved section of its page; a second page is quoted only when it
adds what the first lacks. Its sources are the passages it quotes, numbered in quoting order, then
any page the embedding clearly prefers to the quoted one (a search's semantic pick,
:func:`semantic_pages`) and the other pages retrieval ranks almost as high, listed by number on a last
"Also relevant:" line but never quoted; at most one source per page, at most ``max_passages`` in all.
When nothing is close enough it refuses (:mod:`shared.qa.refusal`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.knowledge.reranking import split_picks
from shared.knowledge.retrieval import NAMING_HEADING, stem, tokenize
from shared.qa.answerers import Answer
from shared.qa.refusal import MIN_SCORE, refusal, relevant_passages, usable
from shared.qa.sources import SECTION_SEPARATOR, split_heading_path

if TYPE_CHECKING:
    from shared.knowledge.retrieval import Passage

# A further passage (another page) is quoted only if it scores at least this share of the best one and
# brings question words the quotes so far lack: the answer's needs decide the number of sources.
# 0.9 rather than 0.8 (2026-12-01, bench/README.md "Answer quality"): on the PostgreSQL set one more
# answer shows its answering term first and citation precision rises 0.609 -> 0.617 (a page quoted at
# 0.8-0.9 of the best score was more often beside the point); the sample site is unchanged.
SECOND_SOURCE_SHARE = 0.9
QUOTE_CHARS = 400
# Pages listed as further sources without a quote (further_pages): retrieved at this share of the best
# passage's score or more. Measured on both eval sets (bench/README.md, "Answer quality").
ALSO_SHARE = 0.85
ALSO_RELEVANT = "Also relevant:"
# A search's semantic pick (a page the embedding ranks first or second that fusion left out) is listed
# as also relevant, before the near-ties, when its cosine similarity beats the best quoted passage's
# by at least this: the embedding then disagrees with what was quoted. On the PostgreSQL set this
# listed the right page for "What is the maximum size of a table?", "How do I attach a description to
# a table?" and "How can I track which queries take the most time?" (hit@5 0.885 -> 0.917; citation
# precision 0.630 -> 0.631); with no margin the same hit@5 at precision 0.626, at 0.06 one of the
# three was lost (0.906). On the sample site no pick is listed (bench/README.md, "The embedding's
# favourite pages").
SEMANTIC_MARGIN = 0.03
# ... unless a quoted passage's heading names the question (NAMING_HEADING, 0.8): a section titled by
# the question is the answer whatever the embedding prefers. On the 2,826 generated PostgreSQL
# questions (each a section's own heading) listing picks regardless cost citation precision 0.744 ->
# 0.678 (hit@5 0.984 -> 0.986); with this bar 0.738 (hit@5 0.984), and the PostgreSQL set keeps its
# three pages (their quoted headings score 0.56 at most).
# A quote shorter than this gets the sentence after it too: "Run pulumi up in infra/." needs the next
# sentence to say what that does.
SHORT_QUOTE_CHARS = 90
# The best sentence is joined by the next best ones (at most this many sentences in all, within this
# many characters) that hold question words (score at least MORE_MIN_SCORE): an answer is often spread
# over a definition and the sentence naming the setting or command. Tuned on both eval sets
# (bench/README.md, "Answer quality": PostgreSQL answer first 0.448 -> 0.521, the sample site unchanged).
MORE_SENTENCES = 3
MORE_CHARS = QUOTE_CHARS
MORE_MIN_SCORE = 0.2
# Among the sentences that may join the best one, the one right after it gains this when the joining
# order is decided (it must still score MORE_MIN_SCORE): a quote that reads on from its best sentence.
# PostgreSQL answer first 0.604 -> 0.615, the sample site unchanged (bench/README.md, 2026-12-01).
NEXT_SENTENCE_BONUS = 0.6

# Words too common to show that a passage is about the question (on top of retrieval's stopwords).
_STOPWORDS = frozenset(
    """a about above after again all am an and any are as at be been before being below between both but
    by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my no nor not now of off on once only
    or other our ours out over own same she should so some such than that the their theirs them then there
    these they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours please tell explain show give find get use using want need know
    thing things way ways make does anything something much many""".split()  # noqa: SIM905 - readable as prose
)
_STOP_STEMS = frozenset(stem(word) for word in _STOPWORDS) | _STOPWORDS
# Sentence ends: after . ! ? (and a closing quote or bracket), before an upper-case letter, digit, quote,
# bracket or slash; and every line break left by _wrapped_lines (list items, code lines and table rows are
# units of their own).
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(\[/`])|\n+")
# Where a function table's row starts inside a line: before a signature "name ( args ) → type", after
# the previous row's example result. The PostgreSQL manual's function tables (functions-*.html, about
# 40 pages) are extracted with their rows run together on one line.
_ROW = r"[a-z_][a-z0-9_]* \( [^()]{0,200}\) → "
_SIGNATURE = re.compile(rf"(?<=\S) (?={_ROW})")
# Such a row is one of many parallel entries: being the first of its chunk says nothing (no lead bonus).
_ROW_START = re.compile(_ROW)
# A line that ends a thought: the next line starts a unit of its own.
_LINE_END = re.compile(r"[.!?:;][\"')\]]*$")
_LIST_ITEM = re.compile(r"^(?:[-*\u2022]\s|\d{1,3}[.)]\s)")
# Grammar notation of a synopsis ("{ TO | = } [ , ... ]"): what a reference page opens with, never an answer.
_NOTATION = re.compile(r"[\[\]{}|]")
NOTATION_SHARE = 0.03
# Sentence scoring (best_quote): what the first sentence of a section gets for being first (docs put the
# answer first), and what a sentence loses for being a question, a chunk's cut-off start or grammar.
LEAD_BONUS = 0.35
QUESTION_PENALTY = 1.0
# A sentence that only points elsewhere ("See Section 9.27.8 for details.", "(See Chapter 23 for ...)")
# names the question's words without answering it.
CROSS_REFERENCE_PENALTY = 0.5
_CROSS_REFERENCE = re.compile(
    r"^\(?see (?:also )?(?:section|chapter|appendix|table|example|part)\b", re.IGNORECASE
)
# A sentence opening with a connective ("But, for example, ...", "However, ...") goes on from one before
# it: the chunk it opens continues its section, so it gets no lead bonus.
_CONNECTIVE = re.compile(
    r"^(?:but|however|also|so|thus|therefore|hence|moreover|furthermore|otherwise|instead|conversely"
    r"|similarly|nevertheless|likewise|then)\b",
    re.IGNORECASE,
)
# When every question word is in the section's heading ("What does the autovacuum daemon do?" in "The
# Autovacuum Daemon"), the words say which section, not which sentence: each sentence's word score is
# cut to this share for choosing the best one, so the section's opening (its definition, LEAD_BONUS)
# wins over a later sentence that merely repeats the heading. The sentences that join the best one are
# still chosen on the full score, so the quote keeps its supporting sentences.
HEADING_ONLY_SHARE = 0.25
FRAGMENT_PENALTY = 0.3
NOTATION_PENALTY = 0.5
# How many retrieved chunks of the cited section are searched for the answering sentence, and what a
# sentence in a lower-scored chunk gives up (per unit of score share lost): the best sentence of the
# section wins, not the first sentence of its best-scored chunk.
SECTION_PASSAGES = 3
PASSAGE_SHARE_WEIGHT = 0.5
# A code identifier: snake_case, a file name with an extension, a backslash command, a command-line
# option, a hyphenated name with a digit ("scram-sha-256") or an upper-case SQL phrase of two words.
# A sentence naming one gains IDENTIFIER_BONUS: a how-to answer names the setting or command to use.
_IDENTIFIER = re.compile(
    r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b|\b\w+\.(?:conf|sql|sh|py|yaml|json)\b|(?<!\w)\\[a-z]+\b"
    r"|(?<![\w-])--?[a-z][\w-]*\b|\b[a-z]+-[a-z0-9-]*\d\b|\b[A-Z]{3,} [A-Z]{2,}\b"
)
IDENTIFIER_BONUS = 0.15
_YES_NO_QUESTION = re.compile(
    r"^\s*(do|does|did|is|are|was|were|can|could|will|would|should|has|have|had|may|must)\b", re.IGNORECASE
)
_YES_NO_LEAD = re.compile(r"^(yes|no)\b[.,!:;]?", re.IGNORECASE)


def terms(text: str) -> set[str]:
    """Content words of ``text``: lower-cased and stemmed the way retrieval indexes them, without
    stopwords or one-letter tokens."""
    return {t for t in tokenize(text) if len(t) > 1} - _STOP_STEMS


def _wrapped_lines(body: str) -> str:
    """``body`` with hard-wrapped lines joined: generated HTML (DocBook, the PostgreSQL docs) breaks
    paragraphs into source lines that extraction keeps, and a sentence cut at every line would never be
    quoted whole. A line break stays where a line ends a sentence or clause, where the next line is a
    list item, and around table rows."""
    out: list[str] = []
    for line in body.split("\n"):
        stripped = line.strip()
        if (
            out
            and stripped
            and out[-1].strip()
            and not _LINE_END.search(out[-1].rstrip())
            and not _LIST_ITEM.match(stripped)
            and " | " not in stripped
            and " | " not in out[-1]
        ):
            out[-1] = out[-1].rstrip() + " " + stripped
        else:
            out.append(line)
    return "\n".join(out)


def sentences(body: str) -> list[str]:
    """``body`` cut into sentences (list items, table rows and code lines are each one; a paragraph
    hard-wrapped over several lines is not cut at its line ends). A function table whose rows reached
    the index as one line is cut before each row's signature ("date_trunc ( text, timestamp ) →
    timestamp ..."), so each function's row is a unit of its own."""
    units = [s.strip() for s in _SENTENCE.split(_wrapped_lines(body)) if s and s.strip()]
    return [row.strip() for unit in units for row in _SIGNATURE.split(unit) if row.strip()]


def _is_fragment(unit: str, heading: str) -> bool:
    """Whether a passage's first unit is the cut-off end of a sentence (a chunk that continues a section
    starts mid-sentence: "and materialized view in the current database ..."). A lower-case start that
    is an identifier or command ("pg_dump", "askbase dev") or a word of the heading is not one."""
    first = unit.split(None, 1)[0].rstrip(",;:.!?)") if unit.strip() else ""
    if not first[:1].islower() or not first.isalpha():
        return False
    return first.lower() not in heading.lower()


def _is_notation(unit: str) -> bool:
    """A synopsis line in grammar notation ("ALTER SYSTEM SET name { TO | = } { value [, ...] }")."""
    return len(_NOTATION.findall(unit)) >= max(2, NOTATION_SHARE * len(unit))


def _answer_order(picked: list[int], best: int, yes_no: bool) -> list[int]:
    """The picked sentence indexes in the order they are quoted: the best sentence and the ones right
    after it first (the answer comes first), then the others in document order. A yes/no answer keeps
    document order, so its leading "Yes." or "No." stays first."""
    if yes_no:
        return picked
    block = [best]
    while block[-1] + 1 in picked:
        block.append(block[-1] + 1)
    return block + [i for i in picked if i not in block]


def scored_quote(
    question: str, passage: Passage, max_chars: int = QUOTE_CHARS, continues: bool = False
) -> tuple[float, str]:
    """The sentence(s) of ``passage`` that answer ``question`` and the best sentence's score (see
    :func:`best_quote`). ``continues``: the passage is a later chunk of its section (its first
    sentence is not the section's opening, so it gets no lead bonus)."""
    heading, body = split_heading_path(passage)
    units = sentences(body)
    if not units:
        return float("-inf"), ""
    wanted = terms(question)
    heading_only = not wanted - terms(heading)
    rest = wanted - terms(heading) or wanted
    scores = []  # what a sentence joining the best one is chosen on
    leading = []  # what the best sentence is chosen on
    for i, unit in enumerate(units):
        found = terms(unit)
        words = len(rest & found) + 0.25 * len((wanted - rest) & found)
        words = words / max(1, len(rest))
        score = words
        if i == 0:
            if _is_fragment(unit, heading):
                score -= FRAGMENT_PENALTY
            elif not continues and not _CONNECTIVE.match(unit) and not _ROW_START.match(unit):
                score += LEAD_BONUS
        if _IDENTIFIER.search(unit):
            score += IDENTIFIER_BONUS
        if _CROSS_REFERENCE.match(unit):
            score -= CROSS_REFERENCE_PENALTY
        if unit.rstrip().endswith("?"):
            score -= QUESTION_PENALTY
        if _is_notation(unit):
            score -= NOTATION_PENALTY
        scores.append(score)
        leading.append(score - (1.0 - HEADING_ONLY_SHARE) * words if heading_only else score)
    best = max(range(len(units)), key=lambda i: (leading[i], -i))
    picked = [best]
    # The next best sentences join the quote while it stays within what a reader sees first: the
    # answer is often spread over two sentences (what a thing is, then its name or setting).
    size = len(units[best])

    # The sentence right after the best one is preferred among those: it often completes it ("... is
    # to dump and restore the database, though this can be slow. A faster method is pg_upgrade.").
    def joining(i: int) -> float:
        return scores[i] + (NEXT_SENTENCE_BONUS if i == best + 1 else 0.0)

    for i in sorted(range(len(units)), key=lambda i: (-joining(i), i)):
        if i == best or scores[i] < MORE_MIN_SCORE:
            continue
        if _YES_NO_LEAD.fullmatch(units[i]):
            # A bare "No." scores only its opening bonus; it answers the section's own question
            # ("Does askbase send my documents anywhere?"), and quoted after the best sentence it reads
            # as a contradiction. A yes/no question gets it below, before what follows it.
            continue
        if len(picked) >= MORE_SENTENCES or size + 1 + len(units[i]) > MORE_CHARS:
            continue
        picked.append(i)
        size += 1 + len(units[i])
    yes_no = bool(_YES_NO_QUESTION.match(question) and _YES_NO_LEAD.match(units[0]))
    if yes_no and best != 0:
        picked = list(range(0, best + 1))
        if sum(len(units[i]) for i in picked) > max_chars:
            picked = [0, best]
    # A short quote gets its neighbour (the next sentence, or else the one before) for context.
    while sum(len(units[i]) + 1 for i in set(picked)) < SHORT_QUOTE_CHARS:
        if max(picked) + 1 < len(units):
            picked.append(max(picked) + 1)
        elif min(picked) > 0:
            picked.append(min(picked) - 1)
        else:
            break
    quote = " ".join(units[i] for i in _answer_order(sorted(set(picked)), best, yes_no))
    if len(quote) > max_chars:
        quote = quote[: max_chars - 1].rsplit(" ", 1)[0] + "…"
    return leading[best], quote


def best_quote(question: str, passage: Passage, max_chars: int = QUOTE_CHARS) -> str:
    """The sentence(s) of ``passage`` that answer ``question``, in their original order.

    The question's words already in the section's heading path say which section this is, not which
    sentence answers: a section titled "Deploy" answers "How do I deploy?" with its first sentence.
    So sentences are scored by the *other* question words they contain, plus a small lead bonus
    (docs put the answer first), minus a penalty for a sentence that is itself a question (a passage
    that quotes the question is not its answer), for the cut-off start of a chunk that continues a
    section, for a cross-reference ("See Section 9.2.") and for a synopsis in grammar notation. When
    every question word is in the heading, the opening sentence is favoured further
    (:data:`HEADING_ONLY_SHARE`). A yes/no question answered by a section that opens with "Yes." or
    "No." keeps that word and what follows it.
    """
    return scored_quote(question, passage, max_chars)[1]


def section_quote(
    question: str, candidates: Sequence[Passage], max_chars: int = QUOTE_CHARS
) -> tuple[Passage, str] | None:
    """The passage of one section whose sentence(s) answer ``question`` best, and that quote.

    ``candidates`` are the retrieved chunks of one section (same page and anchor), best first. A long
    section is cut into several chunks and the one retrieval ranks first is often its synopsis or the
    chunk that names the topic most, while the sentence that answers is in the next one; so each
    chunk's best sentence competes, a lower-ranked chunk giving up a little for its lower score.
    Other sections of the page are not searched here: retrieval chose this one (but see
    :func:`page_quote` for a synopsis).
    """
    top = candidates[0].score if candidates else 0.0
    best: tuple[float, Passage, str] | None = None
    for passage in candidates[:SECTION_PASSAGES]:
        # Chunks overlap: a chunk whose first sentence another retrieved chunk of the section also
        # holds continues the section, and its first sentence is not the section's opening.
        first = sentences(split_heading_path(passage)[1])[:1]
        continues = bool(first) and any(
            other is not passage and first[0] in other.text for other in candidates
        )
        score, quote = scored_quote(question, passage, max_chars, continues)
        if not quote:
            continue
        if top > 0:
            score -= PASSAGE_SHARE_WEIGHT * max(0.0, 1.0 - passage.score / top)
        if best is None or score > best[0]:
            best = (score, passage, quote)
    return (best[1], best[2]) if best else None


def page_quote(
    question: str, section: Sequence[Passage], chosen: Sequence[Passage], max_chars: int = QUOTE_CHARS
) -> tuple[Passage, str] | None:
    """What to quote for the section ``section`` (its retrieved chunks, best first) of the passages
    ``chosen``: :func:`section_quote`, unless that is a synopsis in grammar notation and another
    retrieved section of the same page (its examples, its description) has a quote in plain words.

    A reference page's synopsis names every word of "How do I rename a column?" ("RENAME [ COLUMN ]
    column_name TO new_column_name") and so often ranks first, but a reader learns the command from
    the example beside it ("ALTER TABLE distributors RENAME COLUMN address TO city;").
    """
    found = section_quote(question, section, max_chars)
    if found is None or not _is_notation(found[1]):
        return found
    url, tried = section[0].url, {section[0].anchor}
    for passage in chosen:
        if passage.url != url or passage.anchor in tried:
            continue
        tried.add(passage.anchor)
        other = [p for p in chosen if (p.url, p.anchor) == (passage.url, passage.anchor)]
        alternative = section_quote(question, other, max_chars)
        if alternative is not None and not _is_notation(alternative[1]):
            return alternative
    return found


# A section heading that is a name with its type, as reference entries are titled: "port (integer)",
# "max_parallel_workers_per_gather (integer)". Only a type in the bracket counts: "Setup (optional)" or
# "Examples (continued)" are headings, not names.
_TYPED_NAME = re.compile(
    r"\S+ \((?:integer|boolean|string|enum|real|floating point|text|number|float|int|bool|list|array)\)"
)


def named_quote(passage: Passage, quote: str) -> str:
    """``quote`` preceded by its section's name when the section is an entry named by an identifier
    (a configuration setting, a function, a file: "max_parallel_workers_per_gather (integer)") and the
    quote does not say it.

    Reference entries describe the thing without naming it ("Sets the maximum number of workers that
    can be started by a single Gather node."): quoted alone, the answer to "Which setting limits ...?"
    never says which setting. Other headings ("Examples", "Introduction") are not prefixed.
    """
    heading, _ = split_heading_path(passage)
    if SECTION_SEPARATOR not in heading:
        return quote
    leaf = heading.rsplit(SECTION_SEPARATOR, 1)[-1].strip()
    name = leaf.split(" (", 1)[0]
    if not (_IDENTIFIER.fullmatch(name) or _TYPED_NAME.fullmatch(leaf)):
        return quote
    if name.lower() in quote.lower():
        return quote
    return f"{leaf}: {quote}"


def further_pages(chosen: Sequence[Passage], cited: Sequence[Passage], limit: int) -> list[Passage]:
    """Other pages retrieval ranks almost as high as the best passage (at least :data:`ALSO_SHARE` of
    its score), one per page (its best-scored section), up to ``limit`` sources in all.

    Retrieval often cannot tell the page that answers from its neighbours (a command's reference page
    and the chapter that explains it score within a few hundredths); a reader shown only the quoted
    page never sees the other. They are listed as sources, marked as "also relevant", never quoted:
    the answer's text stays what the quoted page says.
    """
    if not chosen:
        return []
    top = max(p.score for p in chosen)
    pages = {p.url for p in cited}
    found: list[Passage] = []
    for passage in sorted(chosen, key=lambda p: -p.score):
        if len(cited) + len(found) >= limit or passage.score < ALSO_SHARE * top:
            break
        if passage.url in pages:
            continue
        pages.add(passage.url)
        found.append(passage)
    return found


def semantic_pages(picks: Sequence[Passage], quoted: Sequence[Passage], limit: int) -> list[Passage]:
    """The ``picks`` (a search's semantic picks, :func:`~shared.knowledge.reranking.split_picks`)
    whose cosine similarity is at least :data:`SEMANTIC_MARGIN` above the best of the ``quoted``
    passages', one per page not quoted, up to ``limit`` sources in all. They are listed before the
    near-ties of :func:`further_pages`: with five sources at most, a page the embedding clearly
    prefers is worth more than the fourth page within 0.85 of the best score.

    Fusion ranks by words and headings; where the embedding ranks another page clearly higher than
    the one quoted, and no quoted heading names the question (``NAMING_HEADING``), a reader
    should see that page too, listed, never quoted."""
    if not quoted or max(p.heading_score or 0.0 for p in quoted) >= NAMING_HEADING:
        return []
    bar = max(p.vector_score or 0.0 for p in quoted) + SEMANTIC_MARGIN
    pages = {p.url for p in quoted}
    found: list[Passage] = []
    for passage in picks:
        if len(quoted) + len(found) >= limit:
            break
        if passage.url in pages or (passage.vector_score or 0.0) < bar:
            continue
        pages.add(passage.url)
        found.append(passage)
    return found


class ExtractiveAnswerer:
    """Answers with the sentence(s) of the best passage that answer the question, cited ``[1]``; quotes
    a further page only when the answer needs it and lists the pages retrieved almost as high as
    "also relevant"; refuses when retrieval found nothing close enough."""

    name = "extractive"

    def __init__(
        self, min_score: float = MIN_SCORE, max_passages: int = 5, quote_chars: int = QUOTE_CHARS
    ) -> None:
        self.min_score = min_score
        self.max_passages = max_passages
        self.quote_chars = quote_chars

    def answer(self, question: str, passages: list[Passage], system_prompt: str | None = None) -> Answer:
        ranked, picks = split_picks(passages)
        chosen = relevant_passages(question, ranked, self.min_score, len(ranked))
        if not chosen:
            return refusal(ranked, self.name)
        wanted = terms(question)
        top = max(p.score for p in chosen)
        covered: set[str] = set()
        cited: list[Passage] = []
        parts: list[str] = []
        for passage in chosen:
            if len(cited) >= self.max_passages:
                break
            if any(p.url == passage.url for p in cited):
                continue  # one source per page: its best section
            if cited:
                adds = (wanted - covered) & terms(passage.text)
                if passage.score < SECOND_SOURCE_SHARE * top or not adds:
                    continue
            same_section = [p for p in chosen if (p.url, p.anchor) == (passage.url, passage.anchor)]
            found = page_quote(question, same_section, chosen, self.quote_chars)
            if found is None:
                continue
            quoted, quote = found
            quote = named_quote(quoted, quote)
            cited.append(quoted)
            covered |= terms(quoted.text)
            parts.append(f"{quote} [{len(cited)}]")
        if not cited:
            return refusal(ranked, self.name)
        # A pick is held to the bar any passage given to the answerer meets.
        picked = semantic_pages(usable(picks, self.min_score), cited, self.max_passages)
        also = picked + further_pages(chosen, cited + picked, self.max_passages)
        if also:
            markers = ", ".join(f"[{n}]" for n in range(len(cited) + 1, len(cited) + len(also) + 1))
            parts.append(f"{ALSO_RELEVANT} {markers}")
        return Answer(text="\n\n".join(parts), sources=cited + also, answerer=self.name)
