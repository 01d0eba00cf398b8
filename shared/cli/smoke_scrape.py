"""``askbase smoke --trigger-scrape``: run a scrape as Cloud Scheduler does and wait until qa serves it.

The scrape function is called with a POST and a Google ID token whose audience is the function's URL.
The function accepts only the accounts in ``ASKBASE_SCRAPE_CALLERS`` (the scheduler's and qa's), so a
person's own token is refused. The token comes from ``--impersonate SA`` (google-auth impersonated
credentials: needs getOpenIdToken on SA), or else from the ambient credentials via google-auth's
``id_token.fetch_id_token`` (a service-account key in ``GOOGLE_APPLICATION_CREDENTIALS`` or a metadata
server: Cloud Build, a VM, or, in the tests, the local issuer's metadata server through google-auth's
documented ``GCE_METADATA_HOST``/``_IP``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from shared.cli.smoke_checks import CheckFailed, describe, need_url, one_line, readyz, snippet
from shared.cli.smoke_targets import SCRAPE_FUNCTION

SCHEDULER_ACCOUNT = "askbase-scheduler"  # infra/components/identity.py ACCOUNTS["scheduler-invoker"]
SWAP_POLL_SECONDS = 2.0


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
        raise CheckFailed(f"no ID token for {audience}: {one_line(str(exc), 160)}; {hint}") from None
    except google.auth.exceptions.GoogleAuthError as exc:
        who = (
            f" as {impersonate} (needs roles/iam.serviceAccountOpenIdTokenCreator on it)"
            if impersonate
            else ""
        )
        raise CheckFailed(f"no ID token for {audience}{who}: {one_line(str(exc), 200)}") from None


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
    qa = need_url(qa, "chatUrl is not in the outputs; pass --qa-url")
    scrape = need_url(
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
        raise CheckFailed(f"scrape: HTTP {code} {snippet(response)}")
    run_id, status, new = run.get("id"), run.get("status"), run.get("snapshot_id")
    incomplete = run.get("incomplete_sources") or []
    if incomplete:
        # The run kept those sources' pages as they were (the site refused, a sitemap was missing, the
        # deadline came): the stack works, the crawl of the docs does not, and a smoke test says so.
        names = ", ".join(str(name) for name in incomplete)
        raise CheckFailed(
            f"run {run_id} ended {status}, sources not fully crawled ({names}): {run.get('error')}"
        )
    if status == "published" and new:
        seconds = wait_for_snapshot(client, qa, new, swap_timeout)
        was = before or "no snapshot"
        return f"run {run_id} published {new}; qa swapped it in after {seconds:.0f}s (was {was})"
    if status == "unchanged":
        return f"run {run_id}: nothing changed since the last crawl, no new snapshot; qa serves {before}"
    if status == "conflict":
        return f"run {run_id}: another run published first, its snapshot stands; qa serves {before}"
    raise CheckFailed(f"run {run_id} ended {status}: {run.get('error') or snippet(response)}")
