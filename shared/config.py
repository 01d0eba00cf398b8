"""askbase settings: one typed object, read from the environment (and an optional ``.env`` file).

Every field maps to one environment variable, ``ASKBASE_<FIELD>`` unless an alias says otherwise
(``GOOGLE_CLOUD_PROJECT`` is the project everywhere in Google Cloud). ``docs/configuration.md`` documents
each key; ``tests/test_config.py`` fails if a key is added here without being documented there.

Use :func:`get_settings` in entry points. Library code takes the settings (or the few values it needs) as
arguments so it can be tested without touching the environment.

Built on the standard library (dataclasses, ``typing.get_type_hints`` and the ``Annotated`` markers
:class:`Limits`, :class:`Env`, :class:`Parse` and :class:`Check` below), not pydantic-settings: every
process imports this module first, and with pydantic and pydantic-settings importing it and reading the
settings loaded about 210 more modules and cost 24 MB of resident memory and 0.15-0.30 s of CPU, against
2.5 MB and 0.03-0.04 s now (one process per run, runs interleaved before/after on an idle 2-core
machine; qa's workers import pydantic nowhere else). The behaviour is pydantic-settings': names are
matched case-insensitively, the environment wins over ``.env``, unknown variables are ignored, strings
are coerced to each field's type, and one :class:`ConfigError` names every bad key.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

ENV_PREFIX = "ASKBASE_"
ENV_FILE = ".env"


# --- the markers a field's Annotated type carries -------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """Bounds on a number (``ge``/``gt``/``le``/``lt``) or a string (length, a regex it must contain)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class Env:
    """The environment variables that set a field, first found wins, instead of ``ASKBASE_<FIELD>``."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Parse:
    """Turns a string (from the environment) into the field's type before it is checked: the comma
    lists and the JSON list of sources. Raises ValueError with a message for the user."""

    parse: Callable[[str], Any]


@dataclass(frozen=True)
class Check:
    """Runs on the typed value after coercion and limits; returns the value to keep or raises ValueError."""

    check: Callable[[Any], Any]


class SecretStr:
    """A string that never shows itself in ``repr``, ``str`` or a formatted message (logs, tracebacks);
    :meth:`get_secret_value` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself: call it only where the secret is used (signing, decrypting)."""
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._value else "SecretStr('')"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)


NO_SECRET = SecretStr("")  # the default of secret fields: immutable, so one instance serves all


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


class ConfigError(RuntimeError):
    """Raised when the environment holds a bad setting; the message names the key."""


class _Invalid(ValueError):
    """Bad values found while coercing: each is (where inside the value, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{where}: {msg}" if where else msg for where, msg in problems))
        self.problems = problems

    def inside(self, name: str) -> list[tuple[str, str]]:
        """The problems as seen from the value holding this one under ``name`` (a field, an index)."""
        return [(f"{name}.{where}" if where else name, msg) for where, msg in self.problems]


@dataclass(frozen=True)
class FieldInfo:
    """What ``model_fields`` holds per field (the part of pydantic's FieldInfo askbase uses)."""

    name: str
    annotation: Any  # the type without its Annotated markers (SecretStr, int, list[str], ...)
    markers: tuple[Any, ...]
    default_value: Any = dataclasses.MISSING
    default_factory: Callable[[], Any] | None = None

    @property
    def default(self) -> Any:
        """The default value (a fresh one for list fields)."""
        return self.default_factory() if self.default_factory is not None else self.default_value

    @property
    def required(self) -> bool:
        return self.default_factory is None and self.default_value is dataclasses.MISSING

    @property
    def env_names(self) -> tuple[str, ...]:
        for marker in self.markers:
            if isinstance(marker, Env):
                return marker.names
        return (ENV_PREFIX + self.name.upper(),)


def _fields_of(cls: type) -> dict[str, FieldInfo]:
    """name → FieldInfo of a dataclass, markers split from the type (resolved once, at import)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, FieldInfo] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        markers: tuple[Any, ...] = ()
        if typing.get_origin(hint) is Annotated:
            markers = tuple(hint.__metadata__)
            hint = hint.__origin__
        factory = None if f.default_factory is dataclasses.MISSING else f.default_factory
        out[f.name] = FieldInfo(f.name, hint, markers, f.default, factory)
    return out


# --- coercion: strings (or typed values) to a field's type ----------------------------------------
_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _choices(values: Iterable[Any]) -> str:
    return ", ".join(repr(str(v)) for v in values)


def _coerce(value: Any, tp: Any, markers: tuple[Any, ...] = ()) -> Any:
    """``value`` as type ``tp`` with its markers applied, or :class:`_Invalid`."""
    if typing.get_origin(tp) is Annotated:
        markers = (*tp.__metadata__, *markers)
        tp = tp.__origin__
    if isinstance(value, str):
        for marker in markers:
            if isinstance(marker, Parse):
                value = _validated(marker.parse, value)
    value = _to_type(value, tp)
    for marker in markers:
        if isinstance(marker, Limits) and value is not None:
            _check_limits(value, marker)
    for marker in markers:
        if isinstance(marker, Check):
            value = _validated(marker.check, value)
    return value


def _validated(step: Callable[[Any], Any], value: Any) -> Any:
    """``step(value)``, its ValueError reported as :class:`_Invalid`."""
    try:
        return step(value)
    except ValueError as exc:
        raise _Invalid([("", str(exc))]) from None


def _to_type(value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]  # askbase uses only `X | None`
        return _coerce(value, inner)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        raise _Invalid([("", f"must be one of {_choices(allowed)}, not {_shown(value)}")])
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise _Invalid([("", f"must be a list, not {_shown(value)}")])
        items, problems = [], []
        for i, item in enumerate(value):
            try:
                items.append(_coerce(item, item_type))
            except _Invalid as exc:
                problems += exc.inside(str(i))
        if problems:
            raise _Invalid(problems)
        return items
    if tp is SecretStr:
        if isinstance(value, SecretStr):
            return value
        if isinstance(value, str):
            return SecretStr(value)
        raise _Invalid([("", "must be a string")])  # never show a secret's value
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            raise _Invalid(
                [("", f"must be one of {_choices(m.value for m in tp)}, not {_shown(value)}")]
            ) from None
    if tp is bool:
        return _to_bool(value)
    if tp is int:
        return _to_int(value)
    if tp is float:
        return _to_float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid([("", f"must be a string, not {_shown(value)}")])
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(tp, value)
        raise _Invalid([("", f"must be an object, not {_shown(value)}")])
    raise TypeError(f"shared.config cannot coerce to {tp!r}")  # a field type this module lacks


def _to_bool(value: Any) -> bool:
    # pydantic's words, case-insensitive, surrounding spaces ignored.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _Invalid([("", f"must be a boolean (true/false, yes/no, on/off, 1/0), not {_shown(value)}")])


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number: float | None = None
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())  # "7.0" is 7, as in pydantic
            except ValueError:
                number = None
    if number is not None and number.is_integer():
        return int(number)
    raise _Invalid([("", f"must be an integer, not {_shown(value)}")])


def _to_float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _Invalid([("", f"must be a number, not {_shown(value)}")])


def _check_limits(value: Any, limits: Limits) -> None:
    problems = []
    if isinstance(value, int | float):
        if limits.ge is not None and not value >= limits.ge:
            problems.append(f"must be at least {limits.ge:g}")
        if limits.gt is not None and not value > limits.gt:
            problems.append(f"must be greater than {limits.gt:g}")
        if limits.le is not None and not value <= limits.le:
            problems.append(f"must be at most {limits.le:g}")
        if limits.lt is not None and not value < limits.lt:
            problems.append(f"must be less than {limits.lt:g}")
    if isinstance(value, str):
        if limits.min_length is not None and len(value) < limits.min_length:
            problems.append(f"must have at least {limits.min_length} characters")
        if limits.max_length is not None and len(value) > limits.max_length:
            problems.append(f"must have at most {limits.max_length} characters")
        if limits.pattern is not None and not re.search(limits.pattern, value):
            problems.append(f"must match {limits.pattern!r}, not {_shown(value)}")
    if problems:
        raise _Invalid([("", "; ".join(problems))])


_Built = typing.TypeVar("_Built")


def _build(cls: type[_Built], data: Mapping[str, Any]) -> _Built:
    """A dataclass from a mapping (a JSON object), every field coerced; unknown keys are ignored.
    Coerced here as well as in the class's own ``__post_init__`` so that a missing field and a bad
    one are reported together."""
    fields: Mapping[str, FieldInfo] = getattr(cls, "model_fields")  # noqa: B009 (set after the class)
    values, problems = {}, []
    for name, info in fields.items():
        if name not in data:
            if info.required:
                problems.append((name, "is required"))
            continue
        try:
            values[name] = _coerce(data[name], info.annotation, info.markers)
        except _Invalid as exc:
            problems += exc.inside(name)
    if problems:
        raise _Invalid(problems)
    return cls(**values)


def _regexes(value: list[str]) -> list[str]:
    """URL patterns that compile: a bad one would otherwise fail the crawl of its source on every run."""
    for n, pattern in enumerate(value):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {n} ({_shown(pattern)}) is not a valid regex: {exc}") from None
    return value


def _web_address(value: str) -> str:
    """A start URL the crawler can fetch: http(s) with a host and a numeric port. ``https://``,
    ``https://host:8o8o/`` or ``https://[host/`` would otherwise fail every scheduled run of the source
    (the rule of ``shared.knowledge.urls.normalize_url``, which the crawler applies)."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise ValueError(f"{_shown(value)} is not an http(s) URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{_shown(value)} is not an http(s) URL with a host")
    return value


# --- sources ----------------------------------------------------------------------------------------
@dataclass
class Source:
    """One place the knowledge base is built from: a website, a GitBook space or a blog."""

    model_fields: ClassVar[Mapping[str, FieldInfo]]

    name: Annotated[str, Limits(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+\Z")]
    kind: SourceKind
    url: Annotated[str, Limits(pattern=r"^https?://"), Check(_web_address)]
    # Regexes: a URL must match one of ``include`` if given; a URL matching one of ``exclude`` is skipped.
    include: Annotated[list[str], Check(_regexes)] = field(default_factory=list)
    exclude: Annotated[list[str], Check(_regexes)] = field(default_factory=list)
    max_pages: Annotated[int, Limits(ge=1, le=100_000)] = 500

    def __post_init__(self) -> None:
        # Built in code (tests, the file corpus) as well as from JSON: check and coerce either way.
        problems = []
        for name, info in type(self).model_fields.items():
            try:
                setattr(self, name, _coerce(getattr(self, name), info.annotation, info.markers))
            except _Invalid as exc:
                problems += exc.inside(name)
        if problems:
            raise _Invalid(problems)

    def model_dump_json(self) -> str:
        """The source as the JSON object ``ASKBASE_SOURCES`` holds (a list of these)."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))


Source.model_fields = _fields_of(Source)


# --- parsers and checks of Settings fields ------------------------------------------------------------
def _parse_sources(value: str) -> Any:
    value = value.strip()
    if not value:
        return []
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at char {exc.pos})") from exc


def _parse_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _parse_emails(value: str) -> list[str]:
    return [part.lower() for part in _parse_list(value)]


def _known_models(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - {"extractive", "gemini"})
    if unknown:
        raise ValueError(f"unknown answerers {unknown}: choose from extractive, gemini")
    return value


def _prefix_ends_with_slash(value: str) -> str:
    return value if value.endswith("/") else value + "/"


UTC_ZONES = ("UTC", "Etc/UTC")  # known without a time zone database


def _time_zone(value: str) -> str:
    """An IANA time zone name (``Europe/Berlin``), as Cloud Scheduler takes it. UTC needs no database:
    every deployable loads this field, and only qa's image must carry one (``tzdata``)."""
    if value in UTC_ZONES:
        return value
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {_shown(value)}: use an IANA name such as Europe/Berlin"
        ) from None
    return value


CommaList = Annotated[list[str], Parse(_parse_list)]
EmailList = Annotated[list[str], Parse(_parse_emails)]


# --- the .env file --------------------------------------------------------------------------------------
_DOTENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file: ``export`` prefixes, ``#`` comments (whole lines, or after
    a space on an unquoted value), single-quoted values taken literally, double-quoted ones with ``\\n``,
    ``\\t``, ``\\"`` and ``\\\\`` escapes. No variable interpolation, no values spanning lines."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _DOTENV_LINE.match(line)
        if match is None or line.lstrip().startswith("#"):
            continue
        key, raw = match.groups()
        if raw[:1] == "'" and raw.count("'") >= 2:
            value = raw[1 : raw.index("'", 1)]
        elif raw[:1] == '"' and len(raw) >= 2:
            value, i = [], 1
            while i < len(raw) and raw[i] != '"':
                if raw[i] == "\\" and i + 1 < len(raw):
                    value.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                    i += 2
                else:
                    value.append(raw[i])
                    i += 1
            value = "".join(value)
        else:
            value = re.split(r"\s+#", raw, maxsplit=1)[0].rstrip()
        out[key] = value
    return out


# --- settings -----------------------------------------------------------------------------------------
@dataclass(init=False)
class Settings:
    """All of askbase's knobs. Defaults suit the local stack; production sets the rest.

    ``Settings(**overrides)`` reads, for each field: an override by field name, else its environment
    variable (names compared case-insensitively), else the ``.env`` file in the working directory (not
    read when ``_env_file=None``), else the default; then coerces and checks every field and raises one
    :class:`ConfigError` naming every bad key."""

    model_fields: ClassVar[Mapping[str, FieldInfo]]

    # --- where we run -------------------------------------------------------------------------
    env: Environment = Environment.LOCAL
    project_id: Annotated[str, Env(("GOOGLE_CLOUD_PROJECT", "ASKBASE_PROJECT_ID"))] = "askbase-local"
    region: str = "europe-west1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: str = "/tmp/askbase"

    # --- storage and messaging -------------------------------------------------------------------
    bucket: str = "askbase-local"
    snapshot_prefix: Annotated[str, Check(_prefix_ends_with_slash)] = "snapshots/"
    snapshot_keep: Annotated[int, Limits(ge=1, le=1000)] = 7
    snapshot_compression: Literal["zstd", "gzip"] = "zstd"
    snapshot_poll_seconds: Annotated[float, Limits(gt=0)] = 30.0
    jobs_topic: str = "askbase-jobs"

    # --- knowledge base --------------------------------------------------------------------------
    sources: Annotated[list[Source], Parse(_parse_sources)] = field(default_factory=list)
    crawl_concurrency: Annotated[int, Limits(ge=1, le=64)] = 8
    crawl_timeout_seconds: Annotated[float, Limits(gt=0, le=300)] = 15.0
    crawl_retries: Annotated[int, Limits(ge=0, le=10)] = 3
    crawl_max_page_bytes: Annotated[int, Limits(ge=1024)] = 2_000_000
    crawl_user_agent: str = "askbase-crawler/0.1 (+https://github.com/askbase)"
    chunk_max_chars: Annotated[int, Limits(ge=200, le=8000)] = 1200
    chunk_overlap_chars: Annotated[int, Limits(ge=0, le=2000)] = 150
    embedder: Literal["minilm-l6-v2"] = "minilm-l6-v2"
    collection: str = "askbase"
    scrape_lease_seconds: Annotated[int, Limits(ge=30)] = 1800
    scrape_schedule: str = "*/30 * * * *"
    # The zone Cloud Scheduler reads scrape_schedule in (infra's askbase:scheduleTimeZone).
    schedule_time_zone: Annotated[str, Check(_time_zone)] = "Etc/UTC"

    # --- answering -------------------------------------------------------------------------------
    answerer: Literal["extractive", "gemini"] = "extractive"
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    gemini_timeout_seconds: Annotated[float, Limits(gt=0, le=120)] = 20.0
    retrieval_top_k: Annotated[int, Limits(ge=1, le=50)] = 5
    answer_min_score: Annotated[float, Limits(ge=0, le=1)] = 0.3
    max_question_chars: Annotated[int, Limits(ge=1, le=20_000)] = 2000
    max_body_bytes: Annotated[int, Limits(ge=1024)] = 65_536
    rate_limit_per_minute: Annotated[int, Limits(ge=1)] = 30
    read_rate_limit_per_minute: Annotated[int, Limits(ge=1)] | None = None

    # --- web sign-in -----------------------------------------------------------------------------
    session_secret: SecretStr = NO_SECRET
    dev_sign_in: bool = False
    google_client_id: str = ""
    allowed_domain: str = ""
    admin_emails: EmailList = field(default_factory=list)
    conversation_retention_days: Annotated[int, Limits(ge=0)] = 365

    # --- feedback and the gaps report ------------------------------------------------------------
    feedback_comment_chars: Annotated[int, Limits(ge=1, le=10_000)] = 1000
    gaps_low_support_score: Annotated[float, Limits(ge=0, le=1)] = 0.45
    gaps_group_similarity: Annotated[float, Limits(gt=0, lt=1)] = 0.3
    gaps_ignore_words: CommaList = field(default_factory=list)

    # --- bots ------------------------------------------------------------------------------------
    token_key: SecretStr = NO_SECRET
    token_key_secret: str = ""
    # Older token keys that still decrypt (comma-separated, each like token_key) during a key rotation;
    # checked where read, as token_key is (shared.bots.secrets.load_previous_keys).
    token_keys_previous: SecretStr = NO_SECRET
    qa_url: str = "http://127.0.0.1:8080"
    botrunner_url: str = "http://127.0.0.1:8081"
    telegram_webhook_url: str = "http://127.0.0.1:8082"
    discord_webhook_url: str = "http://127.0.0.1:8083"
    scrape_url: str = ""
    telegram_api_base: str = "https://api.telegram.org"
    discord_api_base: str = "https://discord.com/api/v10"
    worker_push_audience: str = ""
    worker_push_service_account: str = ""
    bot_models: Annotated[list[str], Parse(_parse_list), Check(_known_models)] = field(default_factory=list)
    internal_auth: Literal["none", "google-oidc"] = "none"
    service_callers: EmailList = field(default_factory=list)
    control_callers: EmailList = field(default_factory=list)
    reconcile_callers: EmailList = field(default_factory=list)
    scrape_callers: EmailList = field(default_factory=list)
    oidc_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    oidc_issuers: CommaList = field(
        default_factory=lambda: ["https://accounts.google.com", "accounts.google.com"]
    )

    def __init__(self, *, _env_file: str | Path | None = ENV_FILE, **overrides: Any) -> None:
        environ = {name.lower(): value for name, value in os.environ.items()}
        dotenv: dict[str, str] = {}
        if _env_file is not None and Path(_env_file).is_file():
            dotenv = {name.lower(): value for name, value in read_env_file(Path(_env_file)).items()}
        problems: list[str] = []
        for name, info in type(self).model_fields.items():
            names = info.env_names
            given = [key for key in (name, *names) if key in overrides]  # by field or variable name
            if given:
                raw: Any = overrides[given[0]]
            else:
                found = [
                    source[n.lower()] for source in (environ, dotenv) for n in names if n.lower() in source
                ]
                raw = found[0] if found else info.default
            try:
                setattr(self, name, _coerce(raw, info.annotation, info.markers))
            except _Invalid as exc:
                problems += [
                    f"{names[0]}{f'[{where}]' if where else ''}: {msg}" for where, msg in exc.problems
                ]
        if not problems:
            problems += [f"{self.env_name(field)}: {msg}" for field, msg in self._broken_rules()]
        if problems:
            raise ConfigError("invalid askbase configuration:\n  " + "\n  ".join(problems))

    def _broken_rules(self) -> list[tuple[str, str]]:
        """Rules across fields, checked once every field is valid: (field, what is wrong) for each
        broken one, so one error names every variable to change."""
        broken = []
        if self.chunk_overlap_chars >= self.chunk_max_chars:
            broken.append(("chunk_overlap_chars", "chunk_overlap_chars must be smaller than chunk_max_chars"))
        if self.env is not Environment.PRODUCTION and _on_google_cloud():
            # Fail closed: a deployable that lost its ASKBASE_ENV must not come up with dev sign-in
            # allowed and service calls unauthenticated (the local defaults).
            broken.append(("env", "env must be production on Cloud Run / Cloud Functions (K_SERVICE is set)"))
        if self.env is Environment.PRODUCTION:
            # A dev sign-in lets anyone be anyone: production config can never carry it.
            if self.dev_sign_in:
                broken.append(("dev_sign_in", "dev_sign_in must be false when env=production"))
            # Secrets (session secret, token key) are checked by the deployables that use them
            # (require_session_secret, shared.bots.secrets): each process is given only its own.
            if self.internal_auth != "google-oidc":
                broken.append(("internal_auth", "internal_auth must be google-oidc when env=production"))
        return broken

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Settings:
        """A shallow copy with ``update`` applied as given, unchecked (as pydantic's ``model_copy``):
        tests and callers derive variants of settings already validated."""
        clone = copy.copy(self)
        for name, value in (update or {}).items():
            if name not in type(self).model_fields:
                raise AttributeError(f"Settings has no field {name!r}")
            setattr(clone, name, value)
        return clone

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
        return cls.model_fields[field].env_names[0]


Settings.model_fields = _fields_of(Settings)

# Cloud Run sets K_SERVICE on every service, and Cloud Functions gen2 run on Cloud Run, so they have it
# too. FUNCTION_TARGET is no marker: functions-framework sets it in its own process, on a laptop too.
GOOGLE_CLOUD_MARKERS = ("K_SERVICE",)


def _on_google_cloud() -> bool:
    return any(os.environ.get(name) for name in GOOGLE_CLOUD_MARKERS)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; raise :class:`ConfigError` naming every bad key."""
    return Settings(**overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
