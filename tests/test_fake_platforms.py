"""The fake platforms behave like the real ones where our code depends on it; the clients on top of them
retry 429 / 5xx as asked and never put a token in an error."""

from __future__ import annotations

import socket

import pytest
from nacl.signing import VerifyKey

from shared.bots.platforms.discord_api import DiscordClient
from shared.bots.platforms.errors import PlatformError, RateLimited, RetryPolicy
from shared.bots.platforms.telegram_api import TelegramClient
from tests.fakes._server import RecordingEndpoint
from tests.fakes.discord_api import FakeDiscord, pong_endpoint
from tests.fakes.telegram_api import FakeTelegram


@pytest.fixture(scope="module")
def tg():
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture(scope="module")
def dc():
    with FakeDiscord() as fake:
        yield fake


def _sleeps() -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []
    return RetryPolicy(attempts=4, backoff=0.5, sleep=slept.append), slept


def test_get_me_has_what_ptb_needs(tg: FakeTelegram) -> None:
    token = tg.add_bot(username="docs_bot", first_name="Docs")
    me = TelegramClient(token, tg.base_url).get_me()  # parsed by PTB: it needs all four fields
    assert (me.is_bot, me.first_name, me.username) == (True, "Docs", "docs_bot")
    assert str(me.id) == token.split(":")[0]


def test_bad_token_is_401_without_the_token_in_the_error(tg: FakeTelegram) -> None:
    token = tg.add_bot()
    wrong = token[:-3] + "xyz"
    with pytest.raises(PlatformError) as info:
        TelegramClient(wrong, tg.base_url).get_me()
    assert info.value.status == 401 and info.value.unauthorized
    assert "Telegram rejected this token" in str(info.value)
    assert wrong not in str(info.value) and info.value.__cause__ is None


def test_network_errors_do_not_leak_the_url(tg: FakeTelegram) -> None:
    token = tg.add_bot()
    client = TelegramClient(token, "http://127.0.0.1:9", policy=RetryPolicy(attempts=1))
    with pytest.raises(PlatformError) as info:
        client.get_me()
    assert token not in str(info.value) and "127.0.0.1" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_webhook_state_and_delivery_with_secret(tg: FakeTelegram) -> None:
    token = tg.add_bot()
    client = TelegramClient(token, tg.base_url)
    assert client.get_webhook_info().url == ""
    with RecordingEndpoint() as hook:
        client.set_webhook(hook.url + "/b1", "s3cret_-X")
        assert client.get_webhook_info().url == hook.url + "/b1"
        with pytest.raises(PlatformError, match="unallowed characters"):
            client.set_webhook(hook.url + "/b1", "no spaces!")
        response = tg.send_update(token, tg.message_update(5, "/ask hi"))
        assert response.status_code == 200
        _, headers, body = hook.requests[-1]
        assert headers["x-telegram-bot-api-secret-token"] == "s3cret_-X"
        assert b'"bot_command"' in body and b'"update_id"' in body
    # getUpdates is refused while a webhook is set, like Telegram.
    with pytest.raises(PlatformError) as info:
        client.get_updates()
    assert info.value.status == 409
    client.delete_webhook()
    assert client.get_webhook_info().url == ""
    tg.queue_update(token, tg.message_update(5, "polled"))
    updates = client.get_updates(timeout=1)
    assert updates[0].message.text == "polled"
    assert client.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()


def test_send_message_honours_retry_after_and_backs_off_on_5xx(tg: FakeTelegram) -> None:
    token = tg.add_bot()
    policy, slept = _sleeps()
    client = TelegramClient(token, tg.base_url, policy=policy)
    tg.fail_next("sendMessage", status=429, retry_after=3, token=token)
    tg.fail_next("sendMessage", status=500, times=2, token=token)
    sent = client.send_message(5, "hello", reply_to_message_id=9)
    assert sent.text == "hello"
    assert slept == [3.0, 1.0, 2.0]  # retry_after, then exponential backoff by attempt
    assert [m["text"] for m in tg.sent_messages(token)] == ["hello"]
    assert tg.sent_messages(token)[0]["reply_parameters"]["message_id"] == 9


