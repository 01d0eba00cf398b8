"""The admin's "refresh now" (:func:`trigger_refresh`): start a scrape at once, not at the next scheduled run.

The scrape function's ID token comes from :class:`shared.idtokens.IdTokenSource` (audience: the
function's URL), reused until near its expiry and dropped when the function refuses it.
"""

from __future__ import annotations

import logging
import threading

from shared.config import Settings
from shared.idtokens import IdTokenSource

log = logging.getLogger(__name__)

_local_run = threading.Lock()
_id_tokens = IdTokenSource()  # this process's ID tokens for the scrape function, reused until near expiry


def trigger_refresh(settings: Settings) -> str:
    """Start a scrape now. Returns a message for the admin; raises RuntimeError when it cannot start.

    In production this POSTs to the scrape function with an ID token for its URL (the function is
    private). Locally, with no ``scrape_url``, the scrape runs on a background thread of this process.
    """
    if settings.scrape_url:
        return _call_scrape_function(settings)
    if settings.is_production:
        raise RuntimeError("ASKBASE_SCRAPE_URL is not configured")
    try:
        from shared.knowledge.scrape import run_scrape
    except ImportError as exc:
        raise RuntimeError("the scrape module is not available in this build") from exc
    if not _local_run.acquire(blocking=False):
        return "A refresh is already running in this process."

    def work() -> None:
        try:
            run_scrape(settings)
        except Exception:
            log.exception("local refresh failed")
        finally:
            _local_run.release()

    threading.Thread(target=work, name="local-refresh", daemon=True).start()
    return "Refresh started: new pages appear once the run publishes its snapshot."


def _call_scrape_function(settings: Settings) -> str:
    import httpx

    oidc = settings.internal_auth == "google-oidc"
    headers = {"Content-Type": "application/json"}
    if oidc:
        from google.auth import exceptions as gauth_exc

        try:
            headers["Authorization"] = _id_tokens.authorization(settings.scrape_url)  # audience: its URL
        except gauth_exc.GoogleAuthError as exc:
            # The metadata server did not answer or refused: the admin sees "could not start" (the
            # error names only its type; the log has the rest), not the 500 page.
            log.warning("no ID token for the scrape function: %s", exc)
            raise RuntimeError(f"no ID token for the scrape job ({type(exc).__name__})") from exc
    # The function responds only when its crawl is done, which can take minutes: wait briefly and treat
    # a timeout reading its answer as "started" (the function keeps running the request it received).
    # A timeout before the request was sent (connecting, waiting for a pooled connection) is not.
    try:
        response = httpx.post(settings.scrape_url, json={"trigger": "manual"}, headers=headers, timeout=10)
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise RuntimeError(f"could not reach the scrape job: {type(exc).__name__}") from exc
    except httpx.TimeoutException:
        return "Refresh started (the scrape job is running)."
    except httpx.HTTPError as exc:
        raise RuntimeError(f"could not reach the scrape job: {type(exc).__name__}") from exc
    if response.status_code in (401, 403) and oidc:
        _id_tokens.forget(settings.scrape_url)  # refused (expired, or a deploy changed the URL): fetch anew
    if response.status_code == 409:
        return "A refresh is already running."
    if response.status_code >= 400:
        raise RuntimeError(f"the scrape job answered HTTP {response.status_code}")
    return "Refresh started."
