"""Cloud Function ``scrape``: Cloud Scheduler POSTs here every 30 minutes; one run per call.

Thin entry point: the whole job is :func:`shared.knowledge.scrape.run_scrape`. Answers 200 with the run's
JSON summary, 409 when another run holds the lease, 500 when the run failed (Scheduler then shows the
error), 405 for anything but POST: a GET (a health probe, a crawler, a curious browser) must never start a
crawl. The function is private: only the scheduler's service account may
invoke it (IAM), so there is no auth code here.
"""

from __future__ import annotations

import flask

from shared import logs
from shared.config import ConfigError, get_settings
from shared.knowledge.runs import RunStatus
from shared.knowledge.scrape import ScrapeError, run_scrape


def scrape(request: flask.Request) -> tuple[dict, int]:
    if request.method != "POST":
        return {"ok": False, "error": "POST to run a scrape"}, 405
    try:
        settings = get_settings()
    except ConfigError as exc:
        return {"ok": False, "error": str(exc)}, 500
    logs.configure(settings.log_level, json_output=settings.is_production)
    try:
        run = run_scrape(settings)
    except ScrapeError as exc:
        return {"ok": False, "error": str(exc)}, 500
    body = {"ok": run.status is not RunStatus.FAILED, **run.to_json()}
    if run.status is RunStatus.SKIPPED:
        return body, 409
    if run.status is RunStatus.FAILED:
        return body, 500
    return body, 200
