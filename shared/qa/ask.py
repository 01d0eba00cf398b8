"""Answering one question end to end: retrieve, answer, write the conversation, return.

:class:`AskService` answers; ``POST /api/ask`` calls it through
:class:`shared.qa.recording_ask.RecordingAsk`, which then records the answer for feedback and the gaps
report. A bot's ``model`` and ``system_prompt``
come from its :class:`shared.qa.bot_profiles.AnswerProfile`; the exchange is written to the conversation
before the answer is returned, so an answer the user has seen is never lost. :func:`answer_question` is
the part ``askbase ask`` and ``askbase eval`` share with the service.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.cloud import firestore

from shared.qa.answerers import Answer, Answerer
from shared.qa.conversations import ConversationStore
from shared.qa.followups import retrieve_for_turn
from shared.qa.live_index import LiveIndex
from shared.qa.sources import source_link, source_title, split_heading_path

if TYPE_CHECKING:
    from shared.qa.bot_profiles import AnswerProfile

SNIPPET_CHARS = 240


@dataclass
class AskResult:
    """What ``/api/ask`` returns. ``refused`` and ``related`` were added after the first release; older
    clients ignore them (a refusal's text names the related pages too)."""

    answer: str
    sources: list[dict[str, Any]]
    conversation_id: str
    answerer: str
    refused: bool = False
    related: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "sources": self.sources,
            "conversation_id": self.conversation_id,
            "answerer": self.answerer,
            "refused": self.refused,
            "related": self.related,
        }


def source_json(passage: Any) -> dict[str, Any]:
    """The API shape of one cited passage. ``title`` is "Page > Section" (cleaned: no permalink marks,
    no site name, no page title repeated as a heading)."""
    _, body = split_heading_path(passage)
    text = " ".join(body.split())
    if len(text) > SNIPPET_CHARS:
        text = text[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return {
        "title": source_title(passage),
        "url": source_link(passage),
        "snippet": text,
        "score": round(float(passage.score), 4),
    }


Search = Callable[[str, int], list[Any]]


def answer_question(
    search: Search,
    answerer: Answerer,
    question: str,
    previous_question: str | None = None,
    top_k: int = 5,
    system_prompt: str | None = None,
) -> Answer:
    """Retrieve and answer one question: the part of ``/api/ask`` that decides what the answer says.

    ``search(query, k)`` is the index's search. ``previous_question`` is the conversation's last
    question, if any: a follow-up is searched together with it (:mod:`shared.qa.followups` decides).
    ``askbase eval`` and ``askbase ask`` call this same function, so what they measure is what the
    service answers.
    """
    found = retrieve_for_turn(search, question, previous_question, top_k)
    return answerer.answer(found.query, found.passages, system_prompt)


class AskService:
    """Retrieve → answer → record. Answerers are built once per name and reused (they hold clients)."""

    def __init__(
        self,
        live_index: LiveIndex,
        conversations: ConversationStore,
        db: firestore.Client,
        answerer_factory: Callable[[str], Answerer],
        default_answerer: str,
        top_k: int,
        allowed_models: tuple[str, ...] | None = None,
    ) -> None:
        self.live_index = live_index
        self.conversations = conversations
        self.db = db
        self._factory = answerer_factory
        self.default_answerer = default_answerer
        self.top_k = top_k
        # The answerers a bot may use (Settings.allowed_bot_models; by default, as there, extractive
        # and the deployment's own): checked on every answer, not only when the bot was saved.
        self.allowed_models = allowed_models or tuple(dict.fromkeys(("extractive", default_answerer)))
        self._answerers: dict[str, Answerer] = {}
        self._lock = threading.Lock()

    def model_for(self, bot: AnswerProfile | None) -> str:
        """The answerer ``bot`` is answered with: its stored model while the deployment allows it, else
        the deployment's own. A bot saved while Gemini was on must not keep reaching a paid model the
        operator has since switched off (``Settings.allowed_bot_models``)."""
        if bot is None or not bot.model or bot.model == self.default_answerer:
            return self.default_answerer
        if bot.model in self.allowed_models:
            return bot.model
        import logging

        logging.getLogger(__name__).warning(
            "bot %s is set to the %s answerer, which this deployment no longer allows (%s): answering "
            "with %s",
            bot.id,
            bot.model,
            ", ".join(self.allowed_models),
            self.default_answerer,
        )
        return self.default_answerer

    def answerer(self, name: str) -> Answerer:
        with self._lock:
            if name not in self._answerers:
                self._answerers[name] = self._factory(name)
            return self._answerers[name]

    def ask(
        self,
        owner: str,
        question: str,
        conversation_id: str | None = None,
        bot: AnswerProfile | None = None,
    ) -> AskResult:
        """Answer ``question`` for ``owner``; raises ConversationNotFound, NoIndexYet."""
        previous = None
        if conversation_id:
            # Checks ownership before spending a search: a stranger's id is a 404, not an answer.
            previous = self.conversations.last_question(owner, conversation_id)
        name = self.model_for(bot)
        answer = answer_question(
            self.live_index.search,
            self.answerer(name),
            question,
            previous_question=previous,
            top_k=self.top_k,
            system_prompt=bot.system_prompt if bot else None,
        )
        sources = [source_json(p) for p in answer.sources]
        cid = self.conversations.record_turn(
            owner, conversation_id, question, answer.text, sources, answer.answerer
        )
        related = [{"title": source_title(p), "url": source_link(p)} for p in answer.related]
        return AskResult(answer.text, sources, cid, answer.answerer, answer.refused, related)
