"""`askbase ask --index DIR` and `askbase eval SET --index DIR` on a directory that is not an index: a
usage error naming what an index directory is, not a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared.cli import cli

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "args",
    [["ask", "How do I deploy?"], ["eval", str(ROOT / "evals" / "sample-site.json")]],
    ids=["ask", "eval"],
)
def test_a_directory_that_is_not_an_index_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "page.html").write_text("<h1>not an index</h1>")
    result = CliRunner().invoke(cli, [*args, "--index", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert "is not an askbase index" in result.output and "askbase-index.json" in result.output


@pytest.mark.parametrize("command", ["ask", "eval"])
def test_the_option_help_says_what_an_index_directory_is(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert "askbase-index.json" in re.sub(r"-\s+", "-", result.output)  # help wraps after hyphens
