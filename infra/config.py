"""Stack configuration: every knob ``pulumi config set`` can turn, read once into a typed object.

Keys live in two namespaces: ``gcp:project`` / ``gcp:region`` (shared with the provider, so one setting
drives both) and ``askbase:*`` for everything else. ``Pulumi.dev.yaml.example`` lists them all.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pulumi

from infra.commands import THREADS


@dataclass(frozen=True)
class InfraConfig:
    """The resolved stack configuration. Defaults are the sizes ``docs/deploy.md`` prices."""

    project: str
    region: str = "europe-west1"
    firestore_location: str = ""  # empty = same as region
    bucket_name: str = ""  # empty = "<project>-askbase-kb" (bucket names are global)
    sources: tuple[dict[str, Any], ...] = ()
    scrape_schedule: str = "*/30 * * * *"
    reconcile_schedule: str = "*/10 * * * *"
    schedule_time_zone: str = "Etc/UTC"
    answerer: str = "extractive"
    gemini_model: str = "gemini-2.5-flash"
    # Refusal threshold of qa's answers (ASKBASE_ANSWER_MIN_SCORE): re-tuned with `askbase eval`.
    answer_min_score: float = 0.3
    google_client_id: str = ""
    allowed_domain: str = ""
    admin_emails: tuple[str, ...] = ()
    conversation_retention_days: int = 365
    # Words left out of questions before the gaps report groups them (ASKBASE_GAPS_IGNORE_WORDS).
    gaps_ignore_words: tuple[str, ...] = ()
    snapshot_keep: int = 7
    snapshot_compression: str = "zstd"
    scrape_lease_seconds: int = 1800
    backup_retention_days: int = 7
    # Images: a prebuilt reference skips the build for that service. Otherwise ``image_builder`` says
    # who builds: "docker" (this machine), "cloudbuild" (Cloud Build in the project, no Docker
    # needed) or "auto" (Docker when a daemon with buildx answers, else Cloud Build).
    qa_image: str = ""
    botrunner_image: str = ""
    image_builder: str = "auto"
    # Sizing. qa holds the Chroma index and the MiniLM model in memory: 2Gi; botrunner is a thin
    # HTTP relay: 512Mi. Concurrency: as many requests at once as an instance has threads (THREADS).
    qa_memory: str = "2Gi"
    qa_cpu: str = "1"
    qa_concurrency: int = THREADS["qa"]
    qa_max_instances: int = 3
    botrunner_memory: str = "512Mi"
    botrunner_cpu: str = "1"
    botrunner_concurrency: int = THREADS["botrunner"]
    botrunner_max_instances: int = 3
    webhook_memory: str = "512Mi"
    scrape_memory: str = "2Gi"
    scrape_cpu: str = "1"
    # Secrets given by the operator instead of generated (``pulumi config set --secret``).
    token_key: pulumi.Output[str] | None = field(default=None, compare=False)
    session_secret: pulumi.Output[str] | None = field(default=None, compare=False)
    # Older token keys that still decrypt during a key rotation (comma-separated), botrunner's only.
    previous_token_keys: pulumi.Output[str] | None = field(default=None, compare=False)

    @property
    def kb_bucket(self) -> str:
        return self.bucket_name or f"{self.project}-askbase-kb"

    @property
    def sources_bucket(self) -> str:
        return f"{self.project}-askbase-sources"

    @property
    def db_location(self) -> str:
        return self.firestore_location or self.region

    @property
    def scrape_timeout_seconds(self) -> int:
        # A run must end before its lease does, or a second run could take the lease over while the
        # first still writes. Gen2 HTTP functions allow at most 3600 s.
        return min(self.scrape_lease_seconds, 3600)


# Every askbase:* key load_config reads (tests hold Pulumi.dev.yaml.example and docs/deploy.md to it).
KNOWN_KEYS: frozenset[str] = frozenset(
    {
        "project", "region", "firestoreLocation", "bucketName", "sources", "scrapeSchedule",
        "reconcileSchedule", "scheduleTimeZone", "answerer", "geminiModel", "answerMinScore",
        "googleClientId", "allowedDomain", "adminEmails", "conversationRetentionDays", "gapsIgnoreWords",
        "snapshotKeep", "snapshotCompression", "scrapeLeaseSeconds", "backupRetentionDays", "image",
        "qaImage", "botrunnerImage", "imageBuilder", "qaMemory", "qaCpu", "qaConcurrency", "qaMaxInstances",
        "botrunnerMemory", "botrunnerCpu", "botrunnerConcurrency", "botrunnerMaxInstances",
        "webhookMemory", "scrapeMemory", "scrapeCpu", "tokenKey", "sessionSecret", "previousTokenKeys",
    }
)  # fmt: skip

# Keys that hold secrets: accepted only as secret config values (``pulumi config set --secret``), which
# Pulumi.<stack>.yaml keeps encrypted; a plain one would sit there readable by anyone with the file.
SECRET_KEYS: tuple[str, ...] = ("tokenKey", "sessionSecret", "previousTokenKeys")


def _list(cfg: pulumi.Config, key: str) -> tuple[Any, ...]:
    raw = cfg.get(key)
    if raw is None:
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        # A plain comma-separated string is accepted for the lists of words (e-mails, ignore words).
        value = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ValueError(f"askbase:{key} must be a list, got {type(value).__name__}")
    return tuple(value)


def _words(cfg: pulumi.Config, key: str) -> tuple[str, ...]:
    """A list of words (JSON list or comma-separated); the app reads them back comma-separated, so a
    word may not contain a comma."""
    words = tuple(str(w).strip() for w in _list(cfg, key) if str(w).strip())
    if any("," in w for w in words):
        raise ValueError(f"askbase:{key}: a word may not contain a comma")
    return words


# Cloud Run's second-generation execution environment (infra/components/services.py pins it) needs at
# least 512 MiB per instance; the first generation took 128 MiB, so an older stack may ask for less.
SERVICE_MIN_MEMORY_MIB = 512
# Cloud Run's memory units (Kubernetes quantities; no unit is bytes), in MiB.
_MEMORY_UNITS = {
    "": 1 / 1024**2,
    "Ki": 1 / 1024,
    "Mi": 1,
    "Gi": 1024,
    "k": 1000 / 1024**2,
    "M": 1000**2 / 1024**2,
    "G": 1000**3 / 1024**2,
}


def _service_memory(key: str, value: str) -> str:
    """``value`` if it is a Cloud Run memory size of at least :data:`SERVICE_MIN_MEMORY_MIB`."""
    number = value.rstrip("KkMGi")
    unit = value[len(number) :]
    try:
        mib = float(number) * _MEMORY_UNITS[unit]
    except (KeyError, ValueError):
        raise ValueError(f"askbase:{key} must be a size like 512Mi or 2Gi, got {value!r}") from None
    if mib < SERVICE_MIN_MEMORY_MIB:
        raise ValueError(
            f"askbase:{key} must be at least {SERVICE_MIN_MEMORY_MIB}Mi (Cloud Run's second-generation "
            f"execution environment), got {value}"
        )
    return value


# Stack key -> the ``shared.config.Settings`` field it becomes in a deployable's environment
# (``infra/envvars.py`` names the variable). load_config holds each value to that field's rule, so
# a value the app refuses at start is refused by ``pulumi up`` instead of failing every scheduled
# run; ``tests/test_infra_config.py`` holds both sides to the same values (infra imports no app code).
SETTINGS_FIELDS: dict[str, str] = {
    "bucketName": "bucket",
    "sources": "sources",
    "scrapeSchedule": "scrape_schedule",
    "scheduleTimeZone": "schedule_time_zone",
    "scrapeLeaseSeconds": "scrape_lease_seconds",
    "answerer": "answerer",
    "geminiModel": "gemini_model",
    "answerMinScore": "answer_min_score",
    "googleClientId": "google_client_id",
    "allowedDomain": "allowed_domain",
    "adminEmails": "admin_emails",
    "conversationRetentionDays": "conversation_retention_days",
    "gapsIgnoreWords": "gaps_ignore_words",
    "snapshotKeep": "snapshot_keep",
    "snapshotCompression": "snapshot_compression",
    "tokenKey": "token_key",
    "sessionSecret": "session_secret",
    "previousTokenKeys": "token_keys_previous",
}

# shared.config.Source's rules, restated.
SOURCE_KINDS = ("sitemap", "crawl", "feed")
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SOURCE_MAX_PAGES = (1, 100_000)
SNAPSHOT_KEEP = (1, 1000)
MIN_SCRAPE_LEASE_SECONDS = 30
MIN_SESSION_SECRET_CHARS = 32  # Settings.require_session_secret, in production
TOKEN_KEY_BYTES = 32  # shared.bots.secrets: AES-256-GCM


def _integer(value: Any) -> int | None:
    """``value`` as Settings coerces an integer (``7``, ``"7"``, ``7.0``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                value = float(value.strip())
            except ValueError:
                return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _sources(cfg: pulumi.Config) -> tuple[dict[str, Any], ...]:
    """``askbase:sources``, each held to ``shared.config.Source``: the scrape function would refuse
    its whole configuration, on every scheduled run, for one bad source."""
    sources = _list(cfg, "sources")
    for n, src in enumerate(sources):
        where = f"askbase:sources[{n}]"
        if not isinstance(src, dict) or not {"name", "kind", "url"} <= set(src):
            raise ValueError(f"{where} needs name, kind and url")
        name, kind, url = src["name"], src["kind"], src["url"]
        if not isinstance(name, str) or not _SOURCE_NAME.fullmatch(name):
            raise ValueError(f"{where}.name must be 1-64 letters, digits, '_', '.' or '-', got {name!r}")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"{where}.kind must be sitemap, crawl or feed, got {kind!r}")
        if not isinstance(url, str) or not re.match(r"https?://", url):
            raise ValueError(f"{where}.url must start with http:// or https://, got {url!r}")
        try:  # the rule of Settings' Source.url (shared/config.py, _web_address)
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
        except ValueError:
            raise ValueError(f"{where}.url is not an http(s) URL, got {url!r}") from None
        if not parts.hostname:
            raise ValueError(f"{where}.url has no host, got {url!r}")
        for key in ("include", "exclude"):
            patterns = src.get(key, [])
            if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"{where}.{key} must be a list of regexes, got {patterns!r}")
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{where}.{key}: {pattern!r} is not a valid regex ({exc})") from None
        if "max_pages" in src:
            pages, (lo, hi) = _integer(src["max_pages"]), SOURCE_MAX_PAGES
            if pages is None or not lo <= pages <= hi:
                raise ValueError(f"{where}.max_pages must be an integer {lo}..{hi}, got {src['max_pages']!r}")
    return sources


