"""Hostile input against every HTTP surface, driven by the published OpenAPI descriptions.

Schemathesis generates requests from ``docs/openapi/*.yaml`` — valid ones and, in negative mode,
deliberately invalid ones (wrong types, missing fields, huge numbers, odd unicode) — and sends them to the
real apps (the qa and botrunner Flask apps, the two webhook functions inside functions-framework) on the
emulators. Property: no 5xx ever (503 "try again" excepted where the spec documents it for an outage,
which never happens here), and every rejection of a JSON API is a 4xx with an ``error`` message.
A second layer uses hypothesis directly for what schemathesis cannot reach: validly signed Discord
interactions and correctly authenticated Telegram updates with arbitrary JSON bodies, button ids whose
state id is a path or a reserved id, the sign-in forms, and Pub/Sub pushes to the worker.

Both layers also carry what request parsers trip over: ids no Firestore document can have in the path
(``__x__``, ``..``), non-ASCII header and cookie values where secrets are compared, and JSON that
Python's ``json`` cannot read (an integer past 4,300 digits, nesting past the recursion limit). Every
choice is drawn by hypothesis, so the replay policy of ``tests/fuzzing.py`` covers it too.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from services.botrunner.app import create_app as create_botrunner
from shared.bots.registry import BotRegistry
from shared.config import Settings
from tests.bot_stack import bot_settings as bot_env
from tests.bot_stack import function_app, register_discord_bot, register_telegram_bot
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram
from tests.fuzzing import property_settings
from tests.qa_support import fake_live_index, make_app, sign_in

pytestmark = pytest.mark.emulators
pytest_plugins = ["tests.fakes.bot_fixtures"]

SPECS = Path(__file__).resolve().parents[1] / "docs" / "openapi"
FUZZ = property_settings(40, suppress=list(HealthCheck))  # the policy: tests/fuzzing.py


@dataclass(frozen=True)
class RawJson:
    """JSON text ``json.dumps`` cannot write but a client can send: :func:`dumps` puts it in verbatim."""

    text: str


# Past int()'s 4,300 digits json.loads raises a plain ValueError; past ~1,000 levels, RecursionError.
HUGE_INTEGERS = st.integers(min_value=4301, max_value=6000).map(lambda n: RawJson("9" * n))
DEEP_NESTING = st.integers(min_value=1000, max_value=3000).map(lambda n: RawJson("[" * n + "]" * n))
# Valid JSON ("\\ud800", sent as that escape) that decodes to a str no UTF-8 encoder takes.
LONE_SURROGATES = st.sampled_from(["\ud800", "ask \udfff", "\udbff\udbff"])
# Scalars and containers as hostile as JSON gets: control characters, astral unicode, huge numbers,
# lone surrogates.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | HUGE_INTEGERS
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=50)
    | LONE_SURROGATES,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10) | LONE_SURROGATES, children, max_size=5)
    ),
    max_leaves=20,
)
JSON_BODIES = JSON_VALUES | DEEP_NESTING
# Ids a request can name that no document has: reserved by Firestore (__.*__), path-like, too long,
# or of a shape askbase never makes. (Not "../..": the HTTP client resolves it out of /api/ altogether.)
HOSTILE_IDS = st.sampled_from(
    ["__x__", "__", "____", "__bot__", "__.__", ".", "..", "...", "a/b", "%2e%2e", "é", "x" * 129]
)
# Header and cookie values past ASCII, where secrets are compared (a WSGI server hands UTF-8 header
# bytes over as latin-1 text: non-ASCII either way).
NON_ASCII = st.text(
    # Letters, digits, punctuation and symbols: a control character or a line separator is refused by
    # the HTTP client itself, before the app sees it.
    alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x2FFF, categories=("L", "N", "P", "S")),
    min_size=1,
    max_size=20,
)
# Button ids (Discord custom_id, Telegram callback data): ours with a state id that is a path or a
# reserved id, and ones that are not ours at all.
CUSTOM_IDS = st.builds(
    "ab:{}:{}".format, st.sampled_from(["src", "up", "down", "zz"]), HOSTILE_IDS | st.text(max_size=40)
) | st.sampled_from(["ab:up:a/b", "ab:src:../..", "ab:down:__x__", "ab:up:" + "0f" * 16 + "/x"])


@dataclass(frozen=True)
class Twist:
    """What one schemathesis request carries besides what the OpenAPI description generated: maybe an
    id no document can have for every path id, maybe a non-ASCII value for the route's secret header
    or cookie."""

    path_id: str | None
    text: str | None

    def ids_in(self, case: Any) -> None:
        if self.path_id is not None and case.path_parameters:
            for name in case.path_parameters:
                case.path_parameters[name] = self.path_id


# Mostly untouched: the generated request still has to exercise the routes themselves.
TWISTS = st.builds(Twist, st.none() | st.none() | HOSTILE_IDS, st.none() | st.none() | NON_ASCII)


def dumps(value: Any) -> bytes:
    """``value`` as JSON, with :class:`RawJson` parts written verbatim."""

    def text(item: Any) -> str:
        if isinstance(item, RawJson):
            return item.text
        if isinstance(item, dict):
            return "{" + ",".join(f"{json.dumps(str(k))}:{text(v)}" for k, v in item.items()) + "}"
        if isinstance(item, list):
            return "[" + ",".join(text(v) for v in item) + "]"
        return json.dumps(item)

    return text(value).encode()


class Tally:
    """What the fuzzers sent and got, for the assertions and the summary line."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.problems: list[str] = []

    def check(self, label: str, response: Any, json_errors: bool) -> None:
        status = response.status_code
        self.statuses[status] += 1
        if status >= 500:
            self.problems.append(f"{label}: {status} {response.text[:200]!r}")
        elif status >= 400 and json_errors:
            try:
                body = json.loads(response.text)
            except ValueError:
                body = None
            if not isinstance(body, dict) or not str(body.get("error", "")).strip():
                self.problems.append(f"{label}: {status} without an error message: {response.text[:200]!r}")

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def _fuzz_schema(spec: str, app: Any, tally: Tally, prepare: Any = None, json_errors: bool = True) -> None:
    schema = schemathesis.openapi.from_path(SPECS / spec)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, app, tally, prepare, json_errors)


