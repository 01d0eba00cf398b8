"""askbase settings: one typed object, read from the environment (and an optional ``.env`` file).

Every field maps to one environment variable, ``ASKBASE_<FIELD>`` unless an alias says otherwise
(``GOOGLE_CLOUD_PROJECT`` is the project everywhere in Google Cloud). ``docs/configuration.md`` documents
each key; ``tests/test_config.py`` fails if a key is added here without being documented there.

Use :func:`get_settings` in entry points. Library code takes the settings (or the few values it needs) as
arguments so it can be tested without touching the environment.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ASKBASE_"


class Environment(StrEnum):
    """Where the code runs. ``production`` turns on every check that a local stack can relax."""

    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


class SourceKind(StrEnum):
    """How a source's pages are discovered."""

    SITEMAP = "sitemap"  # read sitemap.xml (and sitemap indexes) from the start URL's site
    CRAWL = "crawl"  # follow same-site links breadth-first from the start URL
    FEED = "feed"  # read an RSS or Atom feed: a blog


class Source(BaseModel):
    """One place the knowledge base is built from: a website, a GitBook space or a blog."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    kind: SourceKind
    url: Annotated[str, Field(pattern=r"^https?://")]
    include: list[str] = Field(default_factory=list, description="regexes; a URL must match one if given")
    exclude: list[str] = Field(default_factory=list, description="regexes; a matching URL is skipped")
    max_pages: Annotated[int, Field(ge=1, le=100_000)] = 500


class ConfigError(RuntimeError):
    """Raised when the environment holds a bad setting; the message names the key."""


class Settings(BaseSettings):
    """All of askbase's knobs. Defaults suit the local stack; production sets the rest."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- where we run -------------------------------------------------------------------------
    env: Environment = Environment.LOCAL
    project_id: str = Field(
        default="askbase-local",
        validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "ASKBASE_PROJECT_ID"),
    )
    region: str = "europe-west1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: str = "/tmp/askbase"

    # --- storage and messaging -------------------------------------------------------------------
    bucket: str = "askbase-local"
    snapshot_prefix: str = "snapshots/"
    snapshot_keep: Annotated[int, Field(ge=1, le=1000)] = 7
    snapshot_compression: Literal["zstd", "gzip"] = "zstd"
    snapshot_poll_seconds: Annotated[float, Field(gt=0)] = 30.0
    jobs_topic: str = "askbase-jobs"

    # --- knowledge base --------------------------------------------------------------------------
    sources: Annotated[list[Source], NoDecode] = Field(default_factory=list)
    crawl_concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    crawl_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    crawl_retries: Annotated[int, Field(ge=0, le=10)] = 3
    crawl_max_page_bytes: Annotated[int, Field(ge=1024)] = 2_000_000
    crawl_user_agent: str = "askbase-crawler/0.1 (+https://github.com/askbase)"
    chunk_max_chars: Annotated[int, Field(ge=200, le=8000)] = 1200
    chunk_overlap_chars: Annotated[int, Field(ge=0, le=2000)] = 150
    embedder: Literal["minilm-l6-v2"] = "minilm-l6-v2"
    collection: str = "askbase"
    scrape_lease_seconds: Annotated[int, Field(ge=30)] = 1800
    scrape_schedule: str = "*/30 * * * *"
    reconcile_schedule: str = "*/10 * * * *"

    # --- answering -------------------------------------------------------------------------------
    answerer: Literal["extractive", "gemini"] = "extractive"
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    gemini_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 20.0
    retrieval_top_k: Annotated[int, Field(ge=1, le=50)] = 5
    answer_min_score: Annotated[float, Field(ge=0, le=1)] = 0.3
    max_question_chars: Annotated[int, Field(ge=1, le=20_000)] = 2000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 65_536
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 30
    read_rate_limit_per_minute: Annotated[int, Field(ge=1)] | None = None

    # --- web sign-in -----------------------------------------------------------------------------
    session_secret: SecretStr = SecretStr("")
    dev_sign_in: bool = False
    google_client_id: str = ""
    allowed_domain: str = ""
    admin_emails: Annotated[list[str], NoDecode] = Field(default_factory=list)
    conversation_retention_days: Annotated[int, Field(ge=0)] = 365

    # --- feedback and the gaps report ------------------------------------------------------------
    feedback_comment_chars: Annotated[int, Field(ge=1, le=10_000)] = 1000
    gaps_low_support_score: Annotated[float, Field(ge=0, le=1)] = 0.45
    gaps_group_similarity: Annotated[float, Field(gt=0, lt=1)] = 0.3
    gaps_ignore_words: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- bots ------------------------------------------------------------------------------------
    token_key: SecretStr = SecretStr("")
    token_key_secret: str = ""
    qa_url: str = "http://127.0.0.1:8080"
    botrunner_url: str = "http://127.0.0.1:8081"
    telegram_webhook_url: str = "http://127.0.0.1:8082"
    discord_webhook_url: str = "http://127.0.0.1:8083"
    scrape_url: str = ""
    telegram_api_base: str = "https://api.telegram.org"
    discord_api_base: str = "https://discord.com/api/v10"
    worker_push_audience: str = ""
    worker_push_service_account: str = ""
    bot_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    internal_auth: Literal["none", "google-oidc"] = "none"
    service_callers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    control_callers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    reconcile_callers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    scrape_callers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    oidc_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    oidc_issuers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["https://accounts.google.com", "accounts.google.com"]
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _parse_sources(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return []
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at char {exc.pos})") from exc
        return value

    @field_validator(
        "admin_emails",
        "service_callers",
        "control_callers",
        "reconcile_callers",
        "scrape_callers",
        mode="before",
    )
    @classmethod
    def _parse_emails(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("oidc_issuers", "bot_models", "gaps_ignore_words", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("bot_models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"extractive", "gemini"})
        if unknown:
            raise ValueError(f"unknown answerers {unknown}: choose from extractive, gemini")
        return value

    @field_validator("snapshot_prefix")
    @classmethod
    def _prefix_ends_with_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.chunk_overlap_chars >= self.chunk_max_chars:
            raise ValueError("chunk_overlap_chars must be smaller than chunk_max_chars")
        if self.env is not Environment.PRODUCTION and _on_google_cloud():
            # Fail closed: a deployable that lost its ASKBASE_ENV must not come up with dev sign-in
            # allowed and service calls unauthenticated (the local defaults).
            raise ValueError("env must be production on Cloud Run / Cloud Functions (K_SERVICE is set)")
        if self.env is Environment.PRODUCTION:
            # A dev sign-in lets anyone be anyone: production config can never carry it.
            if self.dev_sign_in:
                raise ValueError("dev_sign_in must be false when env=production")
            # Secrets (session secret, token key) are checked by the deployables that use them
            # (require_session_secret, shared.bots.secrets): each process is given only its own.
            if self.internal_auth != "google-oidc":
                raise ValueError("internal_auth must be google-oidc when env=production")
        return self

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def allowed_bot_models(self) -> tuple[str, ...]:
        """The answerers a bot owner may choose: ``bot_models``, or else extractive plus the operator's
        own ``answerer`` (a bot must not reach a paid model the operator never enabled)."""
        chosen = self.bot_models or ["extractive", self.answerer]
        return tuple(dict.fromkeys(chosen))

    def require_session_secret(self) -> str:
        """The cookie-signing key; in production a missing or short one is a :class:`ConfigError`."""
        secret = self.session_secret.get_secret_value()
        if self.is_production and len(secret) < 32:
            raise ConfigError(
                f"invalid askbase configuration:\n  {self.env_name('session_secret')}: must be at least "
                "32 characters when ASKBASE_ENV=production"
            )
        return secret

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field`` (the first alias if it has several)."""
        info = cls.model_fields[field]
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        if isinstance(alias, str):
            return alias
        return ENV_PREFIX + field.upper()


# Cloud Run sets K_SERVICE on every service, and Cloud Functions gen2 run on Cloud Run, so they have it
# too. FUNCTION_TARGET is no marker: functions-framework sets it in its own process, on a laptop too.
GOOGLE_CLOUD_MARKERS = ("K_SERVICE",)


def _on_google_cloud() -> bool:
    return any(os.environ.get(name) for name in GOOGLE_CLOUD_MARKERS)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; raise :class:`ConfigError` naming every bad key."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            field = loc[0] if loc else ""
            key = Settings.env_name(field) if field in Settings.model_fields else ENV_PREFIX + "SETTINGS"
            where = ".".join(loc[1:])
            problems.append(f"{key}{'[' + where + ']' if where else ''}: {err['msg']}")
        raise ConfigError("invalid askbase configuration:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
