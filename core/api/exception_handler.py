"""The one place where errors become HTTP: every 4xx/5xx under /api/ has the contract's body
`{"status", "error", "message", "parameters"}`."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.exceptions import DomainError

logger = logging.getLogger(__name__)

STATUS_BY_KIND = {
    "invalid": status.HTTP_400_BAD_REQUEST,
    "forbidden": status.HTTP_403_FORBIDDEN,
    "not_found": status.HTTP_404_NOT_FOUND,
    "conflict": status.HTTP_409_CONFLICT,
}

CODE_BY_STATUS = {
    400: "VALIDATION_ERROR",
    401: "AUTHENTICATION_FAILED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


def error_body(status_code: int, code: str, message: str, parameters: list | None = None) -> dict[str, Any]:
    return {"status": status_code, "error": code, "message": message, "parameters": render_parameters(parameters or [])}


def error_json_response(status_code: int, message: str, code: str | None = None) -> JsonResponse:
    code = code or CODE_BY_STATUS.get(status_code, "ERROR" if status_code < 500 else "INTERNAL_ERROR")
    return JsonResponse(error_body(status_code, code, message), status=status_code)


def flatten_validation_detail(detail: Any, prefix: str = "") -> list[dict[str, Any]]:
    """DRF's nested error detail as a flat list: `items.3.sku` names the offending field."""
    if isinstance(detail, dict):
        entries = []
        for key, value in detail.items():
            if key in ("non_field_errors", "body"):
                name = prefix or "body"  # an error of the object itself names the object
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            entries.extend(flatten_validation_detail(value, name))
        return entries
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return [
                {"name": prefix or "body", "message": str(item), "code": getattr(item, "code", "invalid")}
                for item in detail
            ]
        entries = []
        for index, item in enumerate(detail):
            if item:  # DRF puts {} for list members that were valid
                entries.extend(flatten_validation_detail(item, f"{prefix}.{index}" if prefix else str(index)))
        return entries
    return [{"name": prefix or "body", "message": str(detail), "code": getattr(detail, "code", "invalid")}]


def _validation_message(parameters: list[dict[str, Any]]) -> str:
    if not parameters:
        return "The request is not valid."
    return "; ".join(f"{entry['name']}: {entry['message']}" for entry in parameters)


def render_parameters(parameters: list) -> list[str]:
    """The contract's `parameters`: strings naming the offending fields or ids, each followed by
    the offending value (as the vendor APIs do: `["contact", "<id>"]`) and any figures that help,
    as name/value pairs (`["spend.amount", "available", "7.50"]`)."""
    rendered: list[str] = []
    names_seen: set[str] = set()
    for parameter in parameters:
        if isinstance(parameter, str):
            rendered.append(parameter)
            continue
        has_values = any(key not in ("name", "message", "code") for key in parameter)
        if has_values or parameter["name"] not in names_seen:
            # A field with several validation messages is named once.
            rendered.append(parameter["name"])
            names_seen.add(parameter["name"])
        for key, value in parameter.items():
            if key in ("name", "message", "code") or value is None:
                continue
            if key != "value":
                rendered.append(key)
            if isinstance(value, (list, tuple)):
                rendered.extend(str(item) for item in value)
            else:
                rendered.append(str(value))
    return rendered


def api_exception_handler(exc: Exception, context: dict) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, DomainError):
        status_code = STATUS_BY_KIND.get(exc.kind, status.HTTP_409_CONFLICT)
        body = error_body(status_code, exc.code, exc.message, exc.parameters)
    elif isinstance(exc, exceptions.ValidationError):
        parameters = flatten_validation_detail(exc.detail)
        body = error_body(400, "VALIDATION_ERROR", _validation_message(parameters), parameters)
    elif isinstance(exc, exceptions.ParseError):
        body = error_body(400, "VALIDATION_ERROR", f"Malformed request body: {exc.detail}", [{"name": "body"}])
    elif isinstance(exc, (Http404, exceptions.NotFound)):
        message = str(exc.detail) if isinstance(exc, exceptions.NotFound) else "No such object."
        body = error_body(404, "NOT_FOUND", message)
    elif isinstance(exc, (DjangoPermissionDenied,)):
        body = error_body(403, "PERMISSION_DENIED", "Not allowed.")
    elif isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        message = str(exc.detail)
        if isinstance(exc, exceptions.NotAuthenticated):
            message = "Authentication required: send 'Authorization: Api-Key <key>'."
        body = error_body(401, "AUTHENTICATION_FAILED", message)
        headers["WWW-Authenticate"] = "Api-Key"
    elif isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        body = error_body(
            429, "RATE_LIMITED", f"Too many requests; retry in {wait} s.", [{"name": "retry_after", "value": wait}]
        )
        headers["Retry-After"] = str(wait)
    elif isinstance(exc, exceptions.APIException):
        status_code = exc.status_code
        body = error_body(status_code, CODE_BY_STATUS.get(status_code, "ERROR"), str(exc.detail))
    else:
        view = context.get("view")
        logger.exception("Unhandled error in %s", view.__class__.__name__ if view else "view")
        body = error_body(500, "INTERNAL_ERROR", "An unexpected error occurred; it has been logged.")
    set_rollback()
    return Response(body, status=body["status"], headers=headers)