def _fuzz_operation(
    operation: Any, mode: Any, app: Any, tally: Tally, prepare: Any, json_errors: bool
) -> None:
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode), twist=TWISTS)
    def run(case: Any, twist: Twist) -> None:
        if prepare is not None:
            prepare(case, twist)
        else:
            twist.ids_in(case)
        response = case.call(app=app)
        label = f"{mode.value} {operation.label} {case.path_parameters!r:.80} {case.body!r:.120}"
        tally.check(label, response, json_errors)

    try:
        run()
    except Unsatisfiable:
        # An operation with no inputs (GET /healthz) has nothing to get wrong in negative mode.
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_the_openapi_descriptions_are_valid() -> None:
    for spec in sorted(SPECS.glob("*.yaml")):
        schema = schemathesis.openapi.from_path(spec)
        operations = [r.ok() for r in schema.get_all_operations()]
        assert operations, spec.name


def test_qa_api_never_5xx(emulators, settings: Settings, tmp_path: Path) -> None:
    live, _ = fake_live_index(tmp_path)
    try:
        app = make_app(settings, live, rate_limit_per_minute=100_000)
        client = app.test_client()
        csrf = sign_in(client, "fuzz@example.com")
        cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
        assert cookie is not None
        # A real conversation so ids sometimes hit something that exists.
        client.post("/api/ask", json={"question": "how do I deploy?"}, headers={"X-CSRF-Token": csrf})

        def signed_in(case: Any, twist: Twist) -> None:
            twist.ids_in(case)
            case.headers = {**(case.headers or {}), "X-CSRF-Token": twist.text or csrf}
            case.cookies = {**(case.cookies or {}), cookie.key: cookie.value}

        tally = Tally()
        _fuzz_schema("qa.yaml", app, tally, prepare=signed_in)
        _fuzz_schema("qa.yaml", app, tally)  # anonymous
        _fuzz_sign_in(app, tally)
    finally:
        live.stop()
    assert tally.problems == [], tally.problems[:10]
    assert tally.total >= 500 and tally.statuses[200] > 0 and tally.statuses[400] > 0
    print(f"qa: {tally.total} requests, statuses {dict(tally.statuses)}")


