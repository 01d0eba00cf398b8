"""The ``askbase`` command line.

Subcommands live in their own modules and are imported only when used, so ``askbase --help`` stays fast
and a command's heavy imports (Chroma, onnxruntime) are paid only by that command.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import traceback

import click

from shared import logs
from shared.config import ConfigError

# name -> (module, attribute, one-line help)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "emulators": ("shared.cli.emulators", "emulators_group", "Start, stop or inspect the local emulators."),
    "dev": ("shared.cli.dev", "dev_command", "Run the whole stack locally until Ctrl+C."),
    "scrape": ("shared.cli.scrape", "scrape_command", "Crawl the sources and publish a snapshot."),
    "snapshots": ("shared.cli.snapshots", "snapshots_group", "List, show or roll back index snapshots."),
    "bots": ("shared.cli.bots", "bots_group", "List, start, stop bots and read their logs."),
    "bot": ("shared.cli.bots", "bot_group", "Run one bot locally (askbase bot poll BOT_ID)."),
    "export": ("shared.cli.backup", "export_command", "Export Firestore data + snapshot id to an archive."),
    "import": ("shared.cli.backup", "import_command", "Import an export archive (idempotent)."),
    "backup": ("shared.cli.backup", "backup_group", "Verify backups (askbase backup verify)."),
    "eval": ("shared.cli.eval", "eval_command", "Measure answer quality on an eval set."),
    "ask": ("shared.cli.ask", "ask_command", "Ask one question from the terminal."),
    "gaps": ("shared.cli.gaps", "gaps_command", "What users asked that the docs don't answer, grouped."),
    "smoke": ("shared.cli.smoke", "smoke_command", "After pulumi up: check the deployed stack end to end."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module_name, attr, _ = spec
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, spec[2]) for name, spec in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.option(
    "--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"])
)
def cli(log_level: str) -> None:
    """askbase: answer questions from your docs on the web, Telegram and Discord."""
    logs.configure(log_level)


# What to do without Google credentials (askbase smoke's credential checks say it too).
CREDENTIALS_HINT = (
    "run `gcloud auth application-default login`, or `askbase emulators up` and export the variables "
    "it prints (while askbase dev runs: source .askbase/dev/env)"
)


def _is(exc: BaseException, module: str, name: str) -> bool:
    """``isinstance(exc, module.name)``, importing nothing: an exception of that class means its module
    is already loaded."""
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def setup_error(exc: BaseException) -> str | None:
    """The one line to print for a common setup mistake (no credentials, no bucket, no token key), or
    None for any other error (it keeps its traceback: that is a bug)."""
    if _is(exc, "google.auth.exceptions", "DefaultCredentialsError"):
        return f"no Google credentials: {CREDENTIALS_HINT}"
    if _is(exc, "google.api_core.exceptions", "NotFound"):
        # A 404 on listing or uploading objects (.../b/NAME/o?...) is the bucket missing; on one object
        # (.../b/NAME/o/OBJECT) the object.
        listing = re.search(r"/b/([^/?#\s]+)/o(?:[?#\s:]|$)", str(exc))
        named = re.search(r"/b/([^/?#\s]+)", str(exc))
        bucket = listing or (named if "bucket does not exist" in str(exc) else None)
        if bucket:
            return (
                f"bucket {bucket.group(1)} does not exist: check the name; the index bucket is "
                "ASKBASE_BUCKET (`pulumi stack output bucketName`; against the emulators the first "
                "`askbase scrape` or askbase dev creates it)"
            )
        return f"not found: {_first_line(exc)}"
    if _is(exc, "shared.bots.secrets", "TokenKeyError"):
        text = _first_line(exc)
        if "ASKBASE_TOKEN_KEY_SECRET" not in text:
            text += " (set ASKBASE_TOKEN_KEY locally, ASKBASE_TOKEN_KEY_SECRET in production)"
        return text + "; while askbase dev runs: source .askbase/dev/env"
    return None


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        logging.getLogger("askbase").error("%s", exc)
        sys.exit(2)
    except Exception as exc:
        message = setup_error(exc)
        if message is None:
            raise
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            traceback.print_exc()
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)
