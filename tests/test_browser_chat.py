"""The chat as a person uses it, in headless Chromium against qa under gunicorn (real CSP, real index):
the welcome state, progress and failures, compact answers, the phone layout, history search and rename.

One qa server and one browser serve the whole module (each test opens its own browser context and
signs in as its own user, so histories never mix); every test fails on a console error, an uncaught
exception or a CSP violation (:class:`tests.test_browser_pages.Guard`). Slow or failing answers are
staged by holding or answering ``/api/ask`` in the browser (Playwright routing): no fixed waits.
Screenshots go to ``test-output/chat-*.png``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.config import get_settings
from shared.emulators import EmulatorStack
from tests.conftest import PROJECT
from tests.test_browser_e2e import CHROMIUM_ARGS, OUTPUT, _chromium, serve_qa
from tests.test_browser_pages import Guard

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
COMPOSER_MAX_SHARE = 0.15  # of a 390x844 screen


@pytest.fixture(scope="module")
def qa_base(emulator_stack: EmulatorStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """qa under gunicorn with the test corpus published; the environment of ``tests/conftest.py``'s
    ``settings`` fixture, set up once for the module."""
    emulator_stack.reset()
    tmp = tmp_path_factory.mktemp("chat")
    values = {
        "ASKBASE_ENV": "test",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "ASKBASE_BUCKET": f"askbase-test-{uuid.uuid4().hex[:8]}",
        "ASKBASE_DATA_DIR": str(tmp / "data"),
        "ASKBASE_SESSION_SECRET": "test-session-secret-" + "x" * 32,
        "ASKBASE_DEV_SIGN_IN": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        try:
            with serve_qa(get_settings(), tmp) as base:
                yield base
        finally:
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Session:
    """One signed-in user in a fresh browser context, watched by a :class:`Guard`."""

    def __init__(
        self, browser: Any, base: str, viewport: dict[str, int], email: str = "", **context_args: Any
    ) -> None:
        self.base = base
        self.guard = Guard(base)
        self.context = browser.new_context(viewport=viewport, **context_args)
        self.guard.attach(self.context)
        self.page = self.context.new_page()
        self.email = email or f"{uuid.uuid4().hex[:10]}@example.com"
        self.page.goto(base + "/")
        self.page.get_by_label("Email").fill(self.email)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(base + "/")

    def ask(self, question: str) -> Any:
        """Ask through the composer; the new answer once it is shown."""
        from playwright.sync_api import expect

        answers = self.page.locator(".message-assistant:not(.pending)")
        before = answers.count()
        self.page.get_by_label("Your question").fill(question)
        self.page.get_by_role("button", name="Ask", exact=True).click()
        expect(answers).to_have_count(before + 1, timeout=20_000)
        return answers.last

    def screenshot(self, name: str, full_page: bool = True) -> None:
        OUTPUT.mkdir(exist_ok=True)
        path = str(OUTPUT / f"chat-{name}.png")
        self.page.screenshot(path=path, full_page=full_page, animations="disabled")

    def close(self) -> None:
        self.guard.settle(self.page)
        self.context.close()
        found = self.guard.report()
        assert not found, f"{len(found)} problem(s):\n" + "\n".join(found)


@pytest.fixture
def desktop(browser: Any, qa_base: str) -> Iterator[Session]:
    session = Session(browser, qa_base, DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    yield session
    session.close()


@pytest.fixture
def phone(browser: Any, qa_base: str) -> Iterator[Session]:
    session = Session(browser, qa_base, PHONE)
    yield session
    session.close()


def _color(locator: Any) -> str:
    return locator.evaluate("e => getComputedStyle(e).color")


def _danger(page: Any) -> str:
    """The theme's error colour, resolved the way the browser paints it."""
    return page.evaluate(
        "() => { const p = document.createElement('p'); p.style.color = 'var(--danger)';"
        " document.body.appendChild(p); const c = getComputedStyle(p).color; p.remove(); return c; }"
    )


