"""Server-rendered pages: the chat with its history sidebar, the data-status page and the gaps report.

The sidebar shows the first page of history (:data:`shared.qa.conversations.PAGE_SIZE`, newest first;
a search looks through a bounded window of the newest conversations). A conversation's answers carry
their answer ids and the user's votes on them (one batched read). Page views count against the
per-user read limit, ``QAContext.read_limiter`` (429 page with ``Retry-After``).

The gaps report (``/gaps``) is for admins (all traffic) and bot owners (their bots'); the top bar links
it for both.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from google.cloud.firestore_v1.base_query import FieldFilter

from services.qa.app import add_nav_item, context
from services.qa.auth import login_required, signed_in_user
from services.qa.gaps_query import gaps_filters
from shared.bots.registry import COLLECTION as BOTS
from shared.knowledge.schedule import next_cron_time, schedule_zone
from shared.qa.answer_log import conversation_answer_ids
from shared.qa.conversations import Conversation, ConversationNotFound
from shared.qa.gaps import NoReportAccess, UnknownBot, Viewer
from shared.qa.gaps_filters import WEB, InvalidFilter
from shared.qa.refresh import trigger_refresh
from shared.qa.run_views import recent_runs
from shared.qa.welcome import knowledge_overview
from shared.ttl_cache import TtlCache

bp = Blueprint("pages", __name__)


class BotOwners:
    """Whether someone owns a bot, for the top bar's link to the gaps report: one indexed query per
    person per :data:`OWNER_TTL` seconds, not one per page view. A bot registered a moment ago shows
    the link within that time (the report itself checks ownership on every request)."""

    def __init__(self, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._known: TtlCache[str, bool] = TtlCache(ttl, clock=clock)

    def owns_a_bot(self, email: str) -> bool:
        return self._known.get(email.lower(), _owns_a_bot)


def _owns_a_bot(email: str) -> bool:
    query = context().db.collection(BOTS).where(filter=FieldFilter("owner_email", "==", email))
    return any(True for _ in query.select(["owner_email"]).limit(1).stream())


@bp.record_once
def _link_gaps(state: BlueprintSetupState) -> None:
    """The top bar links the gaps report for everyone who may read it: admins and bot owners."""
    owners = BotOwners()
    add_nav_item(
        state.app,
        "pages.gaps",
        "Gaps",
        visible=lambda user: bool(user.is_admin or owners.owns_a_bot(user.email)),
    )


def _too_many_reads() -> Any:
    """A 429 page when the signed-in user's read budget is spent, else None."""
    user = signed_in_user()
    allowed, retry_after = context().read_limiter.allow(user.owner)
    if allowed:
        return None
    g.reject_reason = "too many requests; slow down"
    response = make_response(
        render_template("error.html", code=429, message=None, retry_after=retry_after), 429
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


def _chat(conversation: Conversation | None) -> Any:
    user = signed_in_user()
    ctx = context()
    query = request.args.get("q", "")[:200]
    history = ctx.conversations.list(user.owner, query)
    answer_ids: dict[int, str] = {}
    votes = {}
    if conversation is not None:
        answer_ids = conversation_answer_ids(conversation.id, conversation.messages)
        votes = ctx.feedback.votes.votes_of(user.owner, answer_ids.values())
    return render_template(
        "chat.html",
        conversation=conversation,
        answer_ids=answer_ids,
        votes=votes,
        history=history,
        query=query,
        # Names the tab's store of failed questions (chat.js) without putting the address in it.
        owner_key=hashlib.sha256(user.owner.encode()).hexdigest()[:16],
        index=ctx.live_index.status(),
        # The welcome (what is indexed, starter questions) only greets a new chat.
        overview=knowledge_overview(ctx.live_index) if conversation is None else None,
    )


@bp.get("/")
@login_required
def chat() -> Any:
    limited = _too_many_reads()
    return limited if limited is not None else _chat(None)


@bp.get("/c/<conversation_id>")
@login_required
def conversation(conversation_id: str) -> Any:
    limited = _too_many_reads()
    if limited is not None:
        return limited
    user = signed_in_user()
    try:
        conv = context().conversations.get(user.owner, conversation_id)
    except ConversationNotFound:
        g.reject_reason = "conversation not found"
        abort(404)
    return _chat(conv)


@bp.get("/status")
@login_required
def status() -> Any:
    limited = _too_many_reads()
    if limited is not None:
        return limited
    ctx = context()
    now = datetime.now(UTC)
    try:
        runs = recent_runs(ctx.db, limit=10)
        runs_error = None
    except Exception as exc:  # the page still shows the index when Firestore has a bad minute
        runs, runs_error = [], f"could not read scrape runs ({type(exc).__name__})"
    last_finished = next((r for r in runs if r.ended_at), None)
    return render_template(
        "status.html",
        index=ctx.live_index.status(),
        runs=runs,
        runs_error=runs_error,
        last_run=runs[0] if runs else None,
        last_finished=last_finished,
        # In the zone Cloud Scheduler reads the schedule in, and shown with it.
        next_run=next_cron_time(
            ctx.settings.scrape_schedule, now, schedule_zone(ctx.settings.schedule_time_zone)
        ),
        schedule=ctx.settings.scrape_schedule,
        schedule_zone=ctx.settings.schedule_time_zone,
        now=now,
    )


@bp.post("/status/refresh")
@login_required
def refresh() -> Any:
    user = signed_in_user()
    if not user.is_admin:
        g.reject_reason = "refresh by a non-admin"
        abort(403, "Only admins can start a refresh.")
    try:
        message = trigger_refresh(context().settings)
        flash(message, "info")
    except RuntimeError as exc:
        flash(f"Refresh could not start: {exc}", "error")
    return redirect(url_for("pages.status"))


def _error_page(code: int, message: str) -> Any:
    g.reject_reason = message
    return make_response(render_template("error.html", code=code, message=message), code)


@bp.get("/gaps")
@login_required
def gaps() -> Any:
    """What users asked that the docs don't answer well, grouped; filters in the query string."""
    limited = _too_many_reads()
    if limited is not None:
        return limited
    user = signed_in_user()
    ctx = context()
    service = ctx.feedback.gaps
    viewer = Viewer(user.email, user.is_admin)
    try:
        filters = gaps_filters()
        report = service.report(viewer, filters)
    except InvalidFilter as exc:
        return _error_page(400, str(exc))
    except NoReportAccess as exc:
        return _error_page(403, f"The gaps report is for admins and bot owners: {exc}.")
    except UnknownBot:
        return _error_page(404, "No such bot among yours.")
    args = {k: v for k, v in request.args.items() if k in ("days", "since", "until", "source", "bot") and v}
    # The same filters as url_for's query values (typed Any): as str, mypy matches them to its _external.
    query: dict[str, Any] = args
    return render_template(
        "gaps.html",
        report=report,
        bots=service.bots_for(viewer),
        web=WEB,
        sources=sorted(ctx.live_index.status().counts_by_source),
        args=args,
        days=args.get("days", "" if "since" in args or "until" in args else "30"),
        csv_groups=url_for("api.gaps", format="csv", table="groups", **query),
        csv_pages=url_for("api.gaps", format="csv", table="pages", **query),
    )
