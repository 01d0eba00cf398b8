"""End to end in a real browser: the Q&A service under gunicorn on loopback, against the emulators and a
small real index; headless Chromium signs in, asks, follows the answer's sources, reloads, finds the
conversation in the history and exports it. Screenshots go to ``test-output/``.

Chromium comes from the system (Debian's ``chromium`` package), never from ``playwright install``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shared.config import Settings
from shared.emulators import free_port
from tests.qa_corpus import publish

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
CHROMIUM = os.environ.get("ASKBASE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        pytest.fail(
            f"Chromium was not found at {CHROMIUM} or on PATH: install it with "
            "`sudo apt-get install chromium` (or set ASKBASE_CHROMIUM to its path).",
            pytrace=False,
        )
    return path


@contextmanager
def serve_qa(settings: Settings, tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """gunicorn serving services.qa.wsgi:app on a free loopback port, with one snapshot published.

    The process reads its settings from the environment (the ``settings`` fixture's variables plus
    ``extra_env``); yields the base URL once ``/readyz`` reports the index ready.
    """
    publish(settings, tmp_path)
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "PORT": str(port),
            "ASKBASE_QA_URL": f"http://127.0.0.1:{port}",
            "ASKBASE_ADMIN_EMAILS": "e2e@example.com",
            "GUNICORN_THREADS": "4",
        }
    )
    env.update(extra_env or {})
    log_path = tmp_path / "qa.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "services/qa/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "services.qa.wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail("qa exited during start:\n" + log_path.read_text()[-3000:], pytrace=False)
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as resp:
                    if b'"ready"' in resp.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("qa never became ready:\n" + log_path.read_text()[-3000:], pytrace=False)
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def qa_server(emulators, settings: Settings, tmp_path: Path) -> Iterator[str]:
    with serve_qa(settings, tmp_path) as base:
        yield base


def test_sign_in_ask_see_sources_reload_find_in_history_and_export(qa_server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = _chromium()
    OUTPUT.mkdir(exist_ok=True)
    origins: set[str] = set()
    console_errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 860})
            page = context.new_page()
            page.on("request", lambda r: origins.add(urlsplit(r.url).netloc))
            page.on(
                "console",
                lambda m: (
                    console_errors.append(f"{m.text} ({m.location.get('url')})")
                    if m.type == "error"
                    else None
                ),
            )

            # Anonymous → sign-in page → dev sign-in → back to the chat.
            page.goto(qa_server + "/")
            expect(page).to_have_url(qa_server + "/signin?next=/")
            page.get_by_label("Email").fill("e2e@example.com")
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(qa_server + "/")
            expect(page.get_by_text("e2e@example.com (admin)")).to_be_visible()

            # Ask with the keyboard; the button shows the loading state until the answer arrives.
            question = page.get_by_label("Your question")
            question.fill("How do I rotate a Telegram bot token?")
            question.press("Enter")
            answer = page.locator(".message-assistant").last
            expect(answer).to_be_visible(timeout=20_000)
            expect(answer).to_contain_text("stop the bot, paste the new token")
            expect(page.locator("#ask-button")).to_have_text("Ask")
            expect(page.locator("#ask-button")).to_be_enabled()
            source = answer.locator(".sources a").first
            expect(source).to_have_attribute("href", "https://docs.example.com/bots/telegram#rotating")
            expect(answer.locator("a.cite").first).to_have_attribute(
                "href", "https://docs.example.com/bots/telegram#rotating"
            )
            expect(page).to_have_url(re.compile(r"/c/[0-9a-f]{32}$"))
            conversation_url = page.url
            page.screenshot(path=str(OUTPUT / "qa-e2e-answer.png"), full_page=True)

            # Reload: the conversation is rendered by the server and listed in the history.
            page.reload()
            expect(page.locator(".message-user p")).to_have_text("How do I rotate a Telegram bot token?")
            expect(page.locator(".message-assistant .sources a").first).to_be_visible()
            page.goto(qa_server + "/")
            entry = page.locator("#history-list a", has_text="How do I rotate a Telegram bot token?")
            expect(entry).to_be_visible()
            page.get_by_label("Search conversations").fill("telegram")
            page.get_by_role("button", name="Search").click()
            expect(entry).to_be_visible()
            entry.click()
            expect(page).to_have_url(conversation_url + "?q=telegram")  # the sidebar stays searched

            # Export as Markdown and JSON.
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Markdown").click()
            markdown = Path(download_info.value.path()).read_text()
            assert "## How do I rotate a Telegram bot token?" in markdown
            assert "https://docs.example.com/bots/telegram#rotating" in markdown
            with page.expect_download() as download_info:
                page.get_by_role("link", name="JSON").click()
            assert '"role": "assistant"' in Path(download_info.value.path()).read_text()

            # The status page shows the index being served.
            page.get_by_role("link", name="Data status").click()
            expect(page.get_by_role("heading", name="Data status")).to_be_visible()
            expect(page.locator("table").first).to_contain_text("docs")
            expect(page.get_by_role("button", name="Refresh now")).to_be_visible()
            page.screenshot(path=str(OUTPUT / "qa-e2e-status.png"), full_page=True)

            # Readable on a phone.
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, storage_state=context.storage_state()
            )
            mobile = phone.new_page()
            mobile.goto(conversation_url)
            width = mobile.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"page scrolls sideways on a phone ({width}px)"
            mobile.screenshot(path=str(OUTPUT / "qa-e2e-phone.png"), full_page=True)
        finally:
            browser.close()

    host = urlsplit(qa_server).netloc
    assert origins <= {host}, f"the page fetched from other origins: {origins - {host}}"
    assert console_errors == []
