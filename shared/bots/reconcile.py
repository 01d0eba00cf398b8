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

A pass starts no new check after :data:`BUDGET_SECONDS`: during a platform outage each check waits on
its timeouts, and a pass over many bots would outlast the request that runs it (botrunner's 90 s Cloud
Run timeout: the Scheduler then sees a 504 and the rest runs on a throttled CPU). The bots left over are
counted (``unchecked``) and logged; each pass takes the bots in a new random order, so none is left out
pass after pass.

Public API::

    report = reconcile_all(control, max_workers=8)  # ReconcileReport(checked, ok, repaired, failed,
                                                    #                 unchecked)
    thread = start_background_reconcile(control)    # runs reconcile_all once, in the background
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shared.bots.control import BotControl

log = logging.getLogger(__name__)

# No check starts later than this into a pass, so that a pass over many bots against a platform that
# answers slowly (each call seconds, not its timeout) ends within botrunner's 90 s request timeout
# (infra/program.py). It cannot bound a check already running: against a platform that accepts
# connections and never answers, one call may take its three tries of a 15 s read (control.py's
# CONTROL_RETRY, shared/bots/transport.py) and a check two calls. Such a pass answers the Scheduler 504;
# its checks still end by themselves, and the next pass comes 10 minutes later.
BUDGET_SECONDS = 30.0


@dataclass
class ReconcileReport:
    checked: int = 0
    ok: int = 0
    repaired: dict[str, str] = field(default_factory=dict)  # bot id -> what was done
    failed: dict[str, str] = field(default_factory=dict)  # bot id -> error
    unchecked: int = 0  # bots not reached within the pass's budget: the next pass checks them

    def to_public(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "repaired": self.repaired,
            "failed": self.failed,
            "unchecked": self.unchecked,
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


def reconcile_all(
    control: BotControl,
    max_workers: int = 8,
    budget_seconds: float | None = BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> ReconcileReport:
    """Check every bot (a few in parallel: each check is one or two platform round trips), starting no
    check after ``budget_seconds`` (None: no limit)."""
    report = ReconcileReport()
    bot_ids = [bot.id for bot in control.registry.list_bots()]
    random.shuffle(bot_ids)
    deadline = None if budget_seconds is None else clock() + budget_seconds

    def check(bot_id: str) -> tuple[str, str, str | None]:
        if deadline is not None and clock() >= deadline:
            return bot_id, "unchecked", None
        return bot_id, *reconcile_bot(control, bot_id)

    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="reconcile") as pool:
        outcomes = list(pool.map(check, bot_ids))
    for bot_id, outcome, detail in outcomes:
        if outcome == "gone":
            continue
        if outcome == "unchecked":
            report.unchecked += 1
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
    if report.unchecked:
        log.warning(
            "reconcile: %d bots not checked within the pass's %.0f s (platforms slow to answer?); the next"
            " pass checks them",
            report.unchecked,
            budget_seconds,
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
