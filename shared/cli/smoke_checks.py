"""The checks ``askbase smoke`` runs against a deployed stack, each one a row of the table.

A check returns its detail or raises :class:`CheckFailed`; :func:`run_check` turns anything that goes
wrong in it (refused connection, untrusted certificate, timeout, an API error) into its FAIL row, never a
traceback. Every check here looks from the outside and changes nothing: qa's readiness and sign-in page,
the webhooks and botrunner refusing what is not theirs, the dead letters read without acknowledging.
"""

from __future__ import annotations

import contextlib
import html
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

# Header names of shared/bots/platforms/telegram.py SECRET_HEADER and discord.py SIGNATURE_HEADER,
# TIMESTAMP_HEADER (tests/test_smoke.py holds them together); not imported: those modules pull in Firestore.
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
DISCORD_SIGNATURE_HEADER = "X-Signature-Ed25519"
DISCORD_TIMESTAMP_HEADER = "X-Signature-Timestamp"
PULL_WAIT_SECONDS = 5.0  # how long the dead-letter pull waits for a message before calling it empty
PULL_MAX = 10


class CheckFailed(Exception):
    """A check's failure, with the detail its row shows."""


@dataclass(frozen=True)
class Row:
    name: str
    ok: bool
    detail: str


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters: a row of the table holds it."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """A failure detail for an exception a check did not expect (no traceback)."""
    url = ""
    if isinstance(exc, httpx.RequestError):
        try:
            url = f" ({exc.request.method} {exc.request.url})"
        except RuntimeError:  # no request attached
            url = ""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out{url}"
    if isinstance(exc, httpx.ConnectError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return f"TLS certificate not trusted{url}: pass --ca-cert FILE or set SSL_CERT_FILE"
        return one_line(f"cannot connect{url}: {exc}")
    if isinstance(exc, httpx.HTTPError):
        return one_line(f"{type(exc).__name__}{url}: {exc}")
    message = getattr(exc, "message", None) or str(exc)
    return one_line(f"{type(exc).__name__}: {message}")


def run_check(name: str, check: Callable[[], str]) -> Row:
    """The row of one check: PASS with its detail, or FAIL with what went wrong (never a traceback)."""
    try:
        return Row(name, True, one_line(check()))
    except CheckFailed as exc:
        return Row(name, False, one_line(str(exc)))
    except Exception as exc:
        return Row(name, False, describe(exc))


def snippet(response: httpx.Response) -> str:
    """What a response says went wrong: its JSON ``error`` / ``message``, else the start of its body."""
    try:
        body = response.json()
        for key in ("error", "message"):
            if isinstance(body, dict) and isinstance(body.get(key), str):
                return one_line(body[key], 160)
    except ValueError:
        pass
    return one_line(response.text, 120)


def need_url(url: str | None, what: str) -> str:
    """``url``, or the check fails saying ``what`` is missing and how to supply it."""
    if not url:
        raise CheckFailed(f"no URL: {what}")
    return url


def readyz(client: httpx.Client, qa: str) -> dict[str, Any]:
    """qa's ``/readyz`` body; anything but a 200 JSON object fails the check."""
    response = client.get(qa + "/readyz")
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        raise CheckFailed(f"GET /readyz: HTTP {response.status_code} {snippet(response)}")
    if not isinstance(body, dict):
        raise CheckFailed("GET /readyz: not a JSON object")
    return body


def check_readyz(client: httpx.Client, qa: str | None) -> str:
    body = readyz(client, need_url(qa, "chatUrl is not in the outputs; pass --qa-url"))
    state = body.get("status")
    if state == "ready":
        return f"200 ready, snapshot {body.get('snapshot_id')}"
    if state == "empty":
        return "200 empty: no snapshot published yet (the first scrape has not run)"
    return f"200 {state}"


def check_signin(client: httpx.Client, qa: str | None) -> str:
    qa = need_url(qa, "chatUrl is not in the outputs; pass --qa-url")
    response = client.get(qa + "/signin")
    if response.status_code != 200:
        raise CheckFailed(f"GET /signin: HTTP {response.status_code} {snippet(response)}")
    found = re.search(r'data-login_uri="([^"]*)"', response.text)
    if not found:
        raise CheckFailed("GET /signin: no data-login_uri attribute in the sign-in page")
    uri = html.unescape(found.group(1))
    got, want = urlsplit(uri), urlsplit(qa)
    if got.scheme != "https":
        raise CheckFailed(
            f"login_uri is {uri}: not https (qa does not see the front end's X-Forwarded-Proto); "
            "Google Sign-In would refuse it"
        )
    if (got.hostname, got.port or 443) != (want.hostname, want.port or 443):
        raise CheckFailed(f"login_uri is {uri}: not on the chat's origin {want.scheme}://{want.netloc}")
    return f"login_uri {uri}"


def _refused(response: httpx.Response, expected: set[int], what: str) -> str:
    code = response.status_code
    if code in expected:
        return f"HTTP {code} {snippet(response)}"
    if 200 <= code < 300:
        raise CheckFailed(f"{what}: ACCEPTED (HTTP {code}) {snippet(response)}")
    if code >= 500:
        raise CheckFailed(f"{what}: server error HTTP {code} {snippet(response)}")
    wanted = " or ".join(str(c) for c in sorted(expected))
    raise CheckFailed(f"{what}: HTTP {code}, expected {wanted}: {snippet(response)}")


