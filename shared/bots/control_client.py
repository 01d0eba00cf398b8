"""The web app's client for botrunner's bot control API (``services/botrunner/control_api.py``).

Why the bot pages call botrunner instead of :class:`shared.bots.control.BotControl` in-process: the
control plane needs the key that decrypts every bot token and the webhook functions' URLs, and both
live only with botrunner. qa keeps its session secret and nothing else; a compromise of the public web
app does not hand out bot tokens.

Each call says which signed-in user it is for (``X-Askbase-User``); botrunner decides ownership and
admin rights itself. With ``internal_auth=google-oidc`` each call carries an ID token for botrunner's
URL from the metadata server (:class:`shared.idtokens.IdTokenSource`).

The methods mirror :class:`~shared.bots.control.BotControl`'s (same names, same
:class:`~shared.bots.control.ControlError` subclasses for 4xx answers), so the pages read the same
either way. 5xx, timeouts and refused connections raise :class:`ControlUnavailable`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.bots.activity import ActivityEntry, ActivityPage
from shared.bots.control import BadRequest, Caller, Conflict, ControlError, NotFound, Upstream
from shared.bots.registry import BotProfile
from shared.idtokens import IdTokenSource

if TYPE_CHECKING:
    # httpx (and, through its command line, rich) is imported by the first client, not by qa's start:
    # 0.04 s of CPU and ~5 MB that only the bot pages use.
    import httpx

log = logging.getLogger(__name__)

USER_HEADER = "X-Askbase-User"  # the signed-in user a call is made for (botrunner's control_api reads it)


class ControlUnavailable(ControlError):
    """botrunner could not be reached or failed; the page says to try again."""

    status = 503


class Forbidden(ControlError):
    status = 403


_ERRORS: dict[int, type[ControlError]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    422: BadRequest,
    502: Upstream,
}


@dataclass(frozen=True)
class BotView(BotProfile):
    """A bot as its owner may see it: :meth:`shared.bots.registry.Bot.to_public` plus the webhook URL."""

    webhook_url: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BotView:
        return cls(
            **cls.profile_fields(str(data["id"]), data), webhook_url=str(data.get("webhook_url") or "")
        )


class BotControlClient:
    """Thread-safe; one per process. ``http`` is injectable (tests give an in-process transport)."""

    def __init__(
        self,
        base_url: str,
        internal_auth: str = "none",
        http: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._auth = internal_auth
        import httpx

        from shared.bots.transport import new_http_client

        self._http = http or new_http_client(timeout=httpx.Timeout(timeout, connect=5.0))
        self._tokens = IdTokenSource()

    # --- transport ----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, caller: Caller, **kwargs: Any) -> Any:
        import httpx  # imported by __init__ already: a lookup in sys.modules

        headers = {USER_HEADER: caller.user}
        if self._auth == "google-oidc":
            try:
                headers["Authorization"] = self._tokens.authorization(self._base)
            except Exception as exc:  # metadata server hiccup: the page says try again
                log.warning("no ID token for botrunner: %s", type(exc).__name__)
                raise ControlUnavailable("The bot service is unavailable; try again in a moment.") from None
        try:
            response = self._http.request(method, self._base + path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("botrunner %s %s failed: %s", method, path, type(exc).__name__)
            raise ControlUnavailable("The bot service is unavailable; try again in a moment.") from None
        if response.status_code in (401, 403) and self._auth == "google-oidc":
            self._tokens.forget(self._base)
        if response.status_code >= 400:
            message, field = _error_body(response)
            error = _ERRORS.get(response.status_code)
            if error is None:
                log.warning("botrunner %s %s -> %d %s", method, path, response.status_code, message)
                raise ControlUnavailable("The bot service is unavailable; try again in a moment.")
            raise error(message, field=field)
        try:
            return response.json()
        except ValueError:
            raise ControlUnavailable("The bot service sent an unexpected answer.") from None

    # --- the BotControl surface the pages use ----------------------------------------------------------

    def list_bots(self, caller: Caller, all_owners: bool = False) -> list[BotView]:
        body = self._call("GET", "/api/bots", caller, params={"all": "1"} if all_owners else None)
        return [BotView.from_json(b) for b in body.get("bots", [])]

    def get_bot(self, caller: Caller, bot_id: str) -> BotView:
        return BotView.from_json(self._call("GET", f"/api/bots/{_seg(bot_id)}", caller))

    def create_bot(self, caller: Caller, data: dict[str, Any]) -> BotView:
        return BotView.from_json(self._call("POST", "/api/bots", caller, json=data))

    def edit_bot(self, caller: Caller, bot_id: str, fields: dict[str, Any]) -> BotView:
        return BotView.from_json(self._call("PATCH", f"/api/bots/{_seg(bot_id)}", caller, json=fields))

    def replace_token(self, caller: Caller, bot_id: str, data: dict[str, Any]) -> BotView:
        return BotView.from_json(self._call("POST", f"/api/bots/{_seg(bot_id)}/token", caller, json=data))

    def start_bot(self, caller: Caller, bot_id: str) -> BotView:
        return self._state(caller, bot_id, "start")

    def stop_bot(self, caller: Caller, bot_id: str) -> BotView:
        return self._state(caller, bot_id, "stop")

    def restart_bot(self, caller: Caller, bot_id: str) -> BotView:
        return self._state(caller, bot_id, "restart")

    def _state(self, caller: Caller, bot_id: str, action: str) -> BotView:
        return BotView.from_json(self._call("POST", f"/api/bots/{_seg(bot_id)}/{action}", caller))

    def delete_bot(self, caller: Caller, bot_id: str) -> None:
        self._call("DELETE", f"/api/bots/{_seg(bot_id)}", caller)

    def activity(
        self, caller: Caller, bot_id: str, limit: int = 50, cursor: str | None = None
    ) -> ActivityPage:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        body = self._call("GET", f"/api/bots/{_seg(bot_id)}/activity", caller, params=params)
        items = [
            ActivityEntry(
                id=str(i["id"]),
                at=datetime.fromisoformat(i["at"]),
                kind=str(i["kind"]),
                message=str(i["message"]),
            )
            for i in body.get("items", [])
        ]
        return ActivityPage(items=items, next_cursor=body.get("next_cursor"))


def _seg(value: str) -> str:
    """One path segment: a bot id never contains '/', and one that tries must not reach another route."""
    from urllib.parse import quote

    return quote(value, safe="")


def _error_body(response: httpx.Response) -> tuple[str, str | None]:
    """The message and the field it is about (``{"error": ..., "field": ...}``; no field: None)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}", None
    if not isinstance(body, dict):
        return "", None
    field = body.get("field")
    return str(body.get("error") or f"HTTP {response.status_code}"), field if isinstance(field, str) else None
