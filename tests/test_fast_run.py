"""The fast unit run (``-m "not emulators"``, README) leaves out exactly what needs the emulators."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EMULATOR_FIXTURE, _marked_emulators_as_a_whole

TESTS = Path(__file__).parent


def test_every_collected_test_that_starts_the_emulators_carries_the_marker(
    request: pytest.FixtureRequest,
) -> None:
    # In the full run every test is collected: each one using the emulator fixture, through any other
    # fixture, must be marked, or the fast run would start the emulators for it.
    unmarked = [
        item.nodeid
        for item in request.session.items
        if EMULATOR_FIXTURE in getattr(item, "fixturenames", ())
        and item.get_closest_marker("emulators") is None
    ]
    assert unmarked == []


def test_a_module_marked_as_a_whole_is_recognised_without_importing_it(tmp_path: Path) -> None:
    assert _marked_emulators_as_a_whole(TESTS / "test_fuzz_http.py")  # pytestmark = pytest.mark.emulators
    assert not _marked_emulators_as_a_whole(TESTS / "test_gaps.py")  # only some of its tests need them
    listed = tmp_path / "test_listed.py"
    listed.write_text("import pytest\npytestmark = [pytest.mark.browser, pytest.mark.emulators]\n")
    assert _marked_emulators_as_a_whole(listed)
    other = tmp_path / "test_other.py"
    other.write_text("import pytest\npytestmark = pytest.mark.browser\n")
    assert not _marked_emulators_as_a_whole(other)