def _probe_id() -> str:
    return "smoke-" + secrets.token_hex(8)  # matches the functions' bot-id pattern; no bot has it


def check_telegram(client: httpx.Client, url: str | None, bot_id: str | None) -> str:
    url = need_url(url, "telegramWebhookBaseUrl is not in the outputs; pass --telegram-url")
    target = bot_id or _probe_id()
    response = client.post(
        f"{url}/{target}",
        json={"update_id": 1},  # an update with nothing in it: ignored even if it were let in
        headers={TELEGRAM_SECRET_HEADER: "smoke-" + secrets.token_urlsafe(24)},
    )
    expected = {403} if bot_id else {403, 404}
    detail = _refused(response, expected, f"POST /{target} with a wrong secret")
    if bot_id:
        return f"bot {bot_id}: wrong secret refused, {detail}"
    return f"unknown bot {target}: wrong secret refused, {detail} (--telegram-bot-id checks a real bot)"


def check_discord(client: httpx.Client, url: str | None, bot_id: str | None) -> str:
    url = need_url(url, "discordWebhookBaseUrl is not in the outputs; pass --discord-url")
    target = bot_id or _probe_id()
    response = client.post(
        f"{url}/{target}",
        content=b'{"type":1}',  # a PING, as Discord sends to check an endpoint
        headers={
            "Content-Type": "application/json",
            DISCORD_SIGNATURE_HEADER: "00" * 64,
            DISCORD_TIMESTAMP_HEADER: str(int(time.time())),
        },
    )
    expected = {401} if bot_id else {401, 404}
    detail = _refused(response, expected, f"POST /{target} with a bad signature")
    if bot_id:
        return f"bot {bot_id}: bad signature refused, {detail}"
    return (
        f"unknown bot {target}: refused, {detail}; the signature itself is checked only for a "
        "registered bot: pass --discord-bot-id"
    )


def check_botrunner(client: httpx.Client, url: str | None) -> str:
    url = need_url(url, "botrunnerUrl is not in the outputs; pass --botrunner-url")
    user = {"X-Askbase-User": "smoke@askbase.invalid"}
    details = []
    for method, path in (("GET", "/api/bots"), ("POST", "/internal/reconcile")):
        content = b"{}" if method == "POST" else None
        response = client.request(method, url + path, headers=user, content=content)
        _refused(response, {401, 403}, f"{method} {path} without a token")
        details.append(f"{path} {response.status_code}")
    return "no token refused: " + ", ".join(details)


def check_dead_letters(project: str | None, subscription: str, timeout: float) -> str:
    """Empty, or how many dead-lettered jobs wait. Messages are never acknowledged: the ones pulled are
    handed straight back (ack deadline 0) for whoever inspects them."""
    if not project:
        raise CheckFailed("no project: pass --project or set GOOGLE_CLOUD_PROJECT")
    import google.auth.exceptions
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.api_core import exceptions as gexc

    try:
        subscriber = pubsub_v1.SubscriberClient()  # the emulator when PUBSUB_EMULATOR_HOST is set
    except google.auth.exceptions.DefaultCredentialsError:
        raise CheckFailed("no Google credentials: run `gcloud auth application-default login`") from None
    path = subscriber.subscription_path(project, subscription)
    try:
        try:
            subscriber.get_subscription(request={"subscription": path}, timeout=timeout, retry=None)
        except gexc.NotFound:
            raise CheckFailed(f"{path} does not exist (pulumi up creates it)") from None
        # The subscription answered, so a pull that times out found nothing: empty.
        try:
            pulled = subscriber.pull(
                request={"subscription": path, "max_messages": PULL_MAX},
                timeout=min(timeout, PULL_WAIT_SECONDS),
                retry=None,
            )
        except gexc.DeadlineExceeded:
            return f"{subscription}: empty"
        messages = list(pulled.received_messages)
        if not messages:
            return f"{subscription}: empty"
        # Hand them back now; if that fails they come back after the subscription's ack deadline.
        with contextlib.suppress(gexc.GoogleAPIError):
            subscriber.modify_ack_deadline(
                request={
                    "subscription": path,
                    "ack_ids": [m.ack_id for m in messages],
                    "ack_deadline_seconds": 0,
                },
                timeout=timeout,
                retry=None,
            )
        first = messages[0].message
        attrs = dict(first.attributes)
        example = attrs.get("job_id") or f"message {first.message_id}"
        count = f"{len(messages)}+" if len(messages) == PULL_MAX else str(len(messages))
        raise CheckFailed(
            f"{count} dead-lettered job(s) in {subscription}, e.g. {example}: inspect with "
            f"`gcloud pubsub subscriptions pull {subscription} --project {project} --limit 10`"
        )
    except gexc.GoogleAPIError as exc:
        raise CheckFailed(f"{path}: {describe(exc)}") from None
    finally:
        subscriber.close()
