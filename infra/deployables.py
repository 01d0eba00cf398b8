"""What the stack deploys, named once: each deployable, and every service account.

The Pulumi program (``infra/program.py``: service and function names, URLs, entry points), the function
archives (``infra/archive.py``: which archive each entry point is deployed from), the service accounts
(``infra/components/identity.py``), the production-shaped local stack (``shared/devstack/production.py``)
and ``askbase smoke`` (``shared/cli/smoke_targets.py``) all read these tables. No Pulumi import here:
the local stack and the CLI load this module too, as they load ``infra/commands.py``.

The deployed code cannot import it (the function archives carry ``functions/`` and ``shared/`` only, the
images ``shared/`` and ``services/``): ``functions/main.py`` serves every module of ``functions/`` as the
entry point of the same name, and ``tests/test_infra_archive.py`` holds that set to :data:`FUNCTIONS`.

Every name here is a deployed resource's name, a Pulumi resource name or part of one, or a URL: changing
one replaces the resource (``tests/test_infra_migration.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Account:
    """A service account: its id (the part of the email before ``@``) and what runs as it."""

    id: str
    description: str


@dataclass(frozen=True)
class Deployable:
    """One Cloud Run service or Cloud Function.

    ``key``: its identity, environment and local-process key (``infra/envvars.py``'s ``NEEDS``);
    ``url_key``: its key among the stack's URLs (and a function's logical key in ``infra/program.py``);
    ``entry_point``: a function's target in ``functions/main.py``, and ``archive`` the source archive it
    is deployed from (``infra/archive.py``); ``None`` for a service, whose start command is
    ``infra/commands.py``'s.
    """

    key: str
    kind: Literal["service", "function"]
    name: str  # the Cloud Run service or Cloud Function name (and its URL's last part)
    url_key: str
    account: Account
    entry_point: str | None = None
    archive: str | None = None

    def __post_init__(self) -> None:
        is_function = self.kind == "function"
        if (self.entry_point is not None, self.archive is not None) != (is_function, is_function):
            raise ValueError(f"{self.key}: a function has an entry point and an archive, a service neither")


DEPLOYABLES: tuple[Deployable, ...] = (
    Deployable(
        "qa",
        "service",
        "askbase-qa",
        "qa",
        Account("askbase-qa", "askbase qa: web chat and /api/ask (Cloud Run)"),
    ),
    Deployable(
        "botrunner",
        "service",
        "askbase-botrunner",
        "botrunner",
        Account("askbase-botrunner", "askbase botrunner: bot control plane and worker (Cloud Run)"),
    ),
    Deployable(
        "telegram-fn",
        "function",
        "askbase-telegram-webhook",
        "telegram",
        Account("askbase-telegram-fn", "askbase Telegram webhook (Cloud Function)"),
        entry_point="telegram_webhook",
        archive="webhooks",
    ),
    Deployable(
        "discord-fn",
        "function",
        "askbase-discord-interactions",
        "discord",
        Account("askbase-discord-fn", "askbase Discord interactions (Cloud Function)"),
        entry_point="discord_interactions",
        archive="webhooks",
    ),
    Deployable(
        "scrape-fn",
        "function",
        "askbase-scrape",
        "scrape",
        Account("askbase-scrape-fn", "askbase scrape (Cloud Function)"),
        entry_point="scrape",
        archive="scrape",
    ),
)
# The accounts that call or build the deployables (they run none of them).
CALLERS: dict[str, Account] = {
    "scheduler-invoker": Account("askbase-scheduler", "Cloud Scheduler -> scrape and reconcile"),
    "pubsub-push": Account("askbase-pubsub-push", "Pub/Sub push -> botrunner /worker/push"),
    "fn-builder": Account("askbase-fn-builder", "Cloud Build for the askbase functions"),
    "image-builder": Account("askbase-image-builder", "Cloud Build for the qa and botrunner images"),
}

BY_KEY: dict[str, Deployable] = {d.key: d for d in DEPLOYABLES}
SERVICES: dict[str, Deployable] = {d.key: d for d in DEPLOYABLES if d.kind == "service"}
# Keyed by url_key ("telegram", "discord", "scrape"), as infra/program.py keys its functions.
FUNCTIONS: dict[str, Deployable] = {d.url_key: d for d in DEPLOYABLES if d.kind == "function"}
# Every service account by key: each deployable's, then the callers'.
ACCOUNTS: dict[str, Account] = {**{d.key: d.account for d in DEPLOYABLES}, **CALLERS}
