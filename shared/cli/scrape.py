"""``askbase scrape``: one scrape run from the command line, with a progress bar."""

from __future__ import annotations

import json

import click

from shared.config import get_settings


@click.command("scrape")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON instead of a summary.")
def scrape_command(as_json: bool) -> None:
    """Crawl every configured source, update the index and publish a snapshot if anything changed.

    Exits 0 when the run published or found nothing to do, 3 when another run holds the lease,
    1 when the run failed.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from shared.knowledge.runs import RunStatus
    from shared.knowledge.scrape import ScrapeError, run_scrape

    settings = get_settings()
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, done, 1))

        try:
            run = run_scrape(settings, progress)
        except (ScrapeError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(run.to_json(), indent=2, default=str))
    else:
        click.echo(
            f"run {run.id}: {run.status.value} in {run.seconds or 0:.1f}s — "
            f"pages: {run.pages_changed} changed, "
            f"{run.pages_unchanged} unchanged, {run.pages_removed} removed, {run.pages_failed} failed, "
            f"{run.pages_skipped} skipped; chunks +{run.chunks_added}/-{run.chunks_removed}; "
            f"{run.embeddings} embeddings"
        )
        if run.snapshot_id:
            click.echo(f"snapshot: {run.snapshot_id}")
        for name, stats in run.sources.items():
            if not stats.get("complete", True):
                click.echo(f"warning: source {name} incomplete: {stats.get('error')}", err=True)
        if run.error:
            click.echo(f"{run.error}", err=True)
    if run.status is RunStatus.SKIPPED:
        raise SystemExit(3)
    if run.status is RunStatus.FAILED:
        raise SystemExit(1)
