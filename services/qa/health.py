"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (an index is loaded, or none exists yet)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from services.qa.app import context

bp = Blueprint("health", __name__)

NO_KNOWLEDGE = (
    "No knowledge yet: no index snapshot has been published. The first crawl is probably still running; "
    "questions will be answered as soon as it publishes."
)


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Any:
    """200 when serving an index or deliberately serving the empty state; 503 while starting.

    Anyone may call it (the front end and uptime checks do, unauthenticated), so the last restore error
    stays off it: a storage error's text names the bucket, object paths, the project and qa's service
    account. It is logged, and shown on the signed-in status page; here only ``index_error`` says one is
    pending."""
    status = context().live_index.status()
    body = status.to_json()
    body["index_error"] = body.pop("last_error") is not None
    if status.state == "ready":
        return jsonify(status="ready", **body)
    if status.state == "empty":
        return jsonify(status="empty", message=NO_KNOWLEDGE, **body)
    return jsonify(status="starting", message="restoring the newest index snapshot", **body), 503
