"""OpenAPI: the API-key security scheme and the error body on every operation."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="The HTTP status, repeated.")
    error = serializers.CharField(
        help_text="Stable machine code: VALIDATION_ERROR, NOT_FOUND, AUTHENTICATION_FAILED, "
        "PERMISSION_DENIED, CONFLICT, AMBIGUOUS_MATCH_KEY, IDEMPOTENCY_MISMATCH, "
        "IDEMPOTENCY_IN_FLIGHT, LIMIT_EXCEEDED, INSUFFICIENT_BALANCE, OFFER_LOCKED, "
        "OFFER_NOT_AVAILABLE, RATE_LIMITED, METHOD_NOT_ALLOWED, INTERNAL_ERROR."
    )
    message = serializers.CharField()
    parameters = serializers.ListField(
        child=serializers.CharField(),
        help_text="The offending fields (dotted paths for nested ones: `items.3.sku`) or ids, each followed by "
        'the offending value where there is one (`["id", "<uuid>"]`) and by helpful figures as name/value '
        'pairs (`["spend.amount", "available", "7.50"]`).',
    )


IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    description="Any string up to 255 characters, unique per request you mean. A repeat with the "
    "same key and body returns the first response (header Idempotent-Replayed: true); the same "
    "key with another body is 409 IDEMPOTENCY_MISMATCH; while the first is still running, 409 "
    "IDEMPOTENCY_IN_FLIGHT. Keys are kept 24 hours.",
)


class ErrorDocumentingAutoSchema(AutoSchema):
    def _is_list_view(self, serializer=None) -> bool:
        # Our views are plain GenericAPIViews; a collection says so with `lists_on_get`, which
        # gives its GET a paginated list schema and a distinct operationId (`…_list`).
        if self.method == "GET" and hasattr(self.view, "lists_on_get"):
            return self.view.lists_on_get
        return super()._is_list_view(serializer)

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self.method == "POST" and getattr(getattr(self.view, self.method.lower(), None), "__wrapped__", None):
            parameters.append(IDEMPOTENCY_KEY_PARAMETER)
        return parameters

    def _get_response_bodies(self, direction="response"):
        # Added here rather than in get_response_serializers(): @extend_schema(responses=...)
        # replaces that method, which would drop the error responses of every such operation.
        responses = super()._get_response_bodies(direction)
        if not self.path.startswith("/api/"):
            return responses  # /healthz and the like: no API key, no error contract
        errors = {
            "400": "Invalid request (VALIDATION_ERROR, LIMIT_EXCEEDED).",
            "401": "Missing, invalid or revoked API key (AUTHENTICATION_FAILED).",
            "403": "The key lacks the scope (PERMISSION_DENIED).",
            "429": "Throttled (RATE_LIMITED); see Retry-After.",
        }
        if "{" in self.path or self.method in ("POST", "PUT", "PATCH", "DELETE"):
            errors["404"] = "Unknown id in this mode (NOT_FOUND)."
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            errors["409"] = "State conflict (CONFLICT, IDEMPOTENCY_MISMATCH, …)."
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), code, direction=direction
                )
        return responses


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "core.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key lk_live_…` or `Api-Key lk_test_…`. Test keys see only test data.",
        }
