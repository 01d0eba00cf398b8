"""The askbase stack: every component, wired together. ``infra/__main__.py`` calls :func:`build`.

Build order follows the data flow: APIs (then a settle wait) → accounts → data stores (buckets,
Firestore, secrets, registry, each with its grants) → a settle wait for the grants → images and
functions (the functions' URLs feed botrunner) → services (qa and botrunner know each other by their
deterministic URLs) → messaging (pushes to botrunner) → schedules (call scrape and botrunner).

The two waits make a first ``pulumi up`` on a fresh project deterministic: Google checks an enabled
API and a new IAM grant eventually, not at once, and Cloud Build, Cloud Functions and Cloud Run
check both when they start (the build account's access to the source and the registry, each
runtime account's access to its secrets).

:func:`build` only composes the components. What each one is given (which account is granted what,
each deployable's settings, sizes and callers) is worked out by the ``_*_args`` function for it below.
The grant lists there keep their order: a stack deployed when grants were named by list position
finds them by it (``Component.grant_each``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra import envvars
from infra.archive import REPO_ROOT, archive_specs
from infra.commands import START_COMMANDS
from infra.components.apis import Apis, ApisArgs
from infra.components.base import Grantee
from infra.components.data import DataArgs
from infra.components.functions import Functions, FunctionsArgs, FunctionSpec, function_url
from infra.components.identity import Identity, IdentityArgs
from infra.components.images import CloudBuildArgs, Images, ImagesArgs, ImageSpec
from infra.components.messaging import ACK_DEADLINE_S, Messaging, MessagingArgs
from infra.components.registry import RegistryArgs
from infra.components.schedules import JobSpec, Schedules, SchedulesArgs
from infra.components.secrets import Secrets, SecretsArgs
from infra.components.services import Services, ServicesArgs, ServiceSpec, run_url
from infra.components.settle import GrantsSettled, GrantsSettledArgs
from infra.components.storage import StorageArgs
from infra.components.stores import DataStores, DataStoresArgs
from infra.config import InfraConfig
from infra.deployables import DEPLOYABLES, FUNCTIONS, SERVICES

# The deployables' names, from infra/deployables.py (resource names: tests/test_infra_migration.py).
QA_SERVICE = SERVICES["qa"].name
BOTRUNNER_SERVICE = SERVICES["botrunner"].name
FUNCTION_NAMES = {key: fn.name for key, fn in FUNCTIONS.items()}
# Webhook function key → its entry point in functions/main.py: the functions of the webhooks archive.
WEBHOOK_ENTRY_POINTS = {
    key: fn.entry_point for key, fn in FUNCTIONS.items() if fn.archive == "webhooks" and fn.entry_point
}
BUILD_DIR = REPO_ROOT / "build" / "functions"
IMAGE_BUILD_DIR = REPO_ROOT / "build" / "images"

# deployable -> {"plain": {ENV_NAME: value}, "secret": {ENV_NAME: SecretEnv}}
DeployableEnv = dict[str, dict[str, dict[str, Any]]]


@dataclass
class Program:
    """Handles to everything :func:`build` created, for ``__main__`` and the tests."""

    cfg: InfraConfig
    apis: Apis
    identity: Identity
    stores: DataStores
    grants_settled: GrantsSettled
    images: Images
    functions: Functions
    services: Services
    messaging: Messaging
    schedules: Schedules
    env: DeployableEnv = field(default_factory=dict)
    outputs: dict[str, pulumi.Input[str]] = field(default_factory=dict)

    @property
    def image_builder(self) -> str:
        """``docker``, ``cloudbuild``, or ``prebuilt`` (both images given)."""
        return self.images.builder


def build(cfg: InfraConfig, build_dir: Path | None = None) -> Program:
    """Declare the whole stack for ``cfg``. Pure declaration: safe to call under Pulumi mocks.

    ``build_dir`` is where the function archives are written (default ``build/functions/``); the
    image build contexts of the Cloud Build path go to ``build_dir/images`` (default ``build/images/``).
    """
    image_dir = IMAGE_BUILD_DIR if build_dir is None else build_dir / "images"
    build_dir = build_dir or BUILD_DIR
    project_number = gcp.organizations.get_project_output(project_id=cfg.project).number
    urls = _deterministic_urls(cfg, project_number)

    apis = Apis("apis", ApisArgs(project=cfg.project))
    identity = Identity(
        "identity",
        IdentityArgs(project=cfg.project, vertex_ai=cfg.answerer == "gemini"),
        depends_on=apis.ready,
    )
    stores = DataStores(
        "data-stores", _data_stores_args(cfg, project_number, identity.grantees), depends_on=apis.ready
    )
    startup_grants = [*identity.project_grants, *stores.startup_grants]
    settled = GrantsSettled("grants-settled", GrantsSettledArgs(grants=startup_grants))
    # Builds and new revisions check those grants when they start: they come after the wait.
    starts = [*apis.ready, settled.wait]
    env = _deployable_env(cfg, urls, identity.emails, stores.secrets)
    images = Images("images", _images_args(cfg, identity, stores, image_dir), depends_on=starts)
    functions = Functions(
        "functions", _functions_args(cfg, project_number, identity, stores, env, build_dir), depends_on=starts
    )
    services = Services("services", _services_args(cfg, identity, env, images), depends_on=starts)
    messaging = Messaging(
        "messaging", _messaging_args(cfg, urls, apis, identity, services), depends_on=apis.ready
    )
    schedules = Schedules(
        "schedules",
        _schedules_args(cfg, urls, identity, functions),
        depends_on=[*apis.ready, *functions.grants, *services.grants],
    )
    return Program(
        cfg=cfg,
        apis=apis,
        identity=identity,
        stores=stores,
        grants_settled=settled,
        images=images,
        functions=functions,
        services=services,
        messaging=messaging,
        schedules=schedules,
        env=env,
        outputs={
            "chatUrl": services.urls["qa"],
            "telegramWebhookBaseUrl": functions.urls["telegram"],
            "discordWebhookBaseUrl": functions.urls["discord"],
            "bucketName": stores.storage.kb_bucket.name,
            "botrunnerUrl": services.urls["botrunner"],
            "jobsTopic": messaging.jobs_topic.name,
            # For `askbase smoke`: the scheduled job's target, and the project the dead-letter inbox is in.
            "scrapeUrl": urls["scrape"],
            "project": cfg.project,
        },
    )


def _deterministic_urls(cfg: InfraConfig, project_number: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    """Every deployable's URL before it exists (the one Cloud Run or Cloud Functions will give it), by
    key: ``qa``, ``botrunner``, ``telegram``, ``discord``, ``scrape``."""
    return {
        d.url_key: (
            run_url(d.name, project_number, cfg.region)
            if d.kind == "service"
            else function_url(d.name, cfg.project, cfg.region)
        )
        for d in DEPLOYABLES
    }


def _data_stores_args(
    cfg: InfraConfig, project_number: pulumi.Input[str], accounts: Mapping[str, Grantee]
) -> DataStoresArgs:
    """The stores, and which account may do what with each (the identity table in docs/deploy.md)."""
    return DataStoresArgs(
        storage=StorageArgs(
            project=cfg.project,
            region=cfg.region,
            kb_bucket=cfg.kb_bucket,
            sources_bucket=cfg.sources_bucket,
            keep_generations=cfg.snapshot_keep,
            kb_readers=[accounts["qa"]],
            kb_writers=[accounts["scrape-fn"]],
            sources_builders=[accounts["fn-builder"]],
            # Where Cloud Functions puts the copy of each source its build reads (StorageArgs says why).
            function_build_bucket=pulumi.Output.concat("gcf-v2-sources-", project_number, "-", cfg.region),
            sources_readers=[accounts["image-builder"]],
        ),
        data=DataArgs(
            project=cfg.project, location=cfg.db_location, backup_retention_days=cfg.backup_retention_days
        ),
        secrets=SecretsArgs(
            project=cfg.project,
            token_key=cfg.token_key,
            session_secret=cfg.session_secret,
            previous_token_keys=cfg.previous_token_keys,  # only during a key rotation
            token_key_accessors=[accounts["botrunner"]],  # the one process that decrypts bot tokens
            session_secret_accessors=[accounts["qa"]],
        ),
        registry=RegistryArgs(
            project=cfg.project,
            region=cfg.region,
            writers=[accounts["fn-builder"], accounts["image-builder"]],
        ),
    )


def _deployable_env(
    cfg: InfraConfig,
    urls: Mapping[str, pulumi.Input[str]],
    emails: Mapping[str, pulumi.Input[str]],
    secrets: Secrets,
) -> DeployableEnv:
    """Every deployable's environment, from the one definition the local production-shaped stack uses
    too (``infra/envvars.py``); its secret settings point at the Secret Manager versions."""
    plain = envvars.plain_settings(
        envvars.Deployment(
            project=cfg.project,
            region=cfg.region,
            bucket=cfg.kb_bucket,
            sources_json=json.dumps(list(cfg.sources), separators=(",", ":")),
            answerer=cfg.answerer,
            gemini_model=cfg.gemini_model,
            answer_min_score=cfg.answer_min_score,
            google_client_id=cfg.google_client_id,
            allowed_domain=cfg.allowed_domain,
            admin_emails=tuple(cfg.admin_emails),
            conversation_retention_days=cfg.conversation_retention_days,
            gaps_ignore_words=cfg.gaps_ignore_words,
            snapshot_keep=cfg.snapshot_keep,
            snapshot_compression=cfg.snapshot_compression,
            scrape_lease_seconds=cfg.scrape_lease_seconds,
            scrape_schedule=cfg.scrape_schedule,
            schedule_time_zone=cfg.schedule_time_zone,
            urls=urls,
            emails=emails,
        )
    )
    refs = {"session_secret": secrets.session_secret_ref, "token_key": secrets.token_key_ref}
    if secrets.previous_token_keys_ref is not None:  # askbase:previousTokenKeys is set
        refs["token_keys_previous"] = secrets.previous_token_keys_ref
    env: DeployableEnv = {}
    for deployable in envvars.DEPLOYABLES:
        values, secret_refs = envvars.render(
            deployable, plain[deployable], envvars.secret_refs(deployable, refs)
        )
        env[deployable] = {"plain": values, "secret": secret_refs}
    return env


def _runs_as(deployable: str, identity: Identity, env: DeployableEnv) -> dict[str, Any]:
    """What a function or service running ``deployable`` is given of it: its account and environment."""
    return {
        "service_account": identity.emails[deployable],
        "env": env[deployable]["plain"],
        "secret_env": env[deployable]["secret"],
    }


def _images_args(cfg: InfraConfig, identity: Identity, stores: DataStores, out_dir: Path) -> ImagesArgs:
    """qa's and botrunner's images, unless the config names prebuilt ones; the Cloud Build path uploads
    their contexts to the build-inputs bucket and builds as the image-builder account."""
    return ImagesArgs(
        project=cfg.project,
        region=cfg.region,
        registry_url=stores.registry.url,
        context=REPO_ROOT,
        images=[
            ImageSpec("qa", REPO_ROOT / "services" / "qa" / "Dockerfile", prebuilt=cfg.qa_image),
            ImageSpec(
                "botrunner", REPO_ROOT / "services" / "botrunner" / "Dockerfile", prebuilt=cfg.botrunner_image
            ),
        ],
        builder=cfg.image_builder,
        cloud_build=CloudBuildArgs(
            bucket=stores.storage.sources_bucket.name,
            service_account=identity.accounts["image-builder"].name,
            out_dir=out_dir,
        ),
    )


def _functions_args(
    cfg: InfraConfig,
    project_number: pulumi.Input[str],
    identity: Identity,
    stores: DataStores,
    env: DeployableEnv,
    build_dir: Path,
) -> FunctionsArgs:
    """The two webhook ingresses, public (the platforms call them), and the private scrape, which the
    scheduler and qa (the admin's "scrape now") invoke. Each runs as its own account."""
    accounts = identity.grantees

    def function(key: str, **spec: Any) -> FunctionSpec:
        deployable = FUNCTIONS[key]
        assert deployable.entry_point is not None and deployable.archive is not None
        return FunctionSpec(
            key=key,
            name=deployable.name,
            entry_point=deployable.entry_point,
            archive=deployable.archive,
            **_runs_as(deployable.key, identity, env),
            **spec,
        )

    return FunctionsArgs(
        project=cfg.project,
        project_number=project_number,
        region=cfg.region,
        sources_bucket=stores.storage.sources_bucket.name,
        build_service_account=identity.accounts["fn-builder"].name,
        docker_repository=stores.registry.repository.id,
        build_dir=build_dir,
        # The same archives (pins, vendored model package) the local production shape unpacks.
        archives=list(archive_specs().values()),
        functions=[
            *(function(key, public=True, memory=cfg.webhook_memory) for key in WEBHOOK_ENTRY_POINTS),
            function(
                "scrape",
                public=False,
                invokers=[accounts["scheduler-invoker"], accounts["qa"]],
                memory=cfg.scrape_memory,
                cpu=cfg.scrape_cpu,
                timeout_seconds=cfg.scrape_timeout_seconds,
                max_instances=1,  # one run at a time (the lease enforces it too)
            ),
        ],
    )


def _services_args(cfg: InfraConfig, identity: Identity, env: DeployableEnv, images: Images) -> ServicesArgs:
    """qa, public (the web chat), and botrunner, private: Pub/Sub pushes to it, the scheduler calls its
    reconcile, qa's bot pages its control API. Each runs its own image, start command and account."""
    accounts = identity.grantees

    def service(key: str, name: str, **spec: Any) -> ServiceSpec:
        return ServiceSpec(
            key=key,
            name=name,
            image=images.refs[key],
            command=START_COMMANDS[key],
            **_runs_as(key, identity, env),
            **spec,
        )

    return ServicesArgs(
        project=cfg.project,
        region=cfg.region,
        services=[
            service(
                "qa",
                QA_SERVICE,
                public=True,
                memory=cfg.qa_memory,
                cpu=cfg.qa_cpu,
                concurrency=cfg.qa_concurrency,
                max_instances=cfg.qa_max_instances,
            ),
            service(
                "botrunner",
                BOTRUNNER_SERVICE,
                public=False,
                invokers=[accounts["pubsub-push"], accounts["scheduler-invoker"], accounts["qa"]],
                memory=cfg.botrunner_memory,
                cpu=cfg.botrunner_cpu,
                concurrency=cfg.botrunner_concurrency,
                max_instances=cfg.botrunner_max_instances,
                # Pub/Sub waits this long for a push's answer (messaging.py says why 90 s): Cloud Run
                # must not cut the request sooner, or a delivery still within its time gets a 504.
                timeout_seconds=ACK_DEADLINE_S,
            ),
        ],
    )


def _messaging_args(
    cfg: InfraConfig,
    urls: Mapping[str, pulumi.Input[str]],
    apis: Apis,
    identity: Identity,
    services: Services,
) -> MessagingArgs:
    """The jobs topic the webhook functions publish to, pushed to botrunner as the push account."""
    accounts = identity.grantees
    return MessagingArgs(
        project=cfg.project,
        pubsub_agent_member=apis.agent_members["pubsub"],
        push_url=urls["botrunner"],
        push_service_account=identity.emails["pubsub-push"],
        push_service_account_id=identity.accounts["pubsub-push"].name,
        publishers=[accounts["telegram-fn"], accounts["discord-fn"]],
        push_target=services.services["botrunner"],
    )


def _schedules_args(
    cfg: InfraConfig, urls: Mapping[str, pulumi.Input[str]], identity: Identity, functions: Functions
) -> SchedulesArgs:
    """Scrape and reconcile, each called with an ID token of the scheduler account whose audience is
    the URL its target checks."""
    return SchedulesArgs(
        project=cfg.project,
        region=cfg.region,
        invoker_email=identity.emails["scheduler-invoker"],
        time_zone=cfg.schedule_time_zone,
        jobs=[
            JobSpec(
                key="scrape",
                name="askbase-scrape",
                schedule=cfg.scrape_schedule,
                url=functions.urls["scrape"],
                audience=urls["scrape"],  # the audience the function checks (ASKBASE_SCRAPE_URL)
                attempt_deadline="1800s",  # Scheduler's maximum; the run itself is bounded by its lease
            ),
            JobSpec(
                key="reconcile",
                name="askbase-reconcile",
                schedule=cfg.reconcile_schedule,
                url=pulumi.Output.concat(urls["botrunner"], "/internal/reconcile"),
                audience=urls["botrunner"],
                retry_count=1,
            ),
        ],
    )