def _secret(cfg: pulumi.Config, key: str) -> str | None:
    """A secret key's value, if set; refused when it was set without ``--secret``. The value never
    appears in a message."""
    value = cfg.get(key)
    if value is None:
        return None
    if not pulumi.runtime.is_config_secret(cfg.full_key(key)):
        raise ValueError(
            f"askbase:{key} is stored in plain text in Pulumi.<stack>.yaml: store it encrypted with "
            f"`pulumi config set --secret askbase:{key} <value>` (that replaces the plain value; if the "
            "file was shared or committed, treat the value as leaked and use a new one)"
        )
    return value


def _check_token_key(encoded: str, where: str) -> None:
    """``encoded`` is base64 of 32 bytes, as botrunner decodes it (standard or URL-safe alphabet)."""
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        try:
            key = base64.urlsafe_b64decode(encoded)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where} must be base64 (of 32 random bytes); it is not base64") from None
    if len(key) != TOKEN_KEY_BYTES:
        raise ValueError(
            f"{where} must be base64 of {TOKEN_KEY_BYTES} random bytes; it decodes to {len(key)}"
        )


def _token_key(cfg: pulumi.Config) -> pulumi.Output[str] | None:
    """The operator's token key, if given: base64 of 32 bytes."""
    value = _secret(cfg, "tokenKey")
    if value is None:
        return None
    _check_token_key(value.strip(), "askbase:tokenKey")
    return pulumi.Output.secret(value)


