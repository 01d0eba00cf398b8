"""Answer generation behind one interface: the :class:`Answer`, the :class:`Answerer` protocol, and
:func:`get_answerer`, which builds the one a name asks for.

Two answerers exist: ``extractive`` (:mod:`shared.qa.extractive`, offline, quotes and cites) and
``gemini`` (:mod:`shared.qa.gemini`, Vertex AI with checked citations, falling back to extractive).
Both take the passages retrieval found and return an :class:`Answer` whose ``sources`` are exactly the
passages the text cites, numbered in the order of the ``[n]`` markers, at most one per page. Neither
invents: both refuse through :mod:`shared.qa.refusal` when the passages cannot support an answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.knowledge.retrieval import Passage

log = logging.getLogger(__name__)


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


def _static_credentials() -> Any:
    # Against a fake endpoint on loopback there is nobody to authenticate to; a fixed bearer keeps the
    # SDK from looking for Application Default Credentials.
    from google.oauth2.credentials import Credentials

    return Credentials(token="fake-endpoint")  # noqa: S106 - not a secret, never leaves loopback


def get_answerer(name: str, settings: Settings) -> Answerer:
    """The answerer called ``name`` ("extractive" or "gemini"); unknown names get extractive."""
    # Imported here, not at the top: both modules import Answer from this one.
    from shared.qa.extractive import ExtractiveAnswerer
    from shared.qa.gemini import GeminiAnswerer

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
