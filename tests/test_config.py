"""Settings: typed, validated, documented."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import (
    ConfigError,
    Environment,
    SecretStr,
    Settings,
    Source,
    SourceKind,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"


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


def test_every_variable_read_outside_settings_is_documented() -> None:
    """README says docs/configuration.md lists every environment variable the code reads: a direct
    ``os.environ`` / ``os.getenv`` read of a literal name in a deployable or the CLI must have a row."""
    text = DOC.read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    read = re.compile(r"""(?:os\.environ(?:\.get)?\(?\[?|os\.getenv\()\s*["']([A-Z][A-Z0-9_]+)["']""")
    found: dict[str, str] = {}
    for folder in ("shared", "services", "functions"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in read.findall(path.read_text()):
                found.setdefault(name, str(path.relative_to(ROOT)))
    assert {"PORT", "WEB_CONCURRENCY", "ASKBASE_GCLOUD_PLATFORM"} <= set(found)  # the scan sees them
    missing = {name: where for name, where in found.items() if name not in documented}
    assert missing == {}, f"read but not in {DOC.name}: {missing}"


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


def test_google_cloud_markers_refuse_local_rules(monkeypatch: pytest.MonkeyPatch) -> None:
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


@pytest.mark.parametrize(
    ("word", "expected"),
    [(w, True) for w in ("1", "true", "TRUE", "yes", "on", "t", "Y", " on ")]
    + [(w, False) for w in ("0", "false", "False", "no", "off", "f", "n")],
)
def test_bool_words(monkeypatch: pytest.MonkeyPatch, word: str, expected: bool) -> None:
    monkeypatch.setenv("ASKBASE_DEV_SIGN_IN", word)
    assert load_settings().dev_sign_in is expected


def test_env_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("askbase_snapshot_keep", "9")
    monkeypatch.setenv("Askbase_Bucket", "kb")
    monkeypatch.setenv("google_cloud_project", "p-lower")
    settings = load_settings(_env_file=None)
    assert (settings.snapshot_keep, settings.bucket, settings.project_id) == (9, "kb", "p-lower")


def test_google_cloud_project_comes_before_askbase_project_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("ASKBASE_PROJECT_ID", "from-askbase")
    assert load_settings(_env_file=None).project_id == "from-askbase"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-google")
    assert load_settings(_env_file=None).project_id == "from-google"
    # An override by field name beats both.
    assert load_settings(project_id="given").project_id == "given"
    assert load_settings(GOOGLE_CLOUD_PROJECT="by-alias").project_id == "by-alias"
    assert Settings.env_name("project_id") == "GOOGLE_CLOUD_PROJECT"


def test_env_file_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# local overrides\n"
        "export ASKBASE_BUCKET=from-file\n"
        "ASKBASE_REGION='us-central1'\n"
        'ASKBASE_GEMINI_MODEL="gemini # not a comment"\n'
        "ASKBASE_COLLECTION=docs  # a comment\n"
        "ASKBASE_SNAPSHOT_KEEP=3\n"
        'ASKBASE_CRAWL_USER_AGENT="bot\\t\\"q\\" \\\\"\n'
        "   \n"
        "SOMETHING_ELSE=ignored\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASKBASE_SNAPSHOT_KEEP", "5")
    settings = load_settings()
    assert settings.bucket == "from-file" and settings.region == "us-central1"
    assert settings.gemini_model == "gemini # not a comment" and settings.collection == "docs"
    assert settings.crawl_user_agent == 'bot\t"q" \\'
    assert settings.snapshot_keep == 5  # the environment beats the file
    assert load_settings(_env_file=None).bucket == "askbase-local"


def _config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The ConfigError message load_settings gives with ``env`` set (``ASKBASE_`` names)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    return str(caught.value)


def test_every_bad_key_is_reported_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(
        monkeypatch,
        ASKBASE_SNAPSHOT_KEEP="0",
        ASKBASE_CRAWL_CONCURRENCY="lots",
        ASKBASE_ANSWERER="gpt",
        ASKBASE_GAPS_GROUP_SIMILARITY="1",
        ASKBASE_BOT_MODELS="extractive,claude",
        ASKBASE_SOURCES='[{"name": "ok", "kind": "feed", "url": "https://b.test"}, {"name": "", "url": "ftp://x"}]',
    )
    assert "ASKBASE_SNAPSHOT_KEEP: must be at least 1" in message
    assert "ASKBASE_CRAWL_CONCURRENCY: must be an integer, not 'lots'" in message
    assert "ASKBASE_ANSWERER: must be one of 'extractive', 'gemini'" in message
    assert "ASKBASE_GAPS_GROUP_SIMILARITY: must be less than 1" in message
    assert "ASKBASE_BOT_MODELS: unknown answerers ['claude']" in message
    assert "ASKBASE_SOURCES[1.name]: must have at least 1 characters" in message
    assert "ASKBASE_SOURCES[1.kind]: is required" in message
    assert "ASKBASE_SOURCES[1.url]: must match" in message
    assert "ASKBASE_SOURCES[0" not in message
    message = _config_error(monkeypatch, ASKBASE_DEV_SIGN_IN="maybe")  # a bool that is no word
    assert "ASKBASE_DEV_SIGN_IN: must be a boolean" in message


def test_every_broken_rule_across_settings_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(
        monkeypatch,
        ASKBASE_ENV="production",
        ASKBASE_DEV_SIGN_IN="1",
        ASKBASE_INTERNAL_AUTH="none",
        ASKBASE_CHUNK_OVERLAP_CHARS="1500",
        ASKBASE_CHUNK_MAX_CHARS="1000",
    )
    assert "ASKBASE_DEV_SIGN_IN: dev_sign_in must be false when env=production" in message
    assert "ASKBASE_INTERNAL_AUTH: internal_auth must be google-oidc" in message
    assert "ASKBASE_CHUNK_OVERLAP_CHARS: chunk_overlap_chars must be smaller than chunk_max_chars" in message


def test_typed_overrides_and_strings_are_coerced() -> None:
    settings = Settings(
        _env_file=None,
        token_key="k" * 8,
        gaps_ignore_words="askbase, Acme Cloud",
        read_rate_limit_per_minute="12",
        snapshot_prefix="snaps",
        sources=[{"name": "d", "kind": "crawl", "url": "http://d.test/", "max_pages": "20"}],
    )
    assert isinstance(settings.token_key, SecretStr) and settings.token_key.get_secret_value() == "k" * 8
    assert settings.gaps_ignore_words == ["askbase", "Acme Cloud"]
    assert (
        settings.read_rate_limit_per_minute == 12
        and Settings(_env_file=None).read_rate_limit_per_minute is None
    )
    assert settings.snapshot_prefix == "snaps/"
    assert settings.sources == [Source(name="d", kind=SourceKind.CRAWL, url="http://d.test/", max_pages=20)]
    assert (
        Settings(_env_file=None, env="production", internal_auth="google-oidc").env is Environment.PRODUCTION
    )


def test_sources_round_trip_through_json() -> None:
    source = Source(name="docs", kind=SourceKind.SITEMAP, url="https://d.test/", exclude=["/blog/"])
    settings = load_settings(_env_file=None, sources="[" + source.model_dump_json() + "]")
    assert settings.sources == [source]
    with pytest.raises(ValueError, match="max_pages: must be at most 100000"):
        Source(name="docs", kind=SourceKind.SITEMAP, url="https://d.test/", max_pages=100_001)


def test_secrets_never_show_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKBASE_SESSION_SECRET", "hunter2-hunter2-hunter2")
    settings = load_settings(_env_file=None)
    assert settings.session_secret.get_secret_value() == "hunter2-hunter2-hunter2"
    for shown in (repr(settings), str(settings), repr(settings.session_secret), f"{settings.session_secret}"):
        assert "hunter2" not in shown
    assert SecretStr("a") == SecretStr("a") != SecretStr("b")
    assert Settings.model_fields["session_secret"].annotation is SecretStr


def test_model_copy_applies_updates_unchecked_and_leaves_the_original() -> None:
    settings = load_settings(_env_file=None)
    copied = settings.model_copy(update={"retrieval_top_k": 500, "admin_emails": ["x@y.test"]})
    assert copied.retrieval_top_k == 500  # no validation, as pydantic's model_copy
    assert copied.admin_emails == ["x@y.test"] and settings.admin_emails == []
    assert settings.retrieval_top_k == 5 and copied.bucket == settings.bucket
    with pytest.raises(AttributeError):
        settings.model_copy(update={"no_such_field": 1})


def test_model_fields_give_defaults_and_types() -> None:
    fields = Settings.model_fields
    assert (
        fields["gaps_group_similarity"].default == 0.3 and fields["gaps_group_similarity"].annotation is float
    )
    assert fields["oidc_issuers"].default == ["https://accounts.google.com", "accounts.google.com"]
    assert Settings.env_name("snapshot_keep") == "ASKBASE_SNAPSHOT_KEEP"


def test_settings_import_no_pydantic() -> None:
    """Every process imports shared.config first: pydantic would cost each start ~24 MB and ~0.2 s."""
    code = (
        "import sys, shared.config; print(any(m.split('.')[0].startswith('pydantic') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_qa_modules_import_no_pydantic() -> None:
    """qa's app, its bot forms (which list the platforms) and its index import no pydantic: only the
    webhooks and the worker build a Job (shared.bots.jobs); qa decides nothing about jobs."""
    code = (
        "import sys, services.qa.app, services.qa.bots_pages, services.qa.bot_form, shared.qa.live_index, "
        "shared.bots.platforms; print(sorted({m.split('.')[0] for m in sys.modules if 'pydantic' in m}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_source_name_with_a_trailing_newline_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # "$" would match before a final newline; names are used in Firestore ids and log lines.
    monkeypatch.setenv("ASKBASE_SOURCES", '[{"name": "docs\\n", "kind": "crawl", "url": "https://x.test"}]')
    with pytest.raises(ConfigError, match=r"ASKBASE_SOURCES\[0\.name\]"):
        load_settings()


def test_every_documented_variable_is_a_setting() -> None:
    """No row for a variable nothing reads (the reverse of the test above). The last section lists what
    is read outside Settings, held to the code by the test before."""
    settings_part = DOC.read_text().split("## Read outside the settings object")[0]
    rows = re.findall(r"^\| `((?:ASKBASE_|GOOGLE_)[A-Z0-9_]+)` \|", settings_part, flags=re.MULTILINE)
    names = {name for info in Settings.model_fields.values() for name in info.env_names}
    assert rows and set(rows) <= names, sorted(set(rows) - names)


def test_schedule_time_zone_is_an_iana_name_and_utc_needs_no_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(_env_file=None).schedule_time_zone == "Etc/UTC"
    monkeypatch.setenv("ASKBASE_SCHEDULE_TIME_ZONE", "America/Sao_Paulo")
    assert load_settings(_env_file=None).schedule_time_zone == "America/Sao_Paulo"
    monkeypatch.setenv("ASKBASE_SCHEDULE_TIME_ZONE", "Berlin")
    with pytest.raises(ConfigError, match="ASKBASE_SCHEDULE_TIME_ZONE: unknown time zone 'Berlin'"):
        load_settings(_env_file=None)
    # Every deployable loads the field; UTC must not need a time zone database to be accepted.
    import zoneinfo

    def no_database(name: str) -> None:
        raise zoneinfo.ZoneInfoNotFoundError(name)

    monkeypatch.setattr(zoneinfo, "ZoneInfo", no_database)
    for utc in ("UTC", "Etc/UTC"):
        monkeypatch.setenv("ASKBASE_SCHEDULE_TIME_ZONE", utc)
        assert load_settings(_env_file=None).schedule_time_zone == utc


def test_source_patterns_must_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    source = {"name": "docs", "kind": "crawl", "url": "https://docs.example.com/", "exclude": ["/ok/", "[a-"]}
    monkeypatch.setenv("ASKBASE_SOURCES", json.dumps([source]))
    with pytest.raises(
        ConfigError, match=r"ASKBASE_SOURCES\[0\.exclude\]: pattern 1 \('\[a-'\) is not a valid"
    ):
        load_settings(_env_file=None)
