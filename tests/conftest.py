"""Shared fixtures: one emulator stack per test session, emptied before every test that uses it.

A missing Java or emulator fails the tests that need it with install instructions; nothing is skipped.
"""

from __future__ import annotations

import ast
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Tests never reach Google: make sure no ambient credentials or project leak in.
os.environ.setdefault("ASKBASE_ENV", "test")
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
# Nor Cloud Run's marker: with it Settings refuses anything but production.
os.environ.pop("K_SERVICE", None)

from shared.config import Settings, get_settings
from shared.devstack.issuer import LocalIssuer
from shared.emulators import EmulatorError, EmulatorStack

if TYPE_CHECKING:
    from flask import Flask

    from infra.testing import StackRun
    from shared.qa.live_index import LiveIndex

PROJECT = "askbase-test"


# The fixture that starts the local emulators. A test that uses it, directly or through any other
# fixture (``emulators``, an app built on Firestore, ...), is marked ``emulators`` here, so that
# ``-m "not emulators"`` is a run that never starts them, whether or not its file remembers the marker.
EMULATOR_FIXTURE = "emulator_stack"


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if EMULATOR_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.emulators)


FAST_RUN = "not emulators"  # the -m expression of the fast unit run (README)


def _marked_emulators_as_a_whole(path: Path) -> bool:
    """Whether the test module at ``path`` sets ``pytestmark`` to (a list holding) the emulators mark."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return "mark.emulators" in ast.unparse(node.value)
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """In the fast run, a module marked ``emulators`` as a whole is not even imported: none of its tests
    could be selected, and importing them (emulator clients, Playwright, ...) costs every fast run a few
    seconds of CPU (2.5 of the 8.6 s the fast run spent collecting, measured on this machine)."""
    if not collection_path.name.startswith("test_") or collection_path.suffix != ".py":
        return None
    if " ".join(str(config.getoption("markexpr") or "").split()) != FAST_RUN:
        return None
    return True if _marked_emulators_as_a_whole(collection_path) else None


@pytest.fixture(scope="session")
def emulator_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorStack]:
    """The Firestore, Pub/Sub and GCS emulators, started once and stopped at the end of the session."""
    stack = EmulatorStack(project=PROJECT, workdir=tmp_path_factory.mktemp("emulators"))
    try:
        stack.start()
    except EmulatorError as exc:
        pytest.fail(f"cannot start the local emulators:\n{exc}", pytrace=False)
    try:
        with stack.exported_env():
            yield stack
    finally:
        stack.stop()


@pytest.fixture
def emulators(emulator_stack: EmulatorStack) -> EmulatorStack:
    """The running emulators, emptied: each test starts with no documents, buckets, topics."""
    emulator_stack.reset()
    return emulator_stack


@pytest.fixture(scope="session")
def infra_build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build directory for every run of the Pulumi program in the session (tests/test_infra*.py).
    Function archives and image contexts are named by their content hash, so runs share them safely:
    the first run zips (the vendored model is 90 MB), later ones, in any module, find them and reuse."""
    return tmp_path_factory.mktemp("infra-build")


@pytest.fixture(scope="session")
def infra_stacks(infra_build_dir: Path) -> Callable[[dict[str, str]], StackRun]:
    """``infra_stacks(config)``: the Pulumi program run under mocks with ``config``, once per config for
    the whole session (the recording is read, never changed, by the tests that share it)."""
    from infra.testing import run_stack

    runs: dict[tuple[tuple[str, str], ...], StackRun] = {}

    def run(config: dict[str, str]) -> StackRun:
        key = tuple(sorted(config.items()))
        if key not in runs:
            runs[key] = run_stack(config, infra_build_dir)
        return runs[key]

    return run


@pytest.fixture(scope="session")
def issuer() -> Iterator[LocalIssuer]:
    """A loopback stand-in for Google's token signing keys (see shared/devstack/issuer.py): tokens it
    mints are checked by askbase's real verifier; only the certificates URL and issuer differ."""
    with LocalIssuer().running() as local_issuer:
        yield local_issuer


@pytest.fixture
def oidc_settings(settings: Settings, issuer: LocalIssuer) -> Settings:
    """``settings`` with production's service authentication, verified against :func:`issuer`."""
    return settings.model_copy(
        update={
            "internal_auth": "google-oidc",
            "oidc_certs_url": issuer.certs_url,
            "oidc_issuers": [issuer.issuer],
        }
    )


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for one test: a unique bucket, a private data dir, and test-only secrets."""
    values = {
        "ASKBASE_ENV": "test",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "ASKBASE_BUCKET": f"askbase-test-{uuid.uuid4().hex[:8]}",
        "ASKBASE_DATA_DIR": str(tmp_path / "data"),
        "ASKBASE_SESSION_SECRET": "test-session-secret-" + "x" * 32,
        "ASKBASE_TOKEN_KEY": "kHzcv6WbXvpcOtF4wb2XNJ2k4c1Aa1aPkKkzBKBd4xE=",
        "ASKBASE_DEV_SIGN_IN": "true",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveIndex]:
    """qa's live index over the stand-in index (one source, three chunks, snapshot ``s1``), stopped after
    the test. Imported when used, so the fast run's collection does not load qa's app."""
    from tests.qa_support import fake_live_index

    index, _ = fake_live_index(tmp_path)
    yield index
    index.stop()


@pytest.fixture
def app(emulators: EmulatorStack, settings: Settings, live: LiveIndex) -> Flask:
    """The qa app on the emulators, over ``live``, with its default answerer. A module that needs another
    answerer or other overrides defines its own ``app``."""
    from tests.qa_support import make_app

    return make_app(settings, live)


@pytest.fixture
def docs_site() -> Iterator[object]:
    """A small docs site (the five standard doc pages) served on loopback; pages editable by the test."""
    from tests import sites

    site = sites.FixtureSite()
    for path in sites.DOC_PAGES:
        site.set_page(path, sites.page_for(path))
    with site:
        yield site
