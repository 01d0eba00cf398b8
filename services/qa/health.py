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
    """200 when serving an index or deliberately serving the empty state; 503 while starting."""
    status = context().live_index.status()
    body = status.to_json()
    if status.state == "ready":
        return jsonify(status="ready", **body)
    if status.state == "empty":
        return jsonify(status="empty", message=NO_KNOWLEDGE, **body)
    return jsonify(status="starting", message="restoring the newest index snapshot", **body), 503
