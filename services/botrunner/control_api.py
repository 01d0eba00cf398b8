"""The bot control plane over HTTP (blueprint ``bp``): thin routes over :mod:`shared.bots.control`.

Routes (JSON in, JSON out; errors are ``{"error": message}`` with 400/401/403/404/409/502/503):

=======  ==================================  ==============================================
POST     /api/bots                           register (validates with the platform) → 201
GET      /api/bots                           the caller's bots (``?all=1`` for admins)
GET      /api/bots/<id>                      one bot
PATCH    /api/bots/<id>                      edit name / model / system_prompt
DELETE   /api/bots/<id>                      unhook and delete → 200 {"deleted": true}
POST     /api/bots/<id>/start|stop|restart   change the desired state and apply it
POST     /api/bots/<id>/token                new token for the same bot (+ new webhook secret)
GET      /api/bots/<id>/activity             ``?limit=50&cursor=...`` → {"items", "next_cursor"}
POST     /internal/reconcile                 reconcile every bot (Cloud Scheduler) → report
GET      /healthz                            liveness
=======  ==================================  ==============================================

Who is calling: botrunner is private. The qa service calls it on behalf of a signed-in user and says
who in ``X-Askbase-User`` (``X-Askbase-Admin: 1`` for admins). With ``internal_auth=google-oidc`` the
request must also carry a Google ID token (audience ``settings.botrunner_url``) of a service account of
this project — Cloud Run IAM checks the same, this is the second gate. With ``internal_auth=none``
(local stack, tests) the headers are trusted as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from shared.bots.control import UNAVAILABLE, BadRequest, BotControl, Caller, ControlError
from shared.bots.reconcile import reconcile_all
from shared.config import Settings

log = logging.getLogger(__name__)

bp = Blueprint("bot_control", __name__)

USER_HEADER = "X-Askbase-User"
ADMIN_HEADER = "X-Askbase-Admin"
CONTROL_KEY = "askbase.bot_control"
SETTINGS_KEY = "askbase.settings"
VERIFIER_KEY = "askbase.id_token_verifier"  # tests install a fake (token, audience) -> claims

TokenVerifier = Callable[[str, str], dict[str, Any]]


def _control() -> BotControl:
    return current_app.extensions[CONTROL_KEY]


def _settings() -> Settings:
    return current_app.extensions[SETTINGS_KEY]


def _google_verify(token: str, audience: str) -> dict[str, Any]:
    from google.auth.transport import requests as google_requests
    from google.oauth2 import id_token

    return id_token.verify_token(token, google_requests.Request(), audience=audience)


def _check_service_token(settings: Settings) -> tuple[Response, int] | None:
    """In production, require a Google ID token from one of this project's service accounts."""
    if settings.internal_auth != "google-oidc":
        return None
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return jsonify({"error": "authentication required"}), 401
    verify: TokenVerifier = current_app.extensions.get(VERIFIER_KEY) or _google_verify
    try:
        claims = verify(auth[len("Bearer ") :].strip(), settings.botrunner_url.rstrip("/"))
    except Exception:
        return jsonify({"error": "invalid token"}), 401
    email = str(claims.get("email") or "")
    if claims.get("email_verified") not in (True, "true") or not email.endswith(
        f"@{settings.project_id}.iam.gserviceaccount.com"
    ):
        return jsonify({"error": "this caller may not use the bot control plane"}), 403
    return None


@bp.before_request
def _authenticate() -> tuple[Response, int] | None:
    if request.path == "/healthz":
        return None
    denied = _check_service_token(_settings())
    if denied is not None:
        return denied
    if request.path.startswith("/api/"):
        user = request.headers.get(USER_HEADER, "").strip()
        if not user or len(user) > 320:
            return jsonify({"error": f"missing {USER_HEADER}"}), 401
        g.caller = Caller(user=user, admin=request.headers.get(ADMIN_HEADER) == "1", email=user)
    return None


@bp.errorhandler(ControlError)
def _control_error(exc: ControlError) -> tuple[Response, int]:
    return jsonify({"error": exc.message}), exc.status


def _unavailable(exc: Exception) -> tuple[Response, int]:
    log.warning("storage unavailable: %s", type(exc).__name__)
    return jsonify({"error": "temporarily unavailable; try again"}), 503


for _exc in UNAVAILABLE:
    bp.register_error_handler(_exc, _unavailable)


def _json_body() -> Any:
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("Expected a JSON body.")
    return data


def _limit() -> int:
    raw = request.args.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 200:
        raise BadRequest("limit must be a number from 1 to 200.")
    return int(raw)


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
    return jsonify(_control().get_bot(g.caller, bot_id).to_public())


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
        return jsonify({"error": "unknown action"}), 404  # type: ignore[return-value]
    return jsonify(actions[action](g.caller, bot_id).to_public())


@bp.get("/api/bots/<bot_id>/activity")
def activity(bot_id: str) -> Response:
    page = _control().activity(g.caller, bot_id, limit=_limit(), cursor=request.args.get("cursor"))
    return jsonify(page.to_public())


@bp.post("/internal/reconcile")
def reconcile() -> Response:
    return jsonify(reconcile_all(_control()).to_public())


def install_error_pages(app: Any) -> None:
    """JSON for every HTTP error and for anything unexpected (no HTML, no stack traces)."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": exc.description or exc.name}), exc.code or 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        if isinstance(exc, UNAVAILABLE):
            return _unavailable(exc)
        log.exception("unexpected error in %s %s", request.method, request.path)
        return jsonify({"error": "internal error"}), 500
