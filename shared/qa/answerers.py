"""Answer generation behind one interface: ``extractive`` (offline, quotes and cites) and ``gemini``.

Both take the passages retrieval found and return an :class:`Answer` whose ``sources`` are exactly the
passages the text cites, numbered in the order of the ``[n]`` markers, at most one per page. Neither
invents: when retrieval found nothing close enough (the calibrated threshold :data:`MIN_SCORE` on the
best passage's fused score), or the question names something none of the passages mentions
(:func:`unsupported_names`), the answer says so, cites nothing, and names the closest pages the docs
do have, with links.

``extractive`` answers with the sentence(s) of the best section that answer the question (sought in
every retrieved chunk of that section), keeping a leading "Yes." or "No."; a second page is quoted
only when it adds what the first lacks.

``gemini`` calls Vertex AI through google-genai with the passages numbered; the model must cite by
number and quote verbatim. Its reply is checked, not trusted: citations of passages that do not exist
are removed, a sentence whose quotation does not occur in the passage it cites is removed, and a reply
left with no valid citation (or the model's own "not in the passages") becomes a refusal. Any error, an
empty reply or the timeout falls back to ``extractive`` so a question always gets an answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shared.knowledge.retrieval import heading_path, stem, tokenize

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.knowledge.retrieval import Passage

log = logging.getLogger(__name__)

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
_NAME_WORD = re.compile(r"[A-Za-z][\w+#./-]*[\w+#]|[A-Za-z]")
# Closest pages a refusal names, and the lowest score at which a page is "close" at all.
RELATED_PAGES = 3
RELATED_MIN_SCORE = 0.12
# A further passage (another page) is quoted only if it scores at least this share of the best one and
# brings question words the quotes so far lack: the answer's needs decide the number of sources.
SECOND_SOURCE_SHARE = 0.8
QUOTE_CHARS = 400
# A quote shorter than this gets the sentence after it too: "Run pulumi up in infra/." needs the next
# sentence to say what that does.
SHORT_QUOTE_CHARS = 90

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
FRAGMENT_PENALTY = 0.3
NOTATION_PENALTY = 0.5
# How many retrieved chunks of the cited section are searched for the answering sentence, and what a
# sentence in a lower-scored chunk gives up (per unit of score share lost): the best sentence of the
# section wins, not the first sentence of its best-scored chunk.
SECTION_PASSAGES = 3
PASSAGE_SHARE_WEIGHT = 0.5
_YES_NO_QUESTION = re.compile(
    r"^\s*(do|does|did|is|are|was|were|can|could|will|would|should|has|have|had|may|must)\b", re.IGNORECASE
)
_YES_NO_LEAD = re.compile(r"^(yes|no)\b[.,!:;]?", re.IGNORECASE)
# Permalink marks doc generators append to headings ("¶" Sphinx/MkDocs, zero-width space Docusaurus).
_PERMALINK = re.compile(r"[\s\u200b¶§🔗]+$")
# " · Site name", " | Site", " — Project 15 documentation": a site suffix on a page's <title>.
_SITE_SUFFIX = re.compile(r"\s+(?:[·|\u2014\u2013]|-{1,2})\s+[^·|\u2014\u2013]{1,80}$")
SECTION_SEPARATOR = " > "


@dataclass
class Answer:
    """An answer and the passages it cites, in citation order (``[1]`` is ``sources[0]``).

    A refusal (``refused``) cites nothing; ``related`` then holds the closest passages, one per page,
    which its text names as what the docs do cover.
    """

    text: str
    sources: list[Passage] = field(default_factory=list)
    answerer: str = "extractive"
    # True when the answer declines to answer (nothing in the knowledge base supports one).
    refused: bool = False
    related: list[Passage] = field(default_factory=list)


class Answerer(Protocol):
    """Turns a question and retrieved passages into an :class:`Answer`."""

    name: str

    def answer(self, question: str, passages: list[Passage], system_prompt: str | None) -> Answer: ...


def terms(text: str) -> set[str]:
    """Content words of ``text``: lower-cased and stemmed the way retrieval indexes them, without
    stopwords or one-letter tokens."""
    return {t for t in tokenize(text) if len(t) > 1} - _STOP_STEMS


def split_heading_path(passage: Passage) -> tuple[str, str]:
    """``(heading path, body)`` of a chunk: the chunker starts each chunk with "Title > Heading\n\n"."""
    head = heading_path(passage.text, passage.title)
    if head:
        return head, passage.text.split("\n\n", 1)[1]
    return (passage.title or passage.url), passage.text


def clean_title(text: str) -> str:
    """A heading or page title without a trailing permalink mark: ``"Requirements¶"`` → ``"Requirements"``."""
    return _PERMALINK.sub("", text.replace("\u200b", "")).strip()


def source_title(passage: Passage) -> str:
    """The title a reader sees for a cited passage: "Page > Section", without permalink marks, without the
    site name on the page title, and without the page title repeated as its first heading."""
    heading, _ = split_heading_path(passage)
    parts = [clean_title(part) for part in heading.split(SECTION_SEPARATOR)]
    if parts and len(parts[0]) > 3:
        trimmed = _SITE_SUFFIX.sub("", parts[0]).strip()
        parts[0] = trimmed or parts[0]
    shown: list[str] = []
    for part in parts:
        if part and (not shown or part.lower() != shown[-1].lower()):
            shown.append(part)
    return SECTION_SEPARATOR.join(shown) or passage.url


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
    if max(p.score for p in passages) < NAME_CEILING and unsupported_names(question, passages):
        return []
    return [p for p in passages if p.score >= min_score / 2][:limit]


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
    hard-wrapped over several lines is not cut at its line ends)."""
    return [s.strip() for s in _SENTENCE.split(_wrapped_lines(body)) if s and s.strip()]


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