def _fuzz_sign_in(app: Any, tally: Tally) -> None:
    """The sign-in forms, outside the OpenAPI description: the dev form's CSRF field and header, and
    Google's double-submit cookie and field, with values past ASCII."""
    client = app.test_client()
    client.get("/signin")

    @FUZZ
    @given(
        token=NON_ASCII | st.text(max_size=20),
        header=st.none() | NON_ASCII,
        cookie=NON_ASCII | st.just("abc"),
    )
    def forms(token: str, header: str | None, cookie: str) -> None:
        headers = {"X-CSRF-Token": header} if header is not None else {}
        dev = client.post(
            "/signin/dev", data={"email": "fuzz@example.com", "csrf_token": token}, headers=headers
        )
        tally.check(f"signin/dev {token!r:.60} {header!r:.60}", _Wrapped(dev), json_errors=False)
        client.set_cookie("g_csrf_token", cookie, domain="localhost")
        google = client.post("/signin/google", data={"credential": "x", "g_csrf_token": token})
        tally.check(f"signin/google {cookie!r:.60} {token!r:.60}", _Wrapped(google), json_errors=False)

    forms()


def test_bot_registration_never_5xx(bot_settings: Settings, control, tg: FakeTelegram) -> None:
    app = create_botrunner(bot_settings, control=control, reconcile_on_start=False)
    client = app.test_client()
    token = tg.add_bot(username="fuzz_bot")
    created = client.post(
        "/api/bots",
        json={"platform": "telegram", "name": "Fuzz", "token": token},
        headers={"X-Askbase-User": "fuzz@example.com"},
    )
    assert created.status_code == 201
    bot_id = created.get_json()["id"]

    def as_owner(case: Any, twist: Twist) -> None:
        case.headers = {**(case.headers or {}), "X-Askbase-User": "fuzz@example.com"}
        if case.path_parameters and "bot_id" in case.path_parameters and hash(repr(case.body)) % 2:
            case.path_parameters["bot_id"] = bot_id  # half of the calls target the real bot
        twist.ids_in(case)

    tally = Tally()
    _fuzz_schema("botrunner.yaml", app, tally, prepare=as_owner)

    @FUZZ
    @given(job=JSON_BODIES, envelope=st.booleans())
    def pushes(job: Any, envelope: bool) -> None:
        # Pub/Sub redelivers anything but a 2xx: what can never be a job must be acked, never a 5xx.
        raw = dumps(job)
        if envelope:
            raw = json.dumps({"message": {"data": base64.b64encode(raw).decode(), "messageId": "1"}}).encode()
        response = client.post("/worker/push", data=raw, content_type="application/json")
        tally.check(f"push {raw[:100]!r}", _Wrapped(response), json_errors=False)

    pushes()
    assert tally.problems == [], tally.problems[:10]
    assert tally.statuses[400] > 0 and tally.statuses[200] > 0
    assert token not in json.dumps(
        client.get("/api/bots", headers={"X-Askbase-User": "fuzz@example.com"}).get_json()
    )
    print(f"botrunner: {tally.total} requests, statuses {dict(tally.statuses)}")


@pytest.fixture
def telegram_stack(emulators, settings: Settings, monkeypatch: pytest.MonkeyPatch, tg: FakeTelegram):
    cfg = bot_env(monkeypatch, telegram_api_base=tg.base_url)
    bot_id, _ = register_telegram_bot(cfg, tg)
    secret = BotRegistry.from_settings(cfg).webhook_secret(BotRegistry.from_settings(cfg).get_bot(bot_id))
    return function_app("telegram_webhook"), bot_id, secret


def test_telegram_webhook_never_5xx(telegram_stack) -> None:
    app, bot_id, secret = telegram_stack

    def sometimes_real(case: Any, twist: Twist) -> None:
        # A third unchanged (unknown bots), a third the real bot with whatever secret was generated,
        # a third the real bot with the right secret: every gate gets exercised.
        pick = hash(repr(case.body)) % 3
        if pick:
            case.path_parameters["bot_id"] = bot_id
        if pick == 2:
            case.headers = {**(case.headers or {}), "X-Telegram-Bot-Api-Secret-Token": twist.text or secret}
        twist.ids_in(case)

    tally = Tally()
    _fuzz_schema("telegram-webhook.yaml", app, tally, prepare=sometimes_real, json_errors=False)
    client = app.test_client()

    @FUZZ
    @given(
        body=JSON_BODIES | TELEGRAM_UPDATES,
        content_type=st.sampled_from(["application/json", "text/plain", "", "x/y"]),
    )
    def authenticated_garbage(body: Any, content_type: str) -> None:
        response = client.post(
            f"/{bot_id}",
            data=dumps(body),
            content_type=content_type,
            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        )
        tally.check(f"garbage {body!r:.100}", _Wrapped(response), json_errors=False)

    authenticated_garbage()
    assert tally.problems == [], tally.problems[:10]
    assert {400, 403, 404} <= set(tally.statuses)
    print(f"telegram: {tally.total} requests, statuses {dict(tally.statuses)}")


