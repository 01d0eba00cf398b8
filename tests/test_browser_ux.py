"""Every page of the web app, as each kind of user sees it, at 1280x900 and 390x844, light and dark.

One stack (qa under gunicorn with its production CSP, an in-process botrunner, the fake Telegram API)
and one headless Chromium serve the whole run; each user keeps one browser page, which is navigated
once per page and viewport and switched between light and dark in place (``prefers-color-scheme``
emulation restyles a loaded page). On every page and variant the test asserts:

* no console error, uncaught exception or CSP violation (:class:`tests.test_browser_pages.Guard`);
* no horizontal scroll at 390 px (nor at 1280 px);
* every interactive element (link, button, form control, ``<summary>``) has an accessible name, as
  Chromium's own accessibility tree computes it (DevTools ``Accessibility.getFullAXTree``);
* axe-core, from its npm package (``tests/axe``, installed by ``scripts/system-deps.sh``) and run in
  the page, reports no serious or critical violation, and no landmark violation at all.

Problems are collected, not raised one by one, so a failing run lists everything broken.

The pages and who sees them (routes of ``services/qa``; botrunner serves JSON only, no pages):
anonymous: sign-in, 404; a signed-in user: the chat's welcome, a conversation with its passages open,
the history search (with the phone's history drawer open), a conversation being renamed, a question
whose answer failed (with Retry), data status, the empty bot list, the bot form for each platform and
with errors, the gaps report (403 for them), 404, an API address opened as a page (200 and 405); a bot
owner: the bot list, each of their bots' pages (Telegram and Discord), a delete confirmation, their
gaps report, an unknown bot (404); an admin: data status with the refresh button, the gaps report, a
bad gaps filter (400); a user past their read limit: 429; a bot owner while botrunner is down: 503. A
500 page is not reachable without a fault in qa (it is ``error.html``, as are the 400, 403, 404 and
429 pages above).

With ``ASKBASE_UX_SCREENS=<dir>`` every page and variant is also saved there as a full-page PNG
(``bench/ux_screens.py`` writes them to ``bench/ux/``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.test_browser_e2e import CHROMIUM_ARGS, ROOT, _chromium
from tests.test_browser_pages import Guard

if TYPE_CHECKING:  # BrowserStack: the fixture's plugin is imported by pytest, so its asserts are rewritten
    from playwright.sync_api import ViewportSize

    from tests.browser_stack import BrowserStack

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

# Fixtures: tg, dc, tg_hook, dc_hook, discord_keys, bot_settings; browser_stack.
pytest_plugins = ["tests.fakes.bot_fixtures", "tests.browser_stack"]

AXE = ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
AXE_PIN = json.loads((ROOT / "tests" / "axe" / "package.json").read_text())["dependencies"]["axe-core"]
VIEWPORTS: dict[str, ViewportSize] = {
    "1280x900": {"width": 1280, "height": 900},
    "390x844": {"width": 390, "height": 844},
}
SCHEMES = ("light", "dark")
ADMIN = "e2e@example.com"  # serve_qa makes this address an admin
# qa's read limit here: the rate-limited user spends it to see the 429 page; nobody else comes close.
READS_PER_MINUTE = 200
BLOCKING_IMPACTS = ("serious", "critical")
# Chromium accessibility roles a person operates (what the "accessible name" rule is about).
INTERACTIVE_ROLES = {
    "button", "link", "textbox", "searchbox", "checkbox", "radio", "combobox", "listbox", "option",
    "menuitem", "menuitemcheckbox", "menuitemradio", "tab", "switch", "slider", "spinbutton",
    "DisclosureTriangle", "PopUpButton",
}  # fmt: skip
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
# axe's violations of the blocking impacts, and its landmark rules at any impact (it rates most of them
# "moderate"; content outside the page's regions is skipped by landmark navigation).
AXE_RUN = """async (impacts) => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  const landmark = (v) => v.id === "region" || v.id.startsWith("landmark-");
  return result.violations.filter((v) => impacts.includes(v.impact) || landmark(v)).map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + (n.failureSummary
      ? " (" + n.failureSummary.split("\\n").slice(1).join(" ").trim() + ")" : "")),
    more: Math.max(0, v.nodes.length - 4)}));
}"""


def _axe_source() -> str:
    """axe-core's bundle; a missing or other version fails the test with the command that installs it."""
    install = f"run `scripts/system-deps.sh` (or `npm ci --prefix tests/axe`): it installs axe-core {AXE_PIN}"
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed at {AXE.relative_to(ROOT)}: {install}.", pytrace=False)
    installed = json.loads((AXE.parent / "package.json").read_text())["version"]
    if installed != AXE_PIN:
        pytest.fail(f"axe-core {installed} is installed, tests/axe pins {AXE_PIN}: {install}.", pytrace=False)
    return AXE.read_text()


