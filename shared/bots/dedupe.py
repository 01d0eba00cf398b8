"""Exactly-once bookkeeping in Firestore: webhook update dedupe and the worker's reply ledger.

``processed_updates/{platform}:{bot_id}:{update_id}``
    Created by the webhook with ``create()`` once the update's job is *published*
    (:func:`record_update`); a later delivery that finds it (:func:`update_seen`) is a duplicate. A
    delivery racing the first one, or one after a crash between publishing and recording, publishes
    the same job id again: the reply ledger below makes that one reply. TTL field ``expire_at``: 7 days
    (Telegram retries an update for at most 24 hours, so a week is ample).

``sent_replies/{job_id}``
    The worker's claim on a job, then its receipt. States:

    * ``sending`` -- claimed by ``holder`` until ``lease_until``. ``parts`` holds the rendered
      messages (so a takeover sends exactly the same text), ``parts_sent`` how many already went out.
    * ``sent`` -- every part was delivered; any redelivery is acknowledged without sending.
    * ``failed`` -- a permanent platform error (bot blocked, chat gone); redeliveries are acknowledged.

    A ``sent`` or ``failed`` receipt keeps no text: ``parts`` and ``extra`` are deleted with the state
    change, as nothing reads them after it. What stays for the 7 days (the job id, which names the
    platform, the bot and the update, not the chat; the state, its times, a failure's platform error)
    is what stops a copy of the job delivered later from being answered again, which would also ask the
    Q&A service anew and so record the question again. That is why a chat's ``/forget`` leaves the
    receipts alone: it could not find them (no chat in them) and has no text to take out of them.

    A claim whose lease has run out belongs to a crashed or stuck worker and is taken over with a
    compare-and-swap on the document's update time (no transaction: a transaction conflict in Firestore
    costs a lock wait, a failed precondition costs one round trip).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

log = logging.getLogger(__name__)

PROCESSED_UPDATES = "processed_updates"
SENT_REPLIES = "sent_replies"
UPDATE_TTL = timedelta(days=7)
REPLY_TTL = timedelta(days=7)
DEFAULT_LEASE = timedelta(seconds=90)


def _now() -> datetime:
    return datetime.now(UTC)


def update_key(platform: str, bot_id: str, update_id: int | str) -> str:
    return f"{platform}:{bot_id}:{update_id}"


def _update_ref(
    db: firestore.Client, platform: str, bot_id: str, update_id: int | str
) -> firestore.DocumentReference:
    return db.collection(PROCESSED_UPDATES).document(update_key(platform, bot_id, update_id))


def update_seen(db: firestore.Client, platform: str, bot_id: str, update_id: int | str) -> bool:
    """Whether this update's job was published before (a duplicate delivery)."""
    return bool(_update_ref(db, platform, bot_id, update_id).get().exists)


def record_update(
    db: firestore.Client, platform: str, bot_id: str, update_id: int | str, now: datetime | None = None
) -> bool:
    """Record that this update's job is published; ``False`` if it was recorded already.

    Called only *after* publishing: recording first would lose the update if the process died before
    the job went out (every retry would be taken for a duplicate). Publishing first means a concurrent
    or post-crash redelivery may publish the same job id twice; the worker's ledger answers it once.
    """
    now = now or _now()
    try:
        _update_ref(db, platform, bot_id, update_id).create(
            {"received_at": now, "expire_at": now + UPDATE_TTL}
        )
    except gexc.AlreadyExists:
        return False
    return True


class ClaimState(StrEnum):
    CLAIMED = "claimed"  # this worker owns the job now
    ALREADY_SENT = "already_sent"  # done before: acknowledge
    FAILED = "failed"  # failed permanently before: acknowledge
    IN_PROGRESS = "in_progress"  # another worker holds a fresh claim: retry later


@dataclass
class Claim:
    """The outcome of :meth:`ReplyLedger.claim`."""

    state: ClaimState
    job_id: str
    holder: str = ""
    parts: list[str] | None = None  # rendered parts saved by an earlier holder, if any
    parts_sent: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the interaction state id


