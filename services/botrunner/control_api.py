"""The bot control plane over HTTP (blueprint ``bp``): thin routes over :mod:`shared.bots.control`.

Routes (JSON in, JSON out; errors are ``{"error": message}`` with 400/401/403/404/409/502/503, plus
``"field"`` naming the input a refusal is about when it is about one: ``ControlError.field``):

=======  ==================================  ==============================================
POST     /api/bots                           register (validates with the platform) → 201
GET      /api/bots                           the caller's bots (``?all=1`` for admins)
GET      /api/bots/<id>                      one bot
PATCH    /api/bots/<id>                      edit name / model / system_prompt / answer_mode
DELETE   /api/bots/<id>                      unhook and delete → 200 {"deleted": true}
POST     /api/bots/<id>/start|stop|restart   change the desired state and apply it
POST     /api/bots/<id>/token                new token for the same bot (+ new webhook secret)
GET      /api/bots/<id>/activity             ``?limit=50&cursor=...`` → {"items", "next_cursor"}
POST     /internal/reconcile                 reconcile every bot (Cloud Scheduler) → report
GET      /healthz                            liveness
=======  ==================================  ==============================================

Who is calling: botrunner is private (Cloud Run IAM is the first gate; this is the second). Each route
has its own caller list (:data:`ROUTE_CALLERS`): with ``internal_auth=google-oidc`` a request must carry
a Google ID token for ``settings.botrunner_url`` from an account on that list, verified by
:mod:`shared.idtokens`:

* ``/api/...``: ``control_callers`` (qa's account: the bot pages). The user the call is made for is in
  ``X-Askbase-User``; whether that user is an admin is decided here from ``admin_emails``, never by a
  header (a caller cannot assert admin rights);
* ``/internal/reconcile``: ``reconcile_callers`` (Cloud Scheduler's account);
* ``/worker/push``: the push service account, checked by :mod:`services.botrunner.worker`.

With ``internal_auth=none`` (local stack, tests; refused in production) no token is required.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.sansio.app import App
from werkzeug.exceptions import HTTPException

from shared.bots.control import UNAVAILABLE, BadRequest, BotControl, Caller, ControlError
from shared.bots.control_client import USER_HEADER
from shared.bots.reconcile import reconcile_all
from shared.config import Settings
from shared.gcp import UNAVAILABLE_RETRY_AFTER_S
from shared.idtokens import TokenError, require_service_caller
from shared.request_input import LONE_SURROGATE, NOT_TEXT, NotJSON, page_size, read_json

log = logging.getLogger(__name__)

bp = Blueprint("bot_control", __name__)

CONTROL_KEY = "askbase.bot_control"
SETTINGS_KEY = "askbase.settings"  # botrunner's Settings, set by create_app; both blueprints read them here
ACTIVITY_PAGE = 50  # ?limit= of GET /api/bots/<id>/activity: its default and largest value
MAX_ACTIVITY_PAGE = 200

# Path prefix -> the settings field listing the service accounts allowed there (first match wins).
ROUTE_CALLERS: tuple[tuple[str, str], ...] = (
    ("/internal/reconcile", "reconcile_callers"),
    ("/api/", "control_callers"),
)


def app_settings(app: App) -> Settings:
    """The app's settings (``app.extensions[SETTINGS_KEY]``). An app without them is a programming
    error: it raises ``RuntimeError``, and the blueprints ask when they are registered."""
    settings = app.extensions.get(SETTINGS_KEY)
    if not isinstance(settings, Settings):
        raise RuntimeError(f"botrunner needs its settings in app.extensions[{SETTINGS_KEY!r}] (create_app)")
    return settings


@bp.record_once
def _require_settings(state: BlueprintSetupState) -> None:
    app_settings(state.app)


def _control() -> BotControl:
    control: BotControl = current_app.extensions[CONTROL_KEY]
    return control


def _settings() -> Settings:
    return app_settings(current_app)


def _denied(status: int, reason: str) -> tuple[Response, int]:
    g.reject_reason = reason  # logged by log_rejections
    message = {401: "authentication required", 403: "this caller may not use this route"}.get(status, reason)
    return jsonify({"error": message}), status


def allowed_callers(settings: Settings, path: str) -> list[str] | None:
    """The service accounts allowed on ``path`` (None: the route authenticates itself or is open)."""
    for prefix, field in ROUTE_CALLERS:
        if path.startswith(prefix):
            return list(getattr(settings, field))
    return None


@bp.before_request
def _authenticate() -> tuple[Response, int] | None:
    settings = _settings()
    allowed = allowed_callers(settings, request.path)
    if allowed is None:
        return None
    try:
        require_service_caller(
            settings, request.headers.get("Authorization"), settings.botrunner_url.rstrip("/"), allowed
        )
    except TokenError as exc:
        return _denied(exc.status, exc.reason)
    if request.path.startswith("/api/"):
        user = request.headers.get(USER_HEADER, "").strip()
        if not user or len(user) > 320:
            return _denied(401, f"missing {USER_HEADER}")
        g.caller = Caller(user=user, admin=user.lower() in settings.admin_emails, email=user)
    return None


@bp.errorhandler(ControlError)
def _control_error(exc: ControlError) -> tuple[Response, int]:
    g.reject_reason = exc.message
    body = {"error": exc.message} | ({"field": exc.field} if exc.field else {})
    return jsonify(body), exc.status


def _unavailable(exc: Exception) -> tuple[Response, int, dict[str, str]]:
    log.warning("storage unavailable: %s", type(exc).__name__)
    return (
        jsonify({"error": "temporarily unavailable; try again"}),
        503,
        {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
    )


for _exc in UNAVAILABLE:
    bp.register_error_handler(_exc, _unavailable)


def _json_body() -> Any:
    try:
        data = read_json(request.get_data()) if request.is_json else None
    except NotJSON as exc:
        if exc.reason == LONE_SURROGATE:
            raise BadRequest(f"{NOT_TEXT.capitalize()}.") from None
        data = None
    if data is None:
        raise BadRequest("Expected a JSON body.")
    return data


def _limit() -> int:
    limit = page_size(request.args.get("limit"), ACTIVITY_PAGE, MAX_ACTIVITY_PAGE)
    if limit is None:
        raise BadRequest(f"limit must be a number from 1 to {MAX_ACTIVITY_PAGE}.")
    return limit


# --- routes ---------------------------------------------------------------------------------------


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})


@bp.get("/api/bots")
def list_bots() -> Response:
    everyone = request.args.get("all") == "1"
    bots = _control().list_bots(g.caller, all_owners=everyone)
    return jsonify({"bots": [b.to_public() for b in bots]})


@bp.post("/api/bots")
def create_bot() -> tuple[Response, int]:
    bot = _control().create_bot(g.caller, _json_body())
    return jsonify(bot.to_public()), 201


@bp.get("/api/bots/<bot_id>")
def get_bot(bot_id: str) -> Response:
    control = _control()
    bot = control.get_bot(g.caller, bot_id)
    return jsonify({**bot.to_public(), "webhook_url": control.webhook_url(bot)})


@bp.patch("/api/bots/<bot_id>")
def edit_bot(bot_id: str) -> Response:
    return jsonify(_control().edit_bot(g.caller, bot_id, _json_body()).to_public())


@bp.delete("/api/bots/<bot_id>")
def delete_bot(bot_id: str) -> Response:
    _control().delete_bot(g.caller, bot_id)
    return jsonify({"deleted": True})


@bp.post("/api/bots/<bot_id>/token")
def replace_token(bot_id: str) -> Response:
    return jsonify(_control().replace_token(g.caller, bot_id, _json_body()).to_public())


@bp.post("/api/bots/<bot_id>/<action>")
def change_state(bot_id: str, action: str) -> Response:
    control = _control()
    actions = {"start": control.start_bot, "stop": control.stop_bot, "restart": control.restart_bot}
    if action not in actions:
        g.reject_reason = "unknown action"
        return jsonify({"error": "unknown action"}), 404  # type: ignore[return-value]
    return jsonify(actions[action](g.caller, bot_id).to_public())


@bp.get("/api/bots/<bot_id>/activity")
def activity(bot_id: str) -> Response:
    page = _control().activity(g.caller, bot_id, limit=_limit(), cursor=request.args.get("cursor"))
    return jsonify(page.to_public())


@bp.post("/internal/reconcile")
def reconcile() -> Response:
    return jsonify(reconcile_all(_control()).to_public())


REJECT_REASON_CHARS = 200  # of a logged reason: a message may quote what the caller sent (field names)


def install_rejection_log(app: Flask) -> None:
    """One WARNING per refused request of every route: each 4xx, and a 503 a handler refused with a
    reason (``g.reject_reason``: Google's certificates out of reach while checking a caller's token):
    method, path, status and that reason, never the body, which may hold a token. The caller reads why
    in the response; this is the operator's side of it."""

    @app.after_request
    def _log_rejection(response: Response) -> Response:
        if 400 <= response.status_code < 500 or g.get("reject_reason"):
            reason = str(g.get("reject_reason") or "")[:REJECT_REASON_CHARS]
            log.warning("%s %s -> %d %s", request.method, request.path, response.status_code, reason)
        return response


def install_error_pages(app: Flask) -> None:
    """JSON for every HTTP error and for anything unexpected (no HTML, no stack traces)."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        g.reject_reason = g.get("reject_reason") or exc.name
        return jsonify({"error": exc.description or exc.name}), exc.code or 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int] | tuple[Response, int, dict[str, str]]:
        if isinstance(exc, UNAVAILABLE):
            return _unavailable(exc)
        log.exception("unexpected error in %s %s", request.method, request.path)
        return jsonify({"error": "internal error"}), 500