@pytest.fixture
def qa_env() -> dict[str, str]:
    """qa's read limit here (overrides the stack plugin's fixture): the 429 page spends it."""
    return {"ASKBASE_READ_RATE_LIMIT_PER_MINUTE": str(READS_PER_MINUTE)}


@dataclass
class Visit:
    """One page as one user sees it: ``path`` is opened (expecting ``status``), then ``prepare`` runs."""

    name: str
    path: str
    status: int = 200
    before: Callable[[Person], Any] | None = None  # before each opening: state that time could undo
    prepare: Callable[[Person], Any] | None = None
    cleanup: Callable[[Person], Any] | None = None  # after the checks: leave no state for the next visit


@dataclass
class Person:
    """One user's browser page (reused for every page they see), its guard and a DevTools session."""

    page: Any
    guard: Guard
    cdp: Any


@dataclass
class Auditor:
    """Opens pages in each variant and collects what fails the four checks."""

    base: str
    browser: Any
    axe: str
    screens: Path | None
    problems: list[str] = field(default_factory=list)
    guards: list[Guard] = field(default_factory=list)

    def user(self, email: str | None) -> Person:
        """A page in a fresh browser context, signed in as ``email`` (None: anonymous)."""
        guard = Guard(self.base)
        self.guards.append(guard)
        context = self.browser.new_context(viewport=VIEWPORTS["1280x900"], color_scheme="light")
        guard.attach(context)
        page = context.new_page()
        if email is not None:
            page.goto(self.base + "/signin")
            page.get_by_label("Email").fill(email)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(self.base + "/")
        return Person(page, guard, context.new_cdp_session(page))

    def audit(self, person: Person, who: str, visits: list[Visit]) -> None:
        """Every visit at both sizes, light and dark."""
        page = person.page
        for size, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)
            for visit in visits:
                if visit.status != 200:
                    person.guard.expected.add((urlsplit(visit.path).path, visit.status))
                if visit.before is not None:
                    visit.before(person)
                response = page.goto(self.base + visit.path)
                status = response.status if response is not None else None
                where = f"{who} {visit.name} at {size}"
                if status != visit.status:
                    self.problems.append(f"{where}: {visit.path} answered {status}, expected {visit.status}")
                    continue
                if visit.prepare is not None:
                    visit.prepare(person)
                for scheme in SCHEMES:
                    page.emulate_media(color_scheme=scheme)
                    self._check(person, f"{where} {scheme}", f"{who}-{visit.name}-{size}-{scheme}")
                if visit.cleanup is not None:
                    visit.cleanup(person)
            page.emulate_media(color_scheme="light")

    def _check(self, person: Person, where: str, shot: str) -> None:
        page = person.page
        person.guard.settle(page)
        if self.screens is not None:
            page.screenshot(path=str(self.screens / f"{shot}.png"), full_page=True, animations="disabled")
        self.problems += [f"{where}: {problem}" for problem in page_problems(page, person.cdp, self.axe)]

    def report(self) -> list[str]:
        """Every problem found, each once: the audit's own and each user's guard's."""
        found = list(self.problems)
        for guard in self.guards:
            found += guard.report()
        return list(dict.fromkeys(found))


def page_problems(page: Any, cdp: Any, axe: str) -> list[str]:
    """What fails on the page as it is shown now: sideways scroll, unnamed controls, axe's serious and
    critical violations (contrast is among them, so this runs again after a colour scheme change)."""
    problems = []
    overflow = page.evaluate(NO_SIDEWAYS_SCROLL)
    if overflow > 0:
        problems.append(f"scrolls sideways by {overflow}px")
    problems += [f"{element} has no accessible name" for element in _unnamed_controls(cdp)]
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe + "\n;undefined")  # DevTools evaluation: not subject to the page's CSP
    for v in page.evaluate(AXE_RUN, list(BLOCKING_IMPACTS)):
        more = f" and {v['more']} more" if v["more"] else ""
        problems.append(f"axe {v['impact']} {v['id']} ({v['help']}): {'; '.join(v['nodes'])}{more}")
    return problems


