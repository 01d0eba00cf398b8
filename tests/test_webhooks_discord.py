"""The Discord interactions function: Ed25519, PING, /ask → deferred + job, buttons from Firestore state."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from shared.bots import chat_switch, dedupe
from shared.bots.answer_modes import AnswerMode
from shared.bots.buttons import Action, ButtonStateStore, custom_id, state_id_for_job
from shared.bots.dedupe import PROCESSED_UPDATES
from shared.bots.formatting import SourceRef
from shared.bots.jobs import JobKind, JobPublisher
from shared.bots.lookup import bot_lookup
from shared.bots.platforms import get_platform
from shared.bots.platforms.discord import (
    _SORRY,
    RESPONSE_BUDGET_S,
    TOO_OLD_FEEDBACK,
    TOO_OLD_SOURCES,
    verify_signature,
)
from shared.bots.platforms.discord_api import DiscordClient
from shared.bots.registry import BotReader, BotRegistry
from shared.bots.webhooks import Ingress, build_ingress
from shared.config import Settings
from tests.bot_stack import (
    FIRESTORE_OUTAGES,
    JobTap,
    LoopbackServer,
    bot_settings,
    function_app,
    register_discord_bot,
)
from tests.fakes.discord_api import FakeApplication, FakeDiscord
from tests.fuzzing import property_settings

pytestmark = pytest.mark.emulators


@pytest.fixture
def dc() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def stack(emulators: Any, settings: Settings, dc: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> dict:
    settings = bot_settings(monkeypatch, discord_api_base=dc.base_url)
    app = dc.add_application()
    bot_id = register_discord_bot(settings, app)
    return {
        "settings": settings,
        "app": app,
        "bot_id": bot_id,
        "client": function_app("discord_interactions").test_client(),
        "tap": JobTap(settings),
        "db": BotRegistry.from_settings(settings).db,
    }


def _deliver(stack: dict, interaction: Any, *, bad: bool = False, headers: dict | None = None, bot_id=None):
    body = json.dumps(interaction).encode() if not isinstance(interaction, bytes) else interaction
    app: FakeApplication = stack["app"]
    signed = FakeDiscord.sign(app, body, bad=bad) if headers is None else headers
    return stack["client"].post(
        f"/{bot_id or stack['bot_id']}", data=body, headers={**signed, "Content-Type": "application/json"}
    )


# --- signatures ------------------------------------------------------------------------------------


def test_signature_verification_unit() -> None:
    from nacl.signing import SigningKey

    key = SigningKey.generate()
    public = key.verify_key.encode().hex()
    now = time.time()
    ts = str(int(now))
    body = b'{"type":1}'
    good = key.sign(ts.encode() + body).signature.hex()
    assert verify_signature(public, good, ts, body, now)
    assert not verify_signature(public, good, ts, body + b" ", now)  # body changed
    assert not verify_signature(public, good, str(int(now) + 1), body, now)  # timestamp changed
    assert not verify_signature(public, "zz" * 64, ts, body, now)  # not hex
    assert not verify_signature(public, good[:-2], ts, body, now)  # short
    assert not verify_signature(public, None, ts, body, now)
    assert not verify_signature(public, good, None, body, now)
    assert not verify_signature("not-a-key", good, ts, body, now)
    assert not verify_signature(public, good, ts, body, now + 3600)  # replayed an hour later


def test_ping_is_pong(stack: dict, dc: FakeDiscord) -> None:
    response = _deliver(stack, dc.ping_interaction(stack["app"].id))
    assert response.status_code == 200 and response.get_json() == {"type": 1}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Signature-Timestamp": str(int(time.time()))},
        {"X-Signature-Ed25519": "00" * 64},
        {"X-Signature-Ed25519": "00" * 64, "X-Signature-Timestamp": str(int(time.time()))},
        {"X-Signature-Ed25519": "nothex", "X-Signature-Timestamp": "abc"},
    ],
)
def test_missing_or_bad_signature_headers_are_401(stack: dict, dc: FakeDiscord, headers: dict) -> None:
    assert _deliver(stack, dc.ping_interaction(stack["app"].id), headers=headers).status_code == 401


def test_bad_signature_is_401_even_for_a_valid_interaction(stack: dict, dc: FakeDiscord) -> None:
    response = _deliver(stack, dc.ask_interaction(stack["app"].id, "How?"), bad=True)
    assert response.status_code == 401
    assert stack["tap"].settled() == []


def test_stale_timestamp_is_401(stack: dict, dc: FakeDiscord) -> None:
    body = json.dumps(dc.ping_interaction(stack["app"].id)).encode()
    old = FakeDiscord.sign(stack["app"], body, timestamp=str(int(time.time()) - 3600))
    assert _deliver(stack, body, headers=old).status_code == 401


def test_unknown_bot_is_404_and_telegram_bot_id_is_404(stack: dict, dc: FakeDiscord) -> None:
    assert _deliver(stack, dc.ping_interaction(stack["app"].id), bot_id="nope").status_code == 404


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"type": "1"}', b"{}"])
def test_signed_garbage_is_400(stack: dict, raw: bytes) -> None:
    assert _deliver(stack, raw).status_code == 400


def test_endpoint_passes_discords_own_verification(stack: dict) -> None:
    """Set the interactions endpoint the way the control plane does: Discord probes it first."""
    with LoopbackServer(function_app("discord_interactions")) as server:
        client = DiscordClient(stack["app"].bot_token, base_url=stack["settings"].discord_api_base)
        client.set_interactions_endpoint(f"{server.url}/{stack['bot_id']}")  # raises unless PONG + 401
        assert stack["app"].interactions_endpoint_url == f"{server.url}/{stack['bot_id']}"


# --- /ask ------------------------------------------------------------------------------------------


def test_ask_is_deferred_and_publishes_a_job_with_the_token(stack: dict, dc: FakeDiscord) -> None:
    interaction = dc.ask_interaction(stack["app"].id, "How do I deploy?")
    response = _deliver(stack, interaction)
    assert response.status_code == 200 and response.get_json() == {"type": 5}
    [job] = stack["tap"].pull(expect=1)
    assert job.job_id == f"discord:{stack['bot_id']}:{interaction['id']}"
    assert (job.kind, job.question, job.application_id) == (JobKind.ASK, "How do I deploy?", stack["app"].id)
    assert job.interaction_token == interaction["token"]
    assert job.user == "1000000000000000003" and job.chat_id == "1000000000000000002"
    assert "interaction_token" not in repr(job)
    dedupe_doc = f"discord:{stack['bot_id']}:{interaction['id']}"
    assert stack["db"].collection(PROCESSED_UPDATES).document(dedupe_doc).get().exists


def test_replayed_interaction_publishes_once(stack: dict, dc: FakeDiscord) -> None:
    interaction = dc.ask_interaction(stack["app"].id, "How do I deploy?")
    assert [_deliver(stack, interaction).get_json() for _ in range(5)] == [{"type": 5}] * 5
    assert len(stack["tap"].settled()) == 1


def test_ingress_needs_no_token_key(stack: dict, dc: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    keyless = bot_settings(monkeypatch, token_key="", token_key_secret="")
    assert keyless.token_key.get_secret_value() == "" and not keyless.token_key_secret
    build_ingress(keyless, "discord")  # no TokenKeyError
    stack["client"] = function_app("discord_interactions").test_client()  # built from the keyless settings
    assert _deliver(stack, dc.ping_interaction(stack["app"].id)).get_json() == {"type": 1}
    interaction = dc.ask_interaction(stack["app"].id, "How do I deploy?")
    assert _deliver(stack, interaction).get_json() == {"type": 5}
    [job] = stack["tap"].pull(expect=1)
    assert job.job_id == f"discord:{stack['bot_id']}:{interaction['id']}"
    assert _deliver(stack, dc.ping_interaction(stack["app"].id), bad=True).status_code == 401


class _Crash(BaseException):
    """The process dying mid-request (not an Exception: nothing in the ingress may handle it)."""


def test_crash_before_publishing_does_not_lose_the_interaction(stack: dict, dc: FakeDiscord) -> None:
    """Recorded as seen only after publishing: a delivery that died before publishing leaves no record,
    so the same interaction delivered again is published (same job id) instead of taken for a replay."""
    real = JobPublisher(stack["settings"].project_id, stack["settings"].jobs_topic)

    class CrashOncePublisher:
        calls = 0

        def publish(self, job: Any) -> str:
            self.calls += 1
            if self.calls == 1:
                raise _Crash
            return real.publish(job)

    publisher = CrashOncePublisher()
    ingress = Ingress(get_platform("discord"), stack["db"], bot_lookup(BotReader(stack["db"])), publisher)
    interaction = dc.ask_interaction(stack["app"].id, "How do I deploy?")
    body = json.dumps(interaction).encode()

    def deliver() -> Any:
        return ingress.handle(stack["bot_id"], FakeDiscord.sign(stack["app"], body), body)

    with pytest.raises(_Crash):
        deliver()
    key = f"discord:{stack['bot_id']}:{interaction['id']}"
    assert not stack["db"].collection(PROCESSED_UPDATES).document(key).get().exists
    assert deliver().reason == "accepted"
    [job] = stack["tap"].pull(expect=1)
    assert (job.job_id, job.question) == (key, "How do I deploy?")
    assert stack["db"].collection(PROCESSED_UPDATES).document(key).get().exists
    assert deliver().reason == "duplicate"
    assert publisher.calls == 2


def test_ask_on_a_stopped_bot_says_so(stack: dict, dc: FakeDiscord) -> None:
    BotRegistry.from_settings(stack["settings"]).set_desired(stack["bot_id"], "stopped")
    stack["client"] = function_app("discord_interactions").test_client()
    body = _deliver(stack, dc.ask_interaction(stack["app"].id, "How?")).get_json()
    assert body["type"] == 4 and body["data"]["flags"] == 64 and "stopped" in body["data"]["content"]


# --- buttons ---------------------------------------------------------------------------------------


def _state(stack: dict, name: str = "s1", bot_id: str | None = None, **kw: Any) -> str:
    """Save one answer's button state; its id has the shape the worker gives one (it names no other)."""
    state_id = state_id_for_job(name)
    ButtonStateStore(stack["db"]).save(
        state_id,
        bot_id or stack["bot_id"],
        "How do I deploy?",
        "Run askbase deploy.",
        [
            SourceRef("Deploying_askbase", "https://docs.example.com/deploy"),
            SourceRef("Config", "https://docs.example.com/c"),
        ],
        **kw,
    )
    return state_id