# --- 1. welcome ---------------------------------------------------------------------------------------
def test_welcome_says_what_is_indexed_and_its_starter_questions_ask(desktop: Session) -> None:
    from playwright.sync_api import expect

    page = desktop.page
    welcome = page.locator("#welcome")
    expect(welcome).to_be_visible()
    # tests/qa_corpus.py: three pages of one source, "docs".
    expect(welcome).to_contain_text("3 pages")
    expect(welcome.locator(".welcome-sources")).to_contain_text("docs")
    expect(welcome).to_contain_text("Last updated")
    starters = welcome.get_by_role("button")
    assert 3 <= starters.count() <= 6, starters.all_inner_texts()
    headings = ["registering", "rotating the token", "sources", "schedule", "publishing", "live swap"]
    texts = starters.all_inner_texts()
    for text in texts:
        assert any(h in text.lower() for h in headings), f"{text!r} is not drawn from a heading"
    desktop.screenshot("welcome")

    first = texts[0]
    starters.first.click()
    expect(page.locator(".message-user").first).to_have_text(re.compile(re.escape(first)))
    answer = page.locator(".message-assistant:not(.pending)").first
    expect(answer).to_be_visible(timeout=20_000)
    expect(answer.locator(".source-link").first).to_be_visible()  # answered from the docs
    expect(welcome).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f]{32}$"))


# --- 3. progress, failure, retry ---------------------------------------------------------------------
def test_question_shows_at_once_and_a_failure_keeps_it_with_retry_styled_as_an_error(
    desktop: Session,
) -> None:
    from playwright.sync_api import expect

    page = desktop.page
    page.clock.install()  # the page's timers run only when the test moves this clock
    page.reload()
    held: list[Any] = []
    page.route("**/api/ask", lambda route: held.append(route))  # the answer is slow: held until told
    desktop.guard.expected.add(("/api/ask", 429))

    page.get_by_label("Your question").fill("How often does the scrape job run?")
    page.get_by_label("Your question").press("Enter")
    expect(page.locator(".message-user .question-text")).to_have_text("How often does the scrape job run?")
    placeholder = page.locator(".message-assistant.pending")
    expect(placeholder).to_be_visible()
    expect(placeholder).to_have_attribute("aria-busy", "true")
    expect(page.get_by_role("button", name="Asking…")).to_be_disabled()
    expect(placeholder).to_contain_text("Looking through the docs")
    page.clock.run_for(5_000)  # a slow answerer (Gemini): the placeholder says it is still coming
    expect(placeholder).to_contain_text("Still working on it")
    desktop.screenshot("pending")
    assert len(held) == 1
    held[0].fulfill(
        status=429,
        headers={"Retry-After": "7"},
        content_type="application/json",
        body='{"error": "too many questions; slow down"}',
    )

    error = page.locator(".message-user .message-error")
    expect(error).to_contain_text("Too many questions in a minute. Wait 7 seconds")
    expect(placeholder).to_have_count(0)
    danger = _danger(page)
    assert _color(error) == danger and _color(error.locator(".error-text")) == danger
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    desktop.screenshot("failed")

    # The failed question survives a reload, still with its retry.
    page.reload()
    expect(page.locator(".message-user .question-text")).to_have_text("How often does the scrape job run?")
    expect(page.locator(".message-user .message-error")).to_contain_text("Too many questions")
    expect(page.locator("#welcome")).to_be_hidden()

    page.unroute("**/api/ask")
    page.get_by_role("button", name="Retry").click()
    answer = page.locator(".message-assistant:not(.pending)")
    expect(answer).to_have_count(1, timeout=20_000)
    expect(answer).to_contain_text("30 minutes")
    expect(page.locator(".message-error")).to_have_count(0)
    expect(page.locator(".message-user")).to_have_count(1)
    page.reload()  # answered now: recorded by the server, nothing left in the tab's memory of failures
    expect(page.locator(".message-user")).to_have_count(1)
    expect(page.locator(".message-error")).to_have_count(0)

    # A local complaint is an error too: the status line must not paint it grey.
    page.get_by_role("button", name="Ask", exact=True).click()
    status = page.locator("#ask-status")
    expect(status).to_have_text("Type a question first.")
    assert _color(status) == danger


