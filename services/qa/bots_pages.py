"""Bot pages of the web app (blueprint ``bots``, mounted at ``/bots``; registered by ``init_app``).

The pages call botrunner's control API over HTTP (:class:`shared.bots.control_client.BotControlClient`),
with an ID token for botrunner in production: the key that decrypts bot tokens and the webhook URLs
live only with botrunner, so the public web app holds neither. Ownership is the signed-in user's
e-mail, sent as ``X-Askbase-User``; botrunner decides admin rights from its own ``admin_emails``.

Pages (server-rendered, CSRF-protected forms; tokens are write-only fields, never rendered back). A
form that is refused comes back (400) with every mistake beside its field, in words, and the
platform's verdicts marked as such (:mod:`services.qa.bot_form`):

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
from services.qa.auth import api_login_required, login_required, signed_in_user
from services.qa.bot_form import (
    FormErrors,
    check_new_bot,
    check_new_token,
    check_settings,
    mode_choices,
    mode_label,
    model_choices,
    model_label,
    place_control_error,
)
from shared.bots.answer_modes import DEFAULT_MODE
from shared.bots.control import BadRequest, Caller, ControlError, NotFound, default_model
from shared.bots.control_client import BotControlClient, ControlUnavailable
from shared.bots.platforms import PLATFORM_NAMES, all_platforms, find_platform, get_platform

log = logging.getLogger("askbase.qa.bots")

bp = Blueprint("bots", __name__, url_prefix="/bots")
CONTROL_KEY = "askbase.bot_control"  # tests install a client with an in-process transport here
STATES = ("start", "stop", "restart")
SETTINGS = ("name", "model", "system_prompt", "answer_mode")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.filters["model_label"] = model_label
    app.jinja_env.filters["mode_label"] = mode_label
    # The templates speak of a platform only through its interface (label, fields, hints), so a new
    # platform needs its own templates/platforms/<name>_*.html and no edit here.
    app.jinja_env.filters["platform"] = get_platform
    app.jinja_env.globals.update(platforms=all_platforms, platform_names=lambda: PLATFORM_NAMES)
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
    user = signed_in_user()
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
    model = default_model(_models())
    form: dict[str, str] = {
        "platform": request.args.get("platform", PLATFORM_NAMES[0]),
        "model": model,
        "answer_mode": str(DEFAULT_MODE),
    }
    errors = FormErrors()
    if request.method == "POST":
        # Secrets are read once and never put back into the re-rendered form.
        form = {k: request.form.get(k, "") for k in ("platform", *SETTINGS)}
        form["model"] = form["model"] or model
        form["answer_mode"] = form["answer_mode"] or str(DEFAULT_MODE)
        data: dict[str, Any] = dict(form)
        platform = find_platform(form["platform"])
        for field in platform.registration_fields if platform else ():
            data[field.name] = request.form.get(field.name, "")
            if not field.secret:
                form[field.name] = data[field.name]
        data["start"] = request.form.get("start") == "1"
        errors = check_new_bot(data, _models())
        if not errors:
            try:
                bot = _control().create_bot(_caller(), data)
            except ControlError as exc:
                token_field = platform.token_field if platform else "token"
                errors = place_control_error(exc, form["platform"], token_field)
            else:
                flash(f"Bot “{bot.name}” added." + (" It is starting." if data["start"] else ""), "info")
                return redirect(url_for("bots.detail", bot_id=bot.id))
    status = 400 if errors else 200
    return (
        render_template(
            "bots_new.html", form=form, errors=errors, models=model_choices(_models()), modes=mode_choices()
        ),
        status,
    )


def _detail_page(
    bot_id: str,
    settings_form: dict[str, Any] | None = None,
    settings_errors: FormErrors | None = None,
    token_errors: FormErrors | None = None,
) -> Any:
    """The bot's page; with errors, as the answer (400) to its settings or token form."""
    control = _control()
    bot = control.get_bot(_caller(), bot_id)
    cursor = request.args.get("cursor") or None
    try:
        page = control.activity(_caller(), bot_id, limit=25, cursor=cursor)
    except BadRequest:
        page = control.activity(_caller(), bot_id, limit=25)
    html = render_template(
        "bots_detail.html",
        bot=bot,
        activity=page,
        cursor=cursor,
        models=model_choices(_models()),
        modes=mode_choices(),
        webhook_url=bot.webhook_url,
        settings_form=settings_form or {k: getattr(bot, k) for k in SETTINGS},
        settings_errors=settings_errors or FormErrors(),
        token_errors=token_errors or FormErrors(),
    )
    return html, 400 if settings_errors or token_errors else 200


@bp.get("/<bot_id>")
@login_required
def detail(bot_id: str) -> Any:
    return _detail_page(bot_id)


@bp.post("/<bot_id>/edit")
@login_required
def edit(bot_id: str) -> Any:
    control = _control()
    bot = control.get_bot(_caller(), bot_id)
    fields = {k: request.form[k] for k in SETTINGS if k in request.form}
    # A setting the form left out keeps its value (and is checked as it is).
    wanted = {k: getattr(bot, k) for k in SETTINGS} | fields
    errors = check_settings(wanted, _models())
    if not errors:
        try:
            control.edit_bot(_caller(), bot_id, fields)
        except BadRequest as exc:
            errors = place_control_error(exc, bot.platform)
        else:
            flash("Saved.", "info")
            return redirect(url_for("bots.detail", bot_id=bot_id))
    return _detail_page(bot_id, settings_form=wanted, settings_errors=errors)


@bp.post("/<bot_id>/token")
@login_required
def replace_token(bot_id: str) -> Any:
    control = _control()
    platform = control.get_bot(_caller(), bot_id).platform
    token = request.form.get("token", "")
    errors = check_new_token(platform, token)
    if not errors:
        try:
            bot = control.replace_token(_caller(), bot_id, {"token": token})
        except BadRequest as exc:
            errors = place_control_error(exc, platform)
        else:
            if bot.status == "error":
                flash(f"The new token is stored, but registering the bot failed: {bot.last_error}", "error")
            else:
                flash("Token replaced; the webhook secret was renewed too.", "info")
            return redirect(url_for("bots.detail", bot_id=bot_id))
    return _detail_page(bot_id, token_errors=errors)


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
