"""Votes on answers (👍 / 👎, an optional comment on 👎): ``votes/{vote_id}``.

One vote per voter per answer, changeable. The document id is derived from the answer id and the voter
(:func:`vote_id`), so a vote delivered twice (a double click, a platform redelivering a button press)
lands on the same document, and casting the same vote again changes nothing. Each vote carries what was
voted on (question, answer, cited sources, answerer, snapshot id, bot id, platform), so it can be read
without the answer record; the answer record (:mod:`shared.qa.answer_log`) keeps the
``up_votes`` / ``down_votes`` counters the gaps report reads, changed in the same transaction as the
vote.

Voters are owner keys: ``user:<email>`` on the web (who may vote only on their own answers: every web
conversation is private), a platform user (``telegram:<user id>``) for a bot's buttons, which anyone in
the chat may press. Identities stay here: reports never read votes.

Retention: ``expire_at`` = vote time + ``conversation_retention_days`` (TTL policy on ``votes``). Clearing
a history (:func:`forget_owner`, called by :meth:`shared.qa.conversations.ConversationStore.clear` and
``delete``) deletes the owner's answer records with every vote on them and the owner's own votes, which
takes their questions out of reports and leaves no vote holding a copy of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.cloud import firestore

from shared.qa.answer_log import ANSWERS, AnswerFacts, AnswerLog, AnswerRecord, source_links
from shared.transactions import delete_all, run_transaction

VOTES = "votes"
DEFAULT_COMMENT_CHARS = 1000
IN_QUERY_VALUES = 30  # Firestore's limit on the values of one "in" filter


class VoteValue(StrEnum):
    """A vote: the answer helped, or it did not."""

    UP = "up"
    DOWN = "down"


class InvalidVote(ValueError):
    """A vote the caller must fix; the message says what."""


class AnswerNotFound(LookupError):
    """No answer with that id that this voter may vote on (unknown, expired, or someone else's)."""


@dataclass(frozen=True)
class VoteTarget:
    """What a vote is about: the answer record whose counters it moves (``answer_id``), and the exchange
    copied onto the vote (``facts``: its question, answer, sources, answerer, snapshot, bot, platform)."""

    answer_id: str
    facts: AnswerFacts

    @classmethod
    def from_record(cls, record: AnswerRecord) -> VoteTarget:
        return cls(record.id, record.facts())


@dataclass(frozen=True)
class VoteState:
    """A voter's current vote on one answer (``value`` None: no vote)."""

    answer_id: str
    value: VoteValue | None
    comment: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"answer_id": self.answer_id, "vote": self.value, "comment": self.comment}


# What the bots' buttons send (``shared/bots/buttons.py``: the Action values), and the words the button
# state recorded before votes went to this store.
BUTTON_VOTES = {
    "up": VoteValue.UP,
    "helpful": VoteValue.UP,
    "down": VoteValue.DOWN,
    "not_helpful": VoteValue.DOWN,
}


def bot_vote_target(
    answers: AnswerLog,
    answer_id: str | None,
    *,
    state_id: str,
    question: str,
    answer: str,
    sources: Sequence[Mapping[str, str]],
    bot_id: str,
    platform: str,
) -> VoteTarget:
    """What a press of a bot's 👍/👎 button votes on (``POST /api/bot-votes``, which botrunner's worker
    calls for each press).

    The answer record, when the worker kept the ``answer_id`` that ``/api/ask`` returned and the record
    is still there and is this bot's; otherwise the copy the button's state holds, under an id made from
    the state id (no record's counters change then, so the report does not count it). Cast it with
    ``FeedbackStore.cast(target, "<platform>:<user id>", BUTTON_VOTES[value])``: every chat member has
    one vote per answer, and a press delivered three times lands once.
    """
    record = answers.get(answer_id) if answer_id else None
    if record is not None and record.bot_id == bot_id:
        return VoteTarget.from_record(record)
    # The state keeps no conversation, answerer or refusal: none of them is copied onto a vote.
    copy = AnswerFacts(
        conversation_id="",
        question=question,
        answer=answer,
        sources=source_links(sources),
        answerer="",
        refused=False,
        bot_id=bot_id,
        platform=platform,
    )
    return VoteTarget(f"button-{state_id}", copy)