def _previous_token_keys(cfg: pulumi.Config) -> pulumi.Output[str] | None:
    """The older token keys botrunner still decrypts with during a rotation, if given: comma-separated,
    each checked like ``tokenKey`` (an error names its position). None when the list is empty."""
    value = _secret(cfg, "previousTokenKeys")
    keys = [part.strip() for part in (value or "").split(",") if part.strip()]
    if not keys:
        return None
    for n, key in enumerate(keys):
        _check_token_key(key, f"askbase:previousTokenKeys[{n}]")
    return pulumi.Output.secret(",".join(keys))


def _session_secret(cfg: pulumi.Config) -> pulumi.Output[str] | None:
    """The operator's session secret, if given: qa refuses to start with fewer than 32 characters."""
    value = _secret(cfg, "sessionSecret")
    if value is None:
        return None
    if len(value) < MIN_SESSION_SECRET_CHARS:
        raise ValueError(
            f"askbase:sessionSecret must be at least {MIN_SESSION_SECRET_CHARS} characters, "
            f"got {len(value)} (e.g. openssl rand -base64 48)"
        )
    return pulumi.Output.secret(value)


def _concurrency(key: str, service: str, value: int | None, raw: str | None) -> int:
    """A Cloud Run concurrency for ``service``: 1 up to the threads serving an instance (``THREADS``).
    More would not be served sooner: a gthread gunicorn queues the rest inside the instance, where
    they wait on the request timeout (a push on Pub/Sub's ack deadline) while Cloud Run counts them
    as served and starts no other instance."""
    limit = THREADS[service]
    if value is None or not 1 <= value <= limit:
        raise ValueError(
            f"askbase:{key} must be an integer 1..{limit}, the threads serving each {service} instance "
            f"(more requests would queue inside it), got {raw!r}"
        )
    return value


