"""Bot pages of the web app (blueprint ``bots``, mounted at ``/bots``; registered by ``init_app``).

The pages call botrunner's control API over HTTP (:class:`shared.bots.control_client.BotControlClient`),
with an ID token for botrunner in production: the key that decrypts bot tokens and the webhook URLs
live only with botrunner, so the public web app holds neither. Ownership is the signed-in user's
e-mail, sent as ``X-Askbase-User``; botrunner decides admin rights from its own ``admin_emails``.

Pages (server-rendered, CSRF-protected forms; tokens are write-only fields, never rendered back):

=======  =============================  ===============================================
GET      /bots                          cards with live status badges
GET      /bots/status.json              [{id, status, desired, last_error}] polled by the cards
GET/POST /bots/new                      add form with where-to-get-the-token help
GET      /bots/<id>                     edit form, start/stop/restart, activity log (paged)
POST     /bots/<id>/edit                name, model, system prompt
POST     /bots/<id>/token               a new token for the same bot (write-only field)
POST     /bots/<id>/<start|stop|restart>
GET/POST /bots/<id>/delete              confirmation page, then delete
=======  =============================  ===============================================
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from services.qa.app import add_nav_item, context
from services.qa.auth import api_login_required, current_user, login_required
from shared.bots.control import BadRequest, Caller, ControlError, NotFound
from shared.bots.control_client import BotControlClient, ControlUnavailable

log = logging.getLogger("askbase.qa.bots")

bp = Blueprint("bots", __name__, url_prefix="/bots")
CONTROL_KEY = "askbase.bot_control"  # tests install a client with an in-process transport here
STATES = ("start", "stop", "restart")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    add_nav_item(app, "bots.index", "Bots")


def _control() -> BotControlClient:
    control = current_app.extensions.get(CONTROL_KEY)
    if control is None:
        settings = context().settings
        control = BotControlClient(settings.botrunner_url, settings.internal_auth)
        current_app.extensions[CONTROL_KEY] = control
    return control


def _models() -> tuple[str, ...]:
    return context().settings.allowed_bot_models


def _caller() -> Caller:
    user = current_user()
    assert user is not None  # every view is login_required
    return Caller(user=user.email, admin=user.is_admin, email=user.email)


@bp.errorhandler(ControlUnavailable)
def _unavailable(exc: ControlUnavailable) -> Any:
    log.error("bots unavailable: %s", exc.message)
    g.reject_reason = "bot service unavailable"
    if request.path.endswith(".json"):
        return jsonify(error=exc.message), 503
    return render_template("bots.html", bots=[], unavailable=exc.message, models=_models()), 503


@bp.errorhandler(ControlError)
def _control_error(exc: ControlError) -> Any:
    # Refusals the views do not turn into a message on the form (a platform outage on start, a
    # conflict): the error page with botrunner's status and message, never a 500.
    g.reject_reason = exc.message
    if request.path.endswith(".json"):
        return jsonify(error=exc.message), exc.status
    return render_template("error.html", code=exc.status, message=exc.message), exc.status


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Any:
    g.reject_reason = "bot not found"
    if request.path.endswith(".json"):
        return jsonify(error=exc.message), 404
    return render_template("error.html", code=404, message="No such bot."), 404


@bp.get("")
@login_required
def index() -> Any:
    bots = _control().list_bots(_caller())
    return render_template("bots.html", bots=bots, unavailable=None, models=_models())


@bp.get("/status.json")
@api_login_required
def status_json() -> Any:
    bots = _control().list_bots(_caller())
    return jsonify(
        bots=[
            {"id": b.id, "status": b.status, "desired": b.desired, "last_error": b.last_error} for b in bots
        ]
    )


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new() -> Any:
    form: dict[str, str] = {"platform": request.args.get("platform", "telegram"), "model": "extractive"}
    error = None
    if request.method == "POST":
        # Secrets are read once and never put back into the re-rendered form.
        form = {k: request.form.get(k, "") for k in ("platform", "name", "model", "system_prompt")}
        form["model"] = form["model"] or "extractive"
        data: dict[str, Any] = dict(form)
        if form["platform"] == "telegram":
            data["token"] = request.form.get("token", "")
        else:
            for key in ("application_id", "public_key", "bot_token"):
                data[key] = request.form.get(key, "")
            form["application_id"] = data["application_id"]
            form["public_key"] = data["public_key"]
        data["start"] = request.form.get("start") == "1"
        try:
            bot = _control().create_bot(_caller(), data)
        except ControlError as exc:
            error = exc.message
        else:
            flash(f"Bot “{bot.name}” added." + (" It is starting." if data["start"] else ""), "info")
            return redirect(url_for("bots.detail", bot_id=bot.id))
    status = 400 if error else 200
    return render_template("bots_new.html", form=form, error=error, models=_models()), status


@bp.get("/<bot_id>")
@login_required
def detail(bot_id: str) -> Any:
    control = _control()
    bot = control.get_bot(_caller(), bot_id)
    cursor = request.args.get("cursor") or None
    try:
        page = control.activity(_caller(), bot_id, limit=25, cursor=cursor)
    except BadRequest:
        page = control.activity(_caller(), bot_id, limit=25)
    return render_template(
        "bots_detail.html",
        bot=bot,
        activity=page,
        cursor=cursor,
        models=_models(),
        webhook_url=bot.webhook_url,
    )


@bp.post("/<bot_id>/edit")
@login_required
def edit(bot_id: str) -> Any:
    fields = {k: request.form[k] for k in ("name", "model", "system_prompt") if k in request.form}
    try:
        _control().edit_bot(_caller(), bot_id, fields)
    except BadRequest as exc:
        flash(exc.message, "error")
    else:
        flash("Saved.", "info")
    return redirect(url_for("bots.detail", bot_id=bot_id))


@bp.post("/<bot_id>/token")
@login_required
def replace_token(bot_id: str) -> Any:
    try:
        bot = _control().replace_token(_caller(), bot_id, {"token": request.form.get("token", "")})
    except BadRequest as exc:
        flash(exc.message, "error")
    else:
        if bot.status == "error":
            flash(f"The new token is stored, but registering the bot failed: {bot.last_error}", "error")
        else:
            flash("Token replaced; the webhook secret was renewed too.", "info")
    return redirect(url_for("bots.detail", bot_id=bot_id))


@bp.post("/<bot_id>/<action>")
@login_required
def change(bot_id: str, action: str) -> Any:
    if action not in STATES:
        return render_template("error.html", code=404, message="Unknown action."), 404
    control = _control()
    bot = getattr(control, f"{action}_bot")(_caller(), bot_id)
    if bot.status == "error":
        flash(f"Could not {action} the bot: {bot.last_error}", "error")
    else:
        flash(f"Bot is {bot.status}.", "info")
    back = (
        url_for("bots.index")
        if request.form.get("next") == "index"
        else url_for("bots.detail", bot_id=bot_id)
    )
    return redirect(back)


@bp.route("/<bot_id>/delete", methods=["GET", "POST"])
@login_required
def delete(bot_id: str) -> Any:
    control = _control()
    bot = control.get_bot(_caller(), bot_id)
    if request.method == "GET":
        return render_template("bots_delete.html", bot=bot)
    if request.form.get("confirm_name", "").strip() != bot.name:
        flash("Type the bot's name exactly to confirm.", "error")
        return render_template("bots_delete.html", bot=bot), 400
    control.delete_bot(_caller(), bot_id)
    flash(f"Bot “{bot.name}” deleted.", "info")
    return redirect(url_for("bots.index"))
