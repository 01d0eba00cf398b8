"""The bot worker's client for the Q&A service's ``POST /api/ask``.

Authentication follows ``settings.internal_auth``:

* ``google-oidc`` (production): ``Authorization: Bearer <Google ID token>`` for the audience
  ``settings.qa_url``, fetched with google-auth's ``fetch_id_token`` (the metadata server on Cloud Run)
  and reused until a few minutes before it expires;
* ``none`` (local stack, tests): the header ``X-Askbase-Service: botrunner``.

Errors are split the way the worker needs them: :class:`QaUnavailable` (network, 5xx, 429, auth: retry
the job later) and :class:`QaRejected` (4xx: the question itself is the problem; tell the user).

``POST /api/bot-votes`` (:meth:`QaClient.vote`) records a press of an answer's 👍/👎 button;
``POST /api/bot-forget`` (:meth:`QaClient.forget`) clears a chat's history (``/forget``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.bots.formatting import SourceRef
from shared.bots.transport import new_http_client
from shared.idtokens import IdTokenSource


class QaUnavailable(RuntimeError):
    """The Q&A service could not answer now; retrying later may work."""


class QaRejected(RuntimeError):
    """The Q&A service refused this question (4xx); retrying will not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class QaAnswer:
    """An answer as the worker posts it. ``answer_id`` names the Q&A service's record of it (what a
    vote on the answer's buttons points at; None when it was not recorded); ``refused`` is the
    answerers' calibrated "the docs do not answer this" (a bot in the quiet answer mode stays silent)."""

    text: str
    sources: list[SourceRef] = field(default_factory=list)
    conversation_id: str | None = None
    answer_id: str | None = None
    refused: bool = False


class QaClient:
    """Thread-safe; one per process."""

    def __init__(
        self,
        base_url: str,
        internal_auth: str = "none",
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + "/api/ask"
        self._votes_url = base_url.rstrip("/") + "/api/bot-votes"
        self._forget_url = base_url.rstrip("/") + "/api/bot-forget"
        self._audience = base_url.rstrip("/")
        self._auth = internal_auth
        self._http = http or new_http_client(timeout=httpx.Timeout(timeout, connect=5.0))
        self._tokens = IdTokenSource()

    def _headers(self) -> dict[str, str]:
        if self._auth != "google-oidc":
            return {"X-Askbase-Service": "botrunner"}
        return {"Authorization": self._tokens.authorization(self._audience)}

    def _check_status(self, status: int) -> None:
        if status in (401, 403, 429) or status >= 500:
            # 401/403: an expired token or a deploy in progress; the job is retried, not dropped.
            if status in (401, 403):
                self._tokens.forget(self._audience)
            raise QaUnavailable(f"Q&A service answered {status}")
        if status >= 400:
            raise QaRejected(f"Q&A service refused the request ({status})", status)

    def ask(self, question: str, bot_id: str, user: str) -> QaAnswer:
        """Ask one question on behalf of a bot user (``telegram:<chat>`` / ``discord:<channel>``)."""
        try:
            headers = self._headers()
        except Exception as exc:  # metadata server hiccup: transient
            raise QaUnavailable(f"no ID token for the Q&A service ({type(exc).__name__})") from None
        try:
            response = self._http.post(
                self._url, json={"question": question, "bot_id": bot_id, "user": user}, headers=headers
            )
        except httpx.HTTPError as exc:
            raise QaUnavailable(f"Q&A service unreachable ({type(exc).__name__})") from None
        self._check_status(response.status_code)
        try:
            body: dict[str, Any] = response.json()
            text = str(body["answer"])
        except (ValueError, KeyError, TypeError):
            raise QaUnavailable("Q&A service sent an unexpected response") from None
        sources = [
            SourceRef(title=str(s.get("title") or s.get("url") or ""), url=str(s.get("url") or ""))
            for s in body.get("sources") or []
            if isinstance(s, dict)
        ]
        answer_id = body.get("answer_id")
        return QaAnswer(
            text=text,
            sources=sources,
            conversation_id=body.get("conversation_id"),
            answer_id=answer_id if isinstance(answer_id, str) else None,
            refused=body.get("refused") is True,
        )

    def forget(self, bot_id: str, chat: str, voter: str) -> None:
        """Clear a chat's history with a bot (``POST /api/bot-forget``): its conversation, its answer
        records (so its questions leave the gaps report) and the votes ``voter`` cast. Idempotent.
        Raises :class:`QaUnavailable` or :class:`QaRejected`."""
        self._post(self._forget_url, {"bot_id": bot_id, "user": chat, "voter": voter})

    def vote(self, bot_id: str, state_id: str, voter: str, vote: str) -> None:
        """Record ``voter``'s (``telegram:<user id>``) press of a 👍/👎 button (``vote``: ``up`` /
        ``down``) under the answer whose button state is ``state_id``.

        The Q&A service casts it (``POST /api/bot-votes``): the vote store and the answer records live
        with the embedder there, and neither botrunner's nor the webhooks' dependency set has numpy.
        Idempotent, so a redelivered job casts it again harmlessly. Raises :class:`QaUnavailable`, or
        :class:`QaRejected` when the state is gone (expired) or the vote is malformed.
        """
        self._post(self._votes_url, {"bot_id": bot_id, "state_id": state_id, "voter": voter, "vote": vote})

    def _post(self, url: str, body: dict[str, Any]) -> None:
        try:
            headers = self._headers()
        except Exception as exc:
            raise QaUnavailable(f"no ID token for the Q&A service ({type(exc).__name__})") from None
        try:
            response = self._http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise QaUnavailable(f"Q&A service unreachable ({type(exc).__name__})") from None
        self._check_status(response.status_code)
