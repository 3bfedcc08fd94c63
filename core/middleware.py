"""Keeps the error contract for what never reaches a DRF view under /api/: unknown routes,
Django's own 404/500 pages, and exceptions raised outside views."""

from __future__ import annotations

import logging

from core.api.exception_handler import error_json_response

logger = logging.getLogger(__name__)


class ApiErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            message = "No such endpoint." if response.status_code == 404 else response.reason_phrase
            return error_json_response(response.status_code, message)
        return response

    def process_exception(self, request, exception):
        if not request.path.startswith("/api/"):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_json_response(500, "An unexpected error occurred; it has been logged.")
