"""Feedback and the gaps page as a person uses them, in headless Chromium against qa under gunicorn
(real CSP, real index on the emulators): vote 👍, change it to 👎 with a comment, see it after a reload,
take it back, and find the rated-down question in the gaps report with its CSV download. Fails on any
console error, uncaught exception or CSP violation (:class:`tests.test_browser_pages.Guard`).
Screenshots go to ``test-output/feedback-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from shared.gcp import firestore_client
from shared.qa.feedback import VOTES
from tests.conftest import PROJECT
from tests.test_browser_chat import DESKTOP, PHONE, browser, qa_base  # noqa: F401 - fixtures
from tests.test_browser_e2e import OUTPUT
from tests.test_browser_pages import Guard

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

ADMIN = "e2e@example.com"  # serve_qa makes this address an admin
QUESTION = "How do I rotate a Telegram bot token?"


class Person:
    """A signed-in browser context watched by a :class:`Guard`."""

    def __init__(self, chromium: Any, base: str, email: str, viewport: dict[str, int]) -> None:
        self.base = base
        self.guard = Guard(base)
        self.context = chromium.new_context(viewport=viewport, accept_downloads=True)
        self.guard.attach(self.context)
        self.page = self.context.new_page()
        self.page.goto(base + "/")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(base + "/")

    def screenshot(self, name: str) -> None:
        OUTPUT.mkdir(exist_ok=True)
        self.page.screenshot(path=str(OUTPUT / f"feedback-{name}.png"), full_page=True, animations="disabled")

    def close(self) -> None:
        self.guard.settle(self.page)
        self.context.close()
        found = self.guard.report()
        assert not found, f"{len(found)} problem(s):\n" + "\n".join(found)


@pytest.fixture
def admin(browser: Any, qa_base: str) -> Iterator[Person]:  # noqa: F811 - pytest fixtures
    person = Person(browser, qa_base, ADMIN, DESKTOP)
    yield person
    person.close()


def _stored_votes(answer_id: str) -> list[dict]:
    votes = firestore_client(PROJECT).collection(VOTES).stream()
    return [v for v in (s.to_dict() for s in votes) if v["answer_id"] == answer_id]


def _answer_record(answer_id: str) -> dict:
    return firestore_client(PROJECT).collection("answers").document(answer_id).get().to_dict() or {}


def test_vote_change_it_comment_and_find_it_in_the_gaps_report(admin: Person) -> None:
    from playwright.sync_api import expect

    page = admin.page
    page.get_by_label("Your question").fill(QUESTION)
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator(".message-assistant:not(.pending)").last
    expect(answer).to_be_visible(timeout=20_000)
    answer_id = answer.locator(".answer-actions").get_attribute("data-answer-id")
    assert answer_id and re.fullmatch(r"[0-9a-f]{32}", answer_id)
    up = answer.get_by_role("button", name="Helpful", exact=True)
    down = answer.get_by_role("button", name="Not helpful")
    status = answer.locator(".vote-status")

    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(status).to_have_text("Thanks for the feedback.")
    assert [(v["value"], v["answer_id"]) for v in _stored_votes(answer_id)] == [("up", answer_id)]

    # Changing the vote: one vote, now 👎, and the comment box opens with the cursor in it.
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    comment = answer.get_by_label("What was wrong or missing? (optional)")
    expect(comment).to_be_visible()
    expect(comment).to_be_focused()
    admin.screenshot("comment")
    comment.fill("It does not say whether the old token stops working at once.")
    answer.get_by_role("button", name="Send").click()
    expect(status).to_have_text("Thanks: your comment was sent.")
    expect(comment).to_be_hidden()
    expect(answer.get_by_role("button", name="Edit comment")).to_be_visible()
    (vote,) = _stored_votes(answer_id)
    assert vote["value"] == "down" and vote["comment"].startswith("It does not say")
    assert vote["question"] == QUESTION and vote["platform"] == "web" and vote["bot_id"] is None
    record = _answer_record(answer_id)
    assert (record["up_votes"], record["down_votes"]) == (0, 1)

    # After a reload the page shows the vote and the comment as they are stored.
    page.reload()
    answer = page.locator(f'.message-assistant:has([data-answer-id="{answer_id}"])')
    expect(answer.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")
    answer.get_by_role("button", name="Edit comment").click()
    expect(answer.get_by_label("What was wrong or missing? (optional)")).to_have_value(
        "It does not say whether the old token stops working at once."
    )
    answer.get_by_role("button", name="Cancel").click()
    admin.screenshot("voted")

    # Pressing the pressed 👎 takes the vote back; pressing it again votes anew.
    answer.get_by_role("button", name="Not helpful").click()
    expect(answer.locator(".vote-status")).to_have_text("Vote removed.")
    expect(answer.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "false")
    assert _stored_votes(answer_id) == []
    answer.get_by_role("button", name="Not helpful").click()
    expect(answer.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")
    answer.get_by_role("button", name="Cancel").click()

    # The rated-down question is a gap: the admin's report lists it, and the CSV holds it.
    page.get_by_role("link", name="Gaps").click()
    expect(page.get_by_role("heading", name="Gaps: what the docs don't answer")).to_be_visible()
    group = page.locator(".gap-group", has_text=QUESTION)
    expect(group).to_have_count(1)
    expect(group.locator(".gap-kinds")).to_contain_text("1 rated down")
    expect(page.locator(".gap-page-stats")).to_contain_text("Telegram bots")
    admin.screenshot("gaps")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download groups (CSV)").click()
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115 - read at once
    assert text.startswith("group,count,refused,thumbs_down") and QUESTION in text

    # The filters are a plain form (GET): the last week still holds it.
    page.get_by_label("Period").select_option("7")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/gaps\?days=7"))
    expect(page.locator(".gap-group", has_text=QUESTION)).to_have_count(1)


def test_an_answer_that_is_gone_says_so_instead_of_failing(admin: Person) -> None:
    from playwright.sync_api import expect

    page = admin.page
    page.get_by_label("Your question").fill("How often does the scrape job run?")
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator(".message-assistant:not(.pending)").last
    expect(answer).to_be_visible(timeout=20_000)
    answer_id = answer.locator(".answer-actions").get_attribute("data-answer-id")
    firestore_client(PROJECT).collection("answers").document(answer_id).delete()  # retention ran out
    admin.guard.expected.add((f"/api/answers/{answer_id}/vote", 404))
    answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.locator(".vote-status")).to_have_text("This answer can no longer be rated.")
    expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )


def test_the_vote_buttons_fit_beside_copy_on_a_phone(browser: Any, qa_base: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    person = Person(browser, qa_base, ADMIN, PHONE)
    try:
        page = person.page
        page.get_by_label("Your question").fill(QUESTION)
        page.get_by_role("button", name="Ask", exact=True).click()
        answer = page.locator(".message-assistant:not(.pending)").last
        expect(answer).to_be_visible(timeout=20_000)
        row = answer.locator(".answer-actions").bounding_box()
        copy = answer.get_by_role("button", name="Copy answer").bounding_box()
        down = answer.get_by_role("button", name="Not helpful").bounding_box()
        assert row and copy and down
        assert abs(copy["y"] - down["y"]) < copy["height"], "the votes wrapped under Copy answer"
        assert down["x"] + down["width"] <= row["x"] + row["width"] + 1
        person.screenshot("phone")
        page.goto(qa_base + "/gaps")
        expect(page.locator("#gaps-summary")).to_be_visible()
        person.screenshot("gaps-phone")
    finally:
        person.close()
