"""Bots end to end, every hop real except the platforms:

fake Telegram / Discord  →  webhook functions (functions-framework on loopback)  →  Pub/Sub emulator
→ push subscription  →  botrunner ``/worker/push`` (the real app factory on loopback)  →  the real qa app
(``/api/ask``, extractive answerer over a stand-in index)  →  reply at the fake platform.

Bots are registered and started through botrunner's control API, so setWebhook / the Discord endpoint
verification (PING + a bad-signature probe) run against the served functions too.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from services.botrunner.app import create_app as create_botrunner
from shared import logs
from shared.bots.buttons import Action, ButtonStateStore, custom_id, parse_custom_id
from shared.bots.jobs import Job, JobKind, JobPublisher
from shared.bots.registry import BotRegistry
from shared.config import Settings
from shared.devstack.subscriptions import ensure_push_subscription
from shared.qa.answer_log import AnswerLog
from shared.qa.feedback import VOTES
from tests.bot_stack import LoopbackServer, bot_settings, function_app
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.pubsub_push import Delivery, PushLog, TopicTap
from tests.fakes.telegram_api import FakeTelegram
from tests.qa_support import fake_live_index, make_app

pytestmark = pytest.mark.emulators

USER = {"X-Askbase-User": "alice@example.com"}
COPIES = 3  # how often the tests deliver each button press (a platform retrying, a replay)


class Stack:
    """All the servers of one "deployment"; :meth:`restart` replaces every process but Firestore."""

    def __init__(self, settings: Settings, tmp_path: Path, tg: FakeTelegram, dc: FakeDiscord) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.tg = tg
        self.dc = dc
        self._exit = ExitStack()
        self.responses: list[str] = []  # every body our services sent back, for the secret scan

    def start(self, monkeypatch: pytest.MonkeyPatch) -> Stack:
        self.telegram_fn = self._exit.enter_context(LoopbackServer(function_app("telegram_webhook")))
        self.discord_fn = self._exit.enter_context(LoopbackServer(function_app("discord_interactions")))
        live, _store = fake_live_index(self.tmp_path / f"qa-{time.monotonic_ns()}")
        qa_app = make_app(self.settings, live)
        self.qa = self._exit.enter_context(LoopbackServer(qa_app))
        self.settings = bot_settings(
            monkeypatch,
            qa_url=self.qa.url,
            telegram_webhook_url=self.telegram_fn.url,
            discord_webhook_url=self.discord_fn.url,
        )
        # Sees every job published from here on (see settle()).
        self.tap = TopicTap(self.settings.project_id, self.settings.jobs_topic)
        botrunner = create_botrunner(self.settings, reconcile_on_start=False)
        self.pushes = PushLog(botrunner.wsgi_app)  # every /worker/push delivery and its outcome
        botrunner.wsgi_app = self.pushes
        self.botrunner = self._exit.enter_context(LoopbackServer(botrunner))
        ensure_push_subscription(
            self.settings.project_id,
            self.settings.jobs_topic,
            "askbase-jobs-push",
            f"{self.botrunner.url}/worker/push",
            ack_deadline_seconds=30,
        )
        self.api = httpx.Client(base_url=self.botrunner.url, headers=USER, timeout=30)
        return self

    def stop(self) -> None:
        self.api.close()
        self._exit.close()

    def settle(
        self, message_ids: list[str] | None = None, at_least: int = 1, timeout: float = 60
    ) -> list[Delivery]:
        """Wait until every job published so far (or ``message_ids``) has been handled: each message
        acknowledged by the worker, nacked ones after their redelivery, and no delivery running. After
        that nothing is left that could still send a reply, so reply counts are final."""
        if message_ids is None:
            message_ids = list(self.tap.drain(at_least=at_least, timeout=timeout))
        return self.pushes.wait_until_acked(message_ids, timeout=timeout)

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        response = self.api.request(method, path, **kw)
        self.responses.append(response.text)
        return response


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTelegram, FakeDiscord]]:
    with FakeTelegram() as tg, FakeDiscord() as dc:
        yield tg, dc


@pytest.fixture
def stack(
    emulators: Any, settings: Settings, fakes: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    tg, dc = fakes
    settings = bot_settings(monkeypatch, telegram_api_base=tg.base_url, discord_api_base=dc.base_url)
    running = Stack(settings, tmp_path, tg, dc).start(monkeypatch)
    try:
        yield running
    finally:
        running.stop()


def _register_telegram(stack: Stack) -> tuple[str, str]:
    token = stack.tg.add_bot(username="docs_bot")
    created = stack.call(
        "POST",
        "/api/bots",
        json={"platform": "telegram", "name": "Docs", "model": "extractive", "token": token},
    )
    assert created.status_code == 201, created.text
    bot_id = created.json()["id"]
    started = stack.call("POST", f"/api/bots/{bot_id}/start")
    assert started.status_code == 200 and started.json()["status"] == "running", started.text
    return bot_id, token


def test_telegram_register_start_message_reply(stack: Stack) -> None:
    bot_id, token = _register_telegram(stack)
    hook = stack.tg.webhook(token)
    assert hook is not None and hook.url == f"{stack.telegram_fn.url}/{bot_id}"

    update = stack.tg.message_update(4242, "How do snapshots work?", update_id=501)
    response = stack.tg.send_update(token, update)
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    [reply] = stack.tg.wait_for_messages(token, 1, timeout=20)
    assert str(reply["chat_id"]) == "4242"
    assert reply["parse_mode"] == "HTML"
    assert reply["reply_parameters"]["message_id"] == update["message"]["message_id"]
    assert "snapshot s1 says hello" in reply["text"]  # the stand-in index's passage, via the answerer
    assert "<b>Sources</b>" in reply["text"]

    # /start is answered from the worker without asking qa.
    stack.tg.send_update(token, stack.tg.message_update(4242, "/start", update_id=502))
    help_reply = stack.tg.wait_for_messages(token, 2, timeout=20)[-1]
    assert "/ask" in help_reply["text"]

    # Stop: the webhook is gone.
    assert stack.call("POST", f"/api/bots/{bot_id}/stop").status_code == 200
    assert stack.tg.webhook(token) is None


def test_same_update_delivered_100_times_replies_once(stack: Stack) -> None:
    _bot_id, token = _register_telegram(stack)
    update = stack.tg.message_update(77, "How do snapshots work?", update_id=900)
    results: list[str] = []

    def deliver(n: int) -> None:
        for _ in range(n):
            results.append(stack.tg.send_update(token, update).json()["status"])

    threads = [threading.Thread(target=deliver, args=(25,)) for _ in range(4)]  # concurrent retries
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # Ingress records "seen" only after publishing (a crash between must not lose the update), so
    # concurrent first deliveries may each publish; the worker's job-id dedupe keeps it to one reply.
    assert len(results) == 100 and results.count("accepted") >= 1
    assert set(results) <= {"accepted", "duplicate"}
    # Every copy the ingress published has been acknowledged by the worker: no reply can come later.
    handled = stack.settle(at_least=1)
    assert len(stack.tg.sent_messages(token)) == 1
    assert [d.reason for d in handled].count("sent") == 1, handled


def test_job_redelivered_and_concurrent_replies_once(stack: Stack) -> None:
    bot_id, token = _register_telegram(stack)
    job = Job(
        job_id=f"telegram:{bot_id}:7000",
        platform="telegram",
        bot_id=bot_id,
        kind=JobKind.ASK,
        chat_id="31337",
        chat_type="private",
        message_id=3,
        user="31337",
        question="How do snapshots work?",
    )
    publisher = JobPublisher(stack.settings.project_id, stack.settings.jobs_topic)
    # The same job published 10 times: the push subscription delivers each copy, several at once.
    message_ids: list[str] = []
    threads = [threading.Thread(target=lambda: message_ids.append(publisher.publish(job))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(set(message_ids)) == 10
    # Deliveries that found the claim in progress got 503 and are redelivered by Pub/Sub: wait until
    # every copy has been acknowledged, then count.
    handled = stack.settle(message_ids)
    assert len(stack.tg.sent_messages(token)) == 1
    reasons = [d.reason for d in handled if d.job_id == job.job_id]
    assert reasons.count("sent") == 1 and set(reasons) <= {"sent", "duplicate", "in progress"}, reasons
    receipt = (
        BotRegistry.from_settings(stack.settings).db.collection("sent_replies").document(job.job_id).get()
    )
    assert receipt.get("state") == "sent"


def _csrf(client: httpx.Client, path: str = "/signin") -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert match, path
    return match.group(1)


def _votes(stack: Stack, bot_id: str) -> list[dict[str, Any]]:
    db = BotRegistry.from_settings(stack.settings).db
    query = db.collection(VOTES).where(filter=FieldFilter("bot_id", "==", bot_id))
    return [snap.to_dict() or {} for snap in query.stream()]


def _answer_counters(stack: Stack, answer_id: str) -> tuple[int, int]:
    record = AnswerLog(BotRegistry.from_settings(stack.settings).db, 0).get(answer_id)
    assert record is not None
    return record.up_votes, record.down_votes


def test_telegram_votes_land_once_each_under_redelivery(stack: Stack) -> None:
    """👍 and 👎 under a Telegram answer, each press delivered three times (as a platform retrying does):
    one vote per presser on the answer's record, with what was voted on, and every delivery answered."""
    bot_id, token = _register_telegram(stack)
    stack.tg.send_update(token, stack.tg.message_update(4242, "How do snapshots work?", update_id=601))
    [answer] = stack.tg.wait_for_messages(token, 1, timeout=20)
    [row] = answer["reply_markup"]["inline_keyboard"]
    up, down = (button["callback_data"] for button in row)
    presses = [
        stack.tg.callback_update(answer, up, user_id=4242, update_id=602),
        stack.tg.callback_update(answer, down, user_id=5151, update_id=603),
    ]
    for press in presses:
        for _ in range(COPIES):
            assert stack.tg.send_update(token, press).json()["method"] == "answerCallbackQuery"
    handled = stack.settle(at_least=3)  # the answer and the two votes
    assert {d.reason for d in handled if d.job_id != f"telegram:{bot_id}:601"} == {"voted"}

    votes = sorted(_votes(stack, bot_id), key=lambda v: v["voter"])
    assert [(v["voter"], v["value"]) for v in votes] == [("telegram:4242", "up"), ("telegram:5151", "down")]
    state = ButtonStateStore(BotRegistry.from_settings(stack.settings).db).get(parse_custom_id(up)[1])
    assert state is not None and state.answer_id
    for vote in votes:
        assert vote["answer_id"] == state.answer_id
        assert vote["question"] == "How do snapshots work?" and "snapshot s1 says hello" in vote["answer"]
        assert vote["sources"] and vote["answerer"] and vote["snapshot_id"] == "s1"
        assert (vote["bot_id"], vote["platform"]) == (bot_id, "telegram")
    assert _answer_counters(stack, state.answer_id) == (1, 1)
    answered = stack.tg.calls_for(token, "answerCallbackQuery")
    assert len(answered) == 2 * COPIES
    assert {c.params["text"] for c in answered} == {"Thanks for the feedback!"}

    # The 👎 made the answer a gap: its owner's report shows the question, and nobody's identity.
    web = httpx.Client(base_url=stack.qa.url, timeout=30, follow_redirects=False)
    web.post("/signin/dev", data={"email": "alice@example.com", "csrf_token": _csrf(web), "next": "/"})
    report = web.get("/api/gaps", params={"days": "7"})
    assert report.status_code == 200 and "How do snapshots work?" in report.text
    table = web.get("/api/gaps", params={"days": "7", "format": "csv"}).text
    for identity in ("4242", "5151", "telegram:", "bot:"):
        assert identity not in report.text and identity not in table, identity