def _unnamed_controls(cdp: Any) -> list[str]:
    """Interactive nodes of Chromium's accessibility tree whose computed name is empty."""
    nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    unnamed = []
    for node in nodes:
        if node.get("ignored") or node.get("role", {}).get("value") not in INTERACTIVE_ROLES:
            continue
        if str(node.get("name", {}).get("value") or "").strip():
            continue
        described = cdp.send("DOM.describeNode", {"backendNodeId": node["backendDOMNodeId"]})["node"]
        attrs = described.get("attributes", [])
        pairs = dict(zip(attrs[::2], attrs[1::2], strict=True))
        label = "".join(f'[{k}="{pairs[k]}"]' for k in ("id", "class", "name", "href") if k in pairs)
        unnamed.append(f"{node['role']['value']} <{described.get('localName')}{label}>")
    return unnamed


def _open_passages(person: Person) -> None:
    """Expand every source's quoted passage, so its text is checked too (contrast, names)."""
    for summary in person.page.locator("details:not([open]) > summary").all():
        summary.click()


def _open_history(person: Person) -> None:
    """On a phone the history is a drawer behind the chat bar's History button: open it."""
    page = person.page
    toggle = page.get_by_role("button", name="History", exact=True)
    if toggle.is_visible():
        toggle.click()
        page.locator("#history-list a").first.wait_for(state="visible")


def _rename_first_conversation(person: Person) -> None:
    """Open the history and start renaming its first conversation: the rename field is shown."""
    _open_history(person)
    person.page.locator("#history-list .rename").first.click()
    person.page.locator(".rename-form input").wait_for(state="visible")


def _fail_a_question(person: Person) -> None:
    """Ask while ``/api/ask`` answers 500: the question stays with its error and a Retry button."""
    page = person.page
    person.guard.expected.add(("/api/ask", 500))
    page.route(
        "**/api/ask",
        lambda route: route.fulfill(
            status=500, content_type="application/json", body='{"error": "internal error"}'
        ),
    )
    try:
        page.get_by_label("Your question").fill("Where are the docs about webhooks?")
        page.get_by_role("button", name="Ask", exact=True).click()
        page.get_by_role("button", name="Retry").last.wait_for(state="visible")
    finally:
        page.unroute("**/api/ask")


def _remove_failed_questions(person: Person) -> None:
    """Remove the failed questions (the tab keeps them across reloads) so the next chat is a new one."""
    remove = person.page.locator(".message-error .remove")
    for _ in range(remove.count()):
        remove.first.click()
    assert remove.count() == 0, "a failed question could not be removed"


def _ask(person: Person, question: str) -> str:
    """Ask in the chat; the conversation's path once the answer is shown."""
    page = person.page
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()
    page.locator(".message-assistant:not(.pending)").last.wait_for(state="visible", timeout=20_000)
    page.wait_for_url(re.compile(r"/c/[0-9a-f]{32}$"))
    return str(urlsplit(page.url).path)


