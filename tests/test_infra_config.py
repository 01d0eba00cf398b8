"""Stack configuration: the example file is complete and loads, bad values name their key, and every
value the app would refuse at start is refused by `pulumi up` too."""

from __future__ import annotations

import base64
import enum
import json
import re
import types
import typing
from pathlib import Path

import pulumi
import pytest
import yaml

from infra import envvars
from infra.config import KNOWN_KEYS, SECRET_KEYS, SETTINGS_FIELDS, InfraConfig, load_config
from shared.bots.secrets import TokenKeyError, load_key, load_previous_keys
from shared.config import Check, ConfigError, Limits, Settings, Source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "Pulumi.dev.yaml.example"


def as_pulumi_config(values: dict) -> dict[str, str]:
    """What the engine hands the program: structured values as JSON, scalars as strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def set_config(config: dict[str, str]) -> None:
    """The stack's config as `pulumi up` hands it over, with every secret key set with --secret: the
    engine marks those in the secret keys (an unmarked one is a plain value in Pulumi.<stack>.yaml)."""
    secret = [k for k in config if k.removeprefix("askbase:") in SECRET_KEYS and k.startswith("askbase:")]
    pulumi.runtime.set_all_config(config, secret_keys=secret)


@pytest.fixture
def example_config() -> dict[str, str]:
    return as_pulumi_config(yaml.safe_load(EXAMPLE.read_text())["config"])


def test_example_uses_only_keys_the_program_reads(example_config: dict[str, str]) -> None:
    keys = {k.split(":", 1)[1] for k in example_config if k.startswith("askbase:")}
    assert keys <= KNOWN_KEYS
    assert {k.split(":", 1)[0] for k in example_config} <= {"askbase", "gcp"}


def test_example_documents_every_key(example_config: dict[str, str]) -> None:
    # Keys may be commented out in the example, but each must be there to be found.
    text = EXAMPLE.read_text()
    missing = {
        k
        for k in KNOWN_KEYS - {"project", "region", *SECRET_KEYS}  # secrets never go in the file
        if f"askbase:{k}:" not in text
    }
    assert missing == set()


def test_deploy_doc_mentions_every_key() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    missing = {k for k in KNOWN_KEYS - {"project", "region"} if not re.search(rf"askbase:{k}\b", doc)}
    assert missing == set()


def test_example_loads(example_config: dict[str, str]) -> None:
    pulumi.runtime.set_all_config(example_config)
    cfg = load_config()
    assert cfg.project == "my-askbase-project" and cfg.region == "europe-west1"
    assert [s["name"] for s in cfg.sources] == ["docs", "blog"]
    assert cfg.admin_emails == ("admin@example.com",)
    assert cfg.kb_bucket == "my-askbase-project-askbase-kb"
    assert cfg.scrape_timeout_seconds == 1800
    assert (cfg.qa_memory, cfg.botrunner_memory) == ("2Gi", "512Mi")
    assert cfg.qa_image == "" and cfg.botrunner_image == ""  # built during `pulumi up`...
    assert cfg.image_builder == "auto"  # ...with Docker when it works, else with Cloud Build


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("askbase:answerer", "gpt", "askbase:answerer"),
        ("askbase:snapshotCompression", "lz4", "askbase:snapshotCompression"),
        ("askbase:sources", '[{"name": "docs"}]', r"askbase:sources\[0\]"),
        ("askbase:sources", '{"name": "docs"}', "askbase:sources must be a list"),
        ("askbase:backupRetentionDays", "30", "askbase:backupRetentionDays must be 1..7"),
        ("askbase:imageBuilder", "podman", "askbase:imageBuilder must be auto, docker or cloudbuild"),
        ("askbase:botrunnerMemory", "256Mi", "askbase:botrunnerMemory must be at least 512Mi"),
        ("askbase:qaMemory", "0.25Gi", "askbase:qaMemory must be at least 512Mi"),
        ("askbase:qaMemory", "lots", "askbase:qaMemory must be a size like 512Mi"),
        ("askbase:qaMemory", "268435456", "askbase:qaMemory must be at least 512Mi"),
    ],
)
def test_bad_values_name_their_key(
    example_config: dict[str, str], key: str, value: str, message: str
) -> None:
    pulumi.runtime.set_all_config({**example_config, key: value})
    with pytest.raises(ValueError, match=message):
        load_config()


@pytest.mark.parametrize("value", ["512Mi", "1Gi", "4G", "600M", "524288Ki", "536870912"])
def test_service_memory_sizes_in_cloud_runs_units(example_config: dict[str, str], value: str) -> None:
    pulumi.runtime.set_all_config({**example_config, "askbase:qaMemory": value})
    assert load_config().qa_memory == value


def test_project_is_required() -> None:
    pulumi.runtime.set_all_config({})
    with pytest.raises(ValueError, match="gcp:project"):
        load_config()


def test_lease_longer_than_an_hour_caps_the_function_timeout(example_config: dict[str, str]) -> None:
    pulumi.runtime.set_all_config({**example_config, "askbase:scrapeLeaseSeconds": "7200"})
    assert load_config().scrape_timeout_seconds == 3600


@pytest.mark.parametrize("builder", ["docker", "cloudbuild", "auto"])
def test_image_builder_values(example_config: dict[str, str], builder: str) -> None:
    pulumi.runtime.set_all_config({**example_config, "askbase:imageBuilder": builder})
    assert load_config().image_builder == builder


def test_image_builder_defaults_to_auto(example_config: dict[str, str]) -> None:
    pulumi.runtime.set_all_config({k: v for k, v in example_config.items() if k != "askbase:imageBuilder"})
    assert load_config().image_builder == "auto"


def test_gaps_ignore_words_are_read_from_pulumi_config_as_a_list_or_commas() -> None:
    base = {"gcp:project": "p"}
    for raw in ('["askbase", " Acme Cloud "]', "askbase, Acme Cloud"):
        pulumi.runtime.set_all_config({**base, "askbase:gapsIgnoreWords": raw})
        assert load_config().gaps_ignore_words == ("askbase", "Acme Cloud")
    pulumi.runtime.set_all_config(base)
    assert load_config().gaps_ignore_words == ()
    pulumi.runtime.set_all_config({**base, "askbase:gapsIgnoreWords": '["a,b"]'})
    with pytest.raises(ValueError, match="gapsIgnoreWords"):
        load_config()


# --- infra refuses what the app would refuse ------------------------------------------------------
# Every stack key that becomes a Settings field is held to that field's rule when the config loads:
# a value Settings (or the code that reads the setting) refuses at start must fail `pulumi up`, not the
# deployed service or every scheduled scrape. infra imports no app code, so it restates each rule; these
# tests hold the two sides together, with a refused value and an accepted value at the rule's edge.


def _src(**fields) -> str:
    return json.dumps([{"name": "docs", "kind": "sitemap", "url": "https://docs.example.com/", **fields}])


def _b64(n: int, alphabet=base64.b64encode) -> str:
    return alphabet(bytes(range(n))).decode()


# (stack key, a value both refuse, a value both accept at the edge of the same rule)
AGREEMENT: list[tuple[str, str, str]] = [
    ("snapshotKeep", "0", "1"),
    ("snapshotKeep", "1001", "1000"),
    ("snapshotKeep", "many", "7"),
    ("scrapeLeaseSeconds", "29", "30"),
    ("conversationRetentionDays", "-1", "0"),
    ("answerMinScore", "-0.01", "0"),
    ("answerMinScore", "1.01", "1"),
    ("answerMinScore", "nan", "0.3"),
    ("answerer", "gpt", "gemini"),
    ("snapshotCompression", "lz4", "gzip"),
    ("scheduleTimeZone", "Mars/Olympus_Mons", "Europe/Berlin"),
    ("scheduleTimeZone", "../etc/passwd", "Etc/UTC"),
    ("sources", _src(kind="website"), _src(kind="feed")),
    ("sources", _src(url="docs.example.com"), _src(url="http://docs.example.com/")),
    ("sources", _src(url="https://"), _src(url="https://d")),
    ("sources", _src(url="https://docs.example.com:8o8o/"), _src(url="https://docs.example.com:8080/")),
    ("sources", _src(url="https://[docs.example.com/"), _src(url="https://[::1]/")),
    ("sources", _src(name="my docs"), _src(name="my_docs-2.0")),
    ("sources", _src(name="d" * 65), _src(name="d" * 64)),
    ("sources", _src(name=""), _src(name="d")),
    ("sources", _src(max_pages=0), _src(max_pages=1)),
    ("sources", _src(max_pages=100_001), _src(max_pages=100_000)),
    ("sources", _src(include=["(docs"]), _src(include=["/docs/"])),
    ("sources", _src(exclude="/blog/"), _src(exclude=["/blog/"])),
    ("sources", json.dumps([{"name": "docs", "kind": "crawl"}]), _src(kind="crawl")),
    ("sessionSecret", "s" * 31, "s" * 32),
    ("tokenKey", _b64(31), _b64(32)),
    ("tokenKey", "not base64 at all!", _b64(32, base64.urlsafe_b64encode)),
    ("previousTokenKeys", _b64(31), _b64(32)),
    ("previousTokenKeys", f"{_b64(32)},not base64!", f"{_b64(32)},{_b64(32, base64.urlsafe_b64encode)}"),
    ("previousTokenKeys", f" {_b64(32)} , {_b64(33)}", f" {_b64(32)} , {_b64(32)} ,"),
]


def _settings_accept(key: str, value: str) -> bool:
    """Whether the app starts with ``value`` in the variable the stack key becomes: Settings, and for
    the two secrets the code that reads them (qa's session signing, botrunner's token cipher)."""
    field = SETTINGS_FIELDS[key]
    try:
        settings = Settings(_env_file=None, env="production", internal_auth="google-oidc", **{field: value})
        if field == "session_secret":
            settings.require_session_secret()
        if field == "token_key":
            load_key(settings)
        if field == "token_keys_previous":
            load_previous_keys(settings)
    except (ConfigError, TokenKeyError):
        return False
    return True


def _infra_accepts(key: str, value: str) -> bool:
    set_config({"gcp:project": "p", f"askbase:{key}": value})
    try:
        load_config()
    except ValueError as exc:
        assert f"askbase:{key}" in str(exc)
        if key in SECRET_KEYS:
            # A secret never shows in a message, nor any part of it.
            assert all(part.strip() not in str(exc) for part in value.split(",") if part.strip())
        return False
    return True


@pytest.mark.parametrize(("key", "refused", "accepted"), AGREEMENT)
def test_infra_refuses_what_settings_refuses_and_accepts_its_edge(
    key: str, refused: str, accepted: str
) -> None:
    assert not _settings_accept(key, refused), "the app accepts it: not a case of this rule"
    assert not _infra_accepts(key, refused)
    assert _settings_accept(key, accepted)
    assert _infra_accepts(key, accepted)


def _has_rule(field: str) -> bool:
    """Whether Settings (or the code reading the field) can refuse a value of ``field``."""
    info = Settings.model_fields[field]
    tp = info.annotation
    return (
        any(isinstance(m, Limits | Check) for m in info.markers)
        or typing.get_origin(tp) is typing.Literal
        or (isinstance(tp, type) and issubclass(tp, enum.Enum))
        or tp == list[Source]
        or field in envvars.SECRET_FIELDS  # checked where used: require_session_secret, load_key
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [("tokenKey", _b64(32)), ("sessionSecret", "s" * 40), ("previousTokenKeys", f"{_b64(32)},{_b64(32)}")],
)
def test_a_secret_key_set_in_plain_text_is_refused(key: str, value: str) -> None:
    """`pulumi config set askbase:tokenKey ...` without --secret leaves the key readable in
    Pulumi.<stack>.yaml: `pulumi up` refuses it and names the command that stores it encrypted."""
    config = {"gcp:project": "p", f"askbase:{key}": value}
    pulumi.runtime.set_all_config(config, secret_keys=[])
    with pytest.raises(ValueError, match=re.escape(f"pulumi config set --secret askbase:{key} ")) as info:
        load_config()
    assert "plain text" in str(info.value)
    assert all(part not in str(info.value) for part in value.split(","))
    pulumi.runtime.set_all_config(config, secret_keys=[f"askbase:{key}"])
    loaded = load_config()
    field = {"tokenKey": "token_key", "sessionSecret": "session_secret"}.get(key, "previous_token_keys")
    assert getattr(loaded, field) is not None


def test_previous_token_keys_are_optional_and_normalized() -> None:
    set_config({"gcp:project": "p"})
    assert load_config().previous_token_keys is None
    set_config({"gcp:project": "p", "askbase:previousTokenKeys": " , "})
    assert load_config().previous_token_keys is None  # nothing in it: no secret, no variable


@pulumi.runtime.test
def test_previous_token_keys_are_given_on_as_a_secret_list_without_spaces() -> pulumi.Output:
    one, two = _b64(32), _b64(32, base64.urlsafe_b64encode)
    set_config({"gcp:project": "p", "askbase:previousTokenKeys": f" {one} ,{two},"})
    value = load_config().previous_token_keys
    assert value is not None

    def check(args: list) -> None:
        joined, secret = args
        assert joined == f"{one},{two}" and secret

    return pulumi.Output.all(value, pulumi.Output.from_input(value).is_secret()).apply(check)


# Fields with a rule that infra sets to a constant of its own, never from a stack key (their values
# are held to Settings by tests/test_infra.py::test_each_deployable_env_parses_as_production_settings).
FIXED_FIELDS = {"env", "internal_auth", "snapshot_prefix", "snapshot_poll_seconds"}


def test_every_ruled_field_infra_sets_from_a_stack_key_has_an_agreement_case() -> None:
    ruled = {f for f in envvars.ENV_NAMES if _has_rule(f)}
    from_keys = set(SETTINGS_FIELDS.values())
    assert from_keys <= set(envvars.ENV_NAMES)  # each mapped field is one infra really sets
    assert ruled - from_keys == FIXED_FIELDS
    covered = {SETTINGS_FIELDS[key] for key, _, _ in AGREEMENT}
    assert ruled & from_keys <= covered, sorted((ruled & from_keys) - covered)
    assert set(SETTINGS_FIELDS) <= KNOWN_KEYS


def test_each_stack_key_reaches_the_settings_field_it_is_mapped_to() -> None:
    """SETTINGS_FIELDS is the truth: a distinct value for every mapped key arrives in that field's
    variable (secrets: as a Secret Manager reference) of the deployables that need the field."""
    from infra.program import _deployable_env

    values = {
        "bucketName": "kb-bucket",
        "sources": _src(max_pages=9),
        "scrapeSchedule": "7 * * * *",
        "scheduleTimeZone": "Asia/Kolkata",
        "scrapeLeaseSeconds": "600",
        "answerer": "gemini",
        "geminiModel": "gemini-9",
        "answerMinScore": "0.42",
        "googleClientId": "cid.apps.googleusercontent.com",
        "allowedDomain": "example.org",
        "adminEmails": '["Boss@Example.org"]',
        "conversationRetentionDays": "11",
        "gapsIgnoreWords": '["acme", "widget"]',
        "snapshotKeep": "3",
        "snapshotCompression": "gzip",
        "tokenKey": _b64(32),
        "sessionSecret": "s" * 40,
        "previousTokenKeys": f"{_b64(32)},{_b64(32)}",
    }
    assert set(values) == set(SETTINGS_FIELDS)
    rendered = {
        "sources": json.dumps(json.loads(values["sources"]), separators=(",", ":")),
        "adminEmails": "boss@example.org",
        "gapsIgnoreWords": "acme,widget",
    }
    set_config({"gcp:project": "p", **{f"askbase:{k}": v for k, v in values.items()}})
    cfg = load_config()
    urls = dict.fromkeys(("qa", "botrunner", "telegram", "discord", "scrape"), "https://x.example")
    emails = dict.fromkeys(
        ("qa", "botrunner", "pubsub-push", "scheduler-invoker"), "a@p.iam.gserviceaccount.com"
    )
    refs = types.SimpleNamespace(
        session_secret_ref="session-ref", token_key_ref="token-ref", previous_token_keys_ref="previous-ref"
    )
    env = _deployable_env(cfg, urls, emails, refs)
    for key, field in SETTINGS_FIELDS.items():
        name = envvars.ENV_NAMES[field]
        where = [d for d in envvars.DEPLOYABLES if field in envvars.NEEDS[d] | envvars.OPTIONAL[d]]
        assert where, f"{field}: no deployable gets it"
        for deployable in where:
            if field in envvars.SECRET_FIELDS:
                assert env[deployable]["secret"][name] in ("session-ref", "token-ref", "previous-ref")
            else:
                assert env[deployable]["plain"][name] == rendered.get(key, values[key]), (key, deployable)


def test_infra_defaults_are_the_settings_defaults() -> None:
    """An unset stack key deploys the value the app would use anyway."""
    defaults = InfraConfig(project="p")
    for key, field in SETTINGS_FIELDS.items():
        if key in ("bucketName", "sources", *SECRET_KEYS, "googleClientId", "allowedDomain"):
            continue  # derived from the project, or nothing until the operator gives one
        ours = getattr(defaults, field if hasattr(defaults, field) else "")
        default = Settings.model_fields[field].default
        assert (list(ours) if isinstance(ours, tuple) else ours) == default, key


def served_threads(service: str) -> int:
    """The threads that serve a service's requests in production, read from where its start command
    takes them: botrunner's ``--threads`` in its command, qa's gunicorn config at the environment
    infra gives it (no ``GUNICORN_THREADS``)."""
    from infra.commands import START_COMMANDS

    if service == "botrunner":
        found = re.search(r"--threads (\d+)", " ".join(START_COMMANDS["botrunner"]))
        assert found is not None
        return int(found.group(1))
    conf = ROOT / "services" / "qa" / "gunicorn.conf.py"
    namespace: dict[str, object] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GUNICORN_THREADS", raising=False)
        exec(compile(conf.read_text(), str(conf), "exec"), namespace)  # noqa: S102 (our own config file)
    threads = namespace["threads"]
    assert isinstance(threads, int)
    return threads


def test_each_service_takes_no_more_requests_at_once_than_it_has_threads(
    example_config: dict[str, str],
) -> None:
    """Cloud Run sends an instance up to its concurrency at once; a gthread gunicorn serves as many as it
    has threads and queues the rest inside the instance, where they wait on the request timeout (and a
    push on Pub/Sub's ack deadline) while Cloud Run, counting them as served, starts no other instance."""
    for values in (example_config, {"gcp:project": "p"}):  # the example, and the defaults
        pulumi.runtime.set_all_config(values)
        cfg = load_config()
        assert cfg.qa_concurrency <= served_threads("qa")
        assert cfg.botrunner_concurrency <= served_threads("botrunner")


@pytest.mark.parametrize(("key", "threads"), [("qaConcurrency", "qa"), ("botrunnerConcurrency", "botrunner")])
def test_concurrency_above_the_services_threads_is_refused(
    example_config: dict[str, str], key: str, threads: str
) -> None:
    limit = served_threads(threads)
    pulumi.runtime.set_all_config({**example_config, f"askbase:{key}": str(limit)})
    load_config()
    pulumi.runtime.set_all_config({**example_config, f"askbase:{key}": str(limit + 1)})
    with pytest.raises(ValueError, match=f"askbase:{key} must be an integer 1..{limit}"):
        load_config()