def test_forget_takes_a_chats_questions_out_of_reports(stack: Stack) -> None:
    """Privacy for bot traffic: a Telegram user's ``/forget`` does what clearing the history does on the
    web. The chat's conversation, the answer records (the gaps report reads them) and the user's vote
    are deleted, and so is the answer's button state; another chat's traffic stays."""
    bot_id, token = _register_telegram(stack)
    db = BotRegistry.from_settings(stack.settings).db
    stack.tg.send_update(token, stack.tg.message_update(4242, "How do snapshots work?", update_id=701))
    stack.tg.send_update(token, stack.tg.message_update(5151, "How do snapshots work?", update_id=702))
    answers = stack.tg.wait_for_messages(token, 2, timeout=20)
    mine = next(a for a in answers if str(a["chat_id"]) == "4242")
    up = mine["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    stack.tg.send_update(token, stack.tg.callback_update(mine, up, user_id=4242, update_id=703))
    stack.settle(at_least=3)
    state_id = parse_custom_id(up)[1]
    state = ButtonStateStore(db).get(state_id)
    assert state is not None and state.answer_id and len(_votes(stack, bot_id)) == 1

    stack.tg.send_update(token, stack.tg.message_update(4242, "/forget", update_id=704))
    stack.settle(at_least=1)
    assert "I forgot this chat" in stack.tg.sent_messages(token)[-1]["text"]
    assert AnswerLog(db, 0).get(state.answer_id) is None
    assert _votes(stack, bot_id) == []
    assert ButtonStateStore(db).get(state_id) is None
    owners = {str((s.to_dict() or {}).get("owner")) for s in db.collection("conversations").stream()}
    assert f"bot:{bot_id}:telegram:4242" not in owners and f"bot:{bot_id}:telegram:5151" in owners
    remaining = db.collection("answers").where(filter=FieldFilter("bot_id", "==", bot_id)).stream()
    assert [(s.to_dict() or {}).get("asker") for s in remaining] == [f"bot:{bot_id}:telegram:5151"]


def test_discord_votes_land_once_each_under_redelivery(stack: Stack) -> None:
    bot_id, app = _register_discord(stack)
    stack.dc.deliver(app.id, stack.dc.ask_interaction(app.id, "How do snapshots work?"))
    [edit] = stack.dc.wait_for_edits(app.id, 1, timeout=20)
    _sources, helpful, not_helpful = edit["payload"]["components"][0]["components"]
    presses = [
        stack.dc.component_interaction(app.id, helpful["custom_id"], user_id="1000000000000000003"),
        stack.dc.component_interaction(app.id, not_helpful["custom_id"], user_id="1000000000000000009"),
    ]
    for press in presses:
        for _ in range(COPIES):  # a replayed interaction
            thanked = stack.dc.deliver(app.id, press).json()
            assert thanked["data"] == {
                "content": "Thanks for the feedback!",
                "flags": 64,
                "allowed_mentions": {"parse": []},
            }
    stack.settle(at_least=3)
    votes = sorted(_votes(stack, bot_id), key=lambda v: v["voter"])
    assert [(v["voter"], v["value"], v["platform"]) for v in votes] == [
        ("discord:1000000000000000003", "up", "discord"),
        ("discord:1000000000000000009", "down", "discord"),
    ]
    assert len({v["answer_id"] for v in votes}) == 1
    assert _answer_counters(stack, votes[0]["answer_id"]) == (1, 1)


def test_bad_requests_at_the_served_function(stack: Stack) -> None:
    bot_id, token = _register_telegram(stack)
    url = f"{stack.telegram_fn.url}/{bot_id}"
    update = stack.tg.message_update(1, "hi")
    assert stack.tg.send_update(token, update, secret_token="wrong").status_code == 403
    assert (
        httpx.post(url, content=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": "x"}).status_code
        == 403
    )
    secret = stack.tg.webhook(token).secret_token
    assert (
        httpx.post(url, content=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": secret}).status_code
        == 400
    )
    assert httpx.post(f"{stack.telegram_fn.url}/unknown-bot", json=update).status_code == 404


def _register_discord(stack: Stack) -> tuple[str, Any]:
    app = stack.dc.add_application()
    created = stack.call(
        "POST",
        "/api/bots",
        json={
            "platform": "discord",
            "name": "Docs",
            "model": "extractive",
            "application_id": app.id,
            "public_key": app.public_key,
            "bot_token": app.bot_token,
        },
    )
    assert created.status_code == 201, created.text
    bot_id = created.json()["id"]
    started = stack.call("POST", f"/api/bots/{bot_id}/start")  # Discord PINGs + probes our endpoint
    assert started.json()["status"] == "running", started.text
    assert stack.dc.app(app.id).interactions_endpoint_url == f"{stack.discord_fn.url}/{bot_id}"
    return bot_id, app


def test_discord_ask_and_buttons_survive_a_full_restart(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot_id, app = _register_discord(stack)
    interaction = stack.dc.ask_interaction(app.id, "How do snapshots work?")
    deferred = stack.dc.deliver(app.id, interaction)
    assert deferred.status_code == 200 and deferred.json() == {"type": 5}
    [edit] = stack.dc.wait_for_edits(app.id, 1, timeout=20)
    assert edit["token"] == interaction["token"]
    payload = edit["payload"]
    assert "snapshot s1 says hello" in payload["content"]
    buttons = payload["components"][0]["components"]
    assert [b["label"] for b in buttons] == ["Sources", "Helpful", "Not helpful"]
    parsed = parse_custom_id(buttons[0]["custom_id"])
    assert parsed is not None
    _action, state_id = parsed

    # Kill every process (functions, botrunner, qa) and start new instances on the same Firestore.
    stack.stop()
    restarted = Stack(stack.settings, tmp_path, stack.tg, stack.dc).start(monkeypatch)
    try:
        endpoint = f"{restarted.discord_fn.url}/{bot_id}"
        press = stack.dc.component_interaction(app.id, custom_id(Action.SOURCES, state_id))
        sources = stack.dc.deliver(app.id, press, url=endpoint).json()
        assert sources["type"] == 4 and sources["data"]["flags"] == 64
        assert "https://docs.example.com/s1" in sources["data"]["content"]
        vote = stack.dc.component_interaction(app.id, custom_id(Action.HELPFUL, state_id))
        assert (
            stack.dc.deliver(app.id, vote, url=endpoint).json()["data"]["content"]
            == "Thanks for the feedback!"
        )
        restarted.settle(at_least=1)  # the vote job, through the new botrunner and qa
        [recorded] = _votes(restarted, bot_id)
        assert (recorded["value"], recorded["voter"]) == ("up", "discord:1000000000000000003")
        assert _answer_counters(restarted, recorded["answer_id"]) == (1, 0)
        stale = stack.dc.component_interaction(app.id, custom_id(Action.SOURCES, "gone-long-ago"))
        polite = stack.dc.deliver(app.id, stale, url=endpoint).json()
        assert polite["data"]["flags"] == 64 and "too old" in polite["data"]["content"]
    finally:
        restarted.stop()


def test_no_secret_in_responses_or_logs(
    stack: Stack, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("DEBUG")
    caplog.set_level(logging.INFO)
    try:
        bot_id, token = _register_telegram(stack)
        secret = stack.tg.webhook(token).secret_token
        for text in ("How do snapshots work?", "/help"):
            stack.responses.append(stack.tg.send_update(token, stack.tg.message_update(5, text)).text)
        stack.responses.append(
            stack.tg.send_update(token, stack.tg.message_update(5, "x"), secret_token="no").text
        )
        stack.tg.wait_for_messages(token, 2, timeout=20)
        discord_bot, app = _register_discord(stack)
        interaction = stack.dc.ask_interaction(app.id, "How do snapshots work?")
        stack.responses.append(stack.dc.deliver(app.id, interaction).text)
        stack.responses.append(stack.dc.deliver(app.id, interaction, bad_signature=True).text)
        stack.dc.wait_for_edits(app.id, 1, timeout=20)
        stack.responses.append(stack.call("GET", "/api/bots").text)
        stack.responses.append(stack.call("GET", f"/api/bots/{bot_id}/activity").text)
        stack.responses.append(stack.call("GET", f"/api/bots/{discord_bot}").text)
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_askbase", False)]:
            root.removeHandler(handler)
    written = capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    everything = written + "\n".join(stack.responses)
    for value in (token, token.split(":", 1)[1], secret, app.bot_token, interaction["token"]):
        assert value not in everything
