"""Shared fixtures: one emulator stack per test session, emptied before every test that uses it.

A missing Java or emulator fails the tests that need it with install instructions; nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never reach Google: make sure no ambient credentials or project leak in.
os.environ.setdefault("ASKBASE_ENV", "test")
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
# Nor Cloud Run's marker: with it Settings refuses anything but production.
os.environ.pop("K_SERVICE", None)

from shared.config import Settings, get_settings
from shared.devstack.issuer import LocalIssuer
from shared.emulators import EmulatorError, EmulatorStack

PROJECT = "askbase-test"
_EMULATOR_VARS = (
    "FIRESTORE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
)


@pytest.fixture(scope="session")
def emulator_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorStack]:
    """The Firestore, Pub/Sub and GCS emulators, started once and stopped at the end of the session."""
    stack = EmulatorStack(project=PROJECT, workdir=tmp_path_factory.mktemp("emulators"))
    try:
        stack.start()
    except EmulatorError as exc:
        pytest.fail(f"cannot start the local emulators:\n{exc}", pytrace=False)
    saved = {k: os.environ.get(k) for k in _EMULATOR_VARS}
    stack.export_env()
    try:
        yield stack
    finally:
        stack.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def emulators(emulator_stack: EmulatorStack) -> EmulatorStack:
    """The running emulators, emptied: each test starts with no documents, buckets, topics."""
    emulator_stack.reset()
    return emulator_stack


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
def docs_site() -> Iterator[object]:
    """A small docs site (the five standard doc pages) served on loopback; pages editable by the test."""
    from tests import sites

    site = sites.FixtureSite()
    for path in sites.DOC_PAGES:
        site.set_page(path, sites.page_for(path))
    with site:
        yield site
