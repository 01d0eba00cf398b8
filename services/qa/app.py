"""The Q&A web service: ``create_app`` wires settings, the live index, Firestore and the blueprints.

Blueprints stay thin (parse, call one service, render); everything they share is on
``app.extensions["askbase"]`` (:class:`QAContext`), built here: no blueprint needs another registered.
A blueprint that wants a link in the top navigation calls :func:`add_nav_item` from its
``init_app(app)``; ``services/qa/bots_pages.py``, when present, is registered automatically that way.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask, g, jsonify, request
from flask.sansio.app import App
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from shared.bots.buttons import ButtonStateStore
from shared.config import Settings, get_settings
from shared.gcp import UNAVAILABLE_RETRY_AFTER_S, unavailable_errors
from shared.qa.answer_log import AnswerLog, QuestionVectors
from shared.qa.answerers import Answerer, get_answerer
from shared.qa.ask import AskService
from shared.qa.bot_chats import BotChats
from shared.qa.bot_profiles import AnswerProfiles
from shared.qa.button_votes import ButtonVotes
from shared.qa.conversations import ConversationStore
from shared.qa.feedback import FeedbackStore
from shared.qa.gaps import GapsService
from shared.qa.identity import User
from shared.qa.live_index import LiveIndex
from shared.qa.ratelimit import RateLimiter
from shared.qa.recording_ask import RecordingAsk
from shared.qa.revoked_sessions import RevokedSessions

if TYPE_CHECKING:
    from shared.knowledge.coldstart import ColdStartSource

log = logging.getLogger("askbase.qa")

READ_LIMIT_FACTOR = 10  # reads per minute per user = this x the question limit (unless configured)


@dataclass
class NavItem:
    """A link in the top bar. ``visible`` (given the signed-in user) decides who sees it when set;
    otherwise everyone does, or only admins with ``admin_only``."""

    endpoint: str
    label: str
    admin_only: bool = False
    visible: Callable[[User], bool] | None = None

    def shown_to(self, user: User | None) -> bool:
        if self.visible is not None:
            return user is not None and self.visible(user)
        return not self.admin_only or bool(user and user.is_admin)


@dataclass
class Feedback:
    """The services behind answers' feedback and the gaps report, built once per app."""

    answers: AnswerLog
    ask: RecordingAsk
    votes: FeedbackStore
    buttons: ButtonVotes  # votes from bots' 👍/👎 buttons
    gaps: GapsService
    chats: BotChats  # who asks through a bot, and a bot chat's /forget


@dataclass
class QAContext:
    """Everything the blueprints need, built once per app.

    ``limiter`` counts questions; ``read_limiter`` counts reads (history, one conversation, search,
    export, and the chat, status and gaps pages) in buckets of its own: browsing never uses up the
    question budget, and a runaway client cannot turn reads into unbounded Firestore traffic. Its limit
    is ``Settings.read_rate_limit_per_minute`` when set, else :data:`READ_LIMIT_FACTOR` times
    ``rate_limit_per_minute``. ``sessions``: the signed-out session ids (``shared/qa/revoked_sessions.py``).
    """

    settings: Settings
    live_index: LiveIndex
    db: Any
    conversations: ConversationStore
    ask: AskService
    limiter: RateLimiter
    read_limiter: RateLimiter
    bots: AnswerProfiles
    feedback: Feedback
    sessions: RevokedSessions  # signed-out sessions: services/qa/auth.py checks every request's
    nav: list[NavItem] = field(default_factory=list)


def context() -> QAContext:
    """The current app's :class:`QAContext` (inside a request or app context)."""
    from flask import current_app

    ctx: QAContext = current_app.extensions["askbase"]  # set by create_app, and only there
    return ctx


def add_nav_item(
    app: App,
    endpoint: str,
    label: str,
    admin_only: bool = False,
    visible: Callable[[User], bool] | None = None,
) -> None:
    """Add a link to the top navigation of every page (after the built-in ones)."""
    app.extensions["askbase"].nav.append(NavItem(endpoint, label, admin_only, visible))


def create_app(
    settings: Settings | None = None,
    live_index: LiveIndex | None = None,
    db: Any = None,
    answerer_factory: Callable[[str], Answerer] | None = None,
    start_index: bool = True,
    cold_start: ColdStartSource | None = None,
) -> Flask:
    """Build the Q&A app.

    ``live_index``: give one (already started) to share or fake it; otherwise one is built from settings
    and, with ``start_index``, started in the background so /healthz answers while it downloads.
    ``db``: a Firestore client (default: one for ``settings.project_id``). ``answerer_factory``: name →
    Answerer (default :func:`shared.qa.answerers.get_answerer`). ``cold_start``: the snapshot restore
    the worker started before importing this module (``services/qa/wsgi.py``), adopted by the live index.
    """
    settings = settings or get_settings()
    app = Flask(__name__)
    secret = settings.require_session_secret()
    if not secret:
        # Local stack without a configured secret: sessions last as long as this process.
        secret = secrets.token_urlsafe(32)
        log.warning("ASKBASE_SESSION_SECRET is empty: using a random key (sign-ins end on restart)")
    app.config.update(
        SECRET_KEY=secret,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SESSION_COOKIE_NAME="askbase_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=timedelta(days=14),
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False,
    )
    if live_index is None:
        # First: its snapshot download starts in a child process and runs while the rest is set up.
        live_index = LiveIndex.from_settings(settings, cold_start)
        if start_index:
            live_index.start(wait=False)
    if db is None:
        from shared.gcp import firestore_client

        db = firestore_client(settings.project_id)
    conversations = ConversationStore(db, settings.conversation_retention_days)
    factory = answerer_factory or (lambda name: get_answerer(name, settings))
    ask = AskService(
        live_index,
        conversations,
        db,
        factory,
        settings.answerer,
        settings.retrieval_top_k,
        allowed_models=settings.allowed_bot_models,  # held on every bot answer, not only on save
    )
    bots = AnswerProfiles(db)
    per_minute = settings.rate_limit_per_minute
    reads_per_minute = settings.read_rate_limit_per_minute or READ_LIMIT_FACTOR * per_minute
    app.extensions["askbase"] = QAContext(
        settings=settings,
        live_index=live_index,
        db=db,
        conversations=conversations,
        ask=ask,
        limiter=RateLimiter(per_minute),
        read_limiter=RateLimiter(reads_per_minute),
        bots=bots,
        feedback=_feedback(settings, db, live_index, conversations, ask, bots),
        sessions=RevokedSessions(db, app.permanent_session_lifetime),
        nav=[NavItem("pages.chat", "Chat"), NavItem("pages.status", "Data status")],
    )

    from services.qa import api, auth, health, pages, signin
    from services.qa.answer_html import answer_html, highlight, source_heading

    auth.init_app(app)
    app.jinja_env.filters.update(answer_html=answer_html, highlight=highlight, source_heading=source_heading)
    for blueprint in (health.bp, signin.bp, pages.bp, api.bp):
        app.register_blueprint(blueprint)
    _register_optional(app, "services.qa.bots_pages")
    _register_error_handlers(app)
    trust_front_end(app, settings)
    return app