def _time_zone(value: str) -> str:
    """An IANA time zone name: Cloud Scheduler reads the crons in it, qa shows the next run in it.
    UTC is known without a time zone database, as in shared/config.py (the default must never depend
    on the deploying machine having one)."""
    if value in ("UTC", "Etc/UTC"):
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            "askbase:scheduleTimeZone must be an IANA time zone such as Europe/Berlin or Etc/UTC, "
            f"got {value!r}"
        ) from None
    return value


def load_config() -> InfraConfig:
    """Read the stack's configuration; raise ``ValueError`` naming the key on a bad value."""
    gcp = pulumi.Config("gcp")
    cfg = pulumi.Config("askbase")
    project = gcp.get("project") or cfg.get("project")
    if not project:
        raise ValueError("set the GCP project: pulumi config set gcp:project YOUR_PROJECT")
    defaults = InfraConfig(project=project)

    def s(key: str, default: str) -> str:
        return cfg.get(key) or default

    def i(key: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        raw = cfg.get(key)
        value = default if raw is None else _integer(raw)
        if value is None or (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"{lo}..{hi}" if hi is not None else f"at least {lo}" if lo is not None else ""
            raise ValueError(f"askbase:{key} must be an integer {bounds}".rstrip() + f", got {raw!r}")
        return value

    def f(key: str, default: float, lo: float, hi: float) -> float:
        raw = cfg.get(key)
        try:
            value = default if raw is None else float(raw)
        except ValueError:
            value = float("nan")
        if not lo <= value <= hi:  # NaN fails too
            raise ValueError(f"askbase:{key} must be a number {lo:g}..{hi:g}, got {raw!r}")
        return value

    def concurrency(key: str, service: str) -> int:
        raw = cfg.get(key)
        return _concurrency(key, service, THREADS[service] if raw is None else _integer(raw), raw)

    sources = _sources(cfg)
    answerer = s("answerer", defaults.answerer)
    if answerer not in ("extractive", "gemini"):
        raise ValueError("askbase:answerer must be extractive or gemini")
    compression = s("snapshotCompression", defaults.snapshot_compression)
    if compression not in ("zstd", "gzip"):
        raise ValueError("askbase:snapshotCompression must be zstd or gzip")
    backup_days = i("backupRetentionDays", defaults.backup_retention_days)
    if not 1 <= backup_days <= 7:
        # Firestore keeps daily backups for at most 7 days (weekly ones up to 14 weeks).
        raise ValueError("askbase:backupRetentionDays must be 1..7 for daily backups")
    image = cfg.get("image") or ""
    image_builder = s("imageBuilder", defaults.image_builder)
    if image_builder not in ("auto", "docker", "cloudbuild"):
        raise ValueError("askbase:imageBuilder must be auto, docker or cloudbuild")
    return InfraConfig(
        project=project,
        region=gcp.get("region") or s("region", defaults.region),
        firestore_location=s("firestoreLocation", ""),
        bucket_name=s("bucketName", ""),
        sources=sources,
        scrape_schedule=s("scrapeSchedule", defaults.scrape_schedule),
        reconcile_schedule=s("reconcileSchedule", defaults.reconcile_schedule),
        schedule_time_zone=_time_zone(s("scheduleTimeZone", defaults.schedule_time_zone)),
        answerer=answerer,
        gemini_model=s("geminiModel", defaults.gemini_model),
        answer_min_score=f("answerMinScore", defaults.answer_min_score, 0.0, 1.0),
        google_client_id=s("googleClientId", ""),
        allowed_domain=s("allowedDomain", ""),
        admin_emails=tuple(str(e).strip().lower() for e in _list(cfg, "adminEmails")),
        conversation_retention_days=i("conversationRetentionDays", defaults.conversation_retention_days, 0),
        gaps_ignore_words=_words(cfg, "gapsIgnoreWords"),
        snapshot_keep=i("snapshotKeep", defaults.snapshot_keep, *SNAPSHOT_KEEP),
        snapshot_compression=compression,
        scrape_lease_seconds=i("scrapeLeaseSeconds", defaults.scrape_lease_seconds, MIN_SCRAPE_LEASE_SECONDS),
        backup_retention_days=backup_days,
        qa_image=cfg.get("qaImage") or image,
        botrunner_image=cfg.get("botrunnerImage") or image,
        image_builder=image_builder,
        qa_memory=_service_memory("qaMemory", s("qaMemory", defaults.qa_memory)),
        qa_cpu=s("qaCpu", defaults.qa_cpu),
        qa_concurrency=concurrency("qaConcurrency", "qa"),
        qa_max_instances=i("qaMaxInstances", defaults.qa_max_instances),
        botrunner_memory=_service_memory("botrunnerMemory", s("botrunnerMemory", defaults.botrunner_memory)),
        botrunner_cpu=s("botrunnerCpu", defaults.botrunner_cpu),
        botrunner_concurrency=concurrency("botrunnerConcurrency", "botrunner"),
        botrunner_max_instances=i("botrunnerMaxInstances", defaults.botrunner_max_instances),
        webhook_memory=s("webhookMemory", defaults.webhook_memory),
        scrape_memory=s("scrapeMemory", defaults.scrape_memory),
        scrape_cpu=s("scrapeCpu", defaults.scrape_cpu),
        token_key=_token_key(cfg),
        session_secret=_session_secret(cfg),
        previous_token_keys=_previous_token_keys(cfg),
    )
