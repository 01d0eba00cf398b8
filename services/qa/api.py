"""JSON API: ``POST /api/ask``, the signed-in user's conversation history (list, read, export,
rename, delete), votes on answers (``PUT`` / ``DELETE /api/answers/<id>/vote``; bots' buttons:
``POST /api/bot-votes`` from botrunner; a bot chat's ``/forget``: ``POST /api/bot-forget``) and the gaps
report
(``GET /api/gaps``, JSON or CSV).

Routes only parse and check input, call one service (:class:`shared.qa.recording_ask.RecordingAsk`, the
conversation store, :class:`shared.qa.feedback.FeedbackStore`, :class:`shared.qa.button_votes.ButtonVotes`,
:class:`shared.qa.bot_chats.BotChats` (who asks through a bot; a chat's ``/forget``),
:class:`shared.qa.gaps.GapsService`), and shape the reply. Bad input is always a 4xx with an ``error``
message, never a 500.

Reads (history, one conversation, search, export, the gaps report) count against the per-user read
limit, ``QAContext.read_limiter`` (``services/qa/app.py``), as the pages in ``pages.py`` do; questions
count against ``QAContext.limiter``. The services come from ``QAContext.feedback``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from services.qa import auth
from services.qa.app import context
from services.qa.auth import api_login_required, current_user, service_caller, signed_in_user
from services.qa.gaps_query import gaps_filters
from shared.bots.platform_users import user_platform
from shared.qa.bot_chats import Asker
from shared.qa.bot_profiles import BotNotFound
from shared.qa.button_votes import ButtonPress, UnknownButton
from shared.qa.conversations import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    ConversationNotFound,
    InvalidCursor,
    InvalidTitle,
    export,
)
from shared.qa.feedback import AnswerNotFound, InvalidVote, VoteValue, parse_vote
from shared.qa.gaps import NoReportAccess, UnknownBot, Viewer
from shared.qa.gaps_filters import InvalidFilter
from shared.qa.live_index import NoIndexYet
from shared.request_input import LONE_SURROGATE, NOT_TEXT, NotJSON, page_size, read_json

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_ID_CHARS = 128
MAX_USER_CHARS = 200
MAX_CURSOR_CHARS = 400


class BadRequest(ValueError):
    """Input the client must fix; the message says what."""


def _reject(status: int, message: str, **headers: str) -> tuple[Response, int]:
    g.reject_reason = message
    response = jsonify(error=message)
    for key, value in headers.items():
        response.headers[key.replace("_", "-")] = value
    return response, status


def _json() -> Any:
    """The request's JSON, or None when it is not JSON (:func:`read_json`'s rule). Raises
    :class:`BadRequest` when a string in it is not text (a lone surrogate: :data:`LONE_SURROGATE`)."""
    if not request.is_json:
        return None
    try:
        return read_json(request.get_data())
    except NotJSON as exc:
        if exc.reason == LONE_SURROGATE:
            raise BadRequest(NOT_TEXT) from None
        return None


def _service_body(shape: str) -> dict[str, Any] | tuple[Response, int]:
    """The JSON object a service caller (botrunner's worker) sent, or the reply to return instead: 403
    for anyone else (these routes act for whoever the platform says pressed or asked), 400 naming
    ``shape`` when the body is not a JSON object."""
    if service_caller() is None:
        return _reject(403, "service callers only")
    try:
        body = _json()
    except BadRequest as exc:
        return _reject(400, str(exc))
    if not isinstance(body, dict):
        return _reject(400, f"send JSON like {shape}")
    return body


def _optional_str(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string")
    if len(value) > limit:
        raise BadRequest(f"'{key}' is too long")
    return value


def _parse_ask() -> dict[str, Any]:
    if not request.is_json:
        raise BadRequest("send JSON with Content-Type: application/json")
    body = _json()
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object like {"question": "..."}')
    question = body.get("question")
    if not isinstance(question, str):
        raise BadRequest("'question' must be a string")
    question = question.strip()
    if not question:
        raise BadRequest("'question' is empty")
    limit = context().settings.max_question_chars
    if len(question) > limit:
        raise BadRequest(f"'question' is longer than {limit} characters")
    return {
        "question": question,
        "conversation_id": _optional_str(body, "conversation_id", MAX_ID_CHARS),
        "bot_id": _optional_str(body, "bot_id", MAX_ID_CHARS),
        "user": _optional_str(body, "user", MAX_USER_CHARS),
    }


@bp.post("/ask")
@auth.service_route
def ask() -> Any:
    """Answer a question: {question, conversation_id?, bot_id?} → {answer, sources, conversation_id,
    answer_id, ...}."""
    ctx = context()
    service = service_caller()
    user = current_user()
    if service is None and user is None:
        return _reject(401, "sign in first")
    try:
        data = _parse_ask()
    except BadRequest as exc:
        return _reject(400, str(exc))

    try:
        if service is not None:
            if not data["bot_id"] or not data["user"]:
                return _reject(400, "service callers must send 'bot_id' and 'user'")
            asker: Asker = ctx.feedback.chats.for_chat(data["bot_id"], data["user"])
        else:
            assert user is not None
            asker = ctx.feedback.chats.for_user(user, data["bot_id"])
    except BotNotFound:
        return _reject(404, "unknown bot_id")  # for a user, someone else's bot too: not confirmed

    allowed, retry_after = ctx.limiter.allow(asker.owner)
    if not allowed:
        return _reject(429, "too many questions; slow down", Retry_After=str(retry_after))
    try:
        result = ctx.feedback.ask.ask(
            asker.owner, data["question"], data["conversation_id"], asker.bot, asker.platform
        )
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    except NoIndexYet:
        return _reject(
            503,
            "No knowledge yet: the first crawl is still running.",  # Retry-After says when to retry
            Retry_After="30",
        )
    return jsonify(result.to_json())


def _read_owner() -> tuple[str, tuple[Response, int] | None]:
    """The signed-in user's owner key, and a 429 response to send instead when their read budget is
    spent (else None)."""
    user = signed_in_user()
    allowed, retry_after = context().read_limiter.allow(user.owner)
    if not allowed:
        return user.owner, _reject(429, "too many requests; slow down", Retry_After=str(retry_after))
    return user.owner, None


@bp.get("/conversations")
@api_login_required
def list_conversations() -> Any:
    """One page of the user's conversations, newest first; ``?q=`` searches their text.

    ``?limit=`` (1..200, default 50) and ``?cursor=`` (a previous page's ``next_cursor``) page through
    them: ``{items, next_cursor, conversations}`` (``conversations`` = ``items``, for older pages).
    """
    owner, rejected = _read_owner()
    if rejected is not None:
        return rejected
    query = request.args.get("q", "")[:200]
    limit = page_size(request.args.get("limit"), PAGE_SIZE, MAX_PAGE_SIZE)
    if limit is None:
        return _reject(400, f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    cursor = request.args.get("cursor") or None
    if cursor is not None and len(cursor) > MAX_CURSOR_CHARS:
        return _reject(400, "invalid cursor")
    try:
        page = context().conversations.page(owner, query, limit, cursor)
    except InvalidCursor:
        return _reject(400, "invalid cursor")
    items = [c.summary() for c in page.items]
    return jsonify(items=items, next_cursor=page.next_cursor, conversations=items)


@bp.get("/conversations/<conversation_id>")
@api_login_required
def get_conversation(conversation_id: str) -> Any:
    owner, rejected = _read_owner()
    if rejected is not None:
        return rejected
    try:
        conv = context().conversations.get(owner, conversation_id)
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    return jsonify(conv.to_json())


@bp.get("/conversations/<conversation_id>/export")
@api_login_required
def export_conversation(conversation_id: str) -> Any:
    """Download as ``?format=json`` (default) or ``?format=md``."""
    owner, rejected = _read_owner()
    if rejected is not None:
        return rejected
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "md"):
        return _reject(400, "format must be json or md")
    try:
        conv = context().conversations.get(owner, conversation_id)
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    body, mimetype = export(conv, fmt)
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="askbase-{conv.id}.{fmt}"'
    return response


@bp.patch("/conversations/<conversation_id>")
@api_login_required
def rename_conversation(conversation_id: str) -> Any:
    """Rename: ``{"title": "..."}`` → the conversation's history entry with its new title."""
    user = signed_in_user()
    try:
        body = _json()
    except BadRequest as exc:
        return _reject(400, str(exc))
    title = body.get("title") if isinstance(body, dict) else None
    if not isinstance(title, str):
        return _reject(400, 'send JSON like {"title": "..."}')
    try:
        conv = context().conversations.rename(user.owner, conversation_id, title)
    except InvalidTitle as exc:
        return _reject(400, str(exc))
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    return jsonify(conv.summary())


@bp.delete("/conversations/<conversation_id>")
@api_login_required
def delete_conversation(conversation_id: str) -> Any:
    user = signed_in_user()
    try:
        context().conversations.delete(user.owner, conversation_id)
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    return jsonify(deleted=conversation_id)


@bp.delete("/conversations")
@api_login_required
def clear_conversations() -> Any:
    user = signed_in_user()
    return jsonify(deleted=context().conversations.clear(user.owner))


# --- votes ------------------------------------------------------------------------------------------------
def _parse_vote() -> tuple[VoteValue, Any]:
    if not request.is_json:
        raise BadRequest("send JSON with Content-Type: application/json")
    body = _json()
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object like {"vote": "up"}')
    unknown = sorted(set(body) - {"vote", "comment"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}")
    return parse_vote(body.get("vote")), body.get("comment")


@bp.put("/answers/<answer_id>/vote")
@api_login_required
def vote(answer_id: str) -> Any:
    """Vote on one of your answers: ``{"vote": "up" | "down", "comment"?: "..."}`` (a comment only with
    ``down``) → ``{answer_id, vote, comment}``. Voting again replaces the vote. Votes count against the
    caller's read budget."""
    owner, rejected = _read_owner()
    if rejected is not None:
        return rejected
    try:
        value, comment = _parse_vote()
        state = context().feedback.votes.vote_on_own_answer(owner, answer_id, value, comment)
    except (BadRequest, InvalidVote) as exc:
        return _reject(400, str(exc))
    except AnswerNotFound:
        return _reject(404, "answer not found")
    return jsonify(state.to_json())


@bp.delete("/answers/<answer_id>/vote")
@api_login_required
def withdraw_vote(answer_id: str) -> Any:
    """Take your vote on one of your answers back → ``{answer_id, vote: null, comment: null}``."""
    owner, rejected = _read_owner()
    if rejected is not None:
        return rejected
    try:
        state = context().feedback.votes.vote_on_own_answer(owner, answer_id, None)
    except AnswerNotFound:
        return _reject(404, "answer not found")
    return jsonify(state.to_json())


@bp.post("/bot-votes")
@auth.service_route
def bot_vote() -> Any:
    """A press of 👍/👎 under a bot's answer, sent by botrunner's worker: ``{bot_id, state_id, voter,
    vote}`` (``voter`` ``<platform>:<user id>``) → ``{answer_id, vote, comment}``, cast by
    :class:`shared.qa.button_votes.ButtonVotes` on the answer the button's state names (or on the
    state's copy when the record is gone). 404 when the state has expired or is another bot's. Service
    callers only: anyone in a chat may press, so the voter is whoever the platform says pressed."""
    body = _service_body("{bot_id, state_id, voter, vote}")
    if not isinstance(body, dict):
        return body
    try:
        bot_id = _optional_str(body, "bot_id", MAX_ID_CHARS)
        state_id = _optional_str(body, "state_id", MAX_ID_CHARS)
        voter = _optional_str(body, "voter", MAX_USER_CHARS)
        value = parse_vote(body.get("vote"))
    except (BadRequest, InvalidVote) as exc:
        return _reject(400, str(exc))
    if not bot_id or not state_id or not voter or user_platform(voter) is None:
        return _reject(400, "'bot_id', 'state_id' and a platform 'voter' are required")
    try:
        vote = context().feedback.buttons.cast(ButtonPress(bot_id, state_id, voter, value))
    except UnknownButton:
        return _reject(404, "unknown or expired button")
    return jsonify(vote.to_json())


@bp.post("/bot-forget")
@auth.service_route
def bot_forget() -> Any:
    """A bot chat's ``/forget``, sent by botrunner's worker once it checked the sender may: ``{bot_id,
    user, voter}`` (``user`` the chat as ``/api/ask`` got it, ``voter`` the sender as their buttons
    name them) → ``{deleted}``. What a web user's "clear history" does, for the chat: its conversation
    with the bot, its answer records with every vote on them (its questions leave the gaps report) and
    the sender's votes. Service callers only."""
    body = _service_body("{bot_id, user, voter}")
    if not isinstance(body, dict):
        return body
    try:
        bot_id = _optional_str(body, "bot_id", MAX_ID_CHARS)
        chat = _optional_str(body, "user", MAX_USER_CHARS)
        voter = _optional_str(body, "voter", MAX_USER_CHARS)
    except BadRequest as exc:
        return _reject(400, str(exc))
    if not bot_id or not chat or not voter or user_platform(voter) is None:
        return _reject(400, "'bot_id', 'user' and a platform 'voter' are required")
    try:
        deleted = context().feedback.chats.forget(bot_id, chat, voter)
    except BotNotFound:
        return _reject(404, "unknown bot_id")
    return jsonify(deleted=deleted)


# --- the gaps report --------------------------------------------------------------------------------------
GAPS_TABLES = ("groups", "pages")


@bp.get("/gaps")
@api_login_required
def gaps() -> Any:
    """The gaps report the caller may see (admins: all traffic; bot owners: their bots'): JSON, or
    ``?format=csv`` (``&table=groups|pages``) as a download. Filters: ``days`` or ``since``/``until``,
    ``source``, ``bot``."""
    _, rejected = _read_owner()
    if rejected is not None:
        return rejected
    user = signed_in_user()
    fmt = request.args.get("format", "json")
    table = request.args.get("table", "groups")
    if fmt not in ("json", "csv") or table not in GAPS_TABLES:
        return _reject(400, "format must be json or csv, table groups or pages")
    try:
        report = context().feedback.gaps.report(Viewer(user.email, user.is_admin), gaps_filters())
    except InvalidFilter as exc:
        return _reject(400, str(exc))
    except NoReportAccess as exc:
        return _reject(403, str(exc))
    except UnknownBot:
        return _reject(404, "unknown bot")
    if fmt == "json":
        return jsonify(report.to_json())
    response = Response(report.to_csv(table), mimetype="text/csv; charset=utf-8")
    day = report.filters.until.strftime("%Y-%m-%d")
    response.headers["Content-Disposition"] = f'attachment; filename="askbase-gaps-{table}-{day}.csv"'
    return response
