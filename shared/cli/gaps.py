"""``askbase gaps``: the gaps report in the terminal, as JSON (``--json``) or CSV (``--csv``).

The CLI reads Firestore with the operator's credentials, so it reports on all traffic, like an admin on
the web page (``/gaps``); ``--bot`` narrows it to one bot, ``--bot web`` to the web chat. Questions
that have no stored grouping vector are embedded with the index's model (loaded offline).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from shared.config import get_settings

if TYPE_CHECKING:
    from shared.qa.gaps_report import GapsReport


def _text(report: GapsReport) -> str:
    """A plain-text rendering: the summary, the groups, the pages."""
    f = report.filters
    lines = [
        f"{f.since:%Y-%m-%d %H:%M} to {f.until:%Y-%m-%d %H:%M} UTC"
        + (f", source {f.source}" if f.source else "")
        + (f", bot {f.bot}" if f.bot else "")
        + f": {report.answers} answers, {report.gaps} gaps in {report.total_groups} groups",
        "",
    ]
    for n, g in enumerate(report.groups, 1):
        why = ", ".join(
            f"{count} {label}"
            for count, label in (
                (g.refused, "refused"),
                (g.thumbs_down, "thumbs down"),
                (g.low_support, "low support"),
            )
            if count
        )
        lines.append(f"{n:>3}. {g.count} asked ({why}); {g.first_seen:%Y-%m-%d} to {g.last_seen:%Y-%m-%d}")
        lines += [f"       \u201c{q}\u201d" for q in g.examples]
        lines += [f"       cited: {p.url} ({p.count})" for p in g.pages]
        lines += [f"       closest: {p.url} ({p.count})" for p in g.closest]
    if report.pages:
        lines += ["", "pages (most thumbs down first): cited / thumbs down / rate"]
        lines += [f"  {p.cited:>6} {p.thumbs_down:>6} {p.down_rate:>6.0%}  {p.url}" for p in report.pages]
    return "\n".join(lines)


@click.command("gaps")
@click.option("--days", default="", help="The last N days (default 30).")
@click.option("--since", default="", help="First day, YYYY-MM-DD (UTC); wins over --days.")
@click.option("--until", default="", help="Last day, YYYY-MM-DD (UTC), included.")
@click.option("--source", default="", help="Only answers citing (or, refused, naming) this source's pages.")
@click.option("--bot", default="", help="Only this bot's traffic; 'web' for the web chat.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="Groups listed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print one table as CSV (see --table).")
@click.option("--table", default="groups", show_default=True, type=click.Choice(["groups", "pages"]))
def gaps_command(
    days: str,
    since: str,
    until: str,
    source: str,
    bot: str,
    limit: int,
    as_json: bool,
    as_csv: bool,
    table: str,
) -> None:
    """What users asked that the docs don't answer: refused, low-support and thumbs-down answers,
    grouped by similar question, and how each cited page fares."""
    from shared.gcp import firestore_client
    from shared.qa.answer_log import QuestionVectors
    from shared.qa.gaps import GapsService, UnknownBot, Viewer
    from shared.qa.gaps_filters import InvalidFilter, parse_filters

    if as_json and as_csv:
        raise click.UsageError("choose --json or --csv, not both")
    settings = get_settings()
    args = {"days": days, "since": since, "until": until, "source": source, "bot": bot}
    try:
        filters = parse_filters(args, datetime.now(UTC))
    except InvalidFilter as exc:
        raise click.UsageError(str(exc)) from None
    service = GapsService(
        firestore_client(settings.project_id),
        QuestionVectors(settings.embedder, settings.gaps_ignore_words),
        similarity=settings.gaps_group_similarity,
        low_support_score=settings.gaps_low_support_score,
    )
    try:
        report = service.report(Viewer("askbase-cli", is_admin=True), filters, limit=limit)
    except UnknownBot:
        raise click.ClickException(f"no bot {bot!r}") from None
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    elif as_csv:
        click.echo(report.to_csv(table), nl=False)
    else:
        click.echo(_text(report))
