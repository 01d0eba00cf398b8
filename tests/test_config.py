"""Settings: typed, validated, documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config import ConfigError, Settings, load_settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKBASE_SNAPSHOT_KEEP", "many")
    with pytest.raises(ConfigError, match="ASKBASE_SNAPSHOT_KEEP"):
        load_settings()


def test_bad_source_names_the_key_and_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKBASE_SOURCES", '[{"name": "docs", "kind": "ftp", "url": "https://x.test"}]')
    with pytest.raises(ConfigError, match=r"ASKBASE_SOURCES\[0\.kind\]"):
        load_settings()


def test_malformed_sources_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKBASE_SOURCES", "[{oops")
    with pytest.raises(ConfigError, match=r"ASKBASE_SOURCES.*not valid JSON"):
        load_settings()


def test_production_refuses_dev_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKBASE_ENV", "production")
    monkeypatch.setenv("ASKBASE_DEV_SIGN_IN", "true")
    monkeypatch.setenv("ASKBASE_SESSION_SECRET", "s" * 40)
    monkeypatch.setenv("ASKBASE_TOKEN_KEY_SECRET", "projects/p/secrets/k/versions/latest")
    with pytest.raises(ConfigError, match="dev_sign_in must be false"):
        load_settings()


def test_sources_and_emails_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKBASE_SOURCES", '[{"name": "blog", "kind": "feed", "url": "https://b.test/feed"}]')
    monkeypatch.setenv("ASKBASE_ADMIN_EMAILS", "A@x.test, b@x.test")
    settings = load_settings()
    assert settings.sources[0].kind == "feed"
    assert settings.admin_emails == ["a@x.test", "b@x.test"]


def test_every_key_is_documented_with_its_default() -> None:
    text = DOC.read_text()
    documented = set(re.findall(r"`((?:ASKBASE_|GOOGLE_)[A-Z0-9_]+)`", text))
    for field in Settings.model_fields:
        assert Settings.env_name(field) in documented, f"{Settings.env_name(field)} is not in {DOC.name}"


def test_production_session_secret_is_checked_where_it_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKBASE_ENV", "production")
    monkeypatch.setenv("ASKBASE_INTERNAL_AUTH", "google-oidc")
    settings = load_settings()  # a webhook function has no session secret, and needs none
    with pytest.raises(ConfigError, match="ASKBASE_SESSION_SECRET: must be at least 32"):
        settings.require_session_secret()
    monkeypatch.setenv("ASKBASE_SESSION_SECRET", "s" * 40)
    assert load_settings().require_session_secret() == "s" * 40


def test_production_requires_oidc_between_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKBASE_ENV", "production")
    with pytest.raises(ConfigError, match="internal_auth must be google-oidc"):
        load_settings()


def test_google_cloud_markers_refuse_local_rules(monkeypatch) -> None:
    """On Cloud Run / Cloud Functions, a deployable that lost ASKBASE_ENV fails closed at start."""
    # functions-framework sets FUNCTION_TARGET on a laptop too: it alone changes nothing.
    monkeypatch.setenv("FUNCTION_TARGET", "telegram_webhook")
    monkeypatch.setenv("ASKBASE_ENV", "local")
    assert not load_settings().is_production
    for marker in ("K_SERVICE",):
        monkeypatch.setenv(marker, "askbase-qa")
        monkeypatch.setenv("ASKBASE_ENV", "local")
        with pytest.raises(ConfigError, match="production"):
            load_settings()
        monkeypatch.setenv("ASKBASE_ENV", "production")
        monkeypatch.setenv("ASKBASE_INTERNAL_AUTH", "none")
        with pytest.raises(ConfigError, match="google-oidc"):
            load_settings()
        monkeypatch.setenv("ASKBASE_INTERNAL_AUTH", "google-oidc")
        assert load_settings().is_production