# --- 2. compact answers ---------------------------------------------------------------------------------
def test_answer_first_then_one_line_per_source_expandable_and_copyable(desktop: Session) -> None:
    from playwright.sync_api import expect

    page = desktop.page
    answer = desktop.ask("How do I rotate a Telegram bot token?")
    children = answer.evaluate(
        "e => Array.from(e.children).filter(c => !c.matches('.visually-hidden')).map(c => c.className)"
    )
    assert children[0] == "answer-text" and children[1] == "sources", children
    source = answer.locator(".source").first
    expect(source.locator(".source-page")).to_have_text("Telegram bots")
    expect(source.locator(".source-section")).to_have_text("\u203a Rotating the token")
    expect(source.locator(".source-link")).to_have_attribute(
        "href", "https://docs.example.com/bots/telegram#rotating"
    )
    line = source.locator(".source-line")
    line_height = float(line.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)"))
    closed = line.bounding_box()
    assert closed and closed["height"] <= 1.5 * line_height, f"passage is not one line: {closed}"
    source.locator("summary").click()
    expect(source.locator("details")).to_have_attribute("open", "")
    expect(line).to_contain_text("paste the new token")

    answer.get_by_role("button", name="Copy answer").click()
    expect(answer.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert "paste the new token" in copied and "Sources:" in copied
    assert "https://docs.example.com/bots/telegram#rotating" in copied
    desktop.screenshot("answer")

    # The server renders the same compact answer after a reload.
    live = answer.locator(".source-link").all_inner_texts()
    page.reload()
    reloaded = page.locator(".message-assistant").last
    assert reloaded.locator(".source-link").all_inner_texts() == live
    expect(reloaded.get_by_role("button", name="Copy answer")).to_be_visible()

    # Robust to a short answer without sources (another answerer's shape).
    page.route(
        "**/api/ask",
        lambda route: route.fulfill(
            content_type="application/json",
            body='{"answer": "Yes.", "sources": [], "conversation_id": "'
            + urlsplit(page.url).path.rsplit("/", 1)[-1]
            + '", "answerer": "gemini"}',
        ),
    )
    short = desktop.ask("Is that all?")
    expect(short.locator(".answer-text")).to_have_text("Yes.")
    expect(short.locator(".sources")).to_have_count(0)
    short.get_by_role("button", name="Copy answer").click()
    expect(short.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == "Yes."
    page.unroute("**/api/ask")


# --- 4. phone ---------------------------------------------------------------------------------------------
def test_phone_keeps_history_and_new_chat_at_hand_and_the_composer_small(phone: Session) -> None:
    from playwright.sync_api import expect

    page = phone.page
    for question in (
        "How do I rotate a Telegram bot token?",
        "How often does the scrape job run?",
        "What is the snapshot pointer?",
        "How do I add a Telegram bot?",
        "Which sources can be crawled?",
    ):
        phone.ask(question)
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    # Scrolled well past the top bar and the first answers: the chat bar must have come along.
    assert page.evaluate("window.scrollY") > PHONE["height"] / 2, "five answers should need scrolling"

    composer = page.locator("#ask-form").bounding_box()
    assert composer is not None
    share = composer["height"] / PHONE["height"]
    print(f"composer at 390x844: {composer['height']:.0f}px = {share:.1%} of the screen")
    assert share <= COMPOSER_MAX_SHARE, f"composer takes {share:.1%} of the screen"
    assert composer["y"] + composer["height"] <= PHONE["height"] + 1, "composer is not on screen"
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= PHONE["width"], f"scrolls sideways ({scroll}px)"
    phone.screenshot("phone-scrolled", full_page=False)

    toggle = page.get_by_role("button", name="History", exact=True)
    new_chat = page.locator("#new-chat-top")
    for control in (toggle, new_chat):
        box = control.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], f"off screen: {box}"
    drawer = page.locator("#history")
    expect(drawer).to_be_hidden()
    toggle.click()
    expect(drawer).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    entry = drawer.locator(".history-link").first
    expect(entry).to_be_in_viewport()
    expect(page.get_by_role("button", name="Close history")).to_be_focused()
    phone.screenshot("phone-drawer", full_page=False)
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(toggle).to_be_focused()
    new_chat.click()
    expect(page).to_have_url(phone.base + "/")
    expect(page.locator("#welcome")).to_be_visible()


# --- 5. history -------------------------------------------------------------------------------------------
def test_history_search_shows_why_keeps_the_search_and_renames(desktop: Session) -> None:
    from playwright.sync_api import expect

    page = desktop.page
    desktop.ask("How often does the scrape job run?")  # its answer mentions ETag
    page.get_by_role("link", name="New chat").first.click()
    desktop.ask("How do I rotate a Telegram bot token?")

    page.get_by_label("Search conversations").fill("etag")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#history-list li")
    expect(results).to_have_count(1)
    snippet = results.locator(".history-snippet")
    expect(snippet.locator("mark")).to_have_text("etag")
    desktop.screenshot("history-search")

    results.locator(".history-link").click()
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f]{32}\?q=etag$"))
    expect(page.get_by_label("Search conversations")).to_have_value("etag")
    expect(page.locator("#history-list li")).to_have_count(1)
    expect(page.locator("#history-list li.current")).to_have_count(1)
    conversation = urlsplit(page.url).path
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/conversations") as refreshed:
        desktop.ask("And how are unchanged pages skipped?")  # the sidebar refreshes, still searched
    assert urlsplit(refreshed.value.url).query == "q=etag"
    expect(page.locator("#history-list li")).to_have_count(1)
    expect(page).to_have_url(re.compile(re.escape(conversation) + r"\?q=etag$"))

    item = page.locator("#history-list li.current")
    item.get_by_role("button", name=re.compile("^Rename conversation")).click()
    field = item.get_by_label("New name")
    expect(field).to_be_focused()
    field.fill("Scrape schedule")
    field.press("Enter")
    expect(item.locator(".history-link")).to_have_text("Scrape schedule")
    expect(page.locator("#chat-heading")).to_have_text("Scrape schedule")
    page.reload()
    expect(page.locator("#history-list li.current .history-link")).to_have_text("Scrape schedule")
    page.goto(desktop.base + "/?q=schedule")
    expect(page.locator("#history-list .history-link", has_text="Scrape schedule")).to_be_visible()


