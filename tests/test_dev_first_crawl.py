"""`askbase dev`'s first crawl: it waits as long as the crawl takes, shows progress, and reports a failed
crawl as a message (no traceback). The scrape function is a loopback stand-in that answers when told."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import click
import pytest

from shared.cli import dev

GUARD = 60.0  # a failure guard only: every wait below ends on an event first


class HeldScrape:
    """POST / answers only once :attr:`release` is set, with :attr:`status` and a run summary."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.status = 200
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                assert held.release.wait(GUARD)
                body = json.dumps({"status": "published", "pages_fetched": 3, "snapshot_id": "s1"}).encode()
                self.send_response(held.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scrape() -> Iterator[HeldScrape]:
    held = HeldScrape()
    try:
        yield held
    finally:
        held.close()


class ScriptedWatch:
    """Stands in for the Firestore progress reader: a new line on every look; `looked` after 3 looks.

    The counters are reset by the ``watch`` fixture before the waiting thread starts (resetting them in
    ``__init__``, which runs in that thread, raced with the test reading ``looked``)."""

    looks = 0
    looked = threading.Event()

    def __init__(self, project: str) -> None:
        self.project = project

    def line(self) -> str | None:
        type(self).looks += 1
        if self.looks >= 3:
            self.looked.set()
        return f"crawl docs {self.looks}/500" if self.looks % 2 else None  # None: unchanged since last time


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> type[ScriptedWatch]:
    ScriptedWatch.looks = 0
    ScriptedWatch.looked = threading.Event()
    monkeypatch.setattr(dev, "_ProgressWatch", ScriptedWatch)
    return ScriptedWatch


def _first_crawl_in_thread(scrape: HeldScrape, outcome: dict) -> threading.Thread:
    stack = SimpleNamespace(project="p", services={"scrape": SimpleNamespace(url=scrape.url)})

    def go() -> None:
        try:
            outcome["summary"] = dev._first_crawl(stack, Path("logs/scrape.log"))  # type: ignore[arg-type]
        except click.ClickException as exc:
            outcome["error"] = exc.message

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_a_long_first_crawl_is_waited_for_and_shows_progress(
    scrape: HeldScrape,
    watch: type[ScriptedWatch],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(dev, "PROGRESS_POLL_SECONDS", 0.01)
    outcome: dict = {}
    thread = _first_crawl_in_thread(scrape, outcome)
    assert watch.looked.wait(GUARD)
    assert thread.is_alive() and not outcome  # still waiting for the crawl, looking at its progress
    scrape.release.set()
    thread.join(GUARD)
    assert outcome == {"summary": {"status": "published", "pages_fetched": 3, "snapshot_id": "s1"}}
    out = capsys.readouterr().out
    assert "crawl docs 1/500" in out and "crawl docs 3/500" in out
    assert "crawl docs 2/500" not in out  # an unchanged line is not repeated


def test_a_failed_first_crawl_is_a_message_with_the_log_path(
    scrape: HeldScrape, watch: type[ScriptedWatch]
) -> None:
    scrape.status = 500
    scrape.release.set()
    outcome: dict = {}
    _first_crawl_in_thread(scrape, outcome).join(GUARD)
    assert "the first crawl failed (500)" in outcome["error"]
    assert "logs/scrape.log" in outcome["error"]


def test_a_scrape_function_that_is_gone_is_a_message_too(watch: type[ScriptedWatch]) -> None:
    held = HeldScrape()
    held.close()  # nothing listens there any more
    outcome: dict = {}
    _first_crawl_in_thread(held, outcome).join(GUARD)
    assert "the first crawl failed (URLError)" in outcome["error"]
