"""``askbase smoke``: after ``pulumi up``, check the deployed stack from the outside.

Every check is one row of a table (name, PASS/FAIL, detail); the command exits 1 if any row failed.
A check has its own timeout, and anything that goes wrong in it (refused connection, untrusted
certificate, timeout, an API error) is its FAIL row, never a traceback.

Where the URLs come from, first wins: the ``--*-url`` options; the ``--outputs`` file (what
``pulumi stack output --json`` prints); ``pulumi stack output --json`` itself when the pulumi CLI is on
PATH. The scrape function's URL: ``--scrape-url``, else the ``scrapeUrl`` output, else (a stack from
before that output) derived from ``telegramWebhookBaseUrl`` (both are
``https://REGION-PROJECT.cloudfunctions.net/NAME``, :func:`infra.components.functions.function_url`).

The scrape trigger (``--trigger-scrape``) calls the scrape function as Cloud Scheduler does: a POST with
a Google ID token whose audience is the function's URL. The function accepts only the accounts in
``ASKBASE_SCRAPE_CALLERS`` (the scheduler's and qa's), so a person's own token is refused. The token
comes from ``--impersonate SA`` (google-auth impersonated credentials: needs getOpenIdToken on SA), or
else from the ambient credentials via google-auth's ``id_token.fetch_id_token`` (a service-account key
in ``GOOGLE_APPLICATION_CREDENTIALS`` or a metadata server: Cloud Build, a VM, or, in the tests, the
local issuer's metadata server through google-auth's documented ``GCE_METADATA_HOST``/``_IP``).
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click
import httpx

# infra/components/messaging.py: f"{DEAD_LETTER_TOPIC}-inbox" (tests/test_smoke.py holds them together).
DEAD_LETTER_SUBSCRIPTION = "askbase-jobs-dead-inbox"
# infra/program.py FUNCTION_NAMES: the scrape URL is derived from the Telegram function's URL.
TELEGRAM_FUNCTION = "askbase-telegram-webhook"
SCRAPE_FUNCTION = "askbase-scrape"
SCHEDULER_ACCOUNT = "askbase-scheduler"  # infra/components/identity.py ACCOUNTS["scheduler-invoker"]
# The platforms' header names (shared/bots/webhooks.py reads them; not imported: it pulls in Firestore).
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
DISCORD_SIGNATURE_HEADER = "X-Signature-Ed25519"
DISCORD_TIMESTAMP_HEADER = "X-Signature-Timestamp"
PULL_WAIT_SECONDS = 5.0  # how long the dead-letter pull waits for a message before calling it empty
PULL_MAX = 10
SWAP_POLL_SECONDS = 2.0
PULUMI_TIMEOUT_SECONDS = 60.0


class CheckFailed(Exception):
    """A check's failure, with the detail its row shows."""


@dataclass(frozen=True)
class Row:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Targets:
    """What the checks talk to; ``None``: not known (that check fails and says how to supply it)."""

    qa: str | None
    botrunner: str | None
    telegram: str | None
    discord: str | None
    scrape: str | None
    project: str | None
    dead_letter_subscription: str = DEAD_LETTER_SUBSCRIPTION


# --- where the targets come from -------------------------------------------------------------------


def _pulumi(args: list[str]) -> str:
    pulumi = shutil.which("pulumi")
    assert pulumi is not None
    try:
        done = subprocess.run(
            [pulumi, *args], capture_output=True, text=True, timeout=PULUMI_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise click.ClickException(
            f"`pulumi {' '.join(args)}` did not answer within {PULUMI_TIMEOUT_SECONDS:.0f}s"
        ) from None
    if done.returncode != 0:
        raise click.ClickException(
            f"`pulumi {' '.join(args)}` failed ({done.stderr.strip() or done.returncode}); "
            "run it where Pulumi.yaml is, or pass --outputs FILE or the --*-url options"
        )
    return done.stdout


def load_outputs(path: str | None, stack: str | None, need_pulumi: bool) -> tuple[dict[str, Any], bool]:
    """The stack outputs, and whether they came from the pulumi CLI."""
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
            data = json.loads(text)
        except (OSError, json.JSONDecodeError) as exc:
            raise click.ClickException(f"cannot read stack outputs from {path}: {exc}") from None
        if not isinstance(data, dict):
            raise click.ClickException(f"{path} is not a JSON object of stack outputs")
        return data, False
    if need_pulumi and shutil.which("pulumi"):
        args = ["stack", "output", "--json", *(["--stack", stack] if stack else [])]
        try:
            data = json.loads(_pulumi(args))
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"`pulumi stack output --json` printed no JSON: {exc}") from None
        return (data if isinstance(data, dict) else {}), True
    return {}, False