def vote_id(answer_id: str, voter: str) -> str:
    """The id of ``voter``'s vote on ``answer_id``: one per voter per answer, no identity in it."""
    return hashlib.sha256(f"vote\0{answer_id}\0{voter}".encode()).hexdigest()[:40]


def parse_vote(value: Any) -> VoteValue:
    """``"up"`` / ``"down"`` → :class:`VoteValue`; anything else is an :class:`InvalidVote`."""
    if isinstance(value, str):
        try:
            return VoteValue(value)
        except ValueError:
            pass
    raise InvalidVote('\'vote\' must be "up" or "down"')


def clean_comment(value: VoteValue, comment: Any, limit: int = DEFAULT_COMMENT_CHARS) -> str | None:
    """A comment as stored: whitespace trimmed, None when empty; only a 👎 takes one, at most ``limit``
    characters. Raises :class:`InvalidVote`."""
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise InvalidVote("'comment' must be a string")
    text = comment.strip()
    if not text:
        return None
    if value is not VoteValue.DOWN:
        raise InvalidVote("only a 👎 vote takes a comment")
    if len(text) > limit:
        raise InvalidVote(f"'comment' is longer than {limit} characters")
    return text


def _counter_deltas(old: VoteValue | None, new: VoteValue | None) -> dict[str, int]:
    deltas = {"up_votes": 0, "down_votes": 0}
    for value, sign in ((old, -1), (new, 1)):
        if value is not None:
            deltas[f"{value}_votes"] += sign
    return deltas


def _stored_value(data: dict[str, Any] | None) -> VoteValue | None:
    try:
        return VoteValue(str((data or {}).get("value")))
    except ValueError:
        return None