def scored_quote(question: str, passage: Passage, max_chars: int = QUOTE_CHARS) -> tuple[float, str]:
    """The sentence(s) of ``passage`` that answer ``question`` and the best sentence's score (see
    :func:`best_quote`)."""
    heading, body = split_heading_path(passage)
    units = sentences(body)
    if not units:
        return float("-inf"), ""
    wanted = terms(question)
    rest = wanted - terms(heading) or wanted
    scores = []
    for i, unit in enumerate(units):
        found = terms(unit)
        score = len(rest & found) + 0.25 * len((wanted - rest) & found)
        score = score / max(1, len(rest))
        if i == 0:
            score += -FRAGMENT_PENALTY if _is_fragment(unit, heading) else LEAD_BONUS
        if unit.rstrip().endswith("?"):
            score -= QUESTION_PENALTY
        if _is_notation(unit):
            score -= NOTATION_PENALTY
        scores.append(score)
    best = max(range(len(units)), key=lambda i: (scores[i], -i))
    picked = [best]
    if _YES_NO_QUESTION.match(question) and _YES_NO_LEAD.match(units[0]) and best != 0:
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
    quote = " ".join(units[i] for i in sorted(set(picked)))
    if len(quote) > max_chars:
        quote = quote[: max_chars - 1].rsplit(" ", 1)[0] + "…"
    return scores[best], quote


def best_quote(question: str, passage: Passage, max_chars: int = QUOTE_CHARS) -> str:
    """The sentence(s) of ``passage`` that answer ``question``, in their original order.

    The question's words already in the section's heading path say which section this is, not which
    sentence answers: a section titled "Deploy" answers "How do I deploy?" with its first sentence.
    So sentences are scored by the *other* question words they contain, plus a small lead bonus
    (docs put the answer first), minus a penalty for a sentence that is itself a question (a passage
    that quotes the question is not its answer), for the cut-off start of a chunk that continues a
    section, and for a synopsis in grammar notation. A yes/no question answered by a section that
    opens with "Yes." or "No." keeps that word and what follows it.
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
    Other sections of the page are not searched: retrieval chose this one.
    """
    top = candidates[0].score if candidates else 0.0
    best: tuple[float, Passage, str] | None = None
    for passage in candidates[:SECTION_PASSAGES]:
        score, quote = scored_quote(question, passage, max_chars)
        if not quote:
            continue
        if top > 0:
            score -= PASSAGE_SHARE_WEIGHT * max(0.0, 1.0 - passage.score / top)
        if best is None or score > best[0]:
            best = (score, passage, quote)
    return (best[1], best[2]) if best else None