def derive_scrape_url(telegram_url: str | None) -> str | None:
    """``https://REGION-PROJECT.cloudfunctions.net/askbase-scrape`` from the Telegram function's URL."""
    if not telegram_url:
        return None
    parts = urlsplit(telegram_url.rstrip("/"))
    if parts.scheme != "https" or not parts.netloc.endswith(".cloudfunctions.net"):
        return None
    if parts.path != "/" + TELEGRAM_FUNCTION:
        return None
    return f"https://{parts.netloc}/{SCRAPE_FUNCTION}"


def resolve_targets(
    outputs: dict[str, Any],
    *,
    qa: str | None,
    botrunner: str | None,
    telegram: str | None,
    discord: str | None,
    scrape: str | None,
    project: str | None,
    dead_letter_subscription: str,
) -> Targets:
    def pick(explicit: str | None, key: str) -> str | None:
        value = explicit or outputs.get(key)
        return value.rstrip("/") if isinstance(value, str) and value else None

    telegram_url = pick(telegram, "telegramWebhookBaseUrl")
    return Targets(
        qa=pick(qa, "chatUrl"),
        botrunner=pick(botrunner, "botrunnerUrl"),
        telegram=telegram_url,
        discord=pick(discord, "discordWebhookBaseUrl"),
        scrape=pick(scrape, "scrapeUrl") or derive_scrape_url(telegram_url),
        project=project or (outputs.get("project") if isinstance(outputs.get("project"), str) else None),
        dead_letter_subscription=dead_letter_subscription,
    )


# --- running checks --------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
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
        return _one_line(f"cannot connect{url}: {exc}")
    if isinstance(exc, httpx.HTTPError):
        return _one_line(f"{type(exc).__name__}{url}: {exc}")
    message = getattr(exc, "message", None) or str(exc)
    return _one_line(f"{type(exc).__name__}: {message}")


def run_check(name: str, check: Callable[[], str]) -> Row:
    try:
        return Row(name, True, _one_line(check()))
    except CheckFailed as exc:
        return Row(name, False, _one_line(str(exc)))
    except Exception as exc:
        return Row(name, False, describe(exc))


def _snippet(response: httpx.Response) -> str:
    try:
        body = response.json()
        for key in ("error", "message"):
            if isinstance(body, dict) and isinstance(body.get(key), str):
                return _one_line(body[key], 160)
    except ValueError:
        pass
    return _one_line(response.text, 120)


def _need(url: str | None, what: str) -> str:
    if not url:
        raise CheckFailed(f"no URL: {what}")
    return url


# --- the checks ------------------------------------------------------------------------------------


def readyz(client: httpx.Client, qa: str) -> dict[str, Any]:
    response = client.get(qa + "/readyz")
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        raise CheckFailed(f"GET /readyz: HTTP {response.status_code} {_snippet(response)}")
    if not isinstance(body, dict):
        raise CheckFailed("GET /readyz: not a JSON object")
    return body


def check_readyz(client: httpx.Client, qa: str | None) -> str:
    body = readyz(client, _need(qa, "chatUrl is not in the outputs; pass --qa-url"))
    state = body.get("status")
    if state == "ready":
        return f"200 ready, snapshot {body.get('snapshot_id')}"
    if state == "empty":
        return "200 empty: no snapshot published yet (the first scrape has not run)"
    return f"200 {state}"


def check_signin(client: httpx.Client, qa: str | None) -> str:
    qa = _need(qa, "chatUrl is not in the outputs; pass --qa-url")
    response = client.get(qa + "/signin")
    if response.status_code != 200:
        raise CheckFailed(f"GET /signin: HTTP {response.status_code} {_snippet(response)}")
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
        return f"HTTP {code} {_snippet(response)}"
    if 200 <= code < 300:
        raise CheckFailed(f"{what}: ACCEPTED (HTTP {code}) {_snippet(response)}")
    if code >= 500:
        raise CheckFailed(f"{what}: server error HTTP {code} {_snippet(response)}")
    wanted = " or ".join(str(c) for c in sorted(expected))
    raise CheckFailed(f"{what}: HTTP {code}, expected {wanted}: {_snippet(response)}")


