"""Hostile input against every HTTP surface, driven by the published OpenAPI descriptions.

Schemathesis generates requests from ``docs/openapi/*.yaml`` — valid ones and, in negative mode,
deliberately invalid ones (wrong types, missing fields, huge numbers, odd unicode) — and sends them to the
real apps (the qa and botrunner Flask apps, the two webhook functions inside functions-framework) on the
emulators. Property: no 5xx ever (503 "try again" excepted where the spec documents it for an outage,
which never happens here), and every rejection of a JSON API is a 4xx with an ``error`` message.
A second layer uses hypothesis directly for what schemathesis cannot reach: validly signed Discord
interactions and correctly authenticated Telegram updates with arbitrary JSON bodies.
"""

from __future__ import annotations

import json
from collections import Counter
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
# Scalars and containers as hostile as JSON gets: control characters, astral unicode, huge numbers.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


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
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if prepare is not None:
            prepare(case)
        response = case.call(app=app)
        tally.check(f"{mode.value} {operation.label} {case.body!r:.120}", response, json_errors)

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

        def signed_in(case: Any) -> None:
            case.headers = {**(case.headers or {}), "X-CSRF-Token": csrf}
            case.cookies = {**(case.cookies or {}), cookie.key: cookie.value}

        tally = Tally()
        _fuzz_schema("qa.yaml", app, tally, prepare=signed_in)
        _fuzz_schema("qa.yaml", app, tally)  # anonymous
    finally:
        live.stop()
    assert tally.problems == [], tally.problems[:10]
    assert tally.total >= 500 and tally.statuses[200] > 0 and tally.statuses[400] > 0
    print(f"qa: {tally.total} requests, statuses {dict(tally.statuses)}")


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

    def as_owner(case: Any) -> None:
        case.headers = {**(case.headers or {}), "X-Askbase-User": "fuzz@example.com"}
        if case.path_parameters and "bot_id" in case.path_parameters and hash(repr(case.body)) % 2:
            case.path_parameters["bot_id"] = bot_id  # half of the calls target the real bot

    tally = Tally()
    _fuzz_schema("botrunner.yaml", app, tally, prepare=as_owner)
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

    def sometimes_real(case: Any) -> None:
        # A third unchanged (unknown bots), a third the real bot with whatever secret was generated,
        # a third the real bot with the right secret: every gate gets exercised.
        pick = hash(repr(case.body)) % 3
        if pick:
            case.path_parameters["bot_id"] = bot_id
        if pick == 2:
            case.headers = {**(case.headers or {}), "X-Telegram-Bot-Api-Secret-Token": secret}

    tally = Tally()
    _fuzz_schema("telegram-webhook.yaml", app, tally, prepare=sometimes_real, json_errors=False)
    client = app.test_client()

    @FUZZ
    @given(body=JSON_VALUES, content_type=st.sampled_from(["application/json", "text/plain", "", "x/y"]))
    def authenticated_garbage(body: Any, content_type: str) -> None:
        response = client.post(
            f"/{bot_id}",
            data=json.dumps(body),
            content_type=content_type,
            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        )
        tally.check(f"garbage {body!r:.100}", _Wrapped(response), json_errors=False)

    authenticated_garbage()
    assert tally.problems == [], tally.problems[:10]
    assert {400, 403, 404} <= set(tally.statuses)
    print(f"telegram: {tally.total} requests, statuses {dict(tally.statuses)}")


@pytest.fixture
def discord_stack(emulators, settings: Settings, monkeypatch: pytest.MonkeyPatch, dc: FakeDiscord):
    cfg = bot_env(monkeypatch, discord_api_base=dc.base_url)
    application = dc.add_application()
    bot_id = register_discord_bot(cfg, application)
    return function_app("discord_interactions"), bot_id, application


def test_discord_interactions_never_5xx(discord_stack) -> None:
    app, bot_id, application = discord_stack

    def sometimes_real(case: Any) -> None:
        if hash(repr(case.body)) % 2:
            case.path_parameters["bot_id"] = bot_id

    tally = Tally()
    _fuzz_schema("discord-interactions.yaml", app, tally, prepare=sometimes_real, json_errors=False)
    assert tally.statuses[200] == 0  # nothing unsigned may get through
    client = app.test_client()

    @FUZZ
    @given(
        body=JSON_VALUES
        | st.fixed_dictionaries(
            {
                "type": st.integers(-5, 10),
                "data": JSON_VALUES,
                "id": st.text(max_size=30),
                "token": st.text(max_size=30),
            }
        )
    )
    def signed_garbage(body: Any) -> None:
        raw = json.dumps(body).encode()
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