class FeedbackStore:
    """Cast, change, withdraw and read votes."""

    def __init__(
        self,
        db: firestore.Client,
        answers: AnswerLog,
        comment_chars: int = DEFAULT_COMMENT_CHARS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = db
        self._votes = db.collection(VOTES)
        self._answers = answers
        self.comment_chars = comment_chars
        self._clock = clock or (lambda: datetime.now(UTC))

    def cast(
        self,
        target: VoteTarget,
        voter: str,
        value: VoteValue | None,
        comment: str | None = None,
        *,
        require_record: bool = False,
    ) -> VoteState:
        """Set ``voter``'s vote on the target answer to ``value`` (None withdraws it); returns the vote.

        Idempotent: the same call twice leaves one vote and the answer's counters as after the first.
        ``comment`` must already be clean (:func:`clean_comment`). A 👎 gives the answer record its
        grouping vector first (outside the transaction: an embedding must not be retried with it).
        ``require_record``: raise :class:`AnswerNotFound`, writing nothing, when the answer record is
        gone by the time the transaction reads it (see :func:`forget_owner` for why that closes the race
        with a clearing).
        """
        if value is VoteValue.DOWN:
            record = self._answers.get(target.answer_id)
            if record is not None:
                self._answers.ensure_vector(record)
        vote_ref = self._votes.document(vote_id(target.answer_id, voter))
        answer_ref = self._answers.collection.document(target.answer_id)
        now = self._clock()

        def run(transaction: firestore.Transaction) -> None:
            vote_snap = vote_ref.get(transaction=transaction)
            answer_snap = answer_ref.get(transaction=transaction)
            if require_record and not answer_snap.exists:
                raise AnswerNotFound(target.answer_id)
            old = _stored_value(vote_snap.to_dict() if vote_snap.exists else None)
            if value is None:
                if vote_snap.exists:
                    transaction.delete(vote_ref)
            else:
                created = (vote_snap.to_dict() or {}).get("created_at") if vote_snap.exists else None
                doc: dict[str, Any] = {
                    "answer_id": target.answer_id,
                    "voter": voter,
                    "value": str(value),
                    "comment": comment,
                    **target.facts.exchange_fields(),
                    "created_at": created or now,
                    "updated_at": now,
                }
                expire = self._answers.expiry(now)
                if expire is not None:
                    doc["expire_at"] = expire
                transaction.set(vote_ref, doc)
            deltas = _counter_deltas(old, value)
            if answer_snap.exists and any(deltas.values()):
                data = answer_snap.to_dict() or {}
                transaction.update(
                    answer_ref,
                    {key: max(0, int(data.get(key, 0) or 0) + delta) for key, delta in deltas.items()},
                )

        run_transaction(self._db, run)
        return VoteState(target.answer_id, value, comment if value is not None else None)

    def vote_on_own_answer(
        self, voter: str, answer_id: str, value: VoteValue | None, comment: Any = None
    ) -> VoteState:
        """A web vote: ``voter`` must be who asked. Raises :class:`AnswerNotFound`, :class:`InvalidVote`."""
        cleaned = clean_comment(value, comment, self.comment_chars) if value is not None else None
        if value is None and comment is not None:
            raise InvalidVote("a withdrawn vote takes no comment")
        record = self._answers.get(answer_id)
        if record is None or record.asker != voter:
            raise AnswerNotFound(answer_id)
        # Checked again inside the vote's transaction: the conversation may be deleted meanwhile.
        return self.cast(VoteTarget.from_record(record), voter, value, cleaned, require_record=True)

    def votes_of(self, voter: str, answer_ids: Iterable[str]) -> dict[str, VoteState]:
        """``voter``'s votes on these answers, by answer id (answers without a vote are left out)."""
        ids = list(dict.fromkeys(answer_ids))
        if not ids:
            return {}
        refs = [self._votes.document(vote_id(a, voter)) for a in ids]
        now = self._clock()
        states: dict[str, VoteState] = {}
        for snap in self._db.get_all(refs):
            data = snap.to_dict() if snap.exists else None
            value = _stored_value(data)
            expire = (data or {}).get("expire_at")
            if data is None or value is None or (isinstance(expire, datetime) and expire <= now):
                continue
            states[str(data.get("answer_id"))] = VoteState(
                str(data.get("answer_id")), value, data.get("comment")
            )
        return states


def forget_owner(db: firestore.Client, owner: str, conversation_id: str | None = None) -> int:
    """Delete ``owner``'s answer records (of one conversation, or all) and every vote on them, whoever
    cast it; with no conversation, every vote the owner cast too. Returns the answer records deleted.

    What clearing a history does to feedback: the questions leave the gaps report with the records, and
    no vote keeps its copy of a forgotten exchange. On the web only the asker votes on an answer; in a
    bot's group chat any member may, and a ``/forget`` there takes their votes on the chat's answers too.

    The votes are deleted before the records (a clearing cut short leaves records to find it again by)
    and looked for once more after them: a web vote's transaction reads its record
    (``cast(require_record=True)``), so a vote committed before the record went is found by that second
    look, and one that comes later is refused.
    """
    answers = db.collection(ANSWERS).where(filter=firestore.FieldFilter("asker", "==", owner))
    if conversation_id is not None:
        answers = answers.where(filter=firestore.FieldFilter("conversation_id", "==", conversation_id))
    ids = [snap.id for snap in answers.select(["asker"]).stream()]
    delete_all(db, _votes_to_forget(db, ids, owner if conversation_id is None else None))
    deleted = delete_all(db, (db.collection(ANSWERS).document(a) for a in ids))
    delete_all(db, _votes_to_forget(db, ids, owner if conversation_id is None else None))
    return deleted


def _votes_to_forget(
    db: firestore.Client, answer_ids: Sequence[str], voter: str | None
) -> list[firestore.DocumentReference]:
    """Every vote on these answers, whoever cast it, and with ``voter`` every vote they cast."""
    votes = db.collection(VOTES)
    doomed: dict[str, firestore.DocumentReference] = {}
    for start in range(0, len(answer_ids), IN_QUERY_VALUES):
        on_answers = votes.where(
            filter=firestore.FieldFilter("answer_id", "in", answer_ids[start : start + IN_QUERY_VALUES])
        )
        doomed.update((s.id, s.reference) for s in on_answers.select(["answer_id"]).stream())
    if voter is not None:
        cast = votes.where(filter=firestore.FieldFilter("voter", "==", voter)).select(["voter"])
        doomed.update((s.id, s.reference) for s in cast.stream())
    return list(doomed.values())
