"""The admin's "refresh now" calling the private scrape function: its ID token comes from the project's
ID-token source, for the function's URL, reused, and dropped when the function refuses it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.config import Settings
from shared.qa import refresh

URL = "https://scrape.example.run.app/"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    from google.oauth2 import id_token

    seen: dict[str, list[Any]] = {"audiences": [], "posts": [], "statuses": [200]}

    def fetch_id_token(request: Any, audience: str) -> str:
        seen["audiences"].append(audience)
        return f"token-{len(seen['audiences'])}"

    def post(url: str, **kwargs: Any) -> httpx.Response:
        seen["posts"].append((url, kwargs["json"], kwargs["headers"].get("Authorization")))
        return httpx.Response(seen["statuses"].pop(0) if len(seen["statuses"]) > 1 else seen["statuses"][0])

    monkeypatch.setattr(id_token, "fetch_id_token", fetch_id_token)
    monkeypatch.setattr(httpx, "post", post)
    monkeypatch.setattr(refresh, "_id_tokens", refresh.IdTokenSource())
    return seen


def test_the_scrape_function_gets_an_id_token_for_its_url(calls: dict[str, list[Any]]) -> None:
    settings = Settings(_env_file=None, scrape_url=URL, internal_auth="google-oidc")
    assert refresh.trigger_refresh(settings) == "Refresh started."
    assert refresh.trigger_refresh(settings) == "Refresh started."
    assert calls["audiences"] == [URL]  # one token, reused
    assert calls["posts"] == [(URL, {"trigger": "manual"}, "Bearer token-1")] * 2


def test_a_refused_token_is_fetched_anew(calls: dict[str, list[Any]]) -> None:
    settings = Settings(_env_file=None, scrape_url=URL, internal_auth="google-oidc")
    calls["statuses"] = [401, 200]
    with pytest.raises(RuntimeError, match="HTTP 401"):
        refresh.trigger_refresh(settings)
    assert refresh.trigger_refresh(settings) == "Refresh started."
    assert calls["audiences"] == [URL, URL]
    assert [auth for _, _, auth in calls["posts"]] == ["Bearer token-1", "Bearer token-2"]


def test_no_token_without_google_oidc(calls: dict[str, list[Any]]) -> None:
    settings = Settings(_env_file=None, scrape_url=URL, internal_auth="none")
    assert refresh.trigger_refresh(settings) == "Refresh started."
    assert calls["audiences"] == [] and calls["posts"] == [(URL, {"trigger": "manual"}, None)]
