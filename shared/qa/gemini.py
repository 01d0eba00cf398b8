"""The Gemini answerer: Vertex AI through google-genai, its reply checked against the passages.

The passages are numbered in the prompt; the model must cite by number and quote verbatim. Its reply is
checked, not trusted (:func:`ground`): citations of passages that do not exist are removed, a sentence
whose quotation does not occur in the passage it cites is removed, and a reply left with no valid
citation (or the model's own "not in the passages") becomes a refusal. Any error, an empty reply or the
timeout falls back to the extractive answerer so a question always gets an answer.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from shared.knowledge.reranking import split_picks
from shared.qa.answerers import Answer
from shared.qa.extractive import ExtractiveAnswerer
from shared.qa.refusal import refusal, relevant_passages
from shared.qa.sources import source_link, source_title, split_heading_path

if TYPE_CHECKING:
    from shared.knowledge.retrieval import Passage

log = logging.getLogger(__name__)

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
            blocks.append(f"[{i}] {source_title(p)}\nURL: {source_link(p)}\n{body.strip()}")
        return "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"

    def answer(self, question: str, passages: list[Passage], system_prompt: str | None = None) -> Answer:
        # The model sees the ranked passages only: a search's semantic picks are listed by the
        # extractive answerer, never quoted, and would take the sources past ASKBASE_RETRIEVAL_TOP_K.
        ranked, _ = split_picks(passages)
        chosen = relevant_passages(question, ranked, self.fallback.min_score, limit=len(ranked) or 1)
        if not chosen:
            # Nothing to ground an answer in: refuse without spending a model call.
            return refusal(ranked, self.name)
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
            return refusal(ranked, self.name)
        return grounded
