"""Management API for webhook endpoints: the secret is in the creation answer only."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core import webhooks
from core.api.idempotency import idempotent
from core.api.serializers import StrictCharField, StrictSerializer
from core.api.views import ManagementApiView, get_in_mode_or_404
from core.models import WebhookEndpoint

TAGS = ["management: webhooks"]


class WebhookEndpointInputSerializer(StrictSerializer):
    url = serializers.URLField(max_length=500)
    description = StrictCharField(required=False, allow_blank=True, max_length=200)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(webhooks.EVENT_TYPES)),
        required=False,
        help_text="Event types to receive (docs/WEBHOOKS.md describes each one's data); empty = every event. "
        "An unknown type is a 400.",
    )
    is_active = serializers.BooleanField(required=False)


def endpoint_data(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict:
    data = {
        "id": str(endpoint.pk),
        "livemode": endpoint.livemode,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "is_active": endpoint.is_active,
        "disabled_reason": endpoint.disabled_reason or None,
        "consecutive_failures": endpoint.consecutive_failures,
        "created_at": endpoint.created_at,
    }
    if with_secret:
        data["secret"] = endpoint.secret
    return data


class WebhookEndpointCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = WebhookEndpoint.objects.none()  # for the schema only

    @extend_schema(summary="List webhook endpoints", responses={200: OpenApiTypes.OBJECT}, tags=TAGS)
    def get(self, request):
        page = self.paginate_queryset(WebhookEndpoint.objects.filter(livemode=self.livemode))
        return self.get_paginated_response([endpoint_data(endpoint) for endpoint in page])

    @extend_schema(
        summary="Subscribe an endpoint",
        description="The answer carries the signing `secret` (Standard "
        "Webhooks, `whsec_…`) this once; deliveries carry webhook-id, webhook-timestamp and "
        "webhook-signature headers.",
        request=WebhookEndpointInputSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    @idempotent
    def post(self, request):
        data = WebhookEndpointInputSerializer.validated(request.data)
        endpoint = webhooks.webhook_endpoint_create(
            livemode=self.livemode,
            url=data["url"],
            event_types=data.get("event_types"),
            description=data.get("description", ""),
        )
        return Response(endpoint_data(endpoint, with_secret=True), status=status.HTTP_201_CREATED)


class WebhookEndpointDetailView(ManagementApiView):
    def get_object(self):
        return get_in_mode_or_404(WebhookEndpoint.objects.filter(livemode=self.livemode), pk=self.kwargs["pk"])

    @extend_schema(summary="Get a webhook endpoint", responses={200: OpenApiTypes.OBJECT}, tags=TAGS)
    def get(self, request, pk):
        return Response(endpoint_data(self.get_object()))

    @extend_schema(
        summary="Change a webhook endpoint (re-enabling it clears its failure count)",
        request=WebhookEndpointInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def patch(self, request, pk):
        data = WebhookEndpointInputSerializer.validated(request.data, partial=True)
        endpoint = webhooks.webhook_endpoint_update(endpoint=self.get_object(), **data)
        return Response(endpoint_data(endpoint))

    @extend_schema(summary="Delete a webhook endpoint", responses={204: None}, tags=TAGS)
    def delete(self, request, pk):
        self.get_object().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
