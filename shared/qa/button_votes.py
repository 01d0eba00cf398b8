"""A press of 👍/👎 under a bot's answer, made into a vote (``POST /api/bot-votes``).

botrunner's worker sends each press it is handed (:meth:`shared.bots.qa_client.QaClient.vote`): the bot,
the button's state id, who pressed (``<platform>:<user id>``) and the vote. The state
(``interactions/{state_id}``, :class:`shared.bots.buttons.ButtonStateStore`) says which answer the
button sits under; :func:`shared.qa.feedback.bot_vote_target` turns it into what the vote is about, and
:class:`shared.qa.feedback.FeedbackStore` casts it: one changeable vote per presser per answer, so a press
the platform delivers three times lands once.

Here rather than in the route so every entry point that takes a press (today the Q&A service's API)
applies the same rule for whose button it is, and the route only parses and renders.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.bots.buttons import ButtonState, ButtonStateStore
from shared.qa.answer_log import AnswerLog, platform_of
from shared.qa.feedback import FeedbackStore, VoteState, VoteTarget, VoteValue, bot_vote_target


class UnknownButton(LookupError):
    """No button state with that id for that bot: never stored, expired, or another bot's. The caller
    cannot tell which (a bot must not learn of another bot's buttons), and nothing is left to vote on."""


@dataclass(frozen=True)
class ButtonPress:
    """One press as botrunner reports it; ``voter`` is ``<platform>:<user id>``."""

    bot_id: str
    state_id: str
    voter: str
    value: VoteValue


class ButtonVotes:
    """Casts the votes of bots' buttons on the answers they sit under."""

    def __init__(self, buttons: ButtonStateStore, answers: AnswerLog, votes: FeedbackStore) -> None:
        self._buttons = buttons
        self._answers = answers
        self._votes = votes

    def cast(self, press: ButtonPress) -> VoteState:
        """Cast ``press`` and return the presser's vote on the answer. Raises :class:`UnknownButton`.

        Idempotent (the vote's id is the answer's and the presser's), so a redelivered press changes
        nothing; a press on another bot's button is refused as if the button did not exist.
        """
        state = self._buttons.get(press.state_id)
        if state is None or state.bot_id != press.bot_id:
            raise UnknownButton(press.state_id)
        return self._votes.cast(self._target(state, press), press.voter, press.value)

    def _target(self, state: ButtonState, press: ButtonPress) -> VoteTarget:
        """The answer record the state kept the id of, else the state's own copy of the exchange."""
        return bot_vote_target(
            self._answers,
            state.answer_id,
            state_id=state.state_id,
            question=state.question,
            answer=state.answer,
            sources=[{"title": s.title, "url": s.url} for s in state.sources],
            bot_id=press.bot_id,
            platform=platform_of(press.voter),
        )
