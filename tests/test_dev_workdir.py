"""`askbase dev --workdir DIR` empties DIR only when askbase made it: `--workdir .` or `~` must never
wipe the checkout or the home directory. Nothing here starts a process: a dev that got past the
working directory stops at the first thing it would start."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from shared.cli import dev
from shared.devstack import workdir as wd


class WouldStart(Exception):
    """Raised where dev would start the sample site or the stack."""


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise WouldStart

    monkeypatch.setattr(dev, "serve_sample_site", refuse)
    monkeypatch.setattr(dev, "_production_shape", refuse)


def _dev(*args: str) -> Result:
    return CliRunner().invoke(dev.dev_command, list(args))


@pytest.mark.parametrize("shape", [[], ["--production-shape"]])
def test_a_directory_askbase_did_not_make_is_refused_and_kept(tmp_path: Path, shape: list[str]) -> None:
    mine = tmp_path / "project"
    (mine / "src").mkdir(parents=True)
    (mine / "src" / "main.py").write_text("precious")
    (mine / "notes.txt").write_text("precious")
    result = _dev("--workdir", str(mine), *shape)
    assert result.exit_code != 0
    assert not isinstance(result.exception, WouldStart)
    assert "was not created by askbase dev" in result.output
    assert (mine / "src" / "main.py").read_text() == "precious"
    assert (mine / "notes.txt").read_text() == "precious"


def test_the_current_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]")
    monkeypatch.chdir(tmp_path)
    result = _dev("--workdir", ".")
    assert result.exit_code != 0 and "was not created by askbase dev" in result.output
    assert (tmp_path / "pyproject.toml").exists()


def test_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("precious")
    result = _dev("--workdir", str(target))
    assert result.exit_code != 0 and "is not a directory" in result.output
    assert target.read_text() == "precious"


def test_a_new_directory_is_created_with_the_marker_and_emptied_next_time(tmp_path: Path) -> None:
    target = tmp_path / "a" / "dev"
    assert isinstance(_dev("--workdir", str(target)).exception, WouldStart)
    assert (target / wd.MARKER).is_file()
    (target / "logs").mkdir()
    (target / "logs" / "qa.log").write_text("last run")
    (target / "leftover").write_text("anything askbase's own directory holds goes")
    assert isinstance(_dev("--workdir", str(target)).exception, WouldStart)
    assert sorted(p.name for p in target.iterdir()) == [wd.MARKER, wd.LOCK_NAME]


def _claim(path: Path) -> Path:
    claimed = wd.claim(path)
    claimed.release()
    return claimed.path


def test_an_empty_directory_and_one_from_before_the_marker_are_used(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _claim(empty) == empty.resolve() and (empty / wd.MARKER).is_file()
    legacy = tmp_path / ".askbase" / "dev"  # an older askbase dev's default directory: only what dev writes
    for name in ("emulators", "logs", "data"):
        (legacy / name).mkdir(parents=True)
        (legacy / name / "x").write_text("stale")
    _claim(legacy)
    assert sorted(p.name for p in legacy.iterdir()) == [wd.MARKER, wd.LOCK_NAME]


def test_dev_like_entries_elsewhere_are_not_proof(tmp_path: Path) -> None:
    """``data/`` and ``logs/`` are common names: outside the default ``.askbase/dev`` a directory
    without the marker is askbase's only when empty."""
    mine = tmp_path / "thesis"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "thesis.tex").write_text("three years of work")
    (mine / "logs").mkdir()
    with pytest.raises(wd.WorkdirError):
        wd.claim(mine)
    assert (mine / "data" / "thesis.tex").read_text() == "three years of work"


def test_a_symlink_inside_is_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    target = _claim(tmp_path / "dev")
    (target / "data").symlink_to(outside)
    _claim(target)
    assert (outside / "keep").read_text() == "precious" and not (target / "data").exists()


def test_the_option_help_says_what_is_cleared() -> None:
    result = CliRunner().invoke(dev.dev_command, ["--help"])
    assert "only a directory it created" in " ".join(result.output.split())
