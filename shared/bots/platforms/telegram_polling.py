"""One Telegram bot in long-polling mode (getUpdates), answering exactly as the webhook path does.

Public API::

    from shared.bots.platforms.telegram_polling import PollingRefused, TelegramPoller

    poller = TelegramPoller(settings, registry, bot)  # a stopped Telegram bot; asks Telegram getMe
    poller.username                                   # "docs_bot"
    handled = poller.run(max_updates=None)            # until Ctrl+C / SIGTERM, or max_updates handled
    # PollingRefused: Telegram refused polling (a webhook is set, the token is invalid or revoked)

For local development without a public URL (``askbase bot poll BOT_ID``, :mod:`shared.cli.bots`, which
checks the bot, stops its webhook mode when asked and prints). Every update goes through the same path
as a webhook delivery: the Telegram ingress (:class:`shared.bots.webhooks.Ingress`: secret check, group
rules, per-chat switch, dedupe) and the worker (:class:`shared.bots.worker.BotWorker`: asks the qa
service's ``/api/ask`` at ``settings.qa_url`` as the ``botrunner`` service, sends the reply with
sendMessage). Only the Pub/Sub hop is replaced by a direct call (:class:`InlinePublisher`), and the
answer a webhook's HTTP response would carry (answerCallbackQuery) becomes an API call.

Telegram refuses getUpdates while a webhook is set (409 Conflict): a bot askbase runs in webhook mode
must be stopped first (the CLI's ``--stop``); one set outside askbase is removed by python-telegram-bot's
polling start-up (deleteWebhook).

Only the CLI imports this module (python-telegram-bot's ``Application``); no deployable reaches it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING

from telegram import Update
from telegram.error import Conflict, Forbidden, InvalidToken
from telegram.ext import Application, ContextTypes, TypeHandler

from shared.bots.lookup import BotInfo, bot_lookup
from shared.bots.platforms import get_platform
from shared.bots.platforms.telegram import SECRET_HEADER
from shared.bots.platforms.telegram_api import ALLOWED_UPDATES, TelegramClient
from shared.bots.qa_client import QaClient
from shared.bots.webhooks import Ingress
from shared.bots.worker import BotWorker

if TYPE_CHECKING:
    from shared.bots.jobs import Job
    from shared.bots.registry import Bot, BotRegistry
    from shared.config import Settings

log = logging.getLogger("askbase.bots")

# getUpdates' long-poll wait (seconds): Telegram answers as soon as an update arrives, or after this.
POLL_TIMEOUT_S = 25
CONFLICT_MESSAGE = "Telegram refuses polling: a webhook is set for this bot (askbase bots stop first)"


class PollingRefused(Exception):
    """Telegram will not let this process poll: a webhook is set, or the token is invalid or revoked.
    ``str()`` is one line for people."""


class InlinePublisher:
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


class TelegramPoller:
    """Polls one Telegram bot and answers each update through the ingress and the worker.

    ``bot`` is the bot's record; its webhook mode should be stopped (its record says "stopped"), which
    is why the lookup the ingress and the worker use treats it as active in this process. Building the
    poller asks Telegram who the bot is (getMe), so a bad token fails here, before anything runs.
    """

    def __init__(self, settings: Settings, registry: BotRegistry, bot: Bot) -> None:
        self._registry = registry
        self._bot_id = bot.id
        self._api_base = settings.telegram_api_base
        # The bot is "stopped" as far as webhooks go, but in this process it is live.
        base_lookup = bot_lookup(registry, with_token=True)
        bot_id = bot.id

        def lookup(wanted: str) -> BotInfo | None:
            info = base_lookup(wanted)
            return dataclasses.replace(info, active=True) if info is not None and wanted == bot_id else info

        worker = BotWorker(
            registry.db, lookup, QaClient(settings.qa_url, internal_auth=settings.internal_auth), settings
        )
        self._ingress = Ingress(
            get_platform("telegram"), registry.db, lookup, InlinePublisher(worker), settings.max_body_bytes
        )
        self._headers = {SECRET_HEADER: registry.webhook_secret(bot)}
        self._token = registry.decrypt_token(bot)
        self._client = TelegramClient(self._token, settings.telegram_api_base)
        self.username: str = self._client.get_me().username or ""

    def run(self, max_updates: int | None = None) -> int:
        """Poll until interrupted (Ctrl+C, SIGTERM) or ``max_updates`` were handled; return the number
        handled. Raises :class:`PollingRefused` when Telegram refuses. The bot's activity log shows the
        start and the end."""
        bot_id, ingress, headers, client = self._bot_id, self._ingress, self._headers, self._client
        self._registry.record_activity(bot_id, "message", "Polling mode started from the CLI.")

        # python-telegram-bot's Application runs the getUpdates loop: long polling, the offset, backoff on
        # network errors. Each update goes through the same Ingress a webhook uses, on a worker thread
        # because the ingress and the worker are synchronous (Firestore, the qa service, Telegram's API).
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
                refused.append(CONFLICT_MESSAGE)
                context.application.stop_running()
            elif isinstance(context.error, InvalidToken | Forbidden):
                refused.append(str(context.error))
                context.application.stop_running()
            else:
                log.warning("polling: %s (python-telegram-bot retries)", context.error)

        application = (
            Application.builder().token(self._token).base_url(f"{self._api_base.rstrip('/')}/bot").build()
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
                timeout=POLL_TIMEOUT_S,
                stop_signals=None if not main_thread else (signal.SIGINT, signal.SIGTERM),
                close_loop=True,
            )
        except KeyboardInterrupt:
            pass
        finally:
            self._registry.record_activity(bot_id, "message", "Polling mode ended.")
        if refused:
            raise PollingRefused(refused[0])
        return handled