def _press(stack: dict, dc: FakeDiscord, action: Action, state_id: str, user_id: str = "1000000000000000003"):
    interaction = dc.component_interaction(stack["app"].id, custom_id(action, state_id), user_id=user_id)
    response = _deliver(stack, interaction)
    assert response.status_code == 200
    return response.get_json()


def test_sources_button_is_ephemeral_list(stack: dict, dc: FakeDiscord) -> None:
    body = _press(stack, dc, Action.SOURCES, _state(stack))
    assert body["type"] == 4 and body["data"]["flags"] == 64
    content = body["data"]["content"]
    assert "[Deploying\\_askbase](<https://docs.example.com/deploy>)" in content
    assert "https://docs.example.com/c" in content


def test_feedback_buttons_are_thanked_and_publish_vote_jobs(stack: dict, dc: FakeDiscord) -> None:
    """Each press is thanked at once (ephemeral) and becomes a ``vote`` job for the worker, keyed by its
    interaction: a replayed press publishes under the same job id."""
    state_id = _state(stack)
    up = dc.component_interaction(stack["app"].id, custom_id(Action.HELPFUL, state_id))
    down = dc.component_interaction(
        stack["app"].id, custom_id(Action.NOT_HELPFUL, state_id), user_id="1000000000000000009"
    )
    for interaction in (up, up, up, down):
        body = _deliver(stack, interaction).get_json()
        assert body["type"] == 4 and body["data"]["flags"] == 64
        assert body["data"]["content"] == "Thanks for the feedback!"
    jobs = stack["tap"].pull(expect=2)
    assert {(j.job_id, j.kind, j.state_id, j.vote, j.user) for j in jobs} == {
        (f"discord:{stack['bot_id']}:{up['id']}", JobKind.VOTE, state_id, "up", "1000000000000000003"),
        (f"discord:{stack['bot_id']}:{down['id']}", JobKind.VOTE, state_id, "down", "1000000000000000009"),
    }