def test_long_retry_after_is_handed_back(tg: FakeTelegram) -> None:
    token = tg.add_bot()
    client = TelegramClient(token, tg.base_url, policy=RetryPolicy(max_wait=5, sleep=lambda s: None))
    tg.fail_next("sendMessage", status=429, retry_after=60, token=token)
    with pytest.raises(RateLimited) as info:
        client.send_message(5, "x")
    assert info.value.retry_after == 60
    assert tg.sent_messages(token) == []


def test_connections_are_kept_alive_without_nagle_delays(tg: FakeTelegram) -> None:
    token = tg.add_bot()
    client = TelegramClient(token, tg.base_url)
    for _ in range(31):
        client.get_me()
    # Seen from the server: all 31 calls came over one TCP connection (one client port), the pool of
    # this process's event loop (shared by every client object).
    peers = {call.peer for call in tg.calls_for(token, "getMe")}
    assert len(tg.calls_for(token, "getMe")) == 31 and len(peers) == 1 and None not in peers
    # Nagle + delayed ACK would add ~40 ms per call: both ends disable Nagle. Accepted connections
    # inherit the listening socket's TCP_NODELAY; the client's sockets get it from its socket options.
    # The per-call figure itself is a speed target: bench/platform_calls.py.
    assert tg._server._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_discord_application_commands_and_endpoint_ping(dc: FakeDiscord) -> None:
    app = dc.add_application()
    client = DiscordClient(app.bot_token, dc.base_url)
    info = client.get_application()
    assert info["id"] == app.id and info["verify_key"] == app.public_key
    assert client.register_commands(app.id)[0]["name"] == "ask"
    with pytest.raises(PlatformError, match="Discord rejected"):
        DiscordClient(app.bot_token[:-2] + "zz", dc.base_url).get_application()

    # An endpoint that answers everything with 200 fails Discord's bad-signature probe.
    with (
        RecordingEndpoint(lambda p, h, b: (200, {"type": 1})) as sloppy,
        pytest.raises(PlatformError, match="could not be verified"),
    ):
        client.set_interactions_endpoint(sloppy.url + "/x")
    with RecordingEndpoint(pong_endpoint(lambda path: app.public_key)) as good:
        client.set_interactions_endpoint(good.url + "/x")
        assert dc.app(app.id).interactions_endpoint_url == good.url + "/x"
        # Deliveries are signed with the application's key, over timestamp + body.
        interaction = dc.ask_interaction(app.id, "Where are the docs?")
        assert dc.deliver(app.id, interaction).json() == {"type": 5}
        _, headers, body = good.requests[-1]
        VerifyKey(bytes.fromhex(app.public_key)).verify(
            headers["x-signature-timestamp"].encode() + body, bytes.fromhex(headers["x-signature-ed25519"])
        )
        assert dc.deliver(app.id, interaction, bad_signature=True).status_code == 401
    client.set_interactions_endpoint(None)
    assert dc.app(app.id).interactions_endpoint_url is None


def test_discord_edits_followups_and_429(dc: FakeDiscord) -> None:
    app = dc.add_application()
    policy, slept = _sleeps()
    client = DiscordClient(None, dc.base_url, policy=policy)
    interaction = dc.ask_interaction(app.id, "q")
    dc.fail_next("edit_original", status=429, retry_after=0.25)
    client.edit_original(app.id, interaction["token"], {"content": "answer"})
    assert slept == [0.25]
    client.followup(app.id, interaction["token"], {"content": "more", "flags": 64})
    assert [e["payload"]["content"] for e in dc.wait_for_edits(app.id, 1)] == ["answer"]
    assert dc.followups(app.id)[0]["payload"]["flags"] == 64
    with pytest.raises(PlatformError) as info:
        client.edit_original(app.id, interaction["token"], {"content": "x" * 2001})
    assert info.value.status == 400 and interaction["token"] not in str(info.value)
