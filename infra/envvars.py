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
    "answerer": "ASKBASE_ANSWERER",
    "gemini_model": "ASKBASE_GEMINI_MODEL",
    "session_secret": "ASKBASE_SESSION_SECRET",
    "google_client_id": "ASKBASE_GOOGLE_CLIENT_ID",
    "allowed_domain": "ASKBASE_ALLOWED_DOMAIN",
    "admin_emails": "ASKBASE_ADMIN_EMAILS",
    "conversation_retention_days": "ASKBASE_CONVERSATION_RETENTION_DAYS",
    "token_key": "ASKBASE_TOKEN_KEY",
    "token_key_secret": "ASKBASE_TOKEN_KEY_SECRET",
    "qa_url": "ASKBASE_QA_URL",
    "botrunner_url": "ASKBASE_BOTRUNNER_URL",
    "telegram_webhook_url": "ASKBASE_TELEGRAM_WEBHOOK_URL",
    "discord_webhook_url": "ASKBASE_DISCORD_WEBHOOK_URL",
    "scrape_url": "ASKBASE_SCRAPE_URL",
    "worker_push_audience": "ASKBASE_WORKER_PUSH_AUDIENCE",
    "worker_push_service_account": "ASKBASE_WORKER_PUSH_SERVICE_ACCOUNT",
    "internal_auth": "ASKBASE_INTERNAL_AUTH",
    "service_callers": "ASKBASE_SERVICE_CALLERS",
}

# Fields whose value is a secret: delivered from Secret Manager as a secret env var (the platform
# resolves it at instance start), never as a plain value in the service spec or the Pulumi state.
# The token key goes to qa this way too, not as ASKBASE_TOKEN_KEY_SECRET: resolving a secret name at
# run time needs google-cloud-secret-manager in the image, a secret env var needs nothing.
SECRET_FIELDS: frozenset[str] = frozenset({"session_secret", "token_key"})

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
            "session_secret",
            "google_client_id",
            "allowed_domain",
            "admin_emails",
            "conversation_retention_days",
            "token_key",  # bot pages register bots: they encrypt tokens
            "qa_url",  # the audience botrunner's ID tokens must carry
            "scrape_url",
            "scrape_schedule",  # shown on the status page
            "snapshot_keep",
            "botrunner_url",
            "internal_auth",
            "service_callers",  # only botrunner may ask as a service (it names the bot user)
        }
    ),
    "botrunner": frozenset(
        {
            "env",
            "project_id",
            "jobs_topic",
            "qa_url",
            "botrunner_url",  # the audience of control-API and reconcile ID tokens
            "telegram_webhook_url",
            "discord_webhook_url",
            "token_key",
            "worker_push_audience",
            "worker_push_service_account",
            "internal_auth",
        }
    ),
    "telegram-fn": frozenset({"env", "project_id", "jobs_topic", "token_key", "internal_auth"}),
    "discord-fn": frozenset({"env", "project_id", "jobs_topic", "token_key", "internal_auth"}),
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
        }
    ),
}

DEPLOYABLES: tuple[str, ...] = tuple(NEEDS)


def env_name(field: str) -> str:
    """The environment variable for a settings field (KeyError for a field infra never sets)."""
    return ENV_NAMES[field]


def render(deployable: str, plain: Mapping[str, Any], secrets: Mapping[str, Any]) -> tuple[dict, dict]:
    """Turn ``{field: value}`` into ``({ENV_NAME: value}, {ENV_NAME: secret_ref})`` for one deployable.

    ``plain`` must hold exactly the non-secret fields the deployable needs and ``secrets`` exactly the
    secret ones (their values are whatever the caller uses to reference a Secret Manager version).
    Anything missing or extra raises ``ValueError``: a forgotten setting fails ``pulumi up`` before any
    resource changes, instead of a service that crashes at start.
    """
    needed = NEEDS[deployable]
    want_plain = needed - SECRET_FIELDS
    want_secret = needed & SECRET_FIELDS
    problems = []
    for label, got, want in (("plain", set(plain), want_plain), ("secret", set(secrets), want_secret)):
        if got - want:
            problems.append(f"{label} fields not declared for {deployable}: {sorted(got - want)}")
        if want - got:
            problems.append(f"{label} fields missing for {deployable}: {sorted(want - got)}")
    if problems:
        raise ValueError("; ".join(problems))
    return (
        {ENV_NAMES[f]: plain[f] for f in sorted(plain)},
        {ENV_NAMES[f]: secrets[f] for f in sorted(secrets)},
    )
