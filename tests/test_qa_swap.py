"""The real thing: snapshots published to the GCS emulator, restored by the Q&A app, and swapped while
concurrent clients ask questions: zero failed requests, old copies deleted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from services.qa.app import create_app
from shared.config import Settings
from shared.gcp import firestore_client
from shared.qa.live_index import LiveIndex
from tests.qa_corpus import publish
from tests.qa_support import ask, sign_in

pytestmark = pytest.mark.emulators


def test_app_restores_the_newest_snapshot_and_answers_with_real_sources(
    emulators, settings: Settings, tmp_path: Path
) -> None:
    manifest = publish(settings, tmp_path)
    live = LiveIndex.from_settings(settings)
    live.start()
    try:
        app = create_app(settings, live_index=live, db=firestore_client(settings.project_id))
        client = app.test_client()
        ready = client.get("/readyz").json
        assert ready["status"] == "ready" and ready["snapshot_id"] == manifest.id
        assert ready["counts_by_source"] == {"docs": manifest.chunk_count}
        token = sign_in(client, "a@example.com")
        body = ask(client, token, {"question": "How do I rotate a Telegram bot token?"}).json
        assert body["sources"][0]["url"] == "https://docs.example.com/bots/telegram#rotating"
        assert "stop the bot, paste the new token" in body["answer"]
        assert "[1]" in body["answer"]
        nothing = ask(client, token, {"question": "What is the capital of Mongolia?"}).json
        assert nothing["sources"] == [] and "couldn't find" in nothing["answer"]
        # A short follow-up is read together with the question before it.
        first = ask(client, token, {"question": "How is the snapshot pointer replaced?"}).json
        alone = ask(client, token, {"question": "how often?"}).json
        assert alone["sources"] == []
        follow = ask(
            client, token, {"question": "how often?", "conversation_id": first["conversation_id"]}
        ).json
        assert follow["sources"] and follow["sources"][0]["url"].startswith(
            "https://docs.example.com/snapshots"
        )
    finally:
        live.stop()


def test_swap_under_concurrent_requests_has_zero_failures(
    emulators, settings: Settings, tmp_path: Path
) -> None:
    first = publish(settings, tmp_path, version=1)
    settings = settings.model_copy(update={"snapshot_poll_seconds": 0.2, "rate_limit_per_minute": 100_000})
    live = LiveIndex.from_settings(settings)
    live.start()
    app = create_app(settings, live_index=live, db=firestore_client(settings.project_id))
    data_dir = live.data_dir
    tokens = []
    clients = []
    for i in range(6):
        client = app.test_client()
        tokens.append(sign_in(client, f"user{i}@example.com"))
        clients.append(client)

    failures: list[str] = []
    answered: dict[str, int] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def worker(client, token) -> None:
        while not stop.is_set():
            try:
                response = client.post(
                    "/api/ask",
                    json={"question": "What do the release notes version say about snapshots?"},
                    headers={"X-CSRF-Token": token},
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.get_data(as_text=True)[:200]}")
                    continue
                snapshot = live.status().snapshot_id or ""
                with lock:
                    answered[snapshot] = answered.get(snapshot, 0) + 1
            except Exception as exc:  # any exception is a failed request
                failures.append(repr(exc))

    threads = [threading.Thread(target=worker, args=pair) for pair in zip(clients, tokens, strict=True)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        second = publish(settings, tmp_path, version=2)
        deadline = time.monotonic() + 30
        while live.status().snapshot_id != second.id and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.status().snapshot_id == second.id, live.status().last_error
        third = publish(settings, tmp_path, version=3)
        deadline = time.monotonic() + 30
        while live.status().snapshot_id != third.id and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.status().snapshot_id == third.id, live.status().last_error
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        assert failures == []
        assert answered.get(first.id, 0) > 0 and answered.get(third.id, 0) > 0, answered
        # New snapshot's content is searchable after the swap.
        client, token = clients[0], tokens[0]
        body = ask(client, token, {"question": "release notes number 3"}).json
        assert any("release-notes/v3" in s["url"] for s in body["sources"])
        # Old unpacked copies are gone: only the one being served is left.
        copies = [p for p in data_dir.glob("index-*")]
        assert len(copies) == 1, copies
    finally:
        live.stop()
    assert list(data_dir.glob("index-*")) == []