TELEGRAM_INTS = st.integers(min_value=-(2**70), max_value=2**70) | HUGE_INTEGERS
# Update-shaped, so the fuzz gets past "not an update": messages, and button presses with odd ids.
TELEGRAM_UPDATES = st.fixed_dictionaries(
    {"update_id": st.integers(min_value=0, max_value=2**64) | HUGE_INTEGERS | JSON_VALUES},
    optional={
        "message": st.fixed_dictionaries(
            {
                "chat": st.fixed_dictionaries(
                    {"id": TELEGRAM_INTS | st.booleans(), "type": st.sampled_from(["private", "group"])}
                ),
                "text": st.text(max_size=30),
            },
            optional={"message_id": TELEGRAM_INTS, "from": st.fixed_dictionaries({"id": TELEGRAM_INTS})},
        ),
        "callback_query": st.fixed_dictionaries(
            {
                "id": st.text(min_size=1, max_size=10),
                "data": CUSTOM_IDS,
                "from": st.fixed_dictionaries({"id": TELEGRAM_INTS}),
            }
        ),
    },
)


@pytest.fixture
def discord_stack(emulators, settings: Settings, monkeypatch: pytest.MonkeyPatch, dc: FakeDiscord):
    cfg = bot_env(monkeypatch, discord_api_base=dc.base_url)
    application = dc.add_application()
    bot_id = register_discord_bot(cfg, application)
    return function_app("discord_interactions"), bot_id, application


def test_discord_interactions_never_5xx(discord_stack) -> None:
    app, bot_id, application = discord_stack

    def sometimes_real(case: Any, twist: Twist) -> None:
        if hash(repr(case.body)) % 2:
            case.path_parameters["bot_id"] = bot_id
        if twist.text is not None:
            case.headers = {**(case.headers or {}), "X-Signature-Ed25519": twist.text}
        twist.ids_in(case)

    tally = Tally()
    _fuzz_schema("discord-interactions.yaml", app, tally, prepare=sometimes_real, json_errors=False)
    assert tally.statuses[200] == 0  # nothing unsigned may get through
    client = app.test_client()

    snowflakes = st.from_regex(r"\A[0-9]{17,20}\Z")

    @FUZZ
    @given(
        body=JSON_BODIES
        | st.fixed_dictionaries(
            {
                "type": st.integers(-5, 10),
                "data": JSON_VALUES
                | st.fixed_dictionaries(
                    {"custom_id": CUSTOM_IDS, "name": st.sampled_from(["ask", "mode", "forget"])}
                ),
                "id": st.text(max_size=30) | snowflakes | HUGE_INTEGERS | st.integers(0, 10**40),
                "token": st.text(max_size=30),
            },
            optional={
                "channel_id": snowflakes | HOSTILE_IDS | HUGE_INTEGERS,
                "member": st.fixed_dictionaries(
                    {
                        "permissions": st.text(max_size=10) | st.sampled_from(["²", "8", "9" * 5000]),
                        "user": st.fixed_dictionaries({"id": snowflakes | JSON_VALUES}),
                    }
                ),
            },
        )
    )
    def signed_garbage(body: Any) -> None:
        raw = dumps(body)
        headers = FakeDiscord.sign(application, raw)
        response = client.post(f"/{bot_id}", data=raw, content_type="application/json", headers=headers)
        tally.check(f"signed {body!r:.100}", _Wrapped(response), json_errors=False)

    signed_garbage()
    assert tally.problems == [], tally.problems[:10]
    assert {400, 401} <= set(tally.statuses)
    print(f"discord: {tally.total} requests, statuses {dict(tally.statuses)}")


class _Wrapped:
    """A Flask test response seen through the attributes :class:`Tally` reads."""

    def __init__(self, response: Any) -> None:
        self.status_code = response.status_code
        self.text = response.get_data(as_text=True)