def _probe_id() -> str:
    return "smoke-" + secrets.token_hex(8)  # matches the functions' bot-id pattern; no bot has it


def check_telegram(client: httpx.Client, url: str | None, bot_id: str | None) -> str:
    url = _need(url, "telegramWebhookBaseUrl is not in the outputs; pass --telegram-url")
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
    url = _need(url, "discordWebhookBaseUrl is not in the outputs; pass --discord-url")
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
    url = _need(url, "botrunnerUrl is not in the outputs; pass --botrunner-url")
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


def fetch_id_token(audience: str, impersonate: str | None) -> str:
    """A Google ID token for ``audience`` (with the email claim the functions check)."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.oauth2 import id_token

    request = google.auth.transport.requests.Request()
    try:
        if impersonate:
            from google.auth import impersonated_credentials

            scopes = ["https://www.googleapis.com/auth/cloud-platform"]
            source, _ = google.auth.default(scopes=scopes)
            target = impersonated_credentials.Credentials(
                source_credentials=source, target_principal=impersonate, target_scopes=scopes, lifetime=300
            )
            credentials = impersonated_credentials.IDTokenCredentials(
                target, target_audience=audience, include_email=True
            )
            credentials.refresh(request)
            return str(credentials.token)
        return str(id_token.fetch_id_token(request, audience))
    except google.auth.exceptions.DefaultCredentialsError as exc:
        hint = (
            "run `gcloud auth application-default login`"
            if impersonate
            else f"pass --impersonate {SCHEDULER_ACCOUNT}@PROJECT.iam.gserviceaccount.com"
        )
        raise CheckFailed(f"no ID token for {audience}: {_one_line(str(exc), 160)}; {hint}") from None
    except google.auth.exceptions.GoogleAuthError as exc:
        who = (
            f" as {impersonate} (needs roles/iam.serviceAccountOpenIdTokenCreator on it)"
            if impersonate
            else ""
        )
        raise CheckFailed(f"no ID token for {audience}{who}: {_one_line(str(exc), 200)}") from None


def wait_for_snapshot(
    client: httpx.Client,
    qa: str,
    snapshot_id: str,
    timeout: float,
    interval: float = SWAP_POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Poll qa's ``/readyz`` until it serves ``snapshot_id``; the seconds it took."""
    start = clock()
    seen: str = "nothing"
    while True:
        try:
            body = readyz(client, qa)
            seen = f"snapshot {body.get('snapshot_id')}"
            if body.get("snapshot_id") == snapshot_id:
                return clock() - start
        except (CheckFailed, httpx.HTTPError) as exc:
            seen = f"an error ({exc if isinstance(exc, CheckFailed) else describe(exc)})"
        if clock() - start >= timeout:
            raise CheckFailed(
                f"published {snapshot_id}, but qa still served {seen} after {timeout:.0f}s "
                "(qa polls the snapshot pointer every 30 s; see qa's logs, or raise --swap-timeout)"
            )
        sleep(interval)


