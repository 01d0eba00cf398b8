"""Answer generation behind one interface: ``extractive`` (offline, quotes and cites) and ``gemini``.

Both take the passages retrieval found and return an :class:`Answer` whose ``sources`` are exactly the
passages the text cites, numbered in the order of the ``[n]`` markers. Neither invents: when no passage
is relevant to the question the answer says so plainly and cites nothing.

``gemini`` calls Vertex AI through google-genai; any error, an empty reply or the timeout falls back to
``extractive`` so a question always gets an answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.knowledge.retrieval import Passage

log = logging.getLogger(__name__)

NOTHING_FOUND = (
    "I couldn't find anything about that in the knowledge base, so I won't guess. "
    "Try rephrasing the question, or ask about something the indexed sites cover."
)

# Words too common to show that a passage is about the question.
_STOPWORDS = frozenset(
    """a about above after again all am an and any are as at be been before being below between both but
    by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my no nor not now of off on once only
    or other our ours out over own same she should so some such than that the their theirs them then there
    these they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours please tell explain show give find get use using want need know
    thing things way ways make does anything something""".split()  # noqa: SIM905 - readable as prose
)
_WORD = re.compile(r"[\w][\w'-]*", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


@dataclass
class Answer:
    """An answer and the passages it cites, in citation order (``[1]`` is ``sources[0]``)."""

    text: str
    sources: list[Passage] = field(default_factory=list)
    answerer: str = "extractive"


class Answerer(Protocol):
    """Turns a question and retrieved passages into an :class:`Answer`."""

    name: str

    def answer(self, question: str, passages: list[Passage], system_prompt: str | None) -> Answer: ...


def terms(text: str) -> set[str]:
    """Content words of ``text``, lower-cased, without stopwords or one-letter tokens."""
    return {w for w in (m.group(0).lower().strip("'-") for m in _WORD.finditer(text)) if len(w) > 1} - (
        _STOPWORDS
    )


def _stem(word: str) -> str:
    # Crude suffix folding so "snapshots" matches "snapshot" and "rotating" matches "rotate".
    for suffix in ("ing", "es", "ed", "s", "e"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def split_heading_path(passage: Passage) -> tuple[str, str]:
    """``(heading path, body)`` of a chunk: the chunker starts each chunk with "Title > Heading\n\n"."""
    text = passage.text
    if passage.title and text.startswith(passage.title) and "\n\n" in text:
        head, body = text.split("\n\n", 1)
        if len(head) <= 300 and "\n" not in head:
            return head.strip(), body
    return (passage.title or passage.url), text


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in terms(text)}


def relevant_passages(
    question: str, passages: Sequence[Passage], min_score: float, limit: int
) -> list[Passage]:
    """Passages worth citing: above ``min_score`` *and* sharing a content word with the question.

    The lexical check is what lets the extractive answerer refuse: a vector search always returns its
    nearest neighbours, however far, so a score alone cannot tell "close" from "least far".
    """
    wanted = _stems(question)
    chosen: list[Passage] = []
    for passage in passages:
        if passage.score < min_score:
            continue
        if wanted and not wanted & _stems(passage.title + " " + passage.text):
            continue
        chosen.append(passage)
        if len(chosen) >= limit:
            break
    return chosen


def _best_sentences(question: str, text: str, max_chars: int) -> str:
    """The sentences of ``text`` that share most words with the question, in their original order."""
    wanted = _stems(question)
    sentences = [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]
    if not sentences:
        return ""
    ranked = sorted(
        range(len(sentences)),
        key=lambda i: (-len(wanted & _stems(sentences[i])), i),
    )
    picked: list[int] = []
    total = 0
    for i in ranked:
        if picked and (total + len(sentences[i]) > max_chars or not wanted & _stems(sentences[i])):
            break
        picked.append(i)
        total += len(sentences[i])
        if total >= max_chars // 2:
            break
    quote = " ".join(sentences[i] for i in sorted(picked))
    if len(quote) > max_chars:
        quote = quote[: max_chars - 1].rsplit(" ", 1)[0] + "…"
    return quote


class ExtractiveAnswerer:
    """Answers by quoting the most relevant sentences of the best passages, each with its ``[n]``."""

    name = "extractive"

    def __init__(self, min_score: float = 0.0, max_passages: int = 3, quote_chars: int = 400) -> None:
        self.min_score = min_score
        self.max_passages = max_passages
        self.quote_chars = quote_chars

    def answer(self, question: str, passages: list[Passage], system_prompt: str | None = None) -> Answer:
        chosen = relevant_passages(question, passages, self.min_score, self.max_passages)
        if not chosen:
            return Answer(text=NOTHING_FOUND, sources=[], answerer=self.name)
        parts = []
        cited: list[Passage] = []
        for passage in chosen:
            heading, body = split_heading_path(passage)
            quote = _best_sentences(question, body, self.quote_chars)
            if not quote:
                continue
            cited.append(passage)
            parts.append(f"From “{heading}” [{len(cited)}]:\n> {quote}")
        if not cited:
            return Answer(text=NOTHING_FOUND, sources=[], answerer=self.name)
        intro = "Here is what the knowledge base says:"
        return Answer(text=intro + "\n\n" + "\n\n".join(parts), sources=cited, answerer=self.name)


DEFAULT_SYSTEM_PROMPT = (
    "You are askbase, a support assistant. Answer only from the numbered passages below. "
    "Cite every claim with the passage number in square brackets, like [1] or [2][3]. "
    "If the passages do not answer the question, say you don't know; never invent facts, links or numbers. "
    "Be concise."
)
_CITATION = re.compile(r"\[(\d{1,2})\]")


class GeminiAnswerer:
    """Vertex AI Gemini with retrieved passages and citations; falls back to extractive on any failure."""

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
            heading, body = split_heading_path(p)
            blocks.append(f"[{i}] {heading}\nURL: {_link(p)}\n{body.strip()}")
        return "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"

    def answer(self, question: str, passages: list[Passage], system_prompt: str | None = None) -> Answer:
        chosen = relevant_passages(question, passages, self.fallback.min_score, limit=len(passages) or 1)
        if not chosen:
            # Nothing to ground an answer in: refuse without spending a model call.
            return Answer(text=NOTHING_FOUND, sources=[], answerer=self.name)
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
        return _renumber(text, chosen, self.name)


def _renumber(text: str, passages: list[Passage], answerer: str) -> Answer:
    """Keep only the passages the model cited and renumber its markers to match ``sources``."""
    order: dict[int, int] = {}
    for match in _CITATION.finditer(text):
        n = int(match.group(1))
        if 1 <= n <= len(passages) and n not in order:
            order[n] = len(order) + 1

    def sub(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f"[{order[n]}]" if n in order else ""  # a citation of a passage that doesn't exist

    new_text = _CITATION.sub(sub, text) if order else text
    sources = [passages[n - 1] for n in order]
    return Answer(text=new_text, sources=sources, answerer=answerer)


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
    extractive = ExtractiveAnswerer()
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
