"""Stack configuration: the example file is complete and loads, bad values name their key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pytest
import yaml

from infra.config import KNOWN_KEYS, load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "Pulumi.dev.yaml.example"


def as_pulumi_config(values: dict) -> dict[str, str]:
    """What the engine hands the program: structured values as JSON, scalars as strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


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
        for k in KNOWN_KEYS - {"project", "region", "tokenKey", "sessionSecret"}
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
