"""Pure pieces of the Q&A service: sign-in token checks, service callers, cron, rate limit, answer HTML."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.qa.answer_html import answer_html
from shared.config import Environment, Settings
from shared.devstack.issuer import LocalIssuer
from shared.knowledge.schedule import next_cron_time
from shared.qa.identity import (
    SignInDisabled,
    SignInError,
    dev_sign_in,
    google_sign_in,
    verify_service_caller,
)
from shared.qa.ratelimit import RateLimiter


def test_google_sign_in_checks_audience_issuer_email_and_domain(
    oidc_settings: Settings, issuer: LocalIssuer
) -> None:
    s = oidc_settings.model_copy(
        update={"google_client_id": "cid.apps", "admin_emails": ["ann@corp.example"]}
    )
    ann = "Ann@Corp.example"
    user = google_sign_in(issuer.mint(ann, "cid.apps", name="Ann"), s)
    assert (user.email, user.name, user.is_admin, user.owner) == (
        "ann@corp.example",
        "Ann",
        True,
        "user:ann@corp.example",
    )
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = [
        "",
        "bad",
        issuer.mint(ann, "other-client.apps"),  # wrong audience
        issuer.mint(ann, "cid.apps", iss="https://evil.example"),
        issuer.mint(ann, "cid.apps", email_verified=False),
        issuer.mint(ann, "cid.apps", lifetime=-600, iat=int(time.time()) - 4000),  # expired
        issuer.mint(ann, "cid.apps", key=forged),  # right kid, wrong key
        issuer.mint(ann, "cid.apps", key=forged, key_id="unknown"),
    ]
    for credential in refused:
        with pytest.raises(SignInError):
            google_sign_in(credential, s)
    domain = s.model_copy(update={"allowed_domain": "corp.example"})
    with pytest.raises(SignInError, match=r"corp\.example"):
        google_sign_in(issuer.mint(ann, "cid.apps"), domain)
    assert google_sign_in(issuer.mint(ann, "cid.apps", hd="corp.example"), domain).email == "ann@corp.example"
    # A domain is case-insensitive: the stack may spell it as its owners do.
    mixed = s.model_copy(update={"allowed_domain": " Corp.Example "})
    assert google_sign_in(issuer.mint(ann, "cid.apps", hd="corp.example"), mixed).email == "ann@corp.example"
    with pytest.raises(SignInError, match=r"corp\.example"):
        google_sign_in(issuer.mint(ann, "cid.apps", hd="other.example"), mixed)
    # A setting of spaces alone names no domain: it lets nobody in, not everybody.
    blank = s.model_copy(update={"allowed_domain": "  "})
    for credential in (issuer.mint(ann, "cid.apps"), issuer.mint(ann, "cid.apps", hd="corp.example")):
        with pytest.raises(SignInError):
            google_sign_in(credential, blank)
    with pytest.raises(SignInError, match="not configured"):
        google_sign_in(issuer.mint(ann, "cid.apps"), s.model_copy(update={"google_client_id": ""}))


def test_dev_sign_in_only_when_enabled(settings: Settings) -> None:
    assert dev_sign_in(" Bob@Example.com ", settings).email == "bob@example.com"
    with pytest.raises(SignInError) as bad_email:
        dev_sign_in("not an email", settings)
    # A bad attempt is a 400 on /signin/dev; a disabled sign-in is a 404 (signin.py tells them by type).
    assert not isinstance(bad_email.value, SignInDisabled)
    with pytest.raises(SignInDisabled, match="disabled"):
        dev_sign_in("bob@example.com", settings.model_copy(update={"dev_sign_in": False}))
    with pytest.raises(SignInDisabled):
        dev_sign_in("bob@example.com", settings.model_copy(update={"env": Environment.PRODUCTION}))


def test_service_callers(settings: Settings, oidc_settings: Settings, issuer: LocalIssuer) -> None:
    assert verify_service_caller({"X-Askbase-Service": "botrunner"}, settings) == "botrunner"
    assert verify_service_caller({}, settings) is None
    sa = f"botrunner@{settings.project_id}.iam.gserviceaccount.com"
    oidc = oidc_settings.model_copy(update={"qa_url": "https://qa.run.app", "service_callers": [sa]})
    # The loopback header means nothing in production.
    assert verify_service_caller({"X-Askbase-Service": "botrunner"}, oidc) is None

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    assert verify_service_caller(bearer(issuer.mint(sa, "https://qa.run.app")), oidc) == sa
    for token in ("bad", issuer.mint(sa, "https://other.run.app")):
        with pytest.raises(SignInError):
            verify_service_caller(bearer(token), oidc)
    # A valid token of somebody else's account is not a service caller: not a stranger's, not another
    # account of this project (the webhook functions'), and with no list, nobody's.
    webhook_fn = f"telegram-fn@{settings.project_id}.iam.gserviceaccount.com"
    for email in ("mallory@gmail.com", webhook_fn):
        with pytest.raises(SignInError):
            verify_service_caller(bearer(issuer.mint(email, "https://qa.run.app")), oidc)
    unlisted = oidc.model_copy(update={"service_callers": []})
    with pytest.raises(SignInError):
        verify_service_caller(bearer(issuer.mint(sa, "https://qa.run.app")), unlisted)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/30 * * * *", "2026-11-23T10:44:10", "2026-11-23T11:00:00"),
        ("*/30 * * * *", "2026-11-23T11:00:00", "2026-11-23T11:30:00"),
        ("0 3 * * *", "2026-11-23T10:00:00", "2026-11-24T03:00:00"),
        ("15 9 * * 1", "2026-11-23T10:00:00", "2026-11-30T09:15:00"),  # 2026-11-23 is a Monday
        ("0 0 1 1 *", "2026-11-23T10:00:00", "2027-01-01T00:00:00"),
        ("5,35 8-9 * * *", "2026-11-23T08:36:00", "2026-11-23T09:05:00"),
    ],
)
def test_next_cron_time(expression: str, after: str, expected: str) -> None:
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert next_cron_time(expression, start) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "* * *", "61 * * * *", "*/0 * * * *", "a b c d e"])
def test_next_cron_time_of_garbage_is_none(bad: str) -> None:
    assert next_cron_time(bad, datetime.now(UTC)) is None


def test_rate_limiter_window_and_retry_after() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, window=60, clock=lambda: now[0])
    assert limiter.allow("a") == (True, 0)
    now[0] += 10
    assert limiter.allow("a") == (True, 0)
    allowed, retry = limiter.allow("a")
    assert not allowed and retry == 50
    assert limiter.allow("b") == (True, 0)
    now[0] += 50.5
    assert limiter.allow("a") == (True, 0)


def test_answer_html_escapes_and_links_citations() -> None:
    sources = [{"url": "https://d.example/a?x=1&y=2", "title": 'A "page"'}]
    html = str(answer_html("Intro <b>bold</b> [1] and [7]\n\n> quoted <script>x</script> [1]", sources))
    assert "<b>" not in html and "<script>" not in html and "&lt;script&gt;" in html
    assert html.count('class="cite"') == 2
    assert 'href="https://d.example/a?x=1&amp;y=2"' in html
    assert "[7]" in html and "<blockquote>" in html


def test_answer_profiles_cache_briefly_and_never_cache_unknown_ids() -> None:
    from shared.qa.bot_profiles import AnswerProfiles, BotNotFound

    class Snap:
        def __init__(self, data):
            self.exists = data is not None
            self._data = data

        def to_dict(self):
            return self._data

    class Db:
        def __init__(self):
            self.docs: dict[str, dict] = {}
            self.reads = 0

        def collection(self, name):
            return self

        def document(self, doc_id):
            self._id = doc_id
            return self

        def get(self):
            self.reads += 1
            return Snap(self.docs.get(self._id))

    db = Db()
    now = [0.0]
    bots = AnswerProfiles(db, ttl_seconds=60, clock=lambda: now[0])
    with pytest.raises(BotNotFound):
        bots.get("b1")
    db.docs["b1"] = {"model": "gemini", "system_prompt": "Be brief."}
    assert bots.get("b1").model == "gemini"  # a new bot works at once
    db.docs["b1"]["model"] = "extractive"
    assert bots.get("b1").model == "gemini" and db.reads == 2  # cached
    now[0] = 60.0
    assert bots.get("b1").model == "extractive" and db.reads == 3  # the edit applies after the ttl
    with pytest.raises(BotNotFound):
        bots.get("../x")


# --- the chat's welcome, answers and history (pure pieces) ------------------------------------------------
def test_starter_questions_come_from_headings_across_pages() -> None:
    from shared.qa.welcome import starter_questions

    pages = [
        ("Telegram bots | Example Docs", ["Overview", "Registering", "Rotating the token", "API limits"]),
        ("Crawling", ["Sources", "How do I skip a page", "See also"]),
        ("Snapshots", ["Publishing"]),
    ]
    assert starter_questions(pages, limit=5) == [
        # one heading per page first (pages with more sections first), then the next round
        "What should I know about registering in Telegram bots?",
        "What should I know about sources in Crawling?",
        "What should I know about publishing in Snapshots?",
        "What should I know about rotating the token in Telegram bots?",
        "How do I skip a page?",  # already a question: kept as it is
    ]
    assert "What should I know about API limits in Telegram bots?" in starter_questions(pages, limit=6)
    # Too few usable headings: page titles (by title) fill up to three; never more than asked.
    assert starter_questions([("Upgrade", ["Overview"]), ("Install", []), ("FAQ", []), ("Zoo", [])]) == [
        "What does the FAQ page cover?",
        "What does the Install page cover?",
        "What does the Upgrade page cover?",
    ]
    assert starter_questions([]) == []
    assert len(starter_questions(pages, limit=2)) == 2


def test_section_heading_is_the_deepest_heading_of_a_chunk() -> None:
    from shared.qa.welcome import section_heading

    assert section_heading("Bots", "Bots > Telegram > Rotating\n\nbody") == "Rotating"
    assert section_heading("Bots", "Bots\n\nbody") is None  # directly under the title
    assert section_heading("Bots", "Bots > A very long path that was cut…\n\nbody") is None
    assert section_heading("Bots", "no heading path here") is None


def test_knowledge_overview_of_a_real_index(settings: Settings, tmp_path) -> None:
    from shared.knowledge.embeddings import load_embedder
    from shared.knowledge.index import KnowledgeIndex
    from shared.qa.live_index import LiveIndex
    from shared.qa.welcome import knowledge_overview
    from tests.fakes.knowledge import FakeStore
    from tests.qa_corpus import build_index

    build_index(tmp_path / "built", settings).close()
    store = FakeStore()
    store.publish("s1")
    live = LiveIndex(
        store,
        lambda _: KnowledgeIndex.open(tmp_path / "built", load_embedder(settings.embedder)),
        tmp_path / "live",
        poll_seconds=3600,
    )
    assert knowledge_overview(live).state == "starting"  # not started: nothing to show yet
    live.start()
    try:
        overview = knowledge_overview(live)
        assert overview.state == "ready" and overview.updated_at is not None
        assert [(s.name, s.pages, s.chunks) for s in overview.sources] == [("docs", 3, 6)]
        assert overview.pages == 3 and overview.chunks == 6
        assert len(overview.starters) == 4
        headings = ("registering", "rotating the token", "sources", "schedule", "publishing", "live swap")
        assert all(any(h in q for h in headings) for q in overview.starters), overview.starters
    finally:
        live.stop()


def test_source_heading_and_search_highlight_are_escaped() -> None:
    from services.qa.answer_html import highlight, source_heading

    assert source_heading({"title": "Bots > Telegram > Tokens"}) == ("Bots", "Telegram \u203a Tokens")
    assert source_heading({"title": "Bots", "url": "u"}) == ("Bots", "")
    assert source_heading({"url": "https://d.example/x"}) == ("https://d.example/x", "")
    assert str(highlight("<b>ETag</b> and etag", "etag")) == (
        "&lt;b&gt;<mark>ETag</mark>&lt;/b&gt; and <mark>etag</mark>"
    )
    assert str(highlight("a<b", "")) == "a&lt;b" and str(highlight(None, "x")) == ""


def test_match_snippet_and_titles() -> None:
    from shared.qa.conversations import InvalidTitle, clean_title, match_snippet

    text = "word " * 30 + "the etag header " + "more " * 30
    snippet = match_snippet(text, "etag", context=20)
    assert snippet is not None and snippet.startswith("…") and snippet.endswith("…")
    assert "etag" in snippet and len(snippet) <= 2 * 20 + len("etag") + 2
    assert " wor…" not in snippet  # cut at word boundaries
    assert match_snippet("short etag text", "etag") == "short etag text"
    assert match_snippet("nothing here", "etag") is None
    assert clean_title("  New\n  name ") == "New name"
    for bad in ("   ", "x" * 81):
        with pytest.raises(InvalidTitle):
            clean_title(bad)