def test_ask_carries_the_channels_answer_mode_or_else_the_bots(stack: dict, dc: FakeDiscord) -> None:
    """Every /ask addresses the bot, so every mode publishes it; the job carries the effective mode
    (the worker stays silent on a refusal in ``confident``)."""
    db, bot_id = stack["db"], stack["bot_id"]
    quiet, loud = "1000000000000000101", "1000000000000000102"
    chat_switch.set_answer_mode(db, bot_id, quiet, AnswerMode.CONFIDENT, by_user="discord:1")
    BotRegistry.from_settings(stack["settings"]).update_bot(bot_id, {"answer_mode": "always"})
    for channel in (quiet, loud):
        interaction = dc.ask_interaction(stack["app"].id, "How do I deploy?", channel_id=channel)
        assert _deliver(stack, interaction).get_json() == {"type": 5}
    jobs = {j.chat_id: j.answer_mode for j in stack["tap"].pull(expect=2)}
    assert jobs == {quiet: "confident", loud: "always"}


def test_mode_command_needs_manage_channels_and_is_answered_privately(stack: dict, dc: FakeDiscord) -> None:
    admin = dc.mode_interaction(stack["app"].id, "confident", permissions=str(1 << 4))
    member = dc.mode_interaction(stack["app"].id, "confident", permissions="0")
    for interaction in (admin, member):
        assert _deliver(stack, interaction).get_json() == {"type": 5, "data": {"flags": 64}}
    jobs = {j.job_id: j for j in stack["tap"].pull(expect=2)}
    by_admin = jobs[f"discord:{stack['bot_id']}:{admin['id']}"]
    by_member = jobs[f"discord:{stack['bot_id']}:{member['id']}"]
    assert (by_admin.kind, by_admin.question, by_admin.user_is_admin_hint) == (
        JobKind.MODE,
        "confident",
        True,
    )
    assert by_member.user_is_admin_hint is False