def _create_bot(stack: BrowserStack, owner: str, fields: dict[str, Any]) -> str:
    """A bot owned by ``owner``, made through botrunner's control API as the bot form's qa would."""
    created = httpx.post(
        f"{stack.botrunner.url}/api/bots", headers={"X-Askbase-User": owner}, json=fields, timeout=30
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _spend_reads(person: Person, base: str) -> None:
    """Use up the user's read budget with history reads (the same per-user limiter as the pages)."""
    for _ in range(READS_PER_MINUTE + 1):
        if person.page.request.get(base + "/api/conversations?limit=1").status == 429:
            return


def test_every_page_for_every_user_at_both_sizes_light_and_dark(browser_stack: BrowserStack) -> None:
    from playwright.sync_api import sync_playwright

    axe = _axe_source()
    screens_dir = os.environ.get("ASKBASE_UX_SCREENS")
    screens = Path(screens_dir) if screens_dir else None
    if screens is not None:
        screens.mkdir(parents=True, exist_ok=True)
    base = browser_stack.qa
    reader, owner = f"reader-{uuid.uuid4().hex[:6]}@example.com", f"owner-{uuid.uuid4().hex[:6]}@example.com"
    telegram_bot = _create_bot(
        browser_stack,
        owner,
        {"platform": "telegram", "name": "Docs helper",
         "token": browser_stack.tg.add_bot(username="docs_ux_bot"), "start": True},
    )  # fmt: skip
    app = browser_stack.dc.add_application("Docs app")
    browser_stack.discord_keys["*"] = app.public_key  # the stand-in interactions endpoint verifies with it
    discord_bot = _create_bot(
        browser_stack,
        owner,
        {"platform": "discord", "name": "Discord docs", "application_id": app.id,
         "public_key": app.public_key, "bot_token": app.bot_token, "start": False},
    )  # fmt: skip

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            auditor = Auditor(base, browser, axe, screens)

            anonymous = auditor.user(None)
            auditor.audit(anonymous, "anonymous", [Visit("signin", "/signin"), Visit("404", "/nope", 404)])

            user = auditor.user(reader)
            conversation = _ask(user, "How do I rotate a Telegram bot token?")
            auditor.audit(
                user,
                "user",
                [
                    Visit("chat", "/"),
                    Visit("conversation", conversation, prepare=_open_passages),
                    Visit("history-search", "/?q=telegram", prepare=_open_history),
                    Visit("history-rename", "/?q=telegram", prepare=_rename_first_conversation),
                    Visit("status", "/status"),
                    Visit("bots-empty", "/bots"),
                    Visit("bot-form-telegram", "/bots/new"),
                    Visit("bot-form-discord", "/bots/new?platform=discord"),
                    Visit("bot-form-errors", "/bots/new", prepare=_submit_bad_bot_form),
                    Visit("gaps-403", "/gaps", 403),
                    Visit("404", "/no-such-page", 404),
                    Visit("api-page", "/api/conversations"),
                    Visit("api-405", "/api/ask", 405),
                    Visit("chat-failed", "/", prepare=_fail_a_question, cleanup=_remove_failed_questions),
                ],
            )

            bot_owner = auditor.user(owner)
            auditor.audit(
                bot_owner,
                "owner",
                [
                    Visit("bots", "/bots"),
                    Visit("bot-detail", f"/bots/{telegram_bot}"),
                    Visit("bot-detail-discord", f"/bots/{discord_bot}"),
                    Visit("bot-delete", f"/bots/{telegram_bot}/delete"),
                    Visit("gaps", f"/gaps?bot={telegram_bot}"),
                    Visit("bot-404", "/bots/not-a-bot", 404),
                ],
            )

            admin = auditor.user(ADMIN)
            auditor.audit(
                admin,
                "admin",
                [Visit("status", "/status"), Visit("gaps", "/gaps"), Visit("gaps-400", "/gaps?days=x", 400)],
            )

            limited = auditor.user(f"busy-{uuid.uuid4().hex[:6]}@example.com")

            # Spent again before each viewport: the 60 s window must not slide past the reads while
            # the previous viewport's audit runs.
            def spend(person: Person) -> None:
                _spend_reads(person, base)

            auditor.audit(limited, "limited", [Visit("429", "/", 429, before=spend)])

            browser_stack.botrunner.stop()  # the bot pages with their control plane unreachable
            auditor.audit(bot_owner, "owner", [Visit("bots-503", "/bots", 503)])
        finally:
            browser.close()

    found = auditor.report()
    assert not found, f"{len(found)} problem(s):\n" + "\n".join(found)


def _submit_bad_bot_form(person: Person) -> None:
    """Send the add form with a malformed token: it comes back (400) with the errors beside the fields."""
    page = person.page
    person.guard.expected.add(("/bots/new", 400))
    page.get_by_label("Name").fill("Docs")
    page.locator("#token").fill("not a token")
    page.get_by_role("button", name="Add bot").click()
    page.locator("#token[aria-invalid=true]").wait_for()


def test_the_audit_reports_sideways_scroll_unnamed_controls_and_axe_violations() -> None:
    """The checks are not vacuous: a page with one of each problem is reported on every count."""
    from playwright.sync_api import sync_playwright

    axe = _axe_source()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORTS["390x844"])
            page = context.new_page()
            page.set_content(
                '<!doctype html><html lang="en"><head><title>t</title></head><body><p>outside</p><main>'
                '<button id="icon"><svg width="10" height="10"></svg></button>'
                '<input id="nameless" type="text">'
                '<p style="color:#aaa;background:#fff">faint words</p>'
                '<div style="width:600px">wide</div></main></body></html>'
            )
            found = page_problems(page, context.new_cdp_session(page), axe)
        finally:
            browser.close()
    assert any(p.startswith("scrolls sideways by") for p in found), found
    assert any(p.startswith('button <button[id="icon"]>') for p in found), found
    assert any(p.startswith('textbox <input[id="nameless"]') for p in found), found
    assert any("axe serious color-contrast" in p for p in found), found
    assert any("axe critical button-name" in p for p in found), found
    assert any("axe moderate region" in p for p in found), found  # a landmark rule counts at any impact
