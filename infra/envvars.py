"""The environment variables infra sets on each deployable: the one place their names live.

The application reads its configuration through ``shared.config.Settings``; every name below must be
``Settings.env_name(field)`` for the field it is keyed by. infra does not import ``shared`` (the
program must run with nothing but Pulumi installed, and must not drag the app's import graph into
``pulumi up``), so the names are written out here once and ``tests/test_infra_envvars.py`` holds them
to the settings class: a renamed or removed setting fails that test, not a production deploy.

Components never spell an env var name themselves: they hand :func:`render` a mapping of *settings
field* → value, and ``render`` refuses a mapping that is missing a field the deployable needs or that
carries one it does not declare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# settings field -> environment variable (== shared.config.Settings.env_name(field))
ENV_NAMES: dict[str, str] = {
    "env": "ASKBASE_ENV",
    "project_id": "GOOGLE_CLOUD_PROJECT",
    "region": "ASKBASE_REGION",
    "data_dir": "ASKBASE_DATA_DIR",
    "bucket": "ASKBASE_BUCKET",
    "snapshot_prefix": "ASKBASE_SNAPSHOT_PREFIX",
    "snapshot_keep": "ASKBASE_SNAPSHOT_KEEP",
    "snapshot_compression": "ASKBASE_SNAPSHOT_COMPRESSION",
    "snapshot_poll_seconds": "ASKBASE_SNAPSHOT_POLL_SECONDS",
    "jobs_topic": "ASKBASE_JOBS_TOPIC",
    "sources": "ASKBASE_SOURCES",
    "scrape_lease_seconds": "ASKBASE_SCRAPE_LEASE_SECONDS",
    "scrape_schedule": "ASKBASE_SCRAPE_SCHEDULE",
    "schedule_time_zone": "ASKBASE_SCHEDULE_TIME_ZONE",
    "answerer": "ASKBASE_ANSWERER",
    "gemini_model": "ASKBASE_GEMINI_MODEL",
    "answer_min_score": "ASKBASE_ANSWER_MIN_SCORE",
    "session_secret": "ASKBASE_SESSION_SECRET",
    "google_client_id": "ASKBASE_GOOGLE_CLIENT_ID",
    "allowed_domain": "ASKBASE_ALLOWED_DOMAIN",
    "admin_emails": "ASKBASE_ADMIN_EMAILS",
    "conversation_retention_days": "ASKBASE_CONVERSATION_RETENTION_DAYS",
    "gaps_ignore_words": "ASKBASE_GAPS_IGNORE_WORDS",
    "token_key": "ASKBASE_TOKEN_KEY",
    "token_keys_previous": "ASKBASE_TOKEN_KEYS_PREVIOUS",
    "qa_url": "ASKBASE_QA_URL",
    "botrunner_url": "ASKBASE_BOTRUNNER_URL",
    "telegram_webhook_url": "ASKBASE_TELEGRAM_WEBHOOK_URL",
    "discord_webhook_url": "ASKBASE_DISCORD_WEBHOOK_URL",
    "scrape_url": "ASKBASE_SCRAPE_URL",
    "worker_push_audience": "ASKBASE_WORKER_PUSH_AUDIENCE",
    "worker_push_service_account": "ASKBASE_WORKER_PUSH_SERVICE_ACCOUNT",
    "internal_auth": "ASKBASE_INTERNAL_AUTH",
    "service_callers": "ASKBASE_SERVICE_CALLERS",
    "control_callers": "ASKBASE_CONTROL_CALLERS",
    "reconcile_callers": "ASKBASE_RECONCILE_CALLERS",
    "scrape_callers": "ASKBASE_SCRAPE_CALLERS",
}

# Fields whose value is a secret: delivered from Secret Manager as a secret env var (the platform
# resolves it at instance start), never as a plain value in the service spec or the Pulumi state.
# The token key goes to botrunner (its one reader) this way, never as ASKBASE_TOKEN_KEY_SECRET, which
# infra does not set: resolving a secret name at run time costs a Secret Manager call in the process,
# a secret env var costs nothing.
SECRET_FIELDS: frozenset[str] = frozenset({"session_secret", "token_key", "token_keys_previous"})

# Deployable -> the settings fields infra sets on it. ``internal_auth=google-oidc`` goes everywhere:
# Settings refuses to load in production without it.
NEEDS: dict[str, frozenset[str]] = {
    "qa": frozenset(
        {
            "env",
            "project_id",
            "region",
            "data_dir",
            "bucket",
            "snapshot_prefix",
            "snapshot_poll_seconds",
            "answerer",
            "gemini_model",
            "answer_min_score",  # the refusal threshold, re-tuned with `askbase eval`
            "session_secret",
            "google_client_id",
            "allowed_domain",
            "admin_emails",
            "conversation_retention_days",
            "gaps_ignore_words",  # the gaps report groups questions without them
            "qa_url",  # the audience botrunner's ID tokens must carry
            "scrape_url",  # the admin's "scrape now" calls it (and it is the token's audience)
            "scrape_schedule",  # shown on the status page...
            "schedule_time_zone",  # ...with its next run in the zone Cloud Scheduler reads it in
            "snapshot_keep",
            "botrunner_url",  # the bot pages call its control API
            "internal_auth",
            "service_callers",  # only botrunner may ask as a service (it names the bot user)
        }
    ),
    # No jobs_topic: botrunner is the topic's push endpoint, it never publishes to it.
    "botrunner": frozenset(
        {
            "env",
            "project_id",
            "qa_url",
            "botrunner_url",  # the audience of control-API and reconcile ID tokens
            "telegram_webhook_url",
            "discord_webhook_url",
            "token_key",
            "worker_push_audience",
            "worker_push_service_account",
            "internal_auth",
            "admin_emails",  # admin rights are decided here, never asserted by a caller
            "conversation_retention_days",  # answer buttons' state (question, answer) lasts no longer
            "answerer",  # with it, the answerers a bot may use (Settings.allowed_bot_models)
            "control_callers",  # qa's account: the bot pages
            "reconcile_callers",  # the scheduler's account
        }
    ),
    # The webhook functions compare a keyed hash of the webhook secret: no key that decrypts tokens.
    "telegram-fn": frozenset({"env", "project_id", "jobs_topic", "internal_auth"}),
    "discord-fn": frozenset({"env", "project_id", "jobs_topic", "internal_auth"}),
    "scrape-fn": frozenset(
        {
            "env",
            "project_id",
            "data_dir",
            "bucket",
            "snapshot_prefix",
            "snapshot_keep",
            "snapshot_compression",
            "sources",
            "scrape_lease_seconds",
            "internal_auth",
            "scrape_url",  # the audience of the scheduler's (and qa's) ID tokens
            "scrape_callers",
        }
    ),
}

DEPLOYABLES: tuple[str, ...] = tuple(NEEDS)

# Deployable -> settings fields it is given only when the operator configured them (no value: no
# variable, the setting's default applies). The older token keys exist only during a key rotation
# (askbase:previousTokenKeys, docs/operations.md) and go to botrunner alone, like the token key.
OPTIONAL: dict[str, frozenset[str]] = {d: frozenset() for d in DEPLOYABLES} | {
    "botrunner": frozenset({"token_keys_previous"}),
}

# Fixed values every deployment uses (Cloud Run and Cloud Functions give each instance its own /tmp).
DATA_DIR = "/tmp/askbase"
SNAPSHOT_PREFIX = "snapshots/"
JOBS_TOPIC = "askbase-jobs"
SNAPSHOT_POLL_SECONDS = "30"


@dataclass(frozen=True)
class Deployment:
    """What the settings of a deployment are computed from: its configuration, the public URL of
    every deployable and the service account each one runs as.

    ``urls`` keys: ``qa``, ``botrunner``, ``telegram``, ``discord``, ``scrape``; ``emails`` keys:
    ``qa``, ``botrunner``, ``pubsub-push``, ``scheduler-invoker``. Values are plain strings locally and
    Pulumi Outputs in ``infra/program.py``: this function only places them.
    """

    project: str
    region: str
    bucket: str
    sources_json: str
    answerer: str
    gemini_model: str
    google_client_id: str
    allowed_domain: str
    admin_emails: tuple[str, ...]
    conversation_retention_days: int
    snapshot_keep: int
    snapshot_compression: str
    scrape_lease_seconds: int
    scrape_schedule: str
    urls: Mapping[str, Any]
    emails: Mapping[str, Any]
    gaps_ignore_words: tuple[str, ...] = ()
    schedule_time_zone: str = "Etc/UTC"
    answer_min_score: float = 0.3


def plain_settings(d: Deployment) -> dict[str, dict[str, Any]]:
    """Deployable → {settings field: value} for every non-secret field :data:`NEEDS` lists.

    The one definition of each deployable's environment: ``infra/program.py`` renders it into the
    Cloud Run / Cloud Functions specs, and the production-shaped local stack
    (``shared/devstack/production.py``) starts each process with exactly the same mapping.
    """
    common = {"env": "production", "project_id": d.project, "internal_auth": "google-oidc"}
    admins = ",".join(d.admin_emails)
    values: dict[str, dict[str, Any]] = {
        "qa": {
            **common,
            "region": d.region,
            "data_dir": DATA_DIR,
            "bucket": d.bucket,
            "snapshot_prefix": SNAPSHOT_PREFIX,
            "snapshot_poll_seconds": SNAPSHOT_POLL_SECONDS,
            "answerer": d.answerer,
            "gemini_model": d.gemini_model,
            "answer_min_score": str(d.answer_min_score),
            "google_client_id": d.google_client_id,
            "allowed_domain": d.allowed_domain,
            "admin_emails": admins,
            "conversation_retention_days": str(d.conversation_retention_days),
            "gaps_ignore_words": ",".join(d.gaps_ignore_words),
            "qa_url": d.urls["qa"],
            "scrape_url": d.urls["scrape"],
            "scrape_schedule": d.scrape_schedule,
            "schedule_time_zone": d.schedule_time_zone,
            "snapshot_keep": str(d.snapshot_keep),
            "botrunner_url": d.urls["botrunner"],
            "service_callers": d.emails["botrunner"],
        },
        "botrunner": {
            **common,
            "qa_url": d.urls["qa"],
            "botrunner_url": d.urls["botrunner"],
            "telegram_webhook_url": d.urls["telegram"],
            "discord_webhook_url": d.urls["discord"],
            "worker_push_audience": d.urls["botrunner"],
            "worker_push_service_account": d.emails["pubsub-push"],
            "admin_emails": admins,
            "answerer": d.answerer,
            "conversation_retention_days": str(d.conversation_retention_days),
            "control_callers": d.emails["qa"],
            "reconcile_callers": d.emails["scheduler-invoker"],
        },
        "scrape-fn": {
            **common,
            "data_dir": DATA_DIR,
            "bucket": d.bucket,
            "snapshot_prefix": SNAPSHOT_PREFIX,
            "snapshot_keep": str(d.snapshot_keep),
            "snapshot_compression": d.snapshot_compression,
            "sources": d.sources_json,
            "scrape_lease_seconds": str(d.scrape_lease_seconds),
            "scrape_url": d.urls["scrape"],
            "scrape_callers": _joined(d.emails["scheduler-invoker"], d.emails["qa"]),
        },
    }
    for key in ("telegram-fn", "discord-fn"):
        values[key] = {**common, "jobs_topic": JOBS_TOPIC}
    return values


def _joined(*emails: Any) -> Any:
    """Comma-join emails that may be Pulumi Outputs (kept free of a pulumi import for the local stack)."""
    if all(isinstance(e, str) for e in emails):
        return ",".join(emails)
    import pulumi

    return pulumi.Output.concat(*[part for e in emails for part in (e, ",")][:-1])


def secret_refs(deployable: str, refs: Mapping[str, Any]) -> dict[str, Any]:
    """The references ``deployable`` gets of ``refs`` (secret field -> its Secret Manager reference):
    every secret field it needs (KeyError if ``refs`` lacks one) and the optional ones ``refs`` holds."""
    needed = NEEDS[deployable] & SECRET_FIELDS
    optional = OPTIONAL[deployable] & SECRET_FIELDS & set(refs)
    return {f: refs[f] for f in sorted(needed | optional)}


def env_name(field: str) -> str:
    """The environment variable for a settings field (KeyError for a field infra never sets)."""
    return ENV_NAMES[field]


def render(
    deployable: str, plain: Mapping[str, Any], secrets: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Turn ``{field: value}`` into ``({ENV_NAME: value}, {ENV_NAME: secret_ref})`` for one deployable.

    ``plain`` must hold exactly the non-secret fields the deployable needs and ``secrets`` exactly the
    secret ones (their values are whatever the caller uses to reference a Secret Manager version), plus
    any of its :data:`OPTIONAL` fields that are configured. Anything missing or extra raises
    ``ValueError``: a forgotten setting fails ``pulumi up`` before any resource changes, instead of a
    service that crashes at start.
    """
    needed = NEEDS[deployable]
    optional = OPTIONAL[deployable]
    want_plain = needed - SECRET_FIELDS
    want_secret = needed & SECRET_FIELDS
    problems = []
    for label, got, want, may in (
        ("plain", set(plain), want_plain, optional - SECRET_FIELDS),
        ("secret", set(secrets), want_secret, optional & SECRET_FIELDS),
    ):
        if got - want - may:
            problems.append(f"{label} fields not declared for {deployable}: {sorted(got - want - may)}")
        if want - got:
            problems.append(f"{label} fields missing for {deployable}: {sorted(want - got)}")
    if problems:
        raise ValueError("; ".join(problems))
    return (
        {ENV_NAMES[f]: plain[f] for f in sorted(plain)},
        {ENV_NAMES[f]: secrets[f] for f in sorted(secrets)},
    )
