"""infra/envvars.py is the one place infra spells env var names: hold it to shared.config.Settings."""

from __future__ import annotations

import pytest

from infra import envvars
from shared.config import SecretStr, Settings


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
    qa |= {"qa_url", "service_callers"}  # qa_url is the audience qa checks, for botrunner's account
    assert qa <= needs["qa"]
    botrunner = {"project_id", "qa_url", "telegram_webhook_url", "discord_webhook_url"}
    botrunner |= {"token_key", "worker_push_audience", "worker_push_service_account", "env", "internal_auth"}
    botrunner |= {"botrunner_url"}  # the audience its control API and reconcile tokens are checked against
    botrunner |= {"admin_emails", "control_callers", "reconcile_callers"}
    assert botrunner <= needs["botrunner"]
    # botrunner is the jobs topic's push endpoint: it never publishes, so it is not told the topic.
    assert "jobs_topic" not in needs["botrunner"]
    # The status page shows the next scrape in the schedule's zone; answers refuse under qa's threshold.
    assert {"scrape_schedule", "schedule_time_zone", "answer_min_score"} <= needs["qa"]
    for fn in ("telegram-fn", "discord-fn"):
        assert {"project_id", "jobs_topic", "env"} <= needs[fn] and "token_key" not in needs[fn]
    scrape = {"project_id", "bucket", "sources", "snapshot_keep", "snapshot_compression"}
    assert scrape | {"scrape_lease_seconds", "env"} <= needs["scrape-fn"]
    # Least privilege: the session-signing key stays with qa.
    assert [d for d, f in needs.items() if "session_secret" in f] == ["qa"]
    # The bot pages go through botrunner's control API: qa never holds the key that decrypts bot tokens.
    assert "token_key" not in needs["qa"]


def test_plain_settings_give_every_deployable_exactly_what_it_needs() -> None:
    """The one definition of each deployable's environment renders for every deployable: nothing
    missing, nothing undeclared (render raises on either)."""
    d = envvars.Deployment(
        project="p",
        region="r",
        bucket="b",
        sources_json="[]",
        answerer="extractive",
        gemini_model="g",
        google_client_id="cid",
        allowed_domain="",
        admin_emails=("admin@example.com",),
        conversation_retention_days=30,
        snapshot_keep=7,
        snapshot_compression="zstd",
        scrape_lease_seconds=1800,
        scrape_schedule="*/30 * * * *",
        urls={k: f"https://{k}.example" for k in ("qa", "botrunner", "telegram", "discord", "scrape")},
        emails={
            k: f"{k}@p.iam.gserviceaccount.com"
            for k in ("qa", "botrunner", "pubsub-push", "scheduler-invoker")
        },
    )
    plain = envvars.plain_settings(d)
    for deployable in envvars.DEPLOYABLES:
        secrets = {f: "ref" for f in envvars.NEEDS[deployable] & envvars.SECRET_FIELDS}
        env, _ = envvars.render(deployable, plain[deployable], secrets)
        assert env["ASKBASE_ENV"] == "production" and env["ASKBASE_INTERNAL_AUTH"] == "google-oidc"
    assert plain["botrunner"]["control_callers"] == "qa@p.iam.gserviceaccount.com"
    assert plain["botrunner"]["reconcile_callers"] == "scheduler-invoker@p.iam.gserviceaccount.com"
    assert plain["scrape-fn"]["scrape_callers"] == (
        "scheduler-invoker@p.iam.gserviceaccount.com,qa@p.iam.gserviceaccount.com"
    )
    assert plain["qa"]["service_callers"] == "botrunner@p.iam.gserviceaccount.com"
    # Unset in the Deployment: the app's own defaults (tests/test_infra_config.py holds them equal).
    assert (plain["qa"]["schedule_time_zone"], plain["qa"]["answer_min_score"]) == ("Etc/UTC", "0.3")


def test_nothing_in_the_names_table_goes_unset() -> None:
    """ENV_NAMES lists what infra sets: a name no deployable needs (or is given when configured, as the
    previous token keys) would be a variable infra never sets (ASKBASE_TOKEN_KEY_SECRET was one: the token
    key reaches botrunner as ASKBASE_TOKEN_KEY)."""
    needed = set().union(*envvars.NEEDS.values(), *envvars.OPTIONAL.values())
    assert set(envvars.ENV_NAMES) == needed
    assert set(envvars.OPTIONAL) == set(envvars.NEEDS)  # every deployable, even with nothing optional


def test_render_refuses_missing_and_undeclared_fields() -> None:
    base = dict.fromkeys(envvars.NEEDS["botrunner"] - envvars.SECRET_FIELDS, "x")
    plain, secret = envvars.render("botrunner", base, {"token_key": "ref"})
    assert plain["ASKBASE_QA_URL"] == "x" and secret == {"ASKBASE_TOKEN_KEY": "ref"}
    with pytest.raises(ValueError, match=r"missing.*qa_url"):
        envvars.render("botrunner", {k: v for k, v in base.items() if k != "qa_url"}, {"token_key": "r"})
    with pytest.raises(ValueError, match=r"not declared.*jobs_topic"):
        envvars.render("botrunner", {**base, "jobs_topic": "askbase-jobs"}, {"token_key": "r"})
    with pytest.raises(ValueError, match=r"not declared.*bucket"):
        envvars.render("botrunner", {**base, "bucket": "b"}, {"token_key": "r"})
    with pytest.raises(ValueError, match=r"secret fields missing.*token_key"):
        envvars.render("botrunner", base, {})
    with pytest.raises(ValueError, match=r"secret fields not declared.*session_secret"):
        envvars.render("botrunner", base, {"token_key": "r", "session_secret": "s"})
    # The webhook functions take no secret at all.
    fn = dict.fromkeys(envvars.NEEDS["telegram-fn"], "x")
    with pytest.raises(ValueError, match=r"secret fields not declared.*token_key"):
        envvars.render("telegram-fn", fn, {"token_key": "r"})
