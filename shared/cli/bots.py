"""``askbase bots list|start|stop|restart|token|logs|reconcile|rekey`` and ``askbase bot poll BOT_ID``.

The ``bots`` commands act as an operator (admin) through :mod:`shared.bots.control`, with the same
Firestore access as botrunner: they work against the local emulators or, with credentials, production.
Against production (no ``FIRESTORE_EMULATOR_HOST``), the commands that register bots with their platform
(start, restart, token, reconcile) first check that this shell has the deployed webhook URLs and the
token key, not the local defaults (:func:`registration_problems`; docs/operations.md, "Running the
askbase CLI against a deployed stack").

``askbase bot poll BOT_ID`` runs one Telegram bot in long-polling mode (getUpdates) for local
development without a public URL, answering as the webhook path does
(:mod:`shared.bots.platforms.telegram_polling`). Telegram refuses getUpdates while a webhook is set, so a
bot that is running in webhook mode must be stopped first (``--stop`` does it).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from shared.config import Settings, get_settings

if TYPE_CHECKING:
    from shared.bots.registry import FieldFailure

log = logging.getLogger("askbase.bots")

OPERATOR = "cli"


def _control(settings: Settings) -> Any:
    from shared.bots.control import BotControl

    return BotControl(settings)


def _operator() -> Any:
    from shared.bots.control import Caller

    return Caller(user=OPERATOR, admin=True)


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(getattr(exc, "message", None) or str(exc))


def _row(bot: Any) -> str:
    who = bot.platform_info.get("username") or bot.platform_info.get("application_id") or ""
    error = f"  ({bot.last_error})" if bot.status == "error" and bot.last_error else ""
    state = f"{bot.platform:<8}  {bot.status:<8}  {bot.desired:<8}"
    return f"{bot.id}  {state}  {bot.owner:<28}  {bot.name} {who}{error}"


# --- registering from an operator's shell ------------------------------------------------------------

# The client libraries talk to the Firestore emulator when this is set (shared/gcp.py), else to Google.
EMULATOR_VARIABLE = "FIRESTORE_EMULATOR_HOST"
# Where an operator finds each webhook base URL setting's deployed value: the Pulumi stack outputs
# (infra/program.py), the same URLs infra gives botrunner (infra/envvars.py).
WEBHOOK_STACK_OUTPUTS: dict[str, str] = {
    "telegram_webhook_url": "telegramWebhookBaseUrl",
    "discord_webhook_url": "discordWebhookBaseUrl",
}
# The token key's Secret Manager secret (infra/components/secrets.py, TOKEN_KEY_SECRET_ID).
TOKEN_KEY_SECRET_ID = "askbase-token-key"  # noqa: S105 - a name, not a value


def _is_deployed_url(url: str) -> bool:
    """Whether a platform could deliver to ``url``: https, with a host that is not this machine."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if parts.scheme != "https" or not host or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name
    return not (address.is_loopback or address.is_unspecified)


