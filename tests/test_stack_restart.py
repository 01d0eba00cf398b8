"""Whole-stack restart: every askbase process SIGKILLed at once, then started again.

The stack runs as real processes (gunicorn for qa and botrunner, functions-framework for the three
functions: :mod:`shared.devstack.stack`, the same supervisor as ``askbase dev``) against the emulators and
the fake Telegram and Discord APIs. The emulators play Google's managed services, so they survive: that is
what a crash or a redeploy of askbase looks like in production. Afterwards: nothing in Firestore is lost,
running bots answer again after the start-up reconcile (even one whose webhook the platform dropped
meanwhile), stopped bots stay stopped, the signed-in user's conversation is still there, and a button
under an answer sent before the crash still works.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import gcp
from shared.bots.buttons import Action, custom_id, parse_custom_id
from shared.devstack.stack import LocalStack
from shared.emulators import EmulatorStack
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.emulators
USER = {"X-Askbase-User": "ann@example.com"}


@pytest.fixture
def stack(
    emulators: EmulatorStack, docs_site, tmp_path: Path
) -> Iterator[tuple[LocalStack, FakeTelegram, FakeDiscord]]:
    with FakeTelegram() as tg, FakeDiscord() as dc:
        local = LocalStack(
            workdir=tmp_path / "stack",
            project=emulators.project,
            sources_json=json.dumps(
                [{"name": "docs", "kind": "sitemap", "url": docs_site.url("/sitemap.xml")}]
            ),
            extra_env={
                "ASKBASE_TELEGRAM_API_BASE": tg.base_url,
                "ASKBASE_DISCORD_API_BASE": dc.base_url,
                "ASKBASE_SNAPSHOT_POLL_SECONDS": "1",
            },
        )
        local.emulators = emulators  # shared with the test process, which reads Firestore directly
        local.configure()
        try:
            local.start_services()
            from shared.devstack.subscriptions import ensure_push_subscription

            ensure_push_subscription(
                emulators.project,
                "askbase-jobs",
                "askbase-worker",
                local.services["botrunner"].url + "/worker/push",
            )
            yield local, tg, dc
        finally:
            local.kill_services()


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _ready(qa_url: str) -> dict | None:
    try:
        status = httpx.get(qa_url + "/readyz", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    return status if status.get("snapshot_id") else None


def _csrf(client: httpx.Client, path: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert match, path
    return match.group(1)


def _counts(project: str) -> dict[str, int]:
    db = gcp.firestore_client(project)
    counts: dict[str, int] = {}
    for collection in db.collections():
        for ref in collection.list_documents():
            counts[collection.id] = counts.get(collection.id, 0) + ref.get().exists
            for sub in ref.collections():
                key = f"{collection.id}/{sub.id}"
                counts[key] = counts.get(key, 0) + sum(1 for _ in sub.stream())
    return counts


def test_sigkill_everything_then_start_again_loses_nothing(stack, emulators: EmulatorStack) -> None:
    local, tg, dc = stack
    qa, botrunner = local.services["qa"].url, local.services["botrunner"].url
    api = httpx.Client(base_url=botrunner, headers=USER, timeout=30)

    # --- a knowledge base, published through the scrape function as Cloud Scheduler would ---------
    assert httpx.post(local.services["scrape"].url, json={}, timeout=300).json()["status"] == "published"
    _wait(lambda: _ready(qa), 60, "qa to load the first snapshot")

    # --- bots: Telegram A running, Telegram B stopped, Discord C running ------------------------
    token_a, token_b = tg.add_bot(username="alpha_bot"), tg.add_bot(username="beta_bot")
    bot_a = api.post("/api/bots", json={"platform": "telegram", "name": "A", "token": token_a}).json()["id"]
    bot_b = api.post("/api/bots", json={"platform": "telegram", "name": "B", "token": token_b}).json()["id"]
    app_c = dc.add_application()
    bot_c = api.post(
        "/api/bots",
        json={
            "platform": "discord",
            "name": "C",
            "application_id": app_c.id,
            "public_key": app_c.public_key,
            "bot_token": app_c.bot_token,
        },
    ).json()["id"]
    for bot in (bot_a, bot_b, bot_c):
        assert api.post(f"/api/bots/{bot}/start").status_code == 200
    assert api.post(f"/api/bots/{bot_b}/stop").status_code == 200
    assert tg.webhook(token_a) and tg.webhook(token_b) is None

    # --- traffic before the crash -----------------------------------------------------------------
    tg.send_update(token_a, tg.message_update(42, "How do I install askbase?"))
    [answer_a] = tg.wait_for_messages(token_a, 1, timeout=60)
    response = dc.deliver(app_c.id, dc.ask_interaction(app_c.id, "How do I deploy?"))
    assert response.json()["type"] == 5  # deferred
    [edit] = dc.wait_for_edits(app_c.id, 1, timeout=60)
    sources_button = edit["payload"]["components"][0]["components"][0]
    state_id = parse_custom_id(sources_button["custom_id"])[1]
    thumbs_up_a = answer_a["reply_markup"]["inline_keyboard"][0][0]["callback_data"]

    web = httpx.Client(base_url=qa, timeout=30, follow_redirects=False)
    web.post(
        "/signin/dev", data={"email": "ann@example.com", "csrf_token": _csrf(web, "/signin"), "next": "/"}
    )
    asked = web.post(
        "/api/ask",
        json={"question": "How do I configure sources?"},
        headers={"X-CSRF-Token": _csrf(web, "/")},
    )
    assert asked.status_code == 200, asked.text
    conversation_id = asked.json()["conversation_id"]
    before = _counts(emulators.project)
    # conversations: the web one, plus one per bot chat (Telegram chat 42, the Discord channel)
    assert before["bots"] == 3 and before["conversations"] == 3 and before["interactions"] >= 1

    # --- crash: every askbase process at once; meanwhile Telegram drops A's webhook -----------------
    local.kill_services()
    tg.lose_webhook(token_a)
    local.start_services()

    # --- nothing lost --------------------------------------------------------------------------------
    after = _counts(emulators.project)
    lost = {key: n - after.get(key, 0) for key, n in before.items() if after.get(key, 0) < n}
    assert lost == {}, f"documents lost: {lost}"

    # running bots come back within one reconcile (botrunner runs one at start-up); stopped stay stopped
    _wait(lambda: tg.webhook(token_a), 60, "the start-up reconcile to re-register bot A's webhook")
    assert tg.webhook(token_b) is None
    assert dc.app(app_c.id).interactions_endpoint_url
    states = {b["id"]: b["status"] for b in api.get("/api/bots").json()["bots"]}
    assert states == {bot_a: "running", bot_b: "stopped", bot_c: "running"}
    _wait(lambda: _ready(qa), 60, "qa to restore the snapshot after the restart")
    tg.send_update(token_a, tg.message_update(42, "And how do I deploy it?"))
    assert len(tg.wait_for_messages(token_a, 2, timeout=60)) == 2

    # the button under the answer sent before the crash still works
    press = dc.deliver(app_c.id, dc.component_interaction(app_c.id, custom_id(Action.SOURCES, state_id)))
    assert press.status_code == 200
    assert press.json()["data"]["flags"] == 64 and "http" in press.json()["data"]["content"]
    # ... and so do 👍 / 👎 under answers sent before the crash: each vote is recorded, on its answer.
    vote = dc.deliver(app_c.id, dc.component_interaction(app_c.id, custom_id(Action.NOT_HELPFUL, state_id)))
    assert vote.json()["data"]["content"] == "Thanks for the feedback!"
    assert tg.send_update(token_a, tg.callback_update(answer_a, thumbs_up_a, user_id=42)).status_code == 200
    db = gcp.firestore_client(emulators.project)

    def votes() -> list[tuple[str, str, str]]:
        found = (snap.to_dict() or {} for snap in db.collection("votes").stream())
        return sorted((v["bot_id"], v["value"], v["platform"]) for v in found)

    _wait(lambda: len(votes()) >= 2, 60, "the votes pressed after the restart")
    assert votes() == sorted([(bot_c, "down", "discord"), (bot_a, "up", "telegram")])

    # the web conversation is still there, for the same signed-in session (same secret, new process)
    history = web.get(f"/api/conversations/{conversation_id}")
    assert history.status_code == 200, history.text
    assert [m["role"] for m in history.json()["messages"]] == ["user", "assistant"]