def check_scrape(
    client: httpx.Client,
    qa: str | None,
    scrape: str | None,
    token: Callable[[str], str],
    scrape_timeout: float,
    swap_timeout: float,
) -> str:
    qa = _need(qa, "chatUrl is not in the outputs; pass --qa-url")
    scrape = _need(
        scrape,
        "the scrape function's URL is not a stack output; pass --scrape-url "
        f"https://REGION-PROJECT.cloudfunctions.net/{SCRAPE_FUNCTION}",
    )
    try:
        before = readyz(client, qa).get("snapshot_id")
    except (CheckFailed, httpx.HTTPError) as exc:
        reason = exc if isinstance(exc, CheckFailed) else describe(exc)
        raise CheckFailed(f"qa not ready, scrape not triggered: {reason}") from None
    bearer = token(scrape)
    response = client.post(
        scrape,
        content=b"{}",
        headers={"Authorization": "Bearer " + bearer, "Content-Type": "application/json"},
        timeout=scrape_timeout,
    )
    code = response.status_code
    if code in (401, 403):
        raise CheckFailed(
            f"the scrape function refused the token (HTTP {code}): only the accounts in "
            f"ASKBASE_SCRAPE_CALLERS may call it; use --impersonate "
            f"{SCHEDULER_ACCOUNT}@PROJECT.iam.gserviceaccount.com"
        )
    if code == 409:
        raise CheckFailed("another scrape run holds the lease (HTTP 409): try again when it has finished")
    try:
        run = response.json()
    except ValueError:
        run = None
    if code != 200 or not isinstance(run, dict):
        raise CheckFailed(f"scrape: HTTP {code} {_snippet(response)}")
    run_id, status, new = run.get("id"), run.get("status"), run.get("snapshot_id")
    if status == "published" and new:
        seconds = wait_for_snapshot(client, qa, new, swap_timeout)
        was = before or "no snapshot"
        return f"run {run_id} published {new}; qa swapped it in after {seconds:.0f}s (was {was})"
    if status == "unchanged":
        return f"run {run_id}: nothing changed since the last crawl, no new snapshot; qa serves {before}"
    if status == "conflict":
        return f"run {run_id}: another run published first, its snapshot stands; qa serves {before}"
    raise CheckFailed(f"run {run_id} ended {status}: {run.get('error') or _snippet(response)}")


# --- the command -----------------------------------------------------------------------------------


def run_smoke(
    targets: Targets,
    *,
    client: httpx.Client,
    timeout: float,
    telegram_bot_id: str | None = None,
    discord_bot_id: str | None = None,
    trigger_scrape: bool = False,
    token: Callable[[str], str] | None = None,
    scrape_timeout: float = 1800.0,
    swap_timeout: float = 180.0,
    report: Callable[[Row], None] = lambda row: None,
) -> list[Row]:
    """Run every check in order, ``report`` each row as it completes; returns the rows."""
    checks: list[tuple[str, Callable[[], str]]] = [
        ("qa /readyz", lambda: check_readyz(client, targets.qa)),
        ("qa sign-in login_uri", lambda: check_signin(client, targets.qa)),
        ("telegram: wrong secret", lambda: check_telegram(client, targets.telegram, telegram_bot_id)),
        ("discord: bad signature", lambda: check_discord(client, targets.discord, discord_bot_id)),
        ("botrunner: no token", lambda: check_botrunner(client, targets.botrunner)),
        (
            "pubsub: dead letters",
            lambda: check_dead_letters(targets.project, targets.dead_letter_subscription, timeout),
        ),
    ]
    if trigger_scrape:
        get_token = token or (lambda audience: fetch_id_token(audience, None))
        checks.append(
            (
                "scrape: new snapshot served",
                lambda: check_scrape(
                    client, targets.qa, targets.scrape, get_token, scrape_timeout, swap_timeout
                ),
            )
        )
    rows = []
    for name, check in checks:
        row = run_check(name, check)
        report(row)
        rows.append(row)
    return rows


NAME_WIDTH = 28


def format_row(row: Row) -> str:
    return f"{row.name:<{NAME_WIDTH}}  {'PASS' if row.ok else 'FAIL':<6}  {row.detail}"


