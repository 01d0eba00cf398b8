"""``askbase smoke``: after ``pulumi up``, check the deployed stack from the outside.

Every check is one row of a table (name, PASS/FAIL, detail); the command exits 1 if any row failed.
A check has its own timeout, and anything that goes wrong in it (refused connection, untrusted
certificate, timeout, an API error) is its FAIL row, never a traceback.

Where the URLs come from: :mod:`shared.cli.smoke_targets`; the checks: :mod:`shared.cli.smoke_checks`;
the scrape trigger (``--trigger-scrape``): :mod:`shared.cli.smoke_scrape`.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import sys
from collections.abc import Callable
from typing import Any

import click
import httpx

from shared.cli.smoke_checks import (
    Row,
    check_botrunner,
    check_dead_letters,
    check_discord,
    check_readyz,
    check_signin,
    check_telegram,
    run_check,
)
from shared.cli.smoke_scrape import check_scrape, fetch_id_token
from shared.cli.smoke_targets import DEAD_LETTER_SUBSCRIPTION, Targets, load_outputs, pulumi, resolve_targets


def run_smoke(
    targets: Targets,
    *,
    client: httpx.Client,
    timeout: float,
    telegram_bot_id: str | None = None,
    discord_bot_id: str | None = None,
    trigger_scrape: bool = False,
    token: Callable[[str], str] | None = None,
    scrape_timeout: float = 1800.0,
    swap_timeout: float = 180.0,
    report: Callable[[Row], None] = lambda row: None,
) -> list[Row]:
    """Run every check in order, ``report`` each row as it completes; returns the rows."""
    checks: list[tuple[str, Callable[[], str]]] = [
        ("qa /readyz", lambda: check_readyz(client, targets.qa)),
        ("qa sign-in login_uri", lambda: check_signin(client, targets.qa)),
        ("telegram: wrong secret", lambda: check_telegram(client, targets.telegram, telegram_bot_id)),
        ("discord: bad signature", lambda: check_discord(client, targets.discord, discord_bot_id)),
        ("botrunner: no token", lambda: check_botrunner(client, targets.botrunner)),
        (
            "pubsub: dead letters",
            lambda: check_dead_letters(targets.project, targets.dead_letter_subscription, timeout),
        ),
    ]
    if trigger_scrape:
        get_token = token or (lambda audience: fetch_id_token(audience, None))
        checks.append(
            (
                "scrape: new snapshot served",
                lambda: check_scrape(
                    client, targets.qa, targets.scrape, get_token, scrape_timeout, swap_timeout
                ),
            )
        )
    rows = []
    for name, check in checks:
        row = run_check(name, check)
        report(row)
        rows.append(row)
    return rows


NAME_WIDTH = 28


def format_row(row: Row) -> str:
    """One row of the table, its columns aligned under the header."""
    return f"{row.name:<{NAME_WIDTH}}  {'PASS' if row.ok else 'FAIL':<6}  {row.detail}"


@click.command("smoke")
@click.option(
    "--outputs",
    "outputs_file",
    metavar="FILE",
    default=None,
    help="Stack outputs as `pulumi stack output --json` prints them ('-': stdin). "
    "Default: run that command if pulumi is on PATH.",
)
@click.option("--stack", default=None, help="Pulumi stack, when the outputs are read with the pulumi CLI.")
@click.option("--qa-url", default=None, help="The chat (qa) URL; default: output chatUrl.")
@click.option("--botrunner-url", default=None, help="Default: output botrunnerUrl.")
@click.option("--telegram-url", default=None, help="Default: output telegramWebhookBaseUrl.")
@click.option("--discord-url", default=None, help="Default: output discordWebhookBaseUrl.")
@click.option(
    "--scrape-url",
    default=None,
    help="The scrape function's URL; default: output scrapeUrl (or, for an older stack, derived from "
    "the Telegram function's).",
)
@click.option(
    "--project",
    envvar="GOOGLE_CLOUD_PROJECT",
    default=None,
    help="Dead-letter subscription's project; else output project, else `pulumi config get gcp:project`.",
    show_envvar=True,
)
@click.option("--dead-letter-subscription", default=DEAD_LETTER_SUBSCRIPTION, show_default=True)
@click.option("--telegram-bot-id", default=None, help="A registered Telegram bot: expect exactly 403.")
@click.option("--discord-bot-id", default=None, help="A registered Discord bot: expect exactly 401.")
@click.option(
    "--trigger-scrape",
    is_flag=True,
    help="Run a scrape now (as Cloud Scheduler does) and wait until qa serves its snapshot.",
)
@click.option(
    "--impersonate",
    metavar="SA_EMAIL",
    default=None,
    help="Call the scrape function with an ID token of this service account (e.g. askbase-scheduler@"
    "PROJECT.iam.gserviceaccount.com); default: the ambient credentials' own token.",
)
@click.option("--scrape-timeout", default=1800.0, show_default=True, help="Seconds the scrape call may take.")
@click.option(
    "--swap-timeout", default=180.0, show_default=True, help="Seconds to wait for qa to serve the snapshot."
)
@click.option("--timeout", default=15.0, show_default=True, help="Seconds each other check may take.")
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Trust this CA bundle for HTTPS (default: the system's, or SSL_CERT_FILE).",
)
def smoke_command(
    outputs_file: str | None,
    stack: str | None,
    qa_url: str | None,
    botrunner_url: str | None,
    telegram_url: str | None,
    discord_url: str | None,
    scrape_url: str | None,
    project: str | None,
    dead_letter_subscription: str,
    telegram_bot_id: str | None,
    discord_bot_id: str | None,
    trigger_scrape: bool,
    impersonate: str | None,
    scrape_timeout: float,
    swap_timeout: float,
    timeout: float,
    ca_cert: str | None,
) -> None:
    """Check a deployed stack from the outside: one PASS/FAIL row per check, exit 1 if any failed.

    qa answers /readyz and its Google sign-in login_uri is https on the chat's origin; the Telegram and
    Discord functions refuse a wrong secret / bad signature; botrunner refuses calls without a token;
    the dead-letter subscription is empty (read without acknowledging); with --trigger-scrape, a scrape
    runs and qa swaps its snapshot in. Respects PUBSUB_EMULATOR_HOST.
    """
    explicit = (qa_url, botrunner_url, telegram_url, discord_url)
    flags = ("--qa-url", "--botrunner-url", "--telegram-url", "--discord-url")
    missing = [flag for flag, value in zip(flags, explicit, strict=True) if not value]
    if outputs_file is None and missing and shutil.which("pulumi") is None:
        raise click.ClickException(
            "pulumi was not found on PATH, so the stack's outputs (its URLs) are unknown: pass --outputs "
            "FILE (what `pulumi stack output --json` prints, - for stdin) or " + ", ".join(missing)
        )
    outputs, from_pulumi = load_outputs(outputs_file, stack, need_pulumi=not all(explicit))
    if project is None and from_pulumi:
        with contextlib.suppress(click.ClickException):  # then the dead-letter row says what to pass
            project = pulumi(["config", "get", "gcp:project", *(["--stack", stack] if stack else [])]).strip()
    targets = resolve_targets(
        outputs,
        qa=qa_url,
        botrunner=botrunner_url,
        telegram=telegram_url,
        discord=discord_url,
        scrape=scrape_url,
        project=project or None,
        dead_letter_subscription=dead_letter_subscription,
    )
    verify: Any = ssl.create_default_context(cafile=ca_cert) if ca_cert else True
    header = f"{'check':<{NAME_WIDTH}}  {'result'}  detail"
    click.echo(f"askbase smoke: {targets.qa or '(no chat URL)'}")
    click.echo(header)
    with httpx.Client(verify=verify, timeout=timeout, follow_redirects=False) as client:
        rows = run_smoke(
            targets,
            client=client,
            timeout=timeout,
            telegram_bot_id=telegram_bot_id,
            discord_bot_id=discord_bot_id,
            trigger_scrape=trigger_scrape,
            token=lambda audience: fetch_id_token(audience, impersonate),
            scrape_timeout=scrape_timeout,
            swap_timeout=swap_timeout,
            report=lambda row: click.echo(format_row(row)),
        )
    failed = [r for r in rows if not r.ok]
    if not trigger_scrape:
        click.echo("(scrape not triggered: add --trigger-scrape to run one and wait for qa to serve it)")
    if failed:
        click.echo(f"{len(failed)} of {len(rows)} checks FAILED")
        sys.exit(1)
    click.echo(f"all {len(rows)} checks passed")