class ExtractiveAnswerer:
    """Answers with the sentence(s) of the best passage that answer the question, cited ``[1]``; quotes
    a further page only when the answer needs it; refuses when retrieval found nothing close enough."""

    name = "extractive"

    def __init__(
        self, min_score: float = MIN_SCORE, max_passages: int = 5, quote_chars: int = QUOTE_CHARS
    ) -> None:
        self.min_score = min_score
        self.max_passages = max_passages
        self.quote_chars = quote_chars

    def answer(self, question: str, passages: list[Passage], system_prompt: str | None = None) -> Answer:
        chosen = relevant_passages(question, passages, self.min_score, len(passages))
        if not chosen:
            return refusal(passages, self.name)
        wanted = terms(question)
        top = chosen[0].score
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
            found = section_quote(question, same_section, self.quote_chars)
            if found is None:
                continue
            quoted, quote = found
            cited.append(quoted)
            covered |= terms(quoted.text)
            parts.append(f"{quote} [{len(cited)}]")
        if not cited:
            return refusal(passages, self.name)
        return Answer(text="\n\n".join(parts), sources=cited, answerer=self.name)


NOT_IN_PASSAGES = "NOT_IN_PASSAGES"
DEFAULT_SYSTEM_PROMPT = (
    "You are askbase, a support assistant. Answer only from the numbered passages below. "
    "Start with the answer itself. Cite every sentence with the number of the passage it comes from in "
    "square brackets, like [1] or [2][3]; cite only numbers that appear below. When you quote, copy the "
    "passage's words exactly, in double quotes. If the passages do not answer the question, reply with "
    f"exactly {NOT_IN_PASSAGES} and nothing else; never invent facts, links or numbers. Be concise."
)
_CITATION = re.compile(r"\[(\d{1,2})\]")
_QUOTED = re.compile(r"[\"“]([^\"”]{8,})[\"”]")
_ANSWER_SENTENCE = re.compile(r"(?<=[.!?\]])\s+(?=\S)")


