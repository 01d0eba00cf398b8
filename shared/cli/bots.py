"""``askbase bots list|start|stop|restart|token|logs|reconcile|rekey`` and ``askbase bot poll BOT_ID``.

The ``bots`` commands act as an operator (admin) through :mod:`shared.bots.control`, with the same
Firestore access as botrunner: they work against the local emulators or, with credentials, production.

``askbase bot poll BOT_ID`` runs one Telegram bot in long-polling mode (getUpdates) for local
development without a public URL. Every update goes through the same path as a webhook delivery: the
Telegram ingress logic (:class:`shared.bots.webhooks.Ingress`: secret check, group rules,
per-chat switch, dedupe) and the worker (:class:`shared.bots.worker.BotWorker`: asks the qa service's
``/api/ask`` at ``settings.qa_url`` as the ``botrunner`` service, sends the reply with sendMessage) —
only the Pub/Sub hop is replaced by a direct call. Telegram refuses getUpdates while a webhook is set,
so a bot that is running in webhook mode must be stopped first (``--stop`` does it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from shared.config import Settings, get_settings

if TYPE_CHECKING:
    from shared.bots.jobs import Job
    from shared.bots.worker import BotWorker

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


class _InlinePublisher:
    """Stands in for the Pub/Sub publisher: hands the job straight to the worker."""

    def __init__(self, worker: BotWorker) -> None:
        self._worker = worker

    def publish(self, job: Job, timeout: float | None = None) -> str:
        for attempt in range(3):
            outcome = self._worker.process(job)
            if outcome.status < 500:
                log.info("job %s: %s", job.job_id, outcome.reason)
                return outcome.reason
            time.sleep(1.0 + attempt)  # what Pub/Sub's redelivery backoff would do
        log.warning("job %s: gave up (%s)", job.job_id, outcome.reason)
        return outcome.reason


def run_poll(settings: Settings, bot_id: str, *, stop_webhook: bool, max_updates: int | None = None) -> int:
    """Poll one Telegram bot until interrupted (or ``max_updates`` were handled). Returns the count."""
    from telegram import Update
    from telegram.error import Conflict, Forbidden, InvalidToken
    from telegram.ext import Application, ContextTypes, TypeHandler

    from shared.bots.control import ControlError
    from shared.bots.lookup import bot_lookup
    from shared.bots.platforms import get_platform
    from shared.bots.platforms.telegram import SECRET_HEADER
    from shared.bots.platforms.telegram_api import ALLOWED_UPDATES, TelegramClient
    from shared.bots.qa_client import QaClient
    from shared.bots.webhooks import Ingress
    from shared.bots.worker import BotWorker

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

    # The bot is "stopped" as far as webhooks go, but in this process it is live.
    base_lookup = bot_lookup(registry, with_token=True)

    def lookup(wanted: str) -> Any:
        info = base_lookup(wanted)
        return dataclasses.replace(info, active=True) if info is not None and wanted == bot_id else info

    worker = BotWorker(
        registry.db, lookup, QaClient(settings.qa_url, internal_auth=settings.internal_auth), settings
    )
    publisher = _InlinePublisher(worker)
    ingress = Ingress(get_platform("telegram"), registry.db, lookup, publisher, settings.max_body_bytes)
    headers = {SECRET_HEADER: registry.webhook_secret(bot)}
    client = TelegramClient(registry.decrypt_token(bot), settings.telegram_api_base)
    me = client.get_me()
    click.echo(f"polling @{me.username} (bot {bot_id}); Ctrl+C to stop", err=True)
    registry.record_activity(bot_id, "message", "Polling mode started from the CLI.")

    # python-telegram-bot's Application runs the getUpdates loop: long polling, the offset, backoff on
    # network errors. Each update goes through the same Ingress a webhook uses, on a worker thread because
    # the ingress and the worker are synchronous (Firestore, the qa service, Telegram's API).
    handled = 0
    refused: list[str] = []

    async def on_update(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        nonlocal handled
        body = json.dumps(update.to_dict()).encode()
        reply = await asyncio.to_thread(ingress.handle, bot_id, headers, body)
        log.info("update %s: %s %s", update.update_id, reply.status, reply.reason)
        if reply.body.get("method") == "answerCallbackQuery":
            # A webhook's response runs this method at Telegram; polling has no response: call it.
            query_id, text = str(reply.body.get("callback_query_id")), str(reply.body.get("text", ""))
            await asyncio.to_thread(client.answer_callback_query, query_id, text)
        handled += 1
        if max_updates is not None and handled >= max_updates:
            context.application.stop_running()

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(context.error, Conflict):
            refused.append(
                "Telegram refuses polling: a webhook is set for this bot (askbase bots stop first)"
            )
            context.application.stop_running()
        elif isinstance(context.error, InvalidToken | Forbidden):
            refused.append(str(context.error))
            context.application.stop_running()
        else:
            log.warning("polling: %s (python-telegram-bot retries)", context.error)

    application = (
        Application.builder()
        .token(registry.decrypt_token(bot))
        .base_url(f"{settings.telegram_api_base.rstrip('/')}/bot")
        .build()
    )
    application.add_handler(TypeHandler(Update, on_update))
    application.add_error_handler(on_error)
    main_thread = threading.current_thread() is threading.main_thread()
    # run_polling uses the thread's event loop; a thread other than the main one (tests) has none, and
    # only the main thread may install signal handlers (there Ctrl+C stops the loop cleanly).
    asyncio.set_event_loop(asyncio.new_event_loop())
    try:
        application.run_polling(
            allowed_updates=ALLOWED_UPDATES,
            timeout=25,
            stop_signals=None if not main_thread else (signal.SIGINT, signal.SIGTERM),
            close_loop=True,
        )
    except KeyboardInterrupt:
        pass
    finally:
        registry.record_activity(bot_id, "message", "Polling mode ended.")
    if refused:
        raise click.ClickException(refused[0])
    return handled


@bot_group.command("poll")
@click.argument("bot_id")
@click.option(
    "--stop", "stop_webhook", is_flag=True, help="Stop the bot's webhook mode first if it is running."
)
def bot_poll_command(bot_id: str, stop_webhook: bool) -> None:
    """Run one Telegram bot with getUpdates (no public URL needed), answering like the worker does."""
    run_poll(get_settings(), bot_id, stop_webhook=stop_webhook)