def _feedback(
    settings: Settings,
    db: Any,
    live_index: LiveIndex,
    conversations: ConversationStore,
    ask: AskService,
    bots: AnswerProfiles,
) -> Feedback:
    # The index's embedder: the process loads it for the index anyway (load_embedder caches it).
    vectors = QuestionVectors(settings.embedder, settings.gaps_ignore_words)
    answers = AnswerLog(
        db,
        settings.conversation_retention_days,
        vectors,
        low_support_score=settings.gaps_low_support_score,
    )
    votes = FeedbackStore(db, answers, settings.feedback_comment_chars)
    return Feedback(
        answers=answers,
        ask=RecordingAsk(ask, answers, live_index),
        votes=votes,
        buttons=ButtonVotes(ButtonStateStore(db), answers, votes),
        gaps=GapsService(
            db,
            vectors,
            similarity=settings.gaps_group_similarity,
            low_support_score=settings.gaps_low_support_score,
        ),
        chats=BotChats(bots, conversations, db),
    )


def trust_front_end(app: Flask, settings: Settings) -> None:
    """Behind Cloud Run's front end, take the scheme and client address from its forwarded headers.

    Cloud Run terminates TLS and forwards plain HTTP from an address that is not the container's
    loopback, so gunicorn (which trusts ``X-Forwarded-*`` only from ``forwarded_allow_ips``, default
    127.0.0.1) leaves ``request.scheme`` at ``http``: every absolute URL the app builds (Google
    Sign-In's ``login_uri``) would be ``http://``. Exactly one proxy hop is trusted, and only in
    production, where every request comes through that front end. The Host header is Cloud Run's own
    (the service URL), so ``X-Forwarded-Host`` is not trusted.
    """
    if settings.is_production:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=0)  # type: ignore[method-assign]


def _register_optional(app: Flask, module_name: str) -> None:
    # find_spec first so an ImportError *inside* the module is raised, not mistaken for "absent".
    if importlib.util.find_spec(module_name) is None:
        return
    importlib.import_module(module_name).init_app(app)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _register_error_handlers(app: Flask) -> None:
    from services.qa import errors

    errors.init_app(app)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        message = {
            413: f"request body is larger than {context().settings.max_body_bytes} bytes",
            404: "not found",
            405: "method not allowed",
        }.get(code, exc.description or exc.name)
        g.reject_reason = g.get("reject_reason") or message
        if _wants_json():
            return jsonify(error=message), code
        from flask import render_template

        # The page explains the status itself; only a message a view chose (abort(403, "...")) is
        # worth showing as well, not werkzeug's stock description.
        specific = exc.description if exc.description != type(exc).description else None
        return render_template("error.html", code=code, message=specific), code

    unavailable = unavailable_errors()

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        from flask import render_template

        if isinstance(exc, unavailable):
            # Firestore down, slow or contended past the retries: nothing was half-written (a turn is
            # one commit), so asking again is safe.
            log.warning("storage unavailable on %s %s: %s", request.method, request.path, exc)
            headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)}
            if _wants_json():
                message = "askbase is briefly unavailable: its storage did not answer."
                return jsonify(error=message), 503, headers
            return render_template("error.html", code=503, message=None), 503, headers
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return jsonify(error="internal error"), 500
        return render_template("error.html", code=500, message=None), 500

    @app.after_request
    def security_headers(response: Any) -> Any:
        # Everything is served from this origin; Google Identity Services is the one exception, and
        # only where sign-in with Google is configured.
        gis = "https://accounts.google.com/gsi/" if context().settings.google_client_id else ""
        script, style, frame = (
            (f"'self' {gis}client", f"'self' {gis}style", f"'self' {gis}") if gis else ("'self'",) * 3
        )
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src {script}; style-src {style}; connect-src {frame}; "
            f"frame-src {frame}; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
            "form-action 'self' https://accounts.google.com; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            # Answers and history are private: never stored by a shared cache.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.after_request
    def log_rejections(response: Any) -> Any:
        # One line per refused request: enough to debug a client, never the body (it may be private).
        if 400 <= response.status_code < 500:
            log.warning(
                "%s %s -> %d %s",
                request.method,
                request.path,
                response.status_code,
                g.get("reject_reason") or "",
            )
        return response