def registration_problems(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """What keeps this shell from registering bots with their platforms, each with the export that
    fixes it; empty when nothing does.

    Against the emulators (``FIRESTORE_EMULATOR_HOST`` set) the local defaults are right. Against real
    Firestore they are not: the platform would be told to deliver to this machine (the webhook base
    URLs default to http://127.0.0.1:808x, botrunner is given the deployed ones by infra) and the bot
    would stay deaf until the next reconcile; and without the token key no token can be decrypted.
    Every platform's URL is checked, since which one a bot uses is known only after reading Firestore.
    """
    from shared.bots.platforms import all_platforms

    env = os.environ if environ is None else environ
    if env.get(EMULATOR_VARIABLE):
        return []
    problems = []
    for platform in all_platforms():
        field = platform.webhook_base_setting
        url = str(getattr(settings, field))
        if not _is_deployed_url(url):
            variable = Settings.env_name(field)
            output = WEBHOOK_STACK_OUTPUTS.get(field)
            value = f"$(pulumi stack output {output})" if output else "<its webhook function's https URL>"
            problems.append(f"{variable} is {url!r}, not a deployed https URL (export {variable}={value})")
    if not settings.token_key.get_secret_value().strip() and not settings.token_key_secret.strip():
        problems.append(
            f"no token key (export {Settings.env_name('token_key_secret')}={TOKEN_KEY_SECRET_ID})"
        )
    return problems


def _refuse_local_registration(settings: Settings) -> None:
    """Stop a command that would register bots before it reads or changes anything, when
    :func:`registration_problems` finds any: one line saying what to export."""
    problems = registration_problems(settings)
    if problems:
        raise click.ClickException(
            f"this shell uses the real Firestore of project {settings.project_id} ({EMULATOR_VARIABLE} is "
            f'not set), but {"; ".join(problems)}; nothing was changed (docs/operations.md, "Running the '
            'askbase CLI against a deployed stack")'
        )


@click.group("bots")
def bots_group() -> None:
    """List, start, stop bots and read their logs."""


@bots_group.command("list")
@click.option("--owner", default=None, help="Only this owner's bots.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(owner: str | None, as_json: bool) -> None:
    """Every registered bot with its status (never its token)."""
    from shared.bots.registry import BotReader

    # The reader needs no token key: listing shows no secret, so it works without ASKBASE_TOKEN_KEY.
    bots = BotReader.from_settings(get_settings()).list_bots(owner=owner)
    if as_json:
        click.echo(json.dumps([b.to_public() for b in bots], indent=2))
        return
    if not bots:
        click.echo("no bots registered")
        return
    click.echo(f"{'id':<20}  platform  status    desired   {'owner':<28}  name")
    for bot in bots:
        click.echo(_row(bot))


def _act(what: str, call: Callable[[Any], Any], *, registers: bool = True) -> None:
    """Run ``call(control)`` as the operator, print the bot's row, fail if it ended in error.
    ``registers``: the call may register the bot with its platform (refused with local settings)."""
    from shared.bots.control import ControlError

    settings = get_settings()
    if registers:
        _refuse_local_registration(settings)
    try:
        bot = call(_control(settings))
    except ControlError as exc:
        raise _fail(exc) from None
    click.echo(_row(bot))
    if bot.status == "error":
        raise click.ClickException(f"{what} failed: {bot.last_error}")


def _change(action: str, bot_id: str) -> None:
    # Stopping registers nothing: it removes whatever the platform holds for the bot.
    _act(
        action,
        lambda control: getattr(control, f"{action}_bot")(_operator(), bot_id),
        registers=action != "stop",
    )


@bots_group.command("start")
@click.argument("bot_id")
def start_command(bot_id: str) -> None:
    """Set the bot's webhook (Telegram) or interactions endpoint (Discord)."""
    _change("start", bot_id)


@bots_group.command("stop")
@click.argument("bot_id")
def stop_command(bot_id: str) -> None:
    """Remove the bot's webhook / interactions endpoint; it stays stopped across restarts."""
    _change("stop", bot_id)


@bots_group.command("restart")
@click.argument("bot_id")
def restart_command(bot_id: str) -> None:
    """Register the bot with its platform again."""
    _change("restart", bot_id)


@bots_group.command("token")
@click.argument("bot_id")
def token_command(bot_id: str) -> None:
    """Give a bot a new token (after @BotFather /revoke or Discord's Reset Token).

    The token is read from a hidden prompt or from standard input, never from the command line, where
    it would show in the shell history and in ps. The bot keeps its id, webhook URL and conversations;
    its webhook secret is renewed and a running bot is registered again.
    """
    _refuse_local_registration(get_settings())  # before the operator pastes a token for nothing
    token = click.prompt("New token", hide_input=True, err=True).strip()
    _act(
        "the new token is stored, but registering",
        lambda control: control.replace_token(_operator(), bot_id, {"token": token}),
    )


@bots_group.command("logs")
@click.argument("bot_id")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 200))
@click.option("--all", "everything", is_flag=True, help="Follow the cursor to the oldest entry.")
def logs_command(bot_id: str, limit: int, everything: bool) -> None:
    """The bot's activity log, newest first (kept 30 days)."""
    from shared.bots.activity import ActivityLog, InvalidCursor
    from shared.bots.registry import COLLECTION, BotReader

    # Read without the token key, like `list`: the log holds no secret.
    reader = BotReader.from_settings(get_settings())
    if reader.get_bot(bot_id) is None:
        raise click.ClickException(f"No such bot: {bot_id}")
    log_entries = ActivityLog(reader.db, COLLECTION)
    cursor = None
    while True:
        try:
            page = log_entries.page(bot_id, limit=limit, cursor=cursor)
        except InvalidCursor as exc:
            raise _fail(exc) from None
        for entry in page.items:
            click.echo(f"{entry.at.isoformat(timespec='seconds')}  {entry.kind:<10}  {entry.message}")
        cursor = page.next_cursor
        if not everything or not cursor:
            break


@bots_group.command("reconcile")
def reconcile_command() -> None:
    """Compare every bot with its platform now and repair it (what the Scheduler job does)."""
    from shared.bots.reconcile import reconcile_all

    settings = get_settings()
    _refuse_local_registration(settings)
    report = reconcile_all(_control(settings))
    click.echo(json.dumps(report.to_public(), indent=2))
    if report.failed:
        raise SystemExit(1)


