"""Every page of the web app in a real browser, at desktop and phone width, under the real CSP.

The Q&A service runs under gunicorn (with the production Content-Security-Policy, no 'unsafe-inline')
against the emulators, the fake Telegram and Discord APIs and an in-process botrunner. Headless Chromium
visits the sign-in page, the chat and a conversation, the data status, the bot list (empty and with
bots), the add form for both platforms, a bot's page, the delete confirmation, two 404s and two API
addresses opened as pages. The test fails on any console error, any uncaught exception and any CSP
violation (``securitypolicyviolation`` events recorded by an init script, plus Chromium's "Refused to
..." console errors), and checks what the bot pages' CSS and JavaScript must visibly do: only the chosen
platform's fields on the add form, radios beside their labels, styled status badges, and live status
polling that updates a badge in place.

Behaviour checks are collected rather than raised one by one, so a failing run lists everything broken.
Screenshots of every page go to ``test-output/pages-<width>-<name>.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.test_browser_e2e import CHROMIUM_ARGS, OUTPUT, _chromium

if TYPE_CHECKING:  # the fixture comes from the plugin below; importing it here would skip its rewriting
    from tests.browser_stack import BrowserStack

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings; browser_stack.
pytest_plugins = ["tests.fakes.bot_fixtures", "tests.browser_stack"]

EMAIL = "e2e@example.com"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
STATUS_JSON = "/bots/status.json"

# Runs in every document before its own scripts: records CSP violations on window and reports them to
# the test through an exposed binding (which survives navigations).
CSP_RECORDER = """
(() => {
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    const v = {directive: e.effectiveDirective || e.violatedDirective, blocked: e.blockedURI,
               sample: e.sample, source: e.sourceFile, line: e.lineNumber, page: location.href};
    window.__cspViolations.push(v);
    if (window.__askbaseCsp) window.__askbaseCsp(v);
  }, true);
})();
"""
# Wait for a rendered frame and one more task: queued violation events have been dispatched by then.
SETTLE = "() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))"
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")


@dataclass
class Guard:
    """Collects console errors, uncaught exceptions and CSP violations of one browser context."""

    base: str
    problems: list[str] = field(default_factory=list)
    csp: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    expected: set[tuple[str, int]] = field(default_factory=set)  # (path, status) the test provokes
    checks: list[str] = field(default_factory=list)  # failed behaviour checks

    def attach(self, context: Any) -> None:
        context.add_init_script(script=CSP_RECORDER)
        context.expose_binding("__askbaseCsp", lambda source, v: self._violation(v))
        context.on("page", self._watch)

    def _watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught exception on {page.url}: {exc}"))

    def _violation(self, v: dict[str, Any]) -> None:
        key = (v.get("page"), v.get("directive"), v.get("source"), v.get("line"), v.get("sample"))
        self.csp.setdefault(key, v)

    def _console(self, message: Any) -> None:
        url = message.location.get("url") or ""
        where = f"{url}:{message.location.get('lineNumber')}"
        if "Content Security Policy" in message.text:
            # Chromium's own report of a violation: keep its first sentence (the rest is advice).
            self.problems.append(f"CSP console {message.type} at {where}: {message.text.split('. ')[0]}")
            return
        if message.type != "error":
            return
        failed = FAILED_LOAD.search(message.text)
        if failed and (urlsplit(url).path, int(failed.group(1))) in self.expected:
            return  # the document of a page the test deliberately asked to fail
        self.problems.append(f"console error at {where}: {message.text}")

    def settle(self, page: Any) -> None:
        page.wait_for_load_state("load")
        page.evaluate(SETTLE)
        for v in page.evaluate("() => window.__cspViolations || []"):
            self._violation(v)

    def check(self, label: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except AssertionError as exc:
            self.checks.append(f"{label}: {str(exc).splitlines()[0] if str(exc) else 'failed'}")

    def report(self) -> list[str]:
        csp = [
            f"CSP violation on {urlsplit(v['page']).path}: {v['directive']} blocked {v['blocked']!r}"
            f" at {urlsplit(v['source'] or '').path}:{v['line']} sample={v['sample']!r}"
            for v in self.csp.values()
        ]
        # The same template problem shows on every visit of a page: report it once.
        return list(dict.fromkeys(csp + self.problems + ["behaviour: " + c for c in self.checks]))


def _badge_style(badge: Any) -> dict[str, str]:
    return badge.evaluate(
        "e => { const s = getComputedStyle(e);"
        " return {bg: s.backgroundColor, radius: s.borderTopLeftRadius, display: s.display,"
        " padding: s.paddingLeft}; }"
    )


def _assert_badge_styled(badge: Any) -> None:
    style = _badge_style(badge)
    assert style["bg"] not in ("rgba(0, 0, 0, 0)", "transparent"), f"badge has no background: {style}"
    assert style["radius"] not in ("", "0px"), f"badge is not rounded: {style}"
    # inline-block, or block where a flex heading lays it out: either way a padded box, not bare text.
    assert style["display"] != "inline" and style["padding"] != "0px", f"badge is not a pill: {style}"


def _assert_beside_label(page: Any, role: str, name: str) -> None:
    control = page.get_by_role(role, name=name, exact=True)
    box = control.bounding_box()
    label = page.locator("label", has=control).bounding_box()
    assert box and label, f"{role} {name!r} is not rendered"
    assert box["width"] <= 32, f"{role} {name!r} is {box['width']:.0f}px wide (stretched like a text input)"
    assert label["height"] <= 3 * box["height"], f"{role} {name!r} is not on the same line as its label"


def _assert_platform_fields(page: Any, chosen: str) -> None:
    from playwright.sync_api import expect

    other = "discord" if chosen == "telegram" else "telegram"
    expect(page.get_by_role("radio", name=chosen.capitalize(), exact=True)).to_be_checked()
    expect(page.locator(f"#{chosen}-fields")).to_be_visible()
    expect(page.locator(f"#{other}-fields")).to_be_hidden()
    visible, hidden = ("#token", "#application_id") if chosen == "telegram" else ("#application_id", "#token")
    expect(page.locator(visible)).to_be_visible()
    expect(page.locator(hidden)).to_be_hidden()


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_every_page_without_console_errors_or_csp_violations(browser_stack: BrowserStack, width: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    viewport = VIEWPORTS[width]
    base = browser_stack.qa
    guard = Guard(base)
    OUTPUT.mkdir(exist_ok=True)
    visited: list[str] = []

    def visit(page: Any, name: str, path: str | None = None) -> None:
        """Open ``path`` (or stay on the current page), wait until it is settled, record it."""
        if path is not None:
            page.goto(base + path)
        guard.settle(page)
        visited.append(name)
        page.screenshot(path=str(OUTPUT / f"pages-{width}-{name}.png"), full_page=True)
        scroll = page.evaluate("document.documentElement.scrollWidth")
        guard.check(
            f"{name} fits the {width} viewport",
            lambda: _assert(scroll <= viewport["width"], f"scrolls sideways ({scroll}px)"),
        )

    def wait_for_poll(page: Any, action: Callable[[], Any], where: str) -> None:
        """``action`` must lead to a request for the status JSON (the poller's first tick is 1 s later)."""
        try:
            with page.expect_request(_is_status_json, timeout=15_000) as request:
                action()
            response = request.value.response()
            assert response is not None and response.status == 200, f"status JSON answered {response}"
        except AssertionError as exc:
            guard.checks.append(f"{where}: live status poll: {exc}")
        except Exception as exc:  # playwright's TimeoutError
            if type(exc).__name__ != "TimeoutError":
                raise
            guard.checks.append(f"{where}: the page never requested {STATUS_JSON}")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=viewport)
            guard.attach(context)
            page = context.new_page()

            # Sign-in page (anonymous), then dev sign-in.
            page.goto(base + "/")
            expect(page).to_have_url(base + "/signin?next=/")
            visit(page, "signin")
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(base + "/")

            # Chat: ask once so there is a conversation and a history.
            visit(page, "chat")
            page.get_by_label("Your question").fill("How do I rotate a Telegram bot token?")
            page.get_by_role("button", name="Ask", exact=True).click()
            expect(page.locator(".message-assistant").last).to_contain_text(
                "paste the new token", timeout=20_000
            )
            expect(page).to_have_url(re.compile(r"/c/[0-9a-f]{32}$"))
            conversation = urlsplit(page.url).path
            visit(page, "conversation", conversation)
            _show_history(page)
            expect(page.locator("#history-list a").first).to_be_visible()
            visit(page, "history-search", "/?q=telegram")
            _show_history(page)
            expect(page.locator("#history-list a", has_text="rotate a Telegram")).to_be_visible()
            visit(page, "history-open")

            visit(page, "status", "/status")
            expect(page.get_by_role("heading", name="Data status")).to_be_visible()

            # Bots: the empty list.
            visit(page, "bots-empty", "/bots")
            expect(page.get_by_text("You have no bots yet")).to_be_visible()

            # The add form: only the chosen platform's fields, radios beside their labels, the toggle.
            visit(page, "bots-new-telegram", "/bots/new")
            guard.check("add form, Telegram chosen", lambda: _assert_platform_fields(page, "telegram"))
            guard.check("Telegram radio", lambda: _assert_beside_label(page, "radio", "Telegram"))
            guard.check("Discord radio", lambda: _assert_beside_label(page, "radio", "Discord"))
            guard.check(
                "start checkbox", lambda: _assert_beside_label(page, "checkbox", "Start the bot right away")
            )
            page.get_by_role("radio", name="Discord", exact=True).check()
            guard.check("add form, toggled to Discord", lambda: _assert_platform_fields(page, "discord"))
            page.get_by_role("radio", name="Telegram", exact=True).check()
            guard.check(
                "add form, toggled back to Telegram", lambda: _assert_platform_fields(page, "telegram")
            )

            visit(page, "bots-new-discord", "/bots/new?platform=discord")
            guard.check("add form opened for Discord", lambda: _assert_platform_fields(page, "discord"))

            # A rejected token: the form comes back (400) with the error and the platform kept.
            visit(page, "bots-new-again", "/bots/new")
            guard.expected.add(("/bots/new", 400))
            page.get_by_label("Name").fill("Docs")
            page.locator("#token").fill("1234567890:AAHk1H6tK7cbbX5fL9m3o0nV8rQ2wYzAbCd")
            page.get_by_role("button", name="Add bot").click()
            expect(page.locator("#form-error")).to_contain_text("Telegram rejected this token")
            # Beside the field, marked as Telegram's verdict (not a format check of ours).
            expect(page.locator("#token-error")).to_contain_text("Checked with Telegram: Telegram rejected")
            expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
            visit(page, "bots-new-error")
            guard.check("add form after an error", lambda: _assert_platform_fields(page, "telegram"))
            guard.expected.discard(("/bots/new", 400))

            # Add a Telegram bot (started): its page polls the live status.
            token = browser_stack.tg.add_bot(username="docs_bot")
            page.locator("#token").fill(token)
            wait_for_poll(page, lambda: page.get_by_role("button", name="Add bot").click(), "bot page")
            expect(page).to_have_url(re.compile(r"/bots/[^/]+$"))
            telegram_id = urlsplit(page.url).path.rsplit("/", 1)[-1]
            visit(page, "bot-detail")
            badge = page.locator(f'[data-bot-status="{telegram_id}"]')
            expect(badge).to_have_text("running")
            guard.check("badge on the bot page", lambda: _assert_badge_styled(badge))
            # Stopped behind the page's back: the badge follows without a reload.
            stopped = httpx.post(
                f"{browser_stack.botrunner.url}/api/bots/{telegram_id}/stop",
                headers={"X-Askbase-User": EMAIL},
                timeout=30,
            )
            assert stopped.status_code == 200, stopped.text
            guard.check(
                "badge updated by the poller", lambda: expect(badge).to_have_text("stopped", timeout=12_000)
            )
            guard.check(
                "badge class updated by the poller",
                lambda: expect(badge).to_have_class("badge badge-stopped"),
            )

            # Add a Discord bot (not started).
            app = browser_stack.dc.add_application("Docs app")
            browser_stack.discord_keys["*"] = app.public_key
            visit(page, "bots-new-discord-filled", "/bots/new")
            page.get_by_role("radio", name="Discord", exact=True).check()
            page.get_by_label("Name").fill("Discord docs")
            page.get_by_label("Application ID").fill(app.id)
            page.get_by_label("Public key").fill(app.public_key)
            page.locator("#bot_token").fill(app.bot_token)
            page.get_by_role("checkbox", name="Start the bot right away").uncheck()
            page.get_by_role("button", name="Add bot").click()
            expect(page).to_have_url(re.compile(r"/bots/[^/]+$"))
            discord_id = urlsplit(page.url).path.rsplit("/", 1)[-1]
            visit(page, "bot-detail-discord")
            expect(page.locator(f'[data-bot-status="{discord_id}"]')).to_have_text("stopped")

            # The list with both bots: styled badges, and it polls too.
            wait_for_poll(page, lambda: visit(page, "bots", "/bots"), "bot list")
            expect(page.locator(".bot-card")).to_have_count(2)
            for bot_id in (telegram_id, discord_id):
                card_badge = page.locator(f'#bot-{bot_id} [data-bot-status="{bot_id}"]')
                guard.check(f"badge of {bot_id} on the list", lambda b=card_badge: _assert_badge_styled(b))

            # Delete confirmation, then delete.
            visit(page, "bot-delete", f"/bots/{discord_id}/delete")
            page.get_by_label(re.compile("Type the bot's name")).fill("Discord docs")
            page.get_by_role("button", name="Delete bot").click()
            expect(page).to_have_url(base + "/bots")
            visit(page, "bots-after-delete")
            expect(page.locator(".bot-card")).to_have_count(1)

            # Error pages: in the app's layout, in words, with a way back.
            for name, path in (("404", "/no-such-page"), ("bot-404", "/bots/no-such-bot")):
                guard.expected.add((path, 404))
                response = page.goto(base + path)
                assert response is not None and response.status == 404, (path, response and response.status)
                visit(page, name)
                expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
                expect(page.get_by_role("link", name="Back to the chat")).to_be_visible()
                expect(page.get_by_role("navigation", name="Main")).to_be_visible()
            # An API address opened in the browser: a page that explains it, not raw JSON.
            guard.expected.add(("/api/ask", 405))
            for name, path, status, heading in (
                ("api-page", "/api/conversations", 200, "This address is for programs"),
                ("api-error-page", "/api/ask", 405, "That doesn't work here"),
            ):
                response = page.goto(base + path)
                assert response is not None and response.status == status, (
                    path,
                    response and response.status,
                )
                assert response.headers["content-type"].startswith("text/html"), response.headers
                visit(page, name)
                expect(page.get_by_role("heading", name=heading)).to_be_visible()
        finally:
            browser.close()

    expected_pages = {
        "signin", "chat", "conversation", "status", "bots-empty", "bots-new-telegram", "bots-new-discord",
        "bots-new-error", "bot-detail", "bots", "bot-delete", "404", "api-page", "api-error-page",
    }  # fmt: skip
    assert expected_pages <= set(visited), expected_pages - set(visited)
    found = guard.report()
    assert not found, f"{len(found)} problem(s) at {width} width:\n" + "\n".join(found)


def _show_history(page: Any) -> None:
    """Open the history: on a phone it is a drawer behind the chat bar's History button."""
    toggle = page.get_by_role("button", name="History", exact=True)
    if toggle.is_visible():
        toggle.click()


def _is_status_json(request: Any) -> bool:
    return urlsplit(request.url).path == STATUS_JSON


def _assert(condition: bool, message: str) -> None:
    assert condition, message
