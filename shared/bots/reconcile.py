"""Reconcile: make every bot's platform registration match its desired state, and record failures.

This is how bots "come back" after any redeploy or outage: a bot is a webhook registration plus a
Firestore document, so bringing it back means checking the registration and repairing it. It runs

* on botrunner start-up (:func:`start_background_reconcile`, a daemon thread: start-up is not delayed);
* every 10 minutes from Cloud Scheduler (``POST /internal/reconcile`` on botrunner, OIDC in production);
* on demand (``askbase bots reconcile`` or the same endpoint).

Per bot (via :meth:`BotControl.apply` with ``verify=True``, which asks the bot's platform): desired
``running`` → the platform's registration must point at us (Telegram: the webhook URL; Discord: the
interactions endpoint and the ``/ask`` command), else what drifted is set again; desired ``stopped`` → a
registration that points at us is removed. Failures are stored on the bot
(status ``error``, ``last_error``, an activity entry) and retried on the next run.

Public API::

    report = reconcile_all(control, max_workers=8)   # ReconcileReport(checked, ok, repaired, failed)
    thread = start_background_reconcile(control)     # runs reconcile_all once, in the background
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shared.bots.control import BotControl

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    checked: int = 0
    ok: int = 0
    repaired: dict[str, str] = field(default_factory=dict)  # bot id -> what was done
    failed: dict[str, str] = field(default_factory=dict)  # bot id -> error

    def to_public(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "repaired": self.repaired,
            "failed": self.failed,
        }


def reconcile_bot(control: BotControl, bot_id: str) -> tuple[str, str | None]:
    """One bot: ("ok" | "repaired" | "failed" | "gone", detail)."""
    try:
        result = control.apply(bot_id, verify=True)
    except Exception as exc:  # one bad bot (or a Firestore hiccup) must not stop the others
        log.exception("reconcile of bot %s failed", bot_id)
        return "failed", f"internal error ({type(exc).__name__})"
    if result.bot is None:
        return "gone", None
    if result.error:
        return "failed", result.error
    if result.changed:
        return "repaired", result.changed
    return "ok", None


def reconcile_all(control: BotControl, max_workers: int = 8) -> ReconcileReport:
    """Check every bot (a few in parallel: each check is one or two platform round trips)."""
    report = ReconcileReport()
    bot_ids = [bot.id for bot in control.registry.list_bots()]
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="reconcile") as pool:
        outcomes = list(pool.map(lambda bot_id: (bot_id, *reconcile_bot(control, bot_id)), bot_ids))
    for bot_id, outcome, detail in outcomes:
        if outcome == "gone":
            continue
        report.checked += 1
        if outcome == "ok":
            report.ok += 1
        elif outcome == "repaired":
            report.repaired[bot_id] = detail or ""
        else:
            report.failed[bot_id] = detail or ""
    log.info(
        "reconcile: %d bots checked, %d ok, %d repaired, %d failed",
        report.checked,
        report.ok,
        len(report.repaired),
        len(report.failed),
    )
    return report


def start_background_reconcile(control: BotControl) -> threading.Thread:
    """Run :func:`reconcile_all` once in a daemon thread (called when botrunner starts)."""

    def run() -> None:
        try:
            reconcile_all(control)
        except Exception:
            # Firestore not reachable yet, for example: the Scheduler job will try again.
            log.exception("start-up reconcile failed")

    thread = threading.Thread(target=run, name="startup-reconcile", daemon=True)
    thread.start()
    return thread