# --- 6. another tab, another user, storage trouble ------------------------------------------------------
def _api(page: Any, method: str, path: str) -> int:
    """``method path`` from the page with its session and CSRF token (what another tab would send)."""
    status: int = page.evaluate(
        """([method, path]) => fetch(path, {method, credentials: "same-origin", headers: {
             "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content}})
             .then(r => r.status)""",
        [method, path],
    )
    return status


def test_a_conversation_deleted_in_another_tab_asks_again_in_a_new_chat(desktop: Session) -> None:
    from playwright.sync_api import expect

    page = desktop.page
    desktop.guard.expected.add(("/api/ask", 404))
    desktop.ask("How often does the scrape job run?")
    gone = urlsplit(page.url).path
    assert _api(page, "DELETE", "/api/conversations/" + gone.rsplit("/", 1)[1]) == 200

    page.get_by_label("Your question").fill("How do I rotate a Telegram bot token?")
    page.get_by_label("Your question").press("Enter")
    error = page.locator(".message-user .message-error")
    expect(error).to_contain_text("This conversation was deleted or has expired")
    # The page left the dead conversation: a retry cannot be sent to it again.
    expect(page).to_have_url(desktop.base + "/")
    expect(page.locator("#chat-heading")).to_have_text("New conversation")
    expect(page.locator("#export-links")).to_be_hidden()

    # A draft being typed is not overwritten by Edit without asking.
    composer = page.get_by_label("Your question")
    composer.fill("A half-typed question")
    page.once("dialog", lambda dialog: dialog.dismiss())
    error.get_by_role("button", name="Edit").click()
    expect(composer).to_have_value("A half-typed question")
    expect(error).to_be_visible()
    composer.fill("")

    error.get_by_role("button", name="Retry").click()
    answer = page.locator(".message-assistant:not(.pending)").last
    expect(answer).to_contain_text("rotate", timeout=20_000)
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f]{32}$"))
    assert urlsplit(page.url).path != gone
    expect(page.locator(".message-error")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete all conversations")).to_be_visible()


def test_failed_questions_stay_with_their_user_and_leave_with_sign_out(desktop: Session) -> None:
    from playwright.sync_api import expect

    page = desktop.page
    desktop.guard.expected.add(("/api/ask", 429))
    expect(page.get_by_role("button", name="Delete all conversations")).to_be_hidden()  # nothing yet
    page.route(
        "**/api/ask",
        lambda route: route.fulfill(status=429, headers={"Retry-After": "3"}, json={"error": "slow down"}),
    )
    page.get_by_label("Your question").fill("A question of the first user")
    page.get_by_label("Your question").press("Enter")
    expect(page.locator(".message-error")).to_contain_text("Too many questions")
    page.unroute("**/api/ask")

    # Another account signs in in the same tab (no sign-out first): the failed question is not theirs.
    page.goto(desktop.base + "/signin")
    page.get_by_label("Email").fill(f"{uuid.uuid4().hex[:10]}@example.com")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(desktop.base + "/")
    expect(page.locator(".message-user")).to_have_count(0)
    assert page.evaluate("() => Object.keys(sessionStorage).filter(k => k.startsWith('askbase.failed'))")

    # Signing out clears the tab's storage, the first user's question with it.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/signin"))
    assert page.evaluate("() => Object.keys(sessionStorage)") == []


def test_deleting_from_the_history_keeps_focus_and_says_so(desktop: Session) -> None:
    from playwright.sync_api import expect

    page = desktop.page
    desktop.ask("How often does the scrape job run?")
    first = urlsplit(page.url).path.rsplit("/", 1)[1]
    desktop.guard.expected.add((f"/api/conversations/{first}", 404))
    page.get_by_role("link", name="New chat").first.click()
    desktop.ask("How do I rotate a Telegram bot token?")
    page.get_by_role("link", name="New chat").first.click()
    desktop.ask("What is the snapshot pointer?")
    entries = page.locator("#history-list li[data-id]")
    expect(entries).to_have_count(3)

    page.on("dialog", lambda dialog: dialog.accept())
    entries.nth(1).get_by_role("button", name=re.compile("^Delete conversation")).click()
    expect(page.locator("#history-status")).to_have_text("Conversation deleted.")
    expect(entries).to_have_count(2)
    # Focus moved to the entry that took the deleted one's place, not to <body>.
    expect(entries.nth(1).locator(".history-link")).to_be_focused()

    # Deleted meanwhile in another tab: the entry goes, nothing is reported as failed.
    assert _api(page, "DELETE", f"/api/conversations/{first}") == 200
    stale = page.locator(f'#history-list li[data-id="{first}"]')
    expect(stale).to_have_count(1)
    stale.get_by_role("button", name=re.compile("^Delete conversation")).click()
    expect(stale).to_have_count(0)
    expect(page.locator("#history-status")).to_have_text("Conversation deleted.")
    expect(page.locator("#history-status")).not_to_have_class(re.compile("error"))


def test_unavailable_says_when_to_retry_and_a_long_address_fits_a_phone(browser: Any, qa_base: str) -> None:
    from playwright.sync_api import expect

    session = Session(browser, qa_base, PHONE, email="firstname.lastname@engineering.example.com")
    try:
        page = session.page
        session.guard.expected.add(("/api/ask", 503))
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= PHONE["width"], f"scrolls sideways ({scroll}px) with a long address"
        expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()

        replies = [
            {"json": {"error": "askbase is briefly unavailable: its storage did not answer."}},
            {"body": "<html>upstream unavailable</html>", "content_type": "text/html"},  # a front end's page
        ]
        page.route(
            "**/api/ask",
            lambda route: route.fulfill(status=503, headers={"Retry-After": "5"}, **replies.pop(0)),
        )
        composer = page.get_by_label("Your question")
        composer.fill("How often does the scrape job run?")
        composer.press("Enter")
        errors = page.locator(".message-error")
        expect(errors.last).to_have_text(re.compile("storage did not answer. Retry in about 5 seconds."))
        composer.fill("How do I add a Telegram bot?")
        composer.press("Enter")
        expect(errors).to_have_count(2)
        expect(errors.last).to_contain_text("askbase is briefly unavailable. Retry in about 5 seconds.")
    finally:
        session.close()