def test_missing_expired_or_foreign_state_is_polite(stack: dict, dc: FakeDiscord) -> None:
    assert _press(stack, dc, Action.SOURCES, "does-not-exist")["data"] == {
        "content": TOO_OLD_SOURCES,
        "flags": 64,
        "allowed_mentions": {"parse": []},
    }
    # Expired but not yet removed by Firestore's TTL sweep.
    expired = _state(stack, "old", now=datetime.now(UTC) - timedelta(days=31))
    assert _press(stack, dc, Action.SOURCES, expired)["data"]["content"] == TOO_OLD_SOURCES
    assert _press(stack, dc, Action.HELPFUL, expired)["data"]["content"] == TOO_OLD_FEEDBACK
    # Another bot's state is not this bot's business.
    foreign = _state(stack, "foreign", bot_id="other-bot")
    assert _press(stack, dc, Action.SOURCES, foreign)["data"]["content"] == TOO_OLD_SOURCES


def test_unknown_button_is_polite(stack: dict, dc: FakeDiscord) -> None:
    interaction = dc.component_interaction(stack["app"].id, "sources:abc")
    body = _deliver(stack, interaction).get_json()
    assert body["type"] == 4 and body["data"]["flags"] == 64


# --- ids, numbers and storage errors a request can provoke --------------------------------------------


@pytest.mark.parametrize("bot_id", ["__x__", "__discord__"])
def test_reserved_bot_ids_are_404(stack: dict, dc: FakeDiscord, bot_id: str) -> None:
    """Firestore refuses ids matching __.*__: an unsigned POST to one was a 500."""
    response = stack["client"].post(f"/{bot_id}", data=b"{}", content_type="application/json")
    assert response.status_code == 404 and response.get_json() == {"ok": False, "error": "unknown bot"}


@FIRESTORE_OUTAGES
def test_bot_lookup_outage_is_the_polite_reply(
    stack: dict, dc: FakeDiscord, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """Discord does not retry: the user reads that something went wrong instead of "interaction failed"."""

    def down(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(BotReader, "get_bot", down)
    stack["client"] = function_app("discord_interactions").test_client()  # no cached bot
    body = _deliver(stack, dc.ask_interaction(stack["app"].id, "How?")).get_json()
    assert body == _SORRY_STORAGE


@pytest.mark.parametrize("state", ["a/b", "__x__", "..", "0f" * 16 + "/x"])
@pytest.mark.parametrize("action", [Action.SOURCES, Action.HELPFUL])
def test_a_press_on_a_state_id_askbase_never_makes_is_too_old(
    stack: dict, dc: FakeDiscord, action: Action, state: str
) -> None:
    body = _press(stack, dc, action, state)
    assert body["data"]["content"] == (TOO_OLD_SOURCES if action is Action.SOURCES else TOO_OLD_FEEDBACK)
    assert stack["tap"].settled() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "1" * 400),  # the job id past its 300 characters: pydantic's ValidationError, a 500
        ("id", 10**400),
        ("id", "²"),  # str.isdigit() says yes
        ("channel_id", "a/b"),  # would name a chat_settings path
        ("channel_id", "1" * 2000),
    ],
    ids=["400-digit id", "400-digit integer id", "superscript id", "channel with a slash", "long channel"],
)
def test_ids_discord_never_sends_are_400(stack: dict, dc: FakeDiscord, field: str, value: Any) -> None:
    interaction = dc.ask_interaction(stack["app"].id, "How?")
    interaction[field] = value
    assert _deliver(stack, interaction).status_code == 400
    assert stack["tap"].settled() == []


