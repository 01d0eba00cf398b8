"""Cloud Function ``scrape``: Cloud Scheduler POSTs here every 30 minutes; one run per call.

Thin entry point: the whole job is :func:`shared.knowledge.scrape.run_scrape`. Answers 200 with the run's
JSON summary (``ok`` false when a source was incomplete: see below), 409 when another run holds the
lease, 500 when the run failed or the configuration is bad (Scheduler then shows the error), 405 for
anything but POST: a GET (a health probe, a crawler, a curious browser) must never start a crawl. The
function is private: Cloud Run IAM lets only the scheduler's and qa's accounts invoke it, and, as a
second gate, the function itself checks their ID token (audience ``scrape_url``, accounts
``scrape_callers``) with :mod:`shared.idtokens`: 401/403 before any work.
"""

from __future__ import annotations

import logging
from typing import Any

import flask

from shared import logs
from shared.config import ConfigError, get_settings
from shared.idtokens import TokenError, require_service_caller
from shared.knowledge.runs import RunStatus
from shared.knowledge.scrape import ScrapeError, run_scrape

log = logging.getLogger(__name__)


def scrape(request: flask.Request) -> tuple[dict[str, Any], int]:
    if request.method != "POST":
        return {"ok": False, "error": "POST to run a scrape"}, 405
    try:
        settings = get_settings()
    except ConfigError as exc:
        return {"ok": False, "error": str(exc)}, 500
    logs.configure(settings.log_level, json_output=settings.is_production)
    try:
        require_service_caller(
            settings, request.headers.get("Authorization"), settings.scrape_url, settings.scrape_callers
        )
    except TokenError as exc:
        log.warning("scrape call refused %d: %s", exc.status, exc.reason)
        return {"ok": False, "error": "not allowed"}, exc.status
    try:
        run = run_scrape(settings)
    except ScrapeError as exc:
        return {"ok": False, "error": str(exc)}, 500
    # A run with an incomplete source still answers 200, with "ok": false and incomplete_sources: it did
    # its job (kept what it could not see, published the rest), and Cloud Scheduler takes any non-2xx
    # answer as a failed attempt and retries it by the job's retry_config. A retry at once re-crawls a
    # site that has just refused or failed us (a WAF's 403s, 429s, an outage): more load where it hurts,
    # for the same result. The next scheduled run is the retry; the run's record (status page) and its
    # WARNING log line name the sources.
    body = {"ok": run.status is not RunStatus.FAILED and not run.incomplete_sources, **run.to_json()}
    if run.status is RunStatus.SKIPPED:
        return body, 409
    if run.status is RunStatus.FAILED:
        return body, 500
    return body, 200