class ReplyLedger:
    """The ``sent_replies`` collection: claim a job before sending, mark it sent after."""

    def __init__(self, db: firestore.Client, lease: timedelta = DEFAULT_LEASE) -> None:
        self._db = db
        self._lease = lease

    def _ref(self, job_id: str) -> firestore.DocumentReference:
        return self._db.collection(SENT_REPLIES).document(job_id)

    def claim(self, job_id: str, now: datetime | None = None) -> Claim:
        """Try to own ``job_id``: create the claim, or take over one whose lease expired."""
        now = now or _now()
        holder = uuid.uuid4().hex
        fresh = {
            "state": "sending",
            "holder": holder,
            "claimed_at": now,
            "lease_until": now + self._lease,
            "parts_sent": 0,
            "expire_at": now + REPLY_TTL,
        }
        ref = self._ref(job_id)
        try:
            ref.create(fresh)
            return Claim(ClaimState.CLAIMED, job_id, holder)
        except gexc.AlreadyExists:
            pass
        snap = ref.get()
        if not snap.exists:  # released between our create and get: one more try, then let Pub/Sub retry
            try:
                ref.create(fresh)
                return Claim(ClaimState.CLAIMED, job_id, holder)
            except gexc.AlreadyExists:
                return Claim(ClaimState.IN_PROGRESS, job_id)
        doc = snap.to_dict() or {}
        state = doc.get("state")
        if state == "sent":
            return Claim(ClaimState.ALREADY_SENT, job_id)
        if state == "failed":
            return Claim(ClaimState.FAILED, job_id)
        lease_until = doc.get("lease_until")
        if isinstance(lease_until, datetime) and lease_until > now:
            return Claim(ClaimState.IN_PROGRESS, job_id)
        # A stale claim: its holder crashed or gave up. Take it over only if nobody else did meanwhile.
        try:
            ref.update(
                {"holder": holder, "lease_until": now + self._lease, "taken_over_at": now},
                option=self._db.write_option(last_update_time=snap.update_time),
            )
        except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
            return Claim(ClaimState.IN_PROGRESS, job_id)
        log.info("took over stale claim on job %s (%d parts already sent)", job_id, doc.get("parts_sent", 0))
        return Claim(
            ClaimState.CLAIMED,
            job_id,
            holder,
            parts=doc.get("parts"),
            parts_sent=int(doc.get("parts_sent") or 0),
            extra=dict(doc.get("extra") or {}),
        )

    def started(self, job_id: str, now: datetime | None = None) -> bool:
        """Whether a delivery of ``job_id`` may have shown the chat something: the job was sent, failed,
        is held by a fresh claim, or a stale claim's holder sent a part. A read, never a claim (a job of
        a stopped bot is not answered, so nothing is claimed for it)."""
        now = now or _now()
        snap = self._ref(job_id).get()
        if not snap.exists:
            return False
        doc = snap.to_dict() or {}
        if doc.get("state") != "sending" or int(doc.get("parts_sent") or 0) > 0:
            return True
        lease_until = doc.get("lease_until")
        return isinstance(lease_until, datetime) and lease_until > now

    def save_parts(self, claim: Claim, parts: list[str], extra: dict[str, Any] | None = None) -> None:
        """Remember the rendered reply so a takeover sends the same text, not a fresh answer."""
        # Asking the Q&A service may have taken a while: the lease restarts from here.
        data: dict[str, Any] = {"parts": parts, "lease_until": _now() + self._lease}
        if extra:
            data["extra"] = extra
        self._ref(claim.job_id).update(data)
        claim.parts = parts
        claim.extra = dict(extra or {})

    def part_sent(self, claim: Claim, count: int, now: datetime | None = None) -> None:
        """Record that the first ``count`` parts are delivered, and extend the lease. (The worker counts
        them on the claim itself first: the platform has accepted them whether or not this write
        succeeds.)"""
        now = now or _now()
        self._ref(claim.job_id).update({"parts_sent": count, "lease_until": now + self._lease})

    def mark_sent(self, claim: Claim, now: datetime | None = None) -> None:
        now = now or _now()
        self._ref(claim.job_id).update(
            {
                "state": "sent",
                "sent_at": now,
                "parts_sent": len(claim.parts or []),
                "expire_at": now + REPLY_TTL,
                # The reply's text is needed only to resume an unfinished send (a takeover).
                "parts": firestore.DELETE_FIELD,
                "extra": firestore.DELETE_FIELD,
            }
        )

    def mark_failed(self, claim: Claim, reason: str, now: datetime | None = None) -> None:
        now = now or _now()
        self._ref(claim.job_id).update(
            {
                "state": "failed",
                "error": reason[:500],
                "failed_at": now,
                "parts": firestore.DELETE_FIELD,
                "extra": firestore.DELETE_FIELD,
            }
        )

    def release(self, claim: Claim) -> None:
        """Give the job back after a retryable failure so the next delivery need not wait out the lease.

        Nothing rendered yet: delete the claim (the redelivery creates a new one). Otherwise keep the
        rendered parts and the progress and expire the lease, so the redelivery takes over at once and
        sends the same text from the next unsent part (no second Q&A call, no different answer). The
        progress is the claim's count, which includes a part whose own record failed (:meth:`part_sent`).
        """
        ref = self._ref(claim.job_id)
        try:
            snap = ref.get()
            if not snap.exists or (snap.to_dict() or {}).get("holder") != claim.holder:
                return  # our lease ran out and someone else owns the job now: leave their claim alone
            option = self._db.write_option(last_update_time=snap.update_time)
            if claim.parts is None:
                ref.delete(option=option)
            else:
                expired = {"lease_until": _now() - timedelta(seconds=1), "parts_sent": claim.parts_sent}
                ref.update(expired, option=option)
        except gexc.GoogleAPICallError:
            # The lease expires by itself; releasing is only a shortcut.
            log.warning("could not release claim on job %s", claim.job_id)