@pytest.mark.parametrize(
    "raw",
    [b'{"type": 2, "id": ' + b"1" * 4301 + b"}", b"[" * 5000 + b"]" * 5000],
    ids=["4301-digit integer", "deep nesting"],
)
def test_json_python_cannot_read_is_400(stack: dict, raw: bytes) -> None:
    assert _deliver(stack, raw).status_code == 400


@pytest.mark.parametrize("permissions", ["²", "9" * 5000, "1e3", " 16"])
def test_permissions_that_are_no_plain_number_grant_nothing(
    stack: dict, dc: FakeDiscord, permissions: str
) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` a ValueError: a signed /mode with it was a 500."""
    interaction = dc.mode_interaction(stack["app"].id, "confident", permissions=permissions)
    assert _deliver(stack, interaction).get_json() == {"type": 5, "data": {"flags": 64}}
    [job] = stack["tap"].pull(expect=1)
    assert job.user_is_admin_hint is False


# --- the 3-second deadline ---------------------------------------------------------------------------

_SORRY_STORAGE = {
    "type": 4,
    "data": {"content": _SORRY["storage"], "flags": 64, "allowed_mentions": {"parse": []}},
}
_SORRY_PUBLISH = {
    "type": 4,
    "data": {"content": _SORRY["publish"], "flags": 64, "allowed_mentions": {"parse": []}},
}


class _Gate:
    """Holds every call of one function until the test releases it (a Firestore call that hangs)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.entered = threading.Event()
        self.release = threading.Event()
        self.left = threading.Event()  # a held call has returned (or raised)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        try:
            self.release.wait(timeout=60)
            return self.real(*args, **kwargs)
        finally:
            self.left.set()


class _Recorder:
    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def publish(self, job: Any) -> str:
        self.jobs.append(job)
        return str(len(self.jobs))


def _budgeted(stack: dict, publisher: Any, runs: ThreadPoolExecutor) -> Ingress:
    lookup = bot_lookup(BotReader(stack["db"]))
    return Ingress(
        get_platform("discord"), stack["db"], lookup, publisher, response_budget=0.5, executor=runs
    )


@pytest.mark.parametrize("stage", ["bot lookup", "dedupe", "chat settings"])
def test_a_firestore_read_past_the_budget_is_answered_politely_and_publishes_nothing(
    stack: dict, dc: FakeDiscord, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """The read hangs until the test releases it, long after the budget: the ingress answers the
    fallback when the budget ends, and the abandoned request, once the read returns, publishes nothing
    (the user was told to try again) and records nothing."""
    owner, name = {
        "bot lookup": (BotReader, "get_bot"),
        "dedupe": (dedupe, "update_seen"),
        "chat settings": (chat_switch, "read_settings"),
    }[stage]
    gate = _Gate(getattr(owner, name))
    monkeypatch.setattr(owner, name, gate)
    publisher, runs = _Recorder(), ThreadPoolExecutor(max_workers=1)
    interaction = dc.ask_interaction(stack["app"].id, "How do I deploy?")
    body = json.dumps(interaction).encode()
    try:
        reply = _budgeted(stack, publisher, runs).handle(
            stack["bot_id"], FakeDiscord.sign(stack["app"], body), body
        )
        assert gate.entered.is_set()
        assert (reply.status, reply.body) == (200, _SORRY_STORAGE)
    finally:
        gate.release.set()
        runs.shutdown(wait=True)  # the abandoned request has run to its end
    assert publisher.jobs == []
    key = f"discord:{stack['bot_id']}:{interaction['id']}"
    assert not stack["db"].collection(PROCESSED_UPDATES).document(key).get().exists


def test_a_button_state_read_past_the_budget_is_answered_politely(
    stack: dict, dc: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _Gate(ButtonStateStore.get)
    monkeypatch.setattr(ButtonStateStore, "get", gate)
    runs = ThreadPoolExecutor(max_workers=1)
    interaction = dc.component_interaction(stack["app"].id, custom_id(Action.SOURCES, _state(stack)))
    body = json.dumps(interaction).encode()
    try:
        reply = _budgeted(stack, _Recorder(), runs).handle(
            stack["bot_id"], FakeDiscord.sign(stack["app"], body), body
        )
        assert (gate.entered.is_set(), reply.body) == (True, _SORRY_STORAGE)
    finally:
        gate.release.set()
        runs.shutdown(wait=True)


def test_a_publish_past_the_budget_is_answered_politely_and_still_recorded_once_out(
    stack: dict, dc: FakeDiscord
) -> None:
    """Past the point of publishing the job cannot be called back: the user reads "try again", and when
    the publish completes the job is out and recorded (the worker's edit of the original response then
    replaces the apology with the answer)."""
    recorder = _Recorder()
    gate = _Gate(recorder.publish)

    class SlowPublisher:
        publish = staticmethod(gate)

    runs = ThreadPoolExecutor(max_workers=1)
    interaction = dc.ask_interaction(stack["app"].id, "How do I deploy?")
    body = json.dumps(interaction).encode()
    try:
        reply = _budgeted(stack, SlowPublisher(), runs).handle(
            stack["bot_id"], FakeDiscord.sign(stack["app"], body), body
        )
        assert (gate.entered.is_set(), reply.body) == (True, _SORRY_PUBLISH)
    finally:
        gate.release.set()
        runs.shutdown(wait=True)
    assert [j.job_id for j in recorder.jobs] == [f"discord:{stack['bot_id']}:{interaction['id']}"]
    key = f"discord:{stack['bot_id']}:{interaction['id']}"
    assert stack["db"].collection(PROCESSED_UPDATES).document(key).get().exists


def test_the_function_answers_within_discords_3_seconds_while_firestore_hangs(
    stack: dict, dc: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed entry point, with the platform's own budget: a bot lookup that would take the
    registry's 15 s of retries is cut short, and the user gets the polite reply in time."""
    assert RESPONSE_BUDGET_S < 3
    gate = _Gate(BotReader.get_bot)
    monkeypatch.setattr(BotReader, "get_bot", gate)
    stack["client"] = function_app("discord_interactions").test_client()  # no cached bot
    try:
        started = time.monotonic()
        response = _deliver(stack, dc.ask_interaction(stack["app"].id, "How?"))
        elapsed = time.monotonic() - started
        # Answered while the lookup still hung (it would hang 60 s): the budget cut it short.
        assert gate.entered.is_set() and not gate.left.is_set()
    finally:
        gate.release.set()
    assert response.status_code == 200 and response.get_json() == _SORRY_STORAGE
    assert elapsed >= RESPONSE_BUDGET_S  # it waited its whole budget before giving up
    assert gate.left.wait(timeout=30)  # the abandoned lookup has finished: nothing runs into later tests


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
_interaction_like = st.fixed_dictionaries(
    {"type": st.integers(min_value=0, max_value=6) | _json},
    optional={
        "id": st.from_regex(r"\A[0-9]{17,19}\Z") | _json,
        "token": st.text(max_size=30) | _json,
        "application_id": _json,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "name": st.sampled_from(["ask", "other"]) | _json,
                "options": st.lists(st.fixed_dictionaries({"name": st.just("question"), "value": _json}))
                | _json,
                "custom_id": st.sampled_from(["ab:src:x", "ab:up:", "ab:zz:y", "a:b:c:d"]) | _json,
            },
        )
        | _json,
        "member": _json,
        "user": _json,
    },
)


@property_settings(150, suppress=[HealthCheck.function_scoped_fixture])
@given(body=_interaction_like | _json)
def test_arbitrary_signed_json_never_5xx(stack: dict, body: Any) -> None:
    response = _deliver(stack, json.dumps(body).encode())
    assert response.status_code in (200, 400), (response.status_code, body)


def test_odd_shapes_in_a_signed_ask_are_not_errors(stack: dict, dc: FakeDiscord) -> None:
    interaction = dc.ask_interaction(stack["app"].id, "How?")
    interaction["data"]["options"] = 5
    assert _deliver(stack, interaction).get_json()["type"] == 4  # usage hint
    interaction = dc.ask_interaction(stack["app"].id, "How?")
    interaction["application_id"] = {"not": "an id"}
    assert _deliver(stack, interaction).get_json() == {"type": 5}
    [job] = stack["tap"].pull(expect=1)
    assert job.application_id == stack["app"].id
