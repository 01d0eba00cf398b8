"""JSON API: ``POST /api/ask`` and the signed-in user's conversation history.

Routes only parse and check input, call :class:`shared.qa.ask.AskService` or the conversation store,
and shape the reply. Bad input is always a 4xx with an ``error`` message, never a 500.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from services.qa.app import context
from services.qa.auth import api_login_required, current_user, service_caller
from shared.qa.ask import BotNotFound, BotProfile
from shared.qa.conversations import ConversationNotFound, export
from shared.qa.live_index import NoIndexYet

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_ID_CHARS = 128
MAX_USER_CHARS = 200


class BadRequest(ValueError):
    """Input the client must fix; the message says what."""


def _reject(status: int, message: str, **headers: str) -> tuple[Response, int]:
    g.reject_reason = message
    response = jsonify(error=message)
    for key, value in headers.items():
        response.headers[key.replace("_", "-")] = value
    return response, status


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
    body = request.get_json(silent=True)
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
def ask() -> Any:
    """Answer a question: {question, conversation_id?, bot_id?} → {answer, sources, conversation_id}."""
    ctx = context()
    service = service_caller()
    user = current_user()
    if service is None and user is None:
        return _reject(401, "sign in first")
    try:
        data = _parse_ask()
    except BadRequest as exc:
        return _reject(400, str(exc))

    bot: BotProfile | None = None
    if data["bot_id"]:
        try:
            bot = ctx.bots.get(data["bot_id"])
        except BotNotFound:
            return _reject(404, "unknown bot_id")
    if service is not None:
        if bot is None or not data["user"]:
            return _reject(400, "service callers must send 'bot_id' and 'user'")
        owner = f"bot:{bot.id}:{data['user']}"
    else:
        assert user is not None
        if bot is not None and bot.owner_email != user.email and not user.is_admin:
            return _reject(404, "unknown bot_id")  # someone else's bot: don't confirm it exists
        owner = user.owner

    allowed, retry_after = ctx.limiter.allow(owner)
    if not allowed:
        return _reject(429, "too many questions; slow down", Retry_After=str(retry_after))
    try:
        result = ctx.ask.ask(owner, data["question"], data["conversation_id"], bot)
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    except NoIndexYet:
        return _reject(
            503,
            "No knowledge yet: the first crawl is still running. Try again in a minute.",
            Retry_After="30",
        )
    return jsonify(result.to_json())


@bp.get("/conversations")
@api_login_required
def list_conversations() -> Any:
    """The user's conversations, newest first; ``?q=`` searches their text."""
    user = current_user()
    assert user is not None
    query = request.args.get("q", "")[:200]
    items = context().conversations.list(user.owner, query)
    return jsonify(conversations=[c.summary() for c in items])


@bp.get("/conversations/<conversation_id>")
@api_login_required
def get_conversation(conversation_id: str) -> Any:
    user = current_user()
    assert user is not None
    try:
        conv = context().conversations.get(user.owner, conversation_id)
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    return jsonify(conv.to_json())


@bp.get("/conversations/<conversation_id>/export")
@api_login_required
def export_conversation(conversation_id: str) -> Any:
    """Download as ``?format=json`` (default) or ``?format=md``."""
    user = current_user()
    assert user is not None
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "md"):
        return _reject(400, "format must be json or md")
    try:
        conv = context().conversations.get(user.owner, conversation_id)
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    body, mimetype = export(conv, fmt)
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="askbase-{conv.id}.{fmt}"'
    return response


@bp.delete("/conversations/<conversation_id>")
@api_login_required
def delete_conversation(conversation_id: str) -> Any:
    user = current_user()
    assert user is not None
    try:
        context().conversations.delete(user.owner, conversation_id)
    except ConversationNotFound:
        return _reject(404, "conversation not found")
    return jsonify(deleted=conversation_id)


@bp.delete("/conversations")
@api_login_required
def clear_conversations() -> Any:
    user = current_user()
    assert user is not None
    return jsonify(deleted=context().conversations.clear(user.owner))
