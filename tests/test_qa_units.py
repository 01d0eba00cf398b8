"""Pure pieces of the Q&A service: sign-in token checks, service callers, cron, rate limit, answer HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.qa.answer_html import answer_html
from shared.config import Settings
from shared.qa.data_status import next_cron_time
from shared.qa.identity import (
    SignInError,
    dev_sign_in,
    google_sign_in,
    verify_service_caller,
)
from shared.qa.ratelimit import RateLimiter


def _claims(**extra: Any) -> dict[str, Any]:
    return {"iss": "https://accounts.google.com", "email": "Ann@Corp.example", "email_verified": True} | extra


def _verifier(claims: dict[str, Any], seen: list | None = None):
    def verify(token: str, request: Any, audience: str) -> dict[str, Any]:
        if seen is not None:
            seen.append((token, audience))
        if token == "bad":
            raise ValueError("Token has wrong signature")
        return claims

    return verify


def test_google_sign_in_checks_audience_issuer_email_and_domain(settings: Settings) -> None:
    s = settings.model_copy(update={"google_client_id": "cid.apps", "admin_emails": ["ann@corp.example"]})
    seen: list = []
    user = google_sign_in("tok", s, _verifier(_claims(name="Ann"), seen))
    assert (user.email, user.name, user.is_admin, user.owner) == (
        "ann@corp.example",
        "Ann",
        True,
        "user:ann@corp.example",
    )
    assert seen == [("tok", "cid.apps")]
    with pytest.raises(SignInError):
        google_sign_in("bad", s, _verifier(_claims()))
    with pytest.raises(SignInError):
        google_sign_in("tok", s, _verifier(_claims(iss="https://evil.example")))
    with pytest.raises(SignInError):
        google_sign_in("tok", s, _verifier(_claims(email_verified=False)))
    with pytest.raises(SignInError):
        google_sign_in("", s, _verifier(_claims()))
    domain = s.model_copy(update={"allowed_domain": "corp.example"})
    with pytest.raises(SignInError, match=r"corp\.example"):
        google_sign_in("tok", domain, _verifier(_claims()))
    assert google_sign_in("tok", domain, _verifier(_claims(hd="corp.example"))).email == "ann@corp.example"
    with pytest.raises(SignInError, match="not configured"):
        google_sign_in("tok", settings.model_copy(update={"google_client_id": ""}), _verifier(_claims()))


def test_dev_sign_in_only_when_enabled(settings: Settings) -> None:
    assert dev_sign_in(" Bob@Example.com ", settings).email == "bob@example.com"
    with pytest.raises(SignInError):
        dev_sign_in("not an email", settings)
    with pytest.raises(SignInError, match="disabled"):
        dev_sign_in("bob@example.com", settings.model_copy(update={"dev_sign_in": False}))


def test_service_callers(settings: Settings) -> None:
    assert verify_service_caller({"X-Askbase-Service": "botrunner"}, settings) == "botrunner"
    assert verify_service_caller({}, settings) is None
    oidc = settings.model_copy(update={"internal_auth": "google-oidc", "qa_url": "https://qa.run.app"})
    # The loopback header means nothing in production.
    assert verify_service_caller({"X-Askbase-Service": "botrunner"}, oidc) is None
    sa = f"botrunner@{settings.project_id}.iam.gserviceaccount.com"
    seen: list = []
    headers = {"Authorization": "Bearer tok"}
    assert verify_service_caller(headers, oidc, _verifier(_claims(email=sa), seen)) == sa
    assert seen == [("tok", "https://qa.run.app")]
    with pytest.raises(SignInError):
        verify_service_caller({"Authorization": "Bearer bad"}, oidc, _verifier(_claims(email=sa)))
    # A valid Google token for somebody else's account is not a service caller.
    with pytest.raises(SignInError):
        verify_service_caller(headers, oidc, _verifier(_claims(email="mallory@gmail.com")))
    with pytest.raises(SignInError):
        verify_service_caller(
            headers, oidc, _verifier(_claims(email="x@other-project.iam.gserviceaccount.com"))
        )
    # As deployed, only botrunner's account is a service caller: not the webhook functions' accounts.
    listed = oidc.model_copy(update={"service_callers": [sa]})
    assert verify_service_caller(headers, listed, _verifier(_claims(email=sa))) == sa
    webhook_fn = f"telegram-fn@{settings.project_id}.iam.gserviceaccount.com"
    with pytest.raises(SignInError):
        verify_service_caller(headers, listed, _verifier(_claims(email=webhook_fn)))


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


def test_bot_profiles_cache_briefly_and_never_cache_unknown_ids() -> None:
    from shared.qa.ask import BotNotFound, BotProfiles

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
    bots = BotProfiles(db, ttl_seconds=60)
    with pytest.raises(BotNotFound):
        bots.get("b1")
    db.docs["b1"] = {"model": "gemini", "system_prompt": "Be brief."}
    assert bots.get("b1").model == "gemini"  # a new bot works at once
    db.docs["b1"]["model"] = "extractive"
    assert bots.get("b1").model == "gemini" and db.reads == 2  # cached
    bots.ttl_seconds = 0
    bots._cache.clear()
    assert bots.get("b1").model == "extractive"
    with pytest.raises(BotNotFound):
        bots.get("../x")