@bots_group.command("rekey")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON alone on stdout.")
def rekey_command(as_json: bool) -> None:
    """Re-encrypt every bot's stored token and webhook secret with the current token key.

    Run it after a key rotation (docs/operations.md), once traffic has fully moved to the revision with
    the new key, with the old key still among the previous keys (ASKBASE_TOKEN_KEYS_PREVIOUS): once it
    reports no bot undecryptable or failed, no stored secret needs the old key. Exits 1 while some bot
    does. An undecryptable one is listed with the field that failed and the id of the key that sealed it:
    a key that is not configured can be added to ASKBASE_TOKEN_KEYS_PREVIOUS (then run again); only if
    nobody has it must the owner re-enter the token. A failed one is tried again by running the command
    again.
    """
    from google.api_core import exceptions as gexc

    from shared.bots.registry import BotRegistry, UndecryptableSecrets
    from shared.bots.secrets import PREVIOUS_KEYS_VARIABLE

    registry = BotRegistry.from_settings(get_settings())
    bots = registry.list_bots()
    counts = {"rekeyed": 0, "current": 0}
    undecryptable: list[tuple[str, FieldFailure]] = []
    failed: list[str] = []
    for bot in bots:
        try:
            outcome = registry.rekey(bot)
        except UndecryptableSecrets as exc:  # the one DecryptionError rekey raises
            for failure in exc.failures:
                log.error("bot %s: stored %s cannot be decrypted: %s", bot.id, failure.field, failure.reason)
                undecryptable.append((bot.id, failure))
            continue
        except gexc.GoogleAPIError as exc:
            log.warning("bot %s: not re-encrypted (%s); run the command again", bot.id, type(exc).__name__)
            failed.append(bot.id)
            continue
        if outcome == "changed":
            failed.append(bot.id)  # written by others on every attempt: run again
        elif outcome in counts:
            counts[outcome] += 1
        # "gone": deleted meanwhile, nothing left to move
    report = {
        "key_id": registry.key_id,
        "bots": len(bots),
        **counts,
        "undecryptable": [
            {"bot": bot_id, "field": f.field, "key_id": f.key_id, "key_configured": f.key_configured}
            for bot_id, f in undecryptable
        ],
        "failed": failed,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(
            f"{len(bots)} bots, current token key {registry.key_id}: {counts['rekeyed']} re-encrypted, "
            f"{counts['current']} already under it"
        )
        if undecryptable:
            click.echo("cannot be decrypted with the configured token keys:")
            for bot_id, failure in undecryptable:
                click.echo(
                    f"  {bot_id} {failure.field.replace('_', ' ') or 'secret'}: {_undecryptable(failure)}"
                )
            missing = sorted({f.key_id for _, f in undecryptable if f.key_configured is False and f.key_id})
            if missing:
                click.echo(
                    f"add the token key{'s' if len(missing) > 1 else ''} with id {', '.join(missing)} to "
                    f"{PREVIOUS_KEYS_VARIABLE} and run again; "
                    "only if nobody has it must the owners re-enter their tokens (Replace token)"
                )
            if any(f.key_configured is not False for _, f in undecryptable):
                click.echo(
                    "a secret that does not decrypt with its own key (or has no key id) was altered or "
                    "copied: its owner must re-enter the token (Replace token)"
                )
        if failed:
            click.echo("not re-encrypted, run again: " + " ".join(failed))
    if undecryptable or failed:
        raise SystemExit(1)


def _undecryptable(failure: FieldFailure) -> str:
    """One line of ``rekey``'s text report for a :class:`~shared.bots.registry.FieldFailure`."""
    if failure.key_configured is False:
        return f"sealed by token key {failure.key_id}, which is not configured"
    if failure.key_configured:
        return f"does not decrypt with token key {failure.key_id} (altered, or copied from elsewhere)"
    return failure.reason


# --- askbase bot poll ------------------------------------------------------------------------------


@click.group("bot")
def bot_group() -> None:
    """Run one bot locally (askbase bot poll BOT_ID)."""


def run_poll(settings: Settings, bot_id: str, *, stop_webhook: bool, max_updates: int | None = None) -> int:
    """Poll one Telegram bot until interrupted (or ``max_updates`` were handled). Returns the count.

    The polling itself is :mod:`shared.bots.platforms.telegram_polling`; here: the bot must exist, be a
    Telegram bot and not run in webhook mode (``stop_webhook`` stops it), and what the operator sees."""
    from shared.bots.control import ControlError
    from shared.bots.platforms.telegram_polling import PollingRefused, TelegramPoller

    control = _control(settings)
    registry = control.registry
    bot = registry.get_bot(bot_id)
    if bot is None:
        raise click.ClickException(f"no bot {bot_id}")
    if bot.platform != "telegram":
        raise click.ClickException("polling mode exists only for Telegram bots")
    if bot.is_running:
        if not stop_webhook:
            raise click.ClickException(
                "this bot is running in webhook mode (Telegram refuses getUpdates then): "
                f"askbase bots stop {bot_id}, or pass --stop"
            )
        try:
            control.stop_bot(_operator(), bot_id)
        except ControlError as exc:
            raise _fail(exc) from None
        bot = registry.get_bot(bot_id)
        if bot is None:
            raise click.ClickException(f"no bot {bot_id}")

    poller = TelegramPoller(settings, registry, bot)
    click.echo(f"polling @{poller.username} (bot {bot_id}); Ctrl+C to stop", err=True)
    try:
        return poller.run(max_updates=max_updates)
    except PollingRefused as exc:
        raise click.ClickException(str(exc)) from None


@bot_group.command("poll")
@click.argument("bot_id")
@click.option(
    "--stop", "stop_webhook", is_flag=True, help="Stop the bot's webhook mode first if it is running."
)
def bot_poll_command(bot_id: str, stop_webhook: bool) -> None:
    """Run one Telegram bot with getUpdates (no public URL needed), answering like the worker does."""
    run_poll(get_settings(), bot_id, stop_webhook=stop_webhook)
