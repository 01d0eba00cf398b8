"""The Discord interactions function: Ed25519, PING, /ask → deferred + job, buttons from Firestore state."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from shared.bots import chat_switch
from shared.bots.answer_modes import AnswerMode
from shared.bots.buttons import Action, ButtonStateStore, custom_id
from shared.bots.dedupe import PROCESSED_UPDATES
from shared.bots.formatting import SourceRef
from shared.bots.jobs import JobKind, JobPublisher
from shared.bots.lookup import bot_lookup
from shared.bots.platforms import get_platform
from shared.bots.platforms.discord import TOO_OLD_FEEDBACK, TOO_OLD_SOURCES, verify_signature
from shared.bots.platforms.discord_api import DiscordClient
from shared.bots.registry import BotReader, BotRegistry
from shared.bots.webhooks import Ingress, build_ingress
from shared.config import Settings
from tests.bot_stack import JobTap, LoopbackServer, bot_settings, function_app, register_discord_bot
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
    assert stack["tap"].pull(wait=0.3) == []


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
    assert len(stack["tap"].pull(expect=2, wait=1.0)) == 1


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


def _state(stack: dict, state_id: str = "s1", bot_id: str | None = None, **kw: Any) -> str:
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
