"""infra/envvars.py is the one place infra spells env var names: hold it to shared.config.Settings."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from infra import envvars
from shared.config import Settings


def test_every_name_infra_sets_is_the_settings_env_var_of_its_field() -> None:
    for field, name in envvars.ENV_NAMES.items():
        assert field in Settings.model_fields, f"{field}: not a Settings field"
        assert Settings.env_name(field) == name, (
            f"{field}: infra sets {name}, Settings reads {Settings.env_name(field)}"
        )


def test_every_field_a_deployable_needs_has_a_name() -> None:
    for deployable, fields in envvars.NEEDS.items():
        assert fields <= set(envvars.ENV_NAMES), f"{deployable}: {sorted(fields - set(envvars.ENV_NAMES))}"


def test_secret_fields_are_secret_settings() -> None:
    for field in envvars.SECRET_FIELDS:
        assert Settings.model_fields[field].annotation is SecretStr


def test_the_brief_per_deployable_is_covered() -> None:
    needs = envvars.NEEDS
    qa = {"project_id", "bucket", "snapshot_prefix", "data_dir", "answerer", "gemini_model", "region"}
    qa |= {"session_secret", "google_client_id", "allowed_domain", "admin_emails"}
    qa |= {"conversation_retention_days", "scrape_url", "botrunner_url", "internal_auth", "env"}
    qa |= {"token_key", "qa_url"}  # bot pages encrypt tokens; qa_url is the audience qa checks
    assert qa <= needs["qa"]
    botrunner = {"project_id", "jobs_topic", "qa_url", "telegram_webhook_url", "discord_webhook_url"}
    botrunner |= {"token_key", "worker_push_audience", "worker_push_service_account", "env", "internal_auth"}
    botrunner |= {"botrunner_url"}  # the audience its control API and reconcile tokens are checked against
    assert botrunner <= needs["botrunner"]
    for fn in ("telegram-fn", "discord-fn"):
        assert {"project_id", "jobs_topic", "token_key", "env"} <= needs[fn]
    scrape = {"project_id", "bucket", "sources", "snapshot_keep", "snapshot_compression"}
    assert scrape | {"scrape_lease_seconds", "env"} <= needs["scrape-fn"]
    # Least privilege: the session-signing key stays with qa.
    assert [d for d, f in needs.items() if "session_secret" in f] == ["qa"]


def test_render_refuses_missing_and_undeclared_fields() -> None:
    base = dict.fromkeys(envvars.NEEDS["telegram-fn"] - envvars.SECRET_FIELDS, "x")
    plain, secret = envvars.render("telegram-fn", base, {"token_key": "ref"})
    assert plain["ASKBASE_JOBS_TOPIC"] == "x" and secret == {"ASKBASE_TOKEN_KEY": "ref"}
    with pytest.raises(ValueError, match=r"missing.*jobs_topic"):
        envvars.render(
            "telegram-fn", {k: v for k, v in base.items() if k != "jobs_topic"}, {"token_key": "r"}
        )
    with pytest.raises(ValueError, match=r"not declared.*bucket"):
        envvars.render("telegram-fn", {**base, "bucket": "b"}, {"token_key": "r"})
    with pytest.raises(ValueError, match=r"secret fields missing.*token_key"):
        envvars.render("telegram-fn", base, {})
    with pytest.raises(ValueError, match=r"secret fields not declared.*session_secret"):
        envvars.render("telegram-fn", base, {"token_key": "r", "session_secret": "s"})
