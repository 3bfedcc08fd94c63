"""Base view for every API endpoint, and the health check."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.pagination import CreatedCursorPagination
from core.models import ApiKey


class ApiView(GenericAPIView):
    # Every endpoint: an API key with `required_scope`, data of the key's mode only. (A comment,
    # not a docstring: drf-spectacular would print a docstring as every operation's description.)

    required_scope = ApiKey.Scope.INTEGRATION
    pagination_class = CreatedCursorPagination
    lists_on_get = False  # True on collection endpoints (see core.api.schema)

    @property
    def livemode(self) -> bool:
        return self.request.auth.livemode

    def paginated(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)


class ManagementApiView(ApiView):
    required_scope = ApiKey.Scope.MANAGEMENT


def _check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "in-process"
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return "ok"


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="Liveness and readiness: database and broker reachability",
        responses={
            200: inline_serializer(
                "Health",
                {
                    "status": serializers.CharField(),
                    "database": serializers.CharField(),
                    "broker": serializers.CharField(),
                },
            ),
            503: inline_serializer(
                "HealthDown",
                {
                    "status": serializers.CharField(),
                    "database": serializers.CharField(),
                    "broker": serializers.CharField(),
                },
            ),
        },
    )
    def get(self, request):
        checks = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means "down"
            checks["database"] = f"down: {error.__class__.__name__}"
        try:
            checks["broker"] = _check_broker()
        except Exception as error:  # noqa: BLE001
            checks["broker"] = f"down: {error.__class__.__name__}"
        healthy = all(value in ("ok", "in-process") for value in checks.values())
        return Response({"status": "ok" if healthy else "down", **checks}, status=200 if healthy else 503)


def get_in_mode_or_404(queryset, *, name: str = "id", **lookup):
    """The object of this mode, or NotFound naming the id: another mode's ids do not exist."""
    from django.core.exceptions import ValidationError as DjangoValidationError

    from core.exceptions import NotFound

    try:
        return queryset.get(**lookup)
    except (queryset.model.DoesNotExist, DjangoValidationError, ValueError):
        value = next(iter(lookup.values()), None)
        raise NotFound(
            f"No {queryset.model._meta.verbose_name} '{value}' in this mode.",
            parameters=[NotFound.parameter(name, value=str(value))],
        ) from None