def _folded(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").lower().split())


def ground(text: str, passages: list[Passage], answerer: str) -> Answer | None:
    """The model's reply checked against the passages it was given, or None when nothing in it is
    grounded (no valid citation left, or the model said the passages do not answer).

    Citations of passages that do not exist are removed. A sentence that quotes words its cited
    passages do not contain is removed whole (the quote is invented, so is the claim around it).
    Cited passages are renumbered in order of first citation, one source per page.
    """
    if NOT_IN_PASSAGES in text:
        return None
    kept: list[str] = []
    for paragraph in text.split("\n"):
        out = []
        for sentence in _ANSWER_SENTENCE.split(paragraph):
            cited = [int(n) for n in _CITATION.findall(sentence) if 1 <= int(n) <= len(passages)]
            quotes = _QUOTED.findall(sentence)
            if quotes and cited:
                cited_text = " ".join(_folded(passages[n - 1].text) for n in cited)
                if not all(_folded(q) in cited_text for q in quotes):
                    log.info("gemini quoted words its cited passages do not contain; sentence dropped")
                    continue
            elif quotes:
                continue  # a quotation attributed to nothing
            out.append(sentence)
        kept.append(" ".join(out))
    text = "\n".join(kept).strip()
    # Renumber: the n-th distinct page cited becomes [n]; a second passage of a page shares its number.
    order: dict[int, int] = {}
    pages: list[str] = []
    for match in _CITATION.finditer(text):
        n = int(match.group(1))
        if 1 <= n <= len(passages) and n not in order:
            url = passages[n - 1].url
            if url not in pages:
                pages.append(url)
            order[n] = pages.index(url) + 1
    if not order:
        return None

    def sub(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f"[{order[n]}]" if n in order else ""  # a citation of a passage that doesn't exist

    new_text = re.sub(r"(\[\d+\])(\1)+", r"\1", _CITATION.sub(sub, text))
    new_text = re.sub(r"[ \t]+([.,;:!?])", r"\1", new_text).strip()
    first_of_page: dict[str, Passage] = {}
    for n in order:
        first_of_page.setdefault(passages[n - 1].url, passages[n - 1])
    sources = [first_of_page[url] for url in pages]
    return Answer(text=new_text, sources=sources, answerer=answerer)


class GeminiAnswerer:
    """Vertex AI Gemini with retrieved passages and checked citations; falls back to extractive on any
    failure."""

    name = "gemini"

    def __init__(
        self,
        model: str,
        project: str,
        location: str,
        timeout_seconds: float,
        base_url: str | None = None,
        credentials: Any = None,
        fallback: ExtractiveAnswerer | None = None,
    ) -> None:
        from google import genai
        from google.genai import types

        self.model = model
        self.timeout_seconds = timeout_seconds
        self.fallback = fallback or ExtractiveAnswerer()
        self._types = types
        http_options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout_seconds * 1000),
            # One attempt: the timeout is the whole budget for this answer; the fallback is the retry.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(
            vertexai=True,
            project=project,
            location=location,
            credentials=credentials,
            http_options=http_options,
        )

    def _prompt(self, question: str, passages: list[Passage]) -> str:
        blocks = []
        for i, p in enumerate(passages, 1):
            _, body = split_heading_path(p)
            blocks.append(f"[{i}] {source_title(p)}\nURL: {_link(p)}\n{body.strip()}")
        return "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"

    def answer(self, question: str, passages: list[Passage], system_prompt: str | None = None) -> Answer:
        chosen = relevant_passages(question, passages, self.fallback.min_score, limit=len(passages) or 1)
        if not chosen:
            # Nothing to ground an answer in: refuse without spending a model call.
            return refusal(passages, self.name)
        instruction = DEFAULT_SYSTEM_PROMPT
        if system_prompt and system_prompt.strip():
            instruction = system_prompt.strip() + "\n\n" + DEFAULT_SYSTEM_PROMPT
        try:
            response = self._client.models.generate_content(
                model=self.model,
                contents=self._prompt(question, chosen),
                config=self._types.GenerateContentConfig(
                    system_instruction=instruction, temperature=0.2, max_output_tokens=1024
                ),
            )
            text = (response.text or "").strip()
            if not text:
                raise RuntimeError("empty reply")
        except Exception as exc:
            log.warning(
                "gemini answer failed (%s: %s); falling back to extractive",
                type(exc).__name__,
                str(exc)[:200],
            )
            return self.fallback.answer(question, passages, system_prompt)
        grounded = ground(text, chosen, self.name)
        if grounded is None:
            # The model found no answer in the passages, or cited none of them: say so, don't guess.
            return refusal(passages, self.name)
        return grounded


def _link(passage: Passage) -> str:
    return passage.url + (f"#{passage.anchor}" if passage.anchor else "")


def source_link(passage: Passage) -> str:
    """The URL a reader should open for ``passage``: the page, at the section's anchor when known."""
    return _link(passage)


def _static_credentials() -> Any:
    # Against a fake endpoint on loopback there is nobody to authenticate to; a fixed bearer keeps the
    # SDK from looking for Application Default Credentials.
    from google.oauth2.credentials import Credentials

    return Credentials(token="fake-endpoint")  # noqa: S106 - not a secret, never leaves loopback


def get_answerer(name: str, settings: Settings) -> Answerer:
    """The answerer called ``name`` ("extractive" or "gemini"); unknown names get extractive."""
    extractive = ExtractiveAnswerer(
        min_score=settings.answer_min_score, max_passages=settings.retrieval_top_k
    )
    if name != "gemini":
        return extractive
    credentials = None
    if settings.gemini_base_url and not settings.is_production:
        credentials = _static_credentials()
    try:
        return GeminiAnswerer(
            model=settings.gemini_model,
            project=settings.project_id,
            location=settings.region,
            timeout_seconds=settings.gemini_timeout_seconds,
            base_url=settings.gemini_base_url,
            credentials=credentials,
            fallback=extractive,
        )
    except Exception as exc:
        log.error("cannot build the gemini answerer (%s); using extractive", type(exc).__name__)
        return extractive
