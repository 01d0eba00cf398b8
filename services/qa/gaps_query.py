"""The gaps report's filters from the request's query string, for the page (``/gaps``) and the API
(``/api/gaps``) alike."""

from __future__ import annotations

from flask import request

from services.qa.app import context
from shared.qa.gaps_filters import WEB, GapsFilters, InvalidFilter, parse_filters
from shared.request_input import is_document_id


def gaps_filters() -> GapsFilters:
    """The report filters of this request's query string (raises InvalidFilter)."""
    filters = parse_filters(request.args, context().feedback.gaps.now())
    if filters.bot not in (None, WEB) and not is_document_id(filters.bot):
        # An admin's report reads bots/{bot}, and Firestore refuses an id like "__x__" (a 500).
        raise InvalidFilter(f"'bot' must be a bot id or '{WEB}'")
    return filters
