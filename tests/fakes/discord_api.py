"""A fake Discord HTTP API on 127.0.0.1 (uvicorn, keep-alive) that signs what it sends, like Discord.

Usage::

    from tests.fakes.discord_api import FakeDiscord

    with FakeDiscord() as dc:
        app = dc.add_application(name="Docs")   # FakeApplication: id, public_key (hex verify key),
                                                # bot_token, signing_key (nacl SigningKey: the test
                                                # holds the private key), interactions_endpoint_url
        settings.discord_api_base = dc.base_url
        ...
        dc.commands(app.id)                     # the registered global commands
        interaction = dc.ask_interaction(app.id, "How do I deploy?")   # an /ask APPLICATION_COMMAND
        dc.mode_interaction(app.id, "confident", permissions="16")     # /mode by a channel manager
        dc.component_interaction(app.id, custom_id="sources:abc")      # a button press
        resp = dc.deliver(app.id, interaction)  # POST to the endpoint, signed with Ed25519 over
                                                # timestamp + body; bad_signature=True to probe
        dc.edits(app.id) / dc.followups(app.id) # recorded PATCH @original / POST followups:
                                                #   [{"application_id", "token", "payload"}]
        dc.wait_for_edits(app.id, 1, timeout=5)
        dc.fail_next("edit_original", status=429, retry_after=0.2)   # or 500; route names below
        dc.lose_endpoint(app.id)                # Discord "forgot" the endpoint (reconcile tests)
        dc.calls                                # every request: Call(route, method, path, json, auth)

For a stand-in interactions endpoint (no webhook function needed) use
``RecordingEndpoint(pong_endpoint(lambda path: app.public_key))`` from ``tests.fakes._server``: it
verifies signatures (401 otherwise), PONGs PINGs and defers everything else.

Routes (``fail_next`` names): ``get_application`` GET /applications/@me, ``edit_application`` PATCH
/applications/@me, ``put_commands`` / ``get_commands`` /applications/{id}/commands, ``edit_original``
PATCH /webhooks/{id}/{token}/messages/@original, ``followup`` POST /webhooks/{id}/{token},
``callback`` POST /interactions/{id}/{token}/callback.

Like Discord, PATCHing ``interactions_endpoint_url`` first POSTs a signed PING to the URL and refuses
(400, code 50035) unless it answers ``{"type": 1}``; with ``probe_bad_signatures`` (default on) it
also sends a request with a broken signature and requires a 401. Unknown bot token -> 401.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from nacl.signing import SigningKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.devstack.site_server import SiteServer
from tests.fakes._server import PlatformFake

_snowflakes = itertools.count(1_100_000_000_000_000_000 + random.randint(0, 10**15))


def snowflake() -> str:
    return str(next(_snowflakes))


@dataclass
class Call:
    route: str
    method: str
    path: str
    json: Any
    auth: str | None
    at: float = field(default_factory=time.time)
    user_agent: str = ""


@dataclass
class FakeApplication:
    id: str
    name: str
    bot_token: str
    signing_key: SigningKey = field(repr=False)
    bot_user_id: str = field(default_factory=snowflake)
    interactions_endpoint_url: str | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)
    revoked: bool = False

    @property
    def public_key(self) -> str:
        return self.signing_key.verify_key.encode().hex()


@dataclass
class _Failure:
    route: str
    status: int
    retry_after: float | None
    times: int


class FakeDiscord(PlatformFake):
    def __init__(self, probe_bad_signatures: bool = True) -> None:
        self.probe_bad_signatures = probe_bad_signatures
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.apps: dict[str, FakeApplication] = {}
        self.calls: list[Call] = []
        self._edits: list[dict[str, Any]] = []
        self._followups: list[dict[str, Any]] = []
        self._callbacks: list[dict[str, Any]] = []
        self._failures: list[_Failure] = []
        self.interaction_tokens: dict[str, str] = {}  # token -> application id
        self.strict_interaction_tokens = False  # True: unknown interaction tokens get 404
        self._server = SiteServer(
            Starlette(
                routes=[
                    Route("/applications/@me", self._application, methods=["GET", "PATCH"]),
                    Route("/applications/{app_id}/commands", self._commands, methods=["GET", "PUT"]),
                    Route(
                        "/webhooks/{app_id}/{token}/messages/@original",
                        self._original,
                        methods=["PATCH", "GET", "DELETE"],
                    ),
                    Route("/webhooks/{app_id}/{token}", self._followup, methods=["POST"]),
                    Route("/interactions/{iid}/{token}/callback", self._callback, methods=["POST"]),
                ]
            )
        )

    # --- test controls --------------------------------------------------------------------------

    def add_application(self, name: str = "Docs bot") -> FakeApplication:
        app_id = snowflake()
        alphabet = string.ascii_letters + string.digits + "_-"
        first = base64.b64encode(app_id.encode()).decode().rstrip("=")
        token = (
            f"{first}.{''.join(secrets.choice(alphabet) for _ in range(6))}"
            f".{''.join(secrets.choice(alphabet) for _ in range(38))}"
        )
        app = FakeApplication(id=app_id, name=name, bot_token=token, signing_key=SigningKey.generate())
        with self._lock:
            self.apps[app_id] = app
        return app

    def app(self, app_id: str) -> FakeApplication:
        return self.apps[app_id]

    def reset_token(self, app_id: str) -> str:
        """The developer portal's Bot > Reset Token: a new bot token; the old one is 401."""
        with self._lock:
            app = self.apps[app_id]
            head = app.bot_token.rpartition(".")[0]
            app.bot_token = f"{head}.{''.join(secrets.choice(string.ascii_letters) for _ in range(38))}"
            return app.bot_token

    def revoke(self, app_id: str) -> None:
        with self._lock:
            self.apps[app_id].revoked = True

    def lose_endpoint(self, app_id: str) -> None:
        with self._lock:
            self.apps[app_id].interactions_endpoint_url = None

    def lose_commands(self, app_id: str) -> None:
        """Someone deleted the application's global commands (another tool, the portal)."""
        with self._lock:
            self.apps[app_id].commands = []

    def commands(self, app_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.apps[app_id].commands)

    def fail_next(
        self, route: str, status: int = 429, retry_after: float | None = 0.1, times: int = 1
    ) -> None:
        with self._lock:
            self._failures.append(_Failure(route, status, retry_after if status == 429 else None, times))

    def edits(self, app_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._edits if app_id is None or e["application_id"] == app_id]

    def followups(self, app_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._followups if app_id is None or e["application_id"] == app_id]

    def callbacks(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._callbacks)

    def wait_for_edits(self, app_id: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.edits(app_id)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} edits of @original, got {len(self.edits(app_id))}"
                    )
                self._cond.wait(left)
            return self.edits(app_id)

    def ask_interaction(
        self,
        app_id: str,
        question: str,
        *,
        guild_id: str | None = "1000000000000000001",
        channel_id: str = "1000000000000000002",
        user_id: str = "1000000000000000003",
    ) -> dict[str, Any]:
        """An ``/ask question:<question>`` slash command interaction (type 2)."""
        app = self.apps[app_id]
        command_id = next((c["id"] for c in app.commands if c.get("name") == "ask"), snowflake())
        interaction = self._base_interaction(app_id, 2, guild_id, channel_id, user_id)
        interaction["data"] = {
            "id": command_id,
            "name": "ask",
            "type": 1,
            "options": [{"name": "question", "type": 3, "value": question}],
        }
        return interaction

    def mode_interaction(
        self,
        app_id: str,
        mode: str | None,
        *,
        permissions: str = "0",
        guild_id: str | None = "1000000000000000001",
        channel_id: str = "1000000000000000002",
        user_id: str = "1000000000000000003",
    ) -> dict[str, Any]:
        """A ``/mode [mode:<mode>]`` slash command by a member with ``permissions`` (a decimal bit set,
        as Discord sends ``member.permissions``: 16 is Manage Channels)."""
        interaction = self._base_interaction(app_id, 2, guild_id, channel_id, user_id)
        options = [{"name": "mode", "type": 3, "value": mode}] if mode is not None else []
        interaction["data"] = {"id": snowflake(), "name": "mode", "type": 1, "options": options}
        if guild_id:
            interaction["member"]["permissions"] = permissions
        return interaction

    def component_interaction(
        self,
        app_id: str,
        custom_id: str,
        *,
        message: dict[str, Any] | None = None,
        guild_id: str | None = "1000000000000000001",
        channel_id: str = "1000000000000000002",
        user_id: str = "1000000000000000003",
    ) -> dict[str, Any]:
        """A button press (MESSAGE_COMPONENT, type 3) on ``message``."""
        interaction = self._base_interaction(app_id, 3, guild_id, channel_id, user_id)
        interaction["data"] = {"custom_id": custom_id, "component_type": 2}
        interaction["message"] = message or {
            "id": snowflake(),
            "channel_id": channel_id,
            "content": "",
            "components": [],
        }
        return interaction

    def ping_interaction(self, app_id: str) -> dict[str, Any]:
        return {
            "id": snowflake(),
            "application_id": app_id,
            "type": 1,
            "token": self._new_token(app_id),
            "version": 1,
        }

    def deliver(
        self,
        app_id: str,
        interaction: dict[str, Any],
        *,
        url: str | None = None,
        bad_signature: bool = False,
        unsigned: bool = False,
        timestamp: str | None = None,
        timeout: float = 30.0,
    ) -> httpx.Response:
        """POST ``interaction`` to the application's endpoint (or ``url``), signed like Discord."""
        app = self.apps[app_id]
        target = url or app.interactions_endpoint_url
        if not target:
            raise AssertionError("the application has no interactions endpoint")
        body = json.dumps(interaction, separators=(",", ":")).encode()
        headers = self.sign(app, body, timestamp=timestamp, bad=bad_signature) if not unsigned else {}
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "Discord-Interactions/1.0 (+https://discord.com)"
        assert self._http is not None, "start() the fake first"
        return self._http.post(target, content=body, headers=headers, timeout=timeout)

    @staticmethod
    def sign(
        app: FakeApplication, body: bytes, *, timestamp: str | None = None, bad: bool = False
    ) -> dict[str, str]:
        """The X-Signature-Ed25519 / X-Signature-Timestamp headers for ``body``."""
        ts = timestamp or str(int(time.time()))
        signature = app.signing_key.sign(ts.encode() + body).signature
        if bad:
            signature = bytes([signature[0] ^ 0x01]) + signature[1:]
        return {"X-Signature-Ed25519": signature.hex(), "X-Signature-Timestamp": ts}

    def _new_token(self, app_id: str) -> str:
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(60)
        with self._lock:
            self.interaction_tokens[token] = app_id
        return token

    def _base_interaction(
        self, app_id: str, kind: int, guild_id: str | None, channel_id: str, user_id: str
    ) -> dict[str, Any]:
        user = {"id": user_id, "username": "tester", "global_name": "Tester", "discriminator": "0"}
        interaction: dict[str, Any] = {
            "id": snowflake(),
            "application_id": app_id,
            "type": kind,
            "token": self._new_token(app_id),
            "version": 1,
            "channel_id": channel_id,
            "locale": "en-US",
            "app_permissions": "0",
        }
        if guild_id:
            interaction["guild_id"] = guild_id
            interaction["guild_locale"] = "en-US"
            interaction["member"] = {"user": user, "roles": [], "permissions": "0", "nick": None}
        else:
            interaction["user"] = user
        return interaction

    # --- the API --------------------------------------------------------------------------------

    async def _record(self, request: Request, route: str) -> tuple[Any, Response | None]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return None, JSONResponse({"message": "400: Bad Request", "code": 50109}, status_code=400)
        with self._lock:
            self.calls.append(
                Call(
                    route,
                    request.method,
                    request.url.path,
                    body,
                    request.headers.get("authorization"),
                    user_agent=request.headers.get("user-agent", ""),
                )
            )
            for failure in self._failures:
                if failure.route == route:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    if failure.status == 429:
                        return body, JSONResponse(
                            {
                                "message": "You are being rate limited.",
                                "retry_after": failure.retry_after,
                                "global": False,
                            },
                            status_code=429,
                            headers={"Retry-After": str(failure.retry_after)},
                        )
                    return body, JSONResponse(
                        {"message": "500: Internal Server Error", "code": 0}, status_code=failure.status
                    )
        return body, None

    def _authed_app(self, request: Request) -> FakeApplication | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bot "):
            return None
        token = header[4:]
        with self._lock:
            for app in self.apps.values():
                if app.bot_token == token and not app.revoked:
                    return app
        return None

    def _app_json(self, app: FakeApplication) -> dict[str, Any]:
        return {
            "id": app.id,
            "name": app.name,
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": app.public_key,
            "flags": 0,
            "interactions_endpoint_url": app.interactions_endpoint_url,
            "bot": {"id": app.bot_user_id, "username": app.name.replace(" ", "_").lower(), "bot": True},
        }

    async def _application(self, request: Request) -> Response:
        route = "get_application" if request.method == "GET" else "edit_application"
        body, failed = await self._record(request, route)
        if failed:
            return failed
        app = self._authed_app(request)
        if app is None:
            return _unauthorized()
        if request.method == "GET":
            return JSONResponse(self._app_json(app))
        if isinstance(body, dict) and "interactions_endpoint_url" in body:
            url = body["interactions_endpoint_url"] or None
            if url:
                problem = await asyncio.to_thread(self._verify_endpoint, app, url)
                if problem:
                    return JSONResponse(
                        {
                            "message": "Invalid Form Body",
                            "code": 50035,
                            "errors": {
                                "interactions_endpoint_url": {
                                    "_errors": [
                                        {
                                            "code": "APPLICATION_INTERACTIONS_ENDPOINT_URL_INVALID",
                                            "message": "The specified interactions endpoint url could "
                                            f"not be verified. ({problem})",
                                        }
                                    ]
                                }
                            },
                        },
                        status_code=400,
                    )
            with self._lock:
                app.interactions_endpoint_url = url
        return JSONResponse(self._app_json(app))

    def _verify_endpoint(self, app: FakeApplication, url: str) -> str | None:
        """What Discord does before accepting an endpoint: a valid PING must get a PONG."""
        assert self._http is not None
        ping = json.dumps(self.ping_interaction(app.id), separators=(",", ":")).encode()
        try:
            if self.probe_bad_signatures:
                headers = self.sign(app, ping, bad=True) | {"Content-Type": "application/json"}
                bad = self._http.post(url, content=ping, headers=headers, timeout=5)
                if bad.status_code != 401:
                    return f"a bad signature got {bad.status_code}, not 401"
            headers = self.sign(app, ping) | {"Content-Type": "application/json"}
            good = self._http.post(url, content=ping, headers=headers, timeout=5)
        except httpx.HTTPError as exc:
            return f"unreachable: {type(exc).__name__}"
        try:
            ok = good.status_code == 200 and good.json().get("type") == 1
        except ValueError:
            ok = False
        return None if ok else f"PING got {good.status_code}"

    async def _commands(self, request: Request) -> Response:
        route = "get_commands" if request.method == "GET" else "put_commands"
        body, failed = await self._record(request, route)
        if failed:
            return failed
        app = self._authed_app(request)
        if app is None:
            return _unauthorized()
        if app.id != request.path_params["app_id"]:
            return JSONResponse({"message": "Missing Access", "code": 50001}, status_code=403)
        if request.method == "PUT":
            if not isinstance(body, list):
                return JSONResponse({"message": "Invalid Form Body", "code": 50035}, status_code=400)
            stored = []
            with self._lock:
                by_name = {c["name"]: c for c in app.commands}
                for command in body:
                    existing = by_name.get(command.get("name"))
                    stored.append(
                        {
                            **command,
                            "id": existing["id"] if existing else snowflake(),
                            "application_id": app.id,
                            "version": snowflake(),
                        }
                    )
                app.commands = stored
        with self._lock:
            return JSONResponse(list(app.commands))

    def _check_interaction(self, request: Request) -> Response | None:
        app_id = request.path_params["app_id"]
        token = request.path_params["token"]
        with self._lock:
            if app_id not in self.apps:
                return JSONResponse({"message": "Unknown Webhook", "code": 10015}, status_code=404)
            if self.strict_interaction_tokens and self.interaction_tokens.get(token) != app_id:
                return JSONResponse({"message": "Unknown Webhook", "code": 10015}, status_code=404)
        return None

    async def _original(self, request: Request) -> Response:
        body, failed = await self._record(request, "edit_original")
        if failed:
            return failed
        problem = self._check_interaction(request)
        if problem:
            return problem
        if request.method == "DELETE":
            return Response(status_code=204)
        return self._store_message(request, body, self._edits)

    async def _followup(self, request: Request) -> Response:
        body, failed = await self._record(request, "followup")
        if failed:
            return failed
        problem = self._check_interaction(request)
        if problem:
            return problem
        return self._store_message(request, body, self._followups)

    def _store_message(self, request: Request, body: Any, into: list[dict[str, Any]]) -> Response:
        if request.method == "GET":
            return JSONResponse({"id": snowflake(), "content": ""})
        if not isinstance(body, dict):
            return JSONResponse({"message": "Cannot send an empty message", "code": 50006}, status_code=400)
        content = body.get("content") or ""
        if len(content) > 2000:
            return JSONResponse(
                {
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {
                        "content": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": "Must be 2000 or fewer in length.",
                                }
                            ]
                        }
                    },
                },
                status_code=400,
            )
        app_id = request.path_params["app_id"]
        message = {
            "id": snowflake(),
            "application_id": app_id,
            "content": content,
            "components": body.get("components", []),
            "embeds": body.get("embeds", []),
        }
        with self._cond:
            into.append(
                {
                    "application_id": app_id,
                    "token": request.path_params["token"],
                    "payload": body,
                    "message": message,
                }
            )
            self._cond.notify_all()
        return JSONResponse(message)

    async def _callback(self, request: Request) -> Response:
        body, failed = await self._record(request, "callback")
        if failed:
            return failed
        with self._cond:
            self._callbacks.append(
                {
                    "interaction_id": request.path_params["iid"],
                    "token": request.path_params["token"],
                    "payload": body,
                }
            )
            self._cond.notify_all()
        return Response(status_code=204)


def _unauthorized() -> JSONResponse:
    return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)


def pong_endpoint(public_key_for: Any) -> Any:
    """A ``RecordingEndpoint`` responder that behaves like a correct interactions endpoint for PINGs.

    ``public_key_for(path) -> hex public key | None``. Verifies Ed25519 over timestamp + body (401 on
    any failure) and answers PING with PONG; other interactions get a deferred response (type 5).
    Usage: ``RecordingEndpoint(pong_endpoint(lambda path: app.public_key))``.
    """
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    def respond(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        key = public_key_for(path)
        try:
            VerifyKey(bytes.fromhex(key)).verify(
                headers.get("x-signature-timestamp", "").encode() + body,
                bytes.fromhex(headers.get("x-signature-ed25519", "")),
            )
        except (BadSignatureError, ValueError, TypeError):
            return 401, {"error": "invalid request signature"}
        interaction = json.loads(body)
        if interaction.get("type") == 1:
            return 200, {"type": 1}
        return 200, {"type": 5}

    return respond