@click.command("smoke")
@click.option(
    "--outputs",
    "outputs_file",
    metavar="FILE",
    default=None,
    help="Stack outputs as `pulumi stack output --json` prints them ('-': stdin). "
    "Default: run that command if pulumi is on PATH.",
)
@click.option("--stack", default=None, help="Pulumi stack, when the outputs are read with the pulumi CLI.")
@click.option("--qa-url", default=None, help="The chat (qa) URL; default: output chatUrl.")
@click.option("--botrunner-url", default=None, help="Default: output botrunnerUrl.")
@click.option("--telegram-url", default=None, help="Default: output telegramWebhookBaseUrl.")
@click.option("--discord-url", default=None, help="Default: output discordWebhookBaseUrl.")
@click.option(
    "--scrape-url",
    default=None,
    help="The scrape function's URL; default: output scrapeUrl (or, for an older stack, derived from "
    "the Telegram function's).",
)
@click.option(
    "--project",
    envvar="GOOGLE_CLOUD_PROJECT",
    default=None,
    help="Dead-letter subscription's project; else output project, else `pulumi config get gcp:project`.",
    show_envvar=True,
)
@click.option("--dead-letter-subscription", default=DEAD_LETTER_SUBSCRIPTION, show_default=True)
@click.option("--telegram-bot-id", default=None, help="A registered Telegram bot: expect exactly 403.")
@click.option("--discord-bot-id", default=None, help="A registered Discord bot: expect exactly 401.")
@click.option(
    "--trigger-scrape",
    is_flag=True,
    help="Run a scrape now (as Cloud Scheduler does) and wait until qa serves its snapshot.",
)
@click.option(
    "--impersonate",
    metavar="SA_EMAIL",
    default=None,
    help="Call the scrape function with an ID token of this service account (e.g. askbase-scheduler@"
    "PROJECT.iam.gserviceaccount.com); default: the ambient credentials' own token.",
)
@click.option("--scrape-timeout", default=1800.0, show_default=True, help="Seconds the scrape call may take.")
@click.option(
    "--swap-timeout", default=180.0, show_default=True, help="Seconds to wait for qa to serve the snapshot."
)
@click.option("--timeout", default=15.0, show_default=True, help="Seconds each other check may take.")
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Trust this CA bundle for HTTPS (default: the system's, or SSL_CERT_FILE).",
)
def smoke_command(
    outputs_file: str | None,
    stack: str | None,
    qa_url: str | None,
    botrunner_url: str | None,
    telegram_url: str | None,
    discord_url: str | None,
    scrape_url: str | None,
    project: str | None,
    dead_letter_subscription: str,
    telegram_bot_id: str | None,
    discord_bot_id: str | None,
    trigger_scrape: bool,
    impersonate: str | None,
    scrape_timeout: float,
    swap_timeout: float,
    timeout: float,
    ca_cert: str | None,
) -> None:
    """Check a deployed stack from the outside: one PASS/FAIL row per check, exit 1 if any failed.

    qa answers /readyz and its Google sign-in login_uri is https on the chat's origin; the Telegram and
    Discord functions refuse a wrong secret / bad signature; botrunner refuses calls without a token;
    the dead-letter subscription is empty (read without acknowledging); with --trigger-scrape, a scrape
    runs and qa swaps its snapshot in. Respects PUBSUB_EMULATOR_HOST.
    """
    explicit = (qa_url, botrunner_url, telegram_url, discord_url)
    outputs, from_pulumi = load_outputs(outputs_file, stack, need_pulumi=not all(explicit))
    if project is None and from_pulumi:
        with contextlib.suppress(click.ClickException):  # then the dead-letter row says what to pass
            project = _pulumi(
                ["config", "get", "gcp:project", *(["--stack", stack] if stack else [])]
            ).strip()
    targets = resolve_targets(
        outputs,
        qa=qa_url,
        botrunner=botrunner_url,
        telegram=telegram_url,
        discord=discord_url,
        scrape=scrape_url,
        project=project or None,
        dead_letter_subscription=dead_letter_subscription,
    )
    verify: Any = ssl.create_default_context(cafile=ca_cert) if ca_cert else True
    header = f"{'check':<{NAME_WIDTH}}  {'result'}  detail"
    click.echo(f"askbase smoke: {targets.qa or '(no chat URL)'}")
    click.echo(header)
    with httpx.Client(verify=verify, timeout=timeout, follow_redirects=False) as client:
        rows = run_smoke(
            targets,
            client=client,
            timeout=timeout,
            telegram_bot_id=telegram_bot_id,
            discord_bot_id=discord_bot_id,
            trigger_scrape=trigger_scrape,
            token=lambda audience: fetch_id_token(audience, impersonate),
            scrape_timeout=scrape_timeout,
            swap_timeout=swap_timeout,
            report=lambda row: click.echo(format_row(row)),
        )
    failed = [r for r in rows if not r.ok]
    if not trigger_scrape:
        click.echo("(scrape not triggered: add --trigger-scrape to run one and wait for qa to serve it)")
    if failed:
        click.echo(f"{len(failed)} of {len(rows)} checks FAILED")
        sys.exit(1)
    click.echo(f"all {len(rows)} checks passed")
