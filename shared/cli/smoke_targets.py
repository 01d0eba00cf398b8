"""Where ``askbase smoke`` finds the deployed stack: its URLs and project, first found wins.

The ``--*-url`` options; the ``--outputs`` file (what ``pulumi stack output --json`` prints); ``pulumi
stack output --json`` itself when the pulumi CLI is on PATH. The scrape function's URL: ``--scrape-url``,
else the ``scrapeUrl`` output, else (a stack from before that output) derived from
``telegramWebhookBaseUrl`` (both are ``https://REGION-PROJECT.cloudfunctions.net/NAME``,
:func:`infra.components.functions.function_url`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click

from infra.deployables import FUNCTIONS

# infra/components/messaging.py: f"{DEAD_LETTER_TOPIC}-inbox" (tests/test_smoke.py holds them together).
DEAD_LETTER_SUBSCRIPTION = "askbase-jobs-dead-inbox"
# infra/deployables.py (what infra deploys, named once): the scrape URL is derived from the Telegram
# function's URL.
TELEGRAM_FUNCTION = FUNCTIONS["telegram"].name
SCRAPE_FUNCTION = FUNCTIONS["scrape"].name
PULUMI_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Targets:
    """What the checks talk to; ``None``: not known (that check fails and says how to supply it)."""

    qa: str | None
    botrunner: str | None
    telegram: str | None
    discord: str | None
    scrape: str | None
    project: str | None
    dead_letter_subscription: str = DEAD_LETTER_SUBSCRIPTION


def pulumi(args: list[str]) -> str:
    """What ``pulumi ARGS`` prints; its failure or silence as the command's error, with what to pass."""
    pulumi = shutil.which("pulumi")
    assert pulumi is not None
    try:
        done = subprocess.run(
            [pulumi, *args], capture_output=True, text=True, timeout=PULUMI_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise click.ClickException(
            f"`pulumi {' '.join(args)}` did not answer within {PULUMI_TIMEOUT_SECONDS:.0f}s"
        ) from None
    if done.returncode != 0:
        raise click.ClickException(
            f"`pulumi {' '.join(args)}` failed ({done.stderr.strip() or done.returncode}); "
            "run it where Pulumi.yaml is, or pass --outputs FILE or the --*-url options"
        )
    return done.stdout


def load_outputs(path: str | None, stack: str | None, need_pulumi: bool) -> tuple[dict[str, Any], bool]:
    """The stack outputs, and whether they came from the pulumi CLI."""
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
            data = json.loads(text)
        except (OSError, json.JSONDecodeError) as exc:
            raise click.ClickException(f"cannot read stack outputs from {path}: {exc}") from None
        if not isinstance(data, dict):
            raise click.ClickException(f"{path} is not a JSON object of stack outputs")
        return data, False
    if need_pulumi and shutil.which("pulumi"):
        args = ["stack", "output", "--json", *(["--stack", stack] if stack else [])]
        try:
            data = json.loads(pulumi(args))
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"`pulumi stack output --json` printed no JSON: {exc}") from None
        return (data if isinstance(data, dict) else {}), True
    return {}, False


def derive_scrape_url(telegram_url: str | None) -> str | None:
    """``https://REGION-PROJECT.cloudfunctions.net/askbase-scrape`` from the Telegram function's URL."""
    if not telegram_url:
        return None
    parts = urlsplit(telegram_url.rstrip("/"))
    if parts.scheme != "https" or not parts.netloc.endswith(".cloudfunctions.net"):
        return None
    if parts.path != "/" + TELEGRAM_FUNCTION:
        return None
    return f"https://{parts.netloc}/{SCRAPE_FUNCTION}"


def resolve_targets(
    outputs: dict[str, Any],
    *,
    qa: str | None,
    botrunner: str | None,
    telegram: str | None,
    discord: str | None,
    scrape: str | None,
    project: str | None,
    dead_letter_subscription: str,
) -> Targets:
    """The targets: an explicit option first, else the stack output named for it."""

    def pick(explicit: str | None, key: str) -> str | None:
        value = explicit or outputs.get(key)
        return value.rstrip("/") if isinstance(value, str) and value else None

    telegram_url = pick(telegram, "telegramWebhookBaseUrl")
    return Targets(
        qa=pick(qa, "chatUrl"),
        botrunner=pick(botrunner, "botrunnerUrl"),
        telegram=telegram_url,
        discord=pick(discord, "discordWebhookBaseUrl"),
        scrape=pick(scrape, "scrapeUrl") or derive_scrape_url(telegram_url),
        project=project or (outputs.get("project") if isinstance(outputs.get("project"), str) else None),
        dead_letter_subscription=dead_letter_subscription,
    )
