"""``askbase bots list|start|stop|restart|token|logs|reconcile|rekey`` and ``askbase bot poll BOT_ID``.

The ``bots`` commands act as an operator (admin) through :mod:`shared.bots.control`, with the same
Firestore access as botrunner: they work against the local emulators or, with credentials, production.

``askbase bot poll BOT_ID`` runs one Telegram bot in long-polling mode (getUpdates) for local
development without a public URL, answering as the webhook path does
(:mod:`shared.bots.platforms.telegram_polling`). Telegram refuses getUpdates while a webhook is set, so a
bot that is running in webhook mode must be stopped first (``--stop`` does it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import click

from shared.config import Settings, get_settings

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


def _act(what: str, call: Callable[[Any], Any]) -> None:
    """Run ``call(control)`` as the operator, print the bot's row, fail if it ended in error."""
    from shared.bots.control import ControlError

    try:
        bot = call(_control(get_settings()))
    except ControlError as exc:
        raise _fail(exc) from None
    click.echo(_row(bot))
    if bot.status == "error":
        raise click.ClickException(f"{what} failed: {bot.last_error}")


def _change(action: str, bot_id: str) -> None:
    _act(action, lambda control: getattr(control, f"{action}_bot")(_operator(), bot_id))


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

    report = reconcile_all(_control(get_settings()))
    click.echo(json.dumps(report.to_public(), indent=2))
    if report.failed:
        raise SystemExit(1)


@bots_group.command("rekey")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON alone on stdout.")
def rekey_command(as_json: bool) -> None:
    """Re-encrypt every bot's stored token and webhook secret with the current token key.

    Run it after a key rotation (docs/operations.md) with the old key still among the previous keys
    (ASKBASE_TOKEN_KEYS_PREVIOUS): once it reports no bot undecryptable or failed, no stored secret needs
    the old key. Exits 1 while some bot does (an undecryptable token must be re-entered by its owner;
    a failed one is tried again by running the command again).
    """
    from google.api_core import exceptions as gexc

    from shared.bots.registry import BotRegistry
    from shared.bots.secrets import DecryptionError

    registry = BotRegistry.from_settings(get_settings())
    bots = registry.list_bots()
    counts = {"rekeyed": 0, "current": 0}
    undecryptable: list[str] = []
    failed: list[str] = []
    for bot in bots:
        try:
            outcome = registry.rekey(bot)
        except DecryptionError:
            log.error("bot %s: its stored token cannot be decrypted with any configured token key", bot.id)
            undecryptable.append(bot.id)
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
        "undecryptable": undecryptable,
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
            click.echo(
                "cannot be decrypted with any configured key (the owner must re-enter the token): "
                + " ".join(undecryptable)
            )
        if failed:
            click.echo("not re-encrypted, run again: " + " ".join(failed))
    if undecryptable or failed:
        raise SystemExit(1)


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
