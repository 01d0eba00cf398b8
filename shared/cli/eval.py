"""``askbase eval SET``: run an eval set through the answering path and print answer-quality metrics."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from shared.config import get_settings

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.knowledge.index import KnowledgeIndex

# What the --index options of askbase ask and eval take (shared.knowledge.index.SIDECAR_NAME names the file).
INDEX_DIR_HELP = (
    "an askbase index directory, one holding askbase-index.json next to the Chroma files, as a scrape "
    "builds or a restored snapshot unpacks (not a directory of HTML pages)"
)

log = logging.getLogger("askbase.eval")
# Progress goes to the log (stderr) at most this often, so a long run shows it is alive.
PROGRESS_EVERY_SECONDS = 5.0


def logs_to_stderr() -> None:
    """Send the log lines of this process to stderr: stdout carries only the command's output, so
    ``--json`` output can be piped as it is."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_askbase", False) and isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


def open_index_option(settings: Settings, path: Path) -> KnowledgeIndex:
    """The index directory an ``--index`` option names; a directory that is not one is a usage error
    (exit 2) saying what the option takes, not a traceback."""
    from shared.qa.local_asker import NotAnIndex, open_index_dir

    try:
        return open_index_dir(settings, path)
    except NotAnIndex as exc:
        raise click.BadParameter(f"{exc}; --index takes {INDEX_DIR_HELP}", param_hint="'--index'") from None


def progress_logger(what: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` that logs a line every few seconds and at the end."""
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            log.info("%s: %d/%d", what, done, total)

    return progress


@click.command("eval")
@click.argument("set_path", metavar="SET", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--index",
    "index_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Answer from " + INDEX_DIR_HELP + " instead of building the set's corpus.",
)
@click.option("--answerer", type=click.Choice(["extractive", "gemini"]), help="Default: ASKBASE_ANSWERER.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON (alone on stdout).")
@click.option(
    "--compare",
    "baseline_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A report saved with --json; exit 1 if a metric is worse by more than --tolerance.",
)
@click.option(
    "--tolerance", type=float, default=0.02, show_default=True, help="Allowed drop of a rate (0-1)."
)
def eval_command(
    set_path: Path,
    index_dir: Path | None,
    answerer: str | None,
    as_json: bool,
    baseline_path: Path | None,
    tolerance: float,
) -> None:
    """Answer every case of the eval set SET and print hit@1/3/5, MRR@5, refusal rates, citation
    precision, answer-first rate and latency.

    The index is --index, or else the HTML corpus the set names, indexed (or, for a set that says so,
    served on loopback and crawled) into a cache under ASKBASE_DATA_DIR (later runs re-embed only what
    changed). Exits 0, or 1 when --compare finds a regression.
    """
    from shared.qa.answerers import get_answerer
    from shared.qa.eval_corpus import CorpusMissing, open_eval_index
    from shared.qa.eval_sets import EvalSetError, load_eval_set
    from shared.qa.evaluation import compare, flipped_cases, format_table, run_eval
    from shared.qa.local_asker import LocalAsker

    logs_to_stderr()
    settings = get_settings()
    try:
        eval_set = load_eval_set(set_path)
        baseline = json.loads(baseline_path.read_text(encoding="utf-8")) if baseline_path else None
    except (EvalSetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if index_dir is not None:
        index = open_index_option(settings, index_dir)
    elif eval_set.corpus is not None:
        try:
            index = open_eval_index(settings, eval_set.corpus, progress_logger("indexing"))
        except CorpusMissing as exc:
            raise click.ClickException(str(exc)) from None
    else:
        raise click.UsageError("the set names no corpus: pass --index DIR")
    name = answerer or settings.answerer
    try:
        asker = LocalAsker(index, get_answerer(name, settings), settings.retrieval_top_k)
        report = run_eval(eval_set, asker.respond, name, progress_logger("cases"))
    finally:
        index.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    else:
        click.echo(format_table(report))
    if baseline is not None:
        regressions = compare(report.metrics, baseline, tolerance)
        for r in regressions:
            click.echo(f"regression: {r.metric} {r.baseline:.3f} -> {r.current}", err=True)
        flipped = flipped_cases(report, baseline)
        if flipped:
            click.echo(f"cases that passed in the baseline and fail now: {', '.join(flipped)}", err=True)
        if regressions:
            raise SystemExit(1)
