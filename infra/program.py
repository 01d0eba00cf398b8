"""The askbase stack: every component, wired together. ``infra/__main__.py`` calls :func:`build`.

Build order follows the data flow: APIs (then a settle wait) → accounts → storage, data, secrets,
registry → a settle wait for the grants → functions (their URLs feed botrunner) → images and
services (qa and botrunner know each other by their deterministic URLs) → messaging (pushes to
botrunner) → schedules (call scrape and botrunner).

The two waits make a first ``pulumi up`` on a fresh project deterministic: Google checks an enabled
API and a new IAM grant eventually, not at once, and Cloud Build, Cloud Functions and Cloud Run
check both when they start (the build account's access to the source and the registry, each
runtime account's access to its secrets).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_gcp as gcp
import pulumiverse_time as pulumi_time

from infra import envvars
from infra.archive import ENTRY_POINT_ARCHIVES, REPO_ROOT, archive_specs
from infra.commands import START_COMMANDS
from infra.components.apis import Apis, ApisArgs
from infra.components.data import Data, DataArgs
from infra.components.functions import Functions, FunctionsArgs, FunctionSpec, function_url
from infra.components.identity import ACCOUNTS, GRANTS, Identity, IdentityArgs
from infra.components.images import docker_usable, resolve_builder
from infra.components.messaging import JOBS_TOPIC, Messaging, MessagingArgs
from infra.components.registry import REPOSITORY, Registry, RegistryArgs
from infra.components.schedules import JobSpec, Schedules, SchedulesArgs
from infra.components.secrets import SESSION_SECRET_ID, TOKEN_KEY_SECRET_ID, Secrets, SecretsArgs
from infra.components.services import CloudBuildArgs, Services, ServicesArgs, ServiceSpec, run_url
from infra.components.services import SecretEnv as RunSecretEnv
from infra.components.storage import Storage, StorageArgs
from infra.config import InfraConfig

QA_SERVICE = "askbase-qa"
BOTRUNNER_SERVICE = "askbase-botrunner"
FUNCTION_NAMES = {
    "telegram": "askbase-telegram-webhook",
    "discord": "askbase-discord-interactions",
    "scrape": "askbase-scrape",
}
# Webhook function key → its entry point in functions/main.py.
WEBHOOK_ENTRY_POINTS = {"telegram": "telegram_webhook", "discord": "discord_interactions"}
BUILD_DIR = REPO_ROOT / "build" / "functions"
IMAGE_BUILD_DIR = REPO_ROOT / "build" / "images"
# How each service starts: the Cloud Run spec sets it, and each Dockerfile's CMD says the same
# (tests/test_infra.py holds them together).
# Google documents IAM changes as visible "typically within 60 seconds", occasionally longer.
IAM_SETTLE = "90s"


@dataclass
class Program:
    """Handles to everything :func:`build` created, for ``__main__`` and the tests."""

    cfg: InfraConfig
    apis: Apis
    identity: Identity
    storage: Storage
    data: Data
    secrets: Secrets
    registry: Registry
    functions: Functions
    services: Services
    messaging: Messaging
    schedules: Schedules
    iam_settled: pulumi.Resource
    image_builder: str  # "docker", "cloudbuild", or "prebuilt" (both images given)
    env: dict[str, dict] = field(default_factory=dict)  # deployable -> {"plain": {...}, "secret": {...}}
    outputs: dict[str, pulumi.Output] = field(default_factory=dict)


def build(cfg: InfraConfig, build_dir: Path | None = None) -> Program:
    """Declare the whole stack for ``cfg``. Pure declaration: safe to call under Pulumi mocks.

    ``build_dir`` is where the function archives are written (default ``build/functions/``); the
    image build contexts of the Cloud Build path go to ``build_dir/images`` (default ``build/images/``).
    """
    image_dir = IMAGE_BUILD_DIR if build_dir is None else build_dir / "images"
    build_dir = build_dir or BUILD_DIR
    project, region = cfg.project, cfg.region
    project_number = gcp.organizations.get_project_output(project_id=project).number
    prebuilt = bool(cfg.qa_image and cfg.botrunner_image)
    image_builder = "prebuilt" if prebuilt else resolve_builder(cfg.image_builder, probe=docker_usable)

    apis = Apis("apis", ApisArgs(project=project))
    after_apis = apis.ready  # enabled, agents created, and settled
    identity = Identity("identity", IdentityArgs(project=project), depends_on=after_apis)
    m, emails = identity.members, identity.emails

    storage = Storage(
        "storage",
        StorageArgs(
            project=project,
            region=region,
            kb_bucket=cfg.kb_bucket,
            sources_bucket=cfg.sources_bucket,
            keep_generations=cfg.snapshot_keep,
            kb_readers=[m["qa"]],
            kb_writers=[m["scrape-fn"]],
            sources_builders=[m["fn-builder"]],
            sources_readers=[m["image-builder"]],
        ),
        depends_on=after_apis,
    )
    data = Data(
        "data",
        DataArgs(project=project, location=cfg.db_location, backup_retention_days=cfg.backup_retention_days),
        depends_on=after_apis,
    )
    secrets = Secrets(
        "secrets",
        SecretsArgs(
            project=project,
            token_key=cfg.token_key,
            session_secret=cfg.session_secret,
            token_key_accessors=[m["botrunner"]],  # the one process that decrypts bot tokens
            session_secret_accessors=[m["qa"]],
        ),
        depends_on=after_apis,
    )
    registry = Registry(
        "registry",
        RegistryArgs(project=project, region=region, writers=[m["fn-builder"], m["image-builder"]]),
        depends_on=after_apis,
    )

    # Every deployable's settings, from the one definition the local production-shaped stack uses too.
    qa_url = run_url(QA_SERVICE, project_number, region)
    botrunner_url = run_url(BOTRUNNER_SERVICE, project_number, region)
    scrape_url = function_url(FUNCTION_NAMES["scrape"], project, region)
    plain = envvars.plain_settings(
        envvars.Deployment(
            project=project,
            region=region,
            bucket=cfg.kb_bucket,
            sources_json=json.dumps(list(cfg.sources), separators=(",", ":")),
            answerer=cfg.answerer,
            gemini_model=cfg.gemini_model,
            google_client_id=cfg.google_client_id,
            allowed_domain=cfg.allowed_domain,
            admin_emails=tuple(cfg.admin_emails),
            conversation_retention_days=cfg.conversation_retention_days,
            snapshot_keep=cfg.snapshot_keep,
            snapshot_compression=cfg.snapshot_compression,
            scrape_lease_seconds=cfg.scrape_lease_seconds,
            scrape_schedule=cfg.scrape_schedule,
            urls={
                "qa": qa_url,
                "botrunner": botrunner_url,
                "telegram": function_url(FUNCTION_NAMES["telegram"], project, region),
                "discord": function_url(FUNCTION_NAMES["discord"], project, region),
                "scrape": scrape_url,
            },
            emails=emails,
        )
    )

    # Every grant a build or a runtime checks when it starts, then a wait for IAM to propagate. The
    # trigger is the set of those grants: a later `pulumi up` waits again only when one changes.
    startup_grants = [*identity.project_grants, *storage.grants, *registry.grants, *secrets.grants]
    iam_settled = pulumi_time.Sleep(
        "iam-settled",
        create_duration=IAM_SETTLE,
        triggers={
            "grants": pulumi.Output.all(*[g.id for g in startup_grants]).apply(
                lambda ids: hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
            )
        },
        opts=pulumi.ResourceOptions(depends_on=startup_grants),
    )

    # --- functions ---------------------------------------------------------------------------
    fn_env = {}
    for key in ("telegram-fn", "discord-fn"):
        fn_env[key] = envvars.render(key, plain[key], {})
    fn_env["scrape-fn"] = envvars.render("scrape-fn", plain["scrape-fn"], {})
    functions = Functions(
        "functions",
        FunctionsArgs(
            project=project,
            project_number=project_number,
            region=region,
            sources_bucket=storage.sources_bucket.name,
            build_service_account=identity.accounts["fn-builder"].name,
            docker_repository=registry.repository.id,
            build_dir=build_dir,
            # The same archives (pins, vendored model package) the local production shape unpacks.
            archives=list(archive_specs().values()),
            functions=[
                # The two webhook ingresses: public (the platforms call them), each with its own account.
                *(
                    FunctionSpec(
                        key=key,
                        name=FUNCTION_NAMES[key],
                        entry_point=entry_point,
                        archive=ENTRY_POINT_ARCHIVES[entry_point],
                        service_account=emails[f"{key}-fn"],
                        env=fn_env[f"{key}-fn"][0],
                        secret_env=fn_env[f"{key}-fn"][1],
                        public=True,
                        memory=cfg.webhook_memory,
                    )
                    for key, entry_point in WEBHOOK_ENTRY_POINTS.items()
                ),
                FunctionSpec(
                    key="scrape",
                    name=FUNCTION_NAMES["scrape"],
                    entry_point="scrape",
                    archive=ENTRY_POINT_ARCHIVES["scrape"],
                    service_account=emails["scrape-fn"],
                    env=fn_env["scrape-fn"][0],
                    secret_env=fn_env["scrape-fn"][1],
                    public=False,
                    invokers=[m["scheduler-invoker"], m["qa"]],
                    memory=cfg.scrape_memory,
                    cpu=cfg.scrape_cpu,
                    timeout_seconds=cfg.scrape_timeout_seconds,
                    max_instances=1,  # one run at a time (the lease enforces it too)
                ),
            ],
        ),
        # The build account must be able to read the source and push the image before the first build.
        depends_on=[*after_apis, iam_settled],
    )

    # --- services ------------------------------------------------------------------------------
    run_secret = {
        "session_secret": RunSecretEnv(
            secrets.session_secret.secret_id, secrets.session_secret_version.version
        ),
        "token_key": RunSecretEnv(secrets.token_key.secret_id, secrets.token_key_version.version),
    }
    qa_env = envvars.render("qa", plain["qa"], {"session_secret": run_secret["session_secret"]})
    botrunner_env = envvars.render("botrunner", plain["botrunner"], {"token_key": run_secret["token_key"]})
    access_token = None
    if not prebuilt:
        # Short-lived token of whoever runs `pulumi up` (the Google provider's): for the Docker push or
        # the Cloud Build API call only.
        access_token = pulumi.Output.secret(gcp.organizations.get_client_config_output().access_token)
    services = Services(
        "services",
        ServicesArgs(
            project=project,
            region=region,
            registry_url=registry.url,
            build_context=REPO_ROOT,
            builder=image_builder,
            access_token=access_token,
            cloud_build=CloudBuildArgs(
                bucket=storage.sources_bucket.name,
                service_account=identity.accounts["image-builder"].name,
                out_dir=image_dir,
            ),
            services=[
                ServiceSpec(
                    key="qa",
                    name=QA_SERVICE,
                    dockerfile=REPO_ROOT / "services" / "qa" / "Dockerfile",
                    image=cfg.qa_image,
                    command=START_COMMANDS["qa"],
                    service_account=emails["qa"],
                    env=qa_env[0],
                    secret_env=qa_env[1],
                    public=True,
                    memory=cfg.qa_memory,
                    cpu=cfg.qa_cpu,
                    concurrency=cfg.qa_concurrency,
                    max_instances=cfg.qa_max_instances,
                ),
                ServiceSpec(
                    key="botrunner",
                    name=BOTRUNNER_SERVICE,
                    dockerfile=REPO_ROOT / "services" / "botrunner" / "Dockerfile",
                    image=cfg.botrunner_image,
                    command=START_COMMANDS["botrunner"],
                    service_account=emails["botrunner"],
                    env=botrunner_env[0],
                    secret_env=botrunner_env[1],
                    public=False,
                    invokers=[m["pubsub-push"], m["scheduler-invoker"], m["qa"]],
                    memory=cfg.botrunner_memory,
                    cpu=cfg.botrunner_cpu,
                    concurrency=cfg.botrunner_concurrency,
                    max_instances=cfg.botrunner_max_instances,
                ),
            ],
        ),
        # Cloud Build checks the builder's access to the context and the registry; Cloud Run checks
        # secret access when it creates a revision: grants first, and settled.
        depends_on=[*after_apis, iam_settled],
    )

    # --- messaging and schedules ---------------------------------------------------------------
    messaging = Messaging(
        "messaging",
        MessagingArgs(
            project=project,
            pubsub_agent_member=apis.agent_members["pubsub"],
            push_url=botrunner_url,
            push_service_account=emails["pubsub-push"],
            push_service_account_id=identity.accounts["pubsub-push"].name,
            publishers=[m["telegram-fn"], m["discord-fn"]],
            push_target=services.services["botrunner"],
        ),
        depends_on=after_apis,
    )
    schedules = Schedules(
        "schedules",
        SchedulesArgs(
            project=project,
            region=region,
            invoker_email=emails["scheduler-invoker"],
            time_zone=cfg.schedule_time_zone,
            jobs=[
                JobSpec(
                    key="scrape",
                    name="askbase-scrape",
                    schedule=cfg.scrape_schedule,
                    url=functions.urls["scrape"],
                    audience=scrape_url,  # the audience the function checks (ASKBASE_SCRAPE_URL)
                    attempt_deadline="1800s",  # Scheduler's maximum; the run itself is bounded by its lease
                ),
                JobSpec(
                    key="reconcile",
                    name="askbase-reconcile",
                    schedule=cfg.reconcile_schedule,
                    url=pulumi.Output.concat(botrunner_url, "/internal/reconcile"),
                    audience=botrunner_url,
                    retry_count=1,
                ),
            ],
        ),
        depends_on=[*after_apis, *functions.grants, *services.grants],
    )

    outputs = {
        "chatUrl": services.urls["qa"],
        "telegramWebhookBaseUrl": functions.urls["telegram"],
        "discordWebhookBaseUrl": functions.urls["discord"],
        "bucketName": storage.kb_bucket.name,
        "botrunnerUrl": services.urls["botrunner"],
        "jobsTopic": messaging.jobs_topic.name,
        # For `askbase smoke`: the scheduled job's target, and the project the dead-letter inbox is in.
        "scrapeUrl": scrape_url,
        "project": project,
    }
    return Program(
        cfg=cfg,
        apis=apis,
        identity=identity,
        storage=storage,
        data=data,
        secrets=secrets,
        registry=registry,
        functions=functions,
        services=services,
        messaging=messaging,
        schedules=schedules,
        iam_settled=iam_settled,
        image_builder=image_builder,
        env={
            "qa": {"plain": qa_env[0], "secret": qa_env[1]},
            "botrunner": {"plain": botrunner_env[0], "secret": botrunner_env[1]},
            **{k: {"plain": v[0], "secret": v[1]} for k, v in fn_env.items()},
        },
        outputs=outputs,
    )


def expected_grants(cfg: InfraConfig) -> dict[str, set[tuple[str, str, str]]]:
    """identity.GRANTS with logical places resolved: member -> {(role, kind, target name)}.

    The shape :func:`infra.policies.check_least_privilege` takes; a stack export can be checked
    against it as well as the mocks' recording.
    """
    where = {
        "project": ("project", cfg.project),
        "bucket:kb": ("bucket", cfg.kb_bucket),
        "bucket:function-sources": ("bucket", cfg.sources_bucket),
        "secret:token-key": ("secret", TOKEN_KEY_SECRET_ID),
        "secret:session-secret": ("secret", SESSION_SECRET_ID),
        "topic:jobs": ("topic", JOBS_TOPIC),
        "run:botrunner": ("run", BOTRUNNER_SERVICE),
        "run:scrape": ("run", FUNCTION_NAMES["scrape"]),
        "repo:askbase": ("repo", REPOSITORY),
    }
    return {
        f"serviceAccount:{ACCOUNTS[key][0]}@{cfg.project}.iam.gserviceaccount.com": {
            (role, *where[place]) for role, place in grants
        }
        for key, grants in GRANTS.items()
    }
