"""``askbase ask "question"``: one question from the terminal, through the same path as ``/api/ask``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from shared.cli.eval import INDEX_DIR_HELP, logs_to_stderr, open_index_option
from shared.config import get_settings


@click.command("ask")
@click.argument("question")
@click.option(
    "--index",
    "index_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Answer from " + INDEX_DIR_HELP + ".",
)
@click.option(
    "--site",
    "site_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Answer from a directory of HTML pages (indexed into a cache under ASKBASE_DATA_DIR).",
)
@click.option("--base-url", default="http://localhost/", show_default=True, help="Where --site's pages live.")
@click.option("--url", "service_url", help="Ask a running Q&A service instead (as a bot: needs --bot).")
@click.option("--bot", "bot_id", help="The bot whose model and prompt answer (with --url).")
@click.option("--user", default="cli:terminal", show_default=True, help="The bot user asking (with --url).")
@click.option("--previous", help="The question asked just before, for a follow-up (local index only).")
@click.option("--answerer", type=click.Choice(["extractive", "gemini"]), help="Default: ASKBASE_ANSWERER.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON (alone on stdout).")
def ask_command(
    question: str,
    index_dir: Path | None,
    site_dir: Path | None,
    base_url: str,
    service_url: str | None,
    bot_id: str | None,
    user: str,
    previous: str | None,
    answerer: str | None,
    as_json: bool,
) -> None:
    """Answer QUESTION from a local index (--index DIR or --site DIR) or a running service (--url URL
    --bot ID, authenticated as a service caller: ASKBASE_INTERNAL_AUTH decides how)."""
    logs_to_stderr()
    settings = get_settings()
    if sum(x is not None for x in (index_dir, site_dir, service_url)) != 1:
        raise click.UsageError("give exactly one of --index DIR, --site DIR or --url URL")
    if service_url is not None:
        body = _ask_service(service_url, bot_id, user, question, settings.internal_auth)
    else:
        body = _ask_local(settings, index_dir, site_dir, base_url, question, previous, answerer)
    if as_json:
        click.echo(json.dumps(body, indent=1, ensure_ascii=False))
        return
    click.echo(body["answer"])
    if body["sources"]:
        click.echo("\nSources:")
        for n, source in enumerate(body["sources"], 1):
            click.echo(f"  [{n}] {source['title']}: {source['url']}")


def _ask_local(
    settings: Any,
    index_dir: Path | None,
    site_dir: Path | None,
    base_url: str,
    question: str,
    previous: str | None,
    answerer: str | None,
) -> dict[str, Any]:
    from shared.qa.answerers import get_answerer
    from shared.qa.ask import source_json
    from shared.qa.eval_corpus import open_eval_index
    from shared.qa.eval_sets import CorpusSpec
    from shared.qa.local_asker import LocalAsker
    from shared.qa.sources import source_link, source_title

    if index_dir is not None:
        index = open_index_option(settings, index_dir)
    else:
        assert site_dir is not None
        index = open_eval_index(settings, CorpusSpec(html_dir=site_dir, base_url=base_url))
    name = answerer or settings.answerer
    try:
        asker = LocalAsker(index, get_answerer(name, settings), settings.retrieval_top_k)
        answer, seconds = asker.ask(question, previous)
    finally:
        index.close()
    return {
        "answer": answer.text,
        "sources": [source_json(p) for p in answer.sources],
        "answerer": answer.answerer,
        "refused": answer.refused,
        "related": [{"title": source_title(p), "url": source_link(p)} for p in answer.related],
        "seconds": round(seconds, 4),
    }


def _ask_service(
    url: str, bot_id: str | None, user: str, question: str, internal_auth: str
) -> dict[str, Any]:
    from shared.bots.qa_client import QaClient, QaRejected, QaUnavailable

    if not bot_id:
        raise click.UsageError("--url needs --bot: the service answers callers other than browsers as a bot")
    try:
        reply = QaClient(url, internal_auth).ask(question, bot_id, user)
    except (QaUnavailable, QaRejected) as exc:
        raise click.ClickException(str(exc)) from None
    return {
        "answer": reply.text,
        "sources": [{"title": s.title, "url": s.url} for s in reply.sources],
        "conversation_id": reply.conversation_id,
    }
