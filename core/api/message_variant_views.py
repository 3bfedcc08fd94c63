"""Management API for message variants: the JSON templates external offers and campaign messages
are rendered from. Validation is the admin's (core.services, core.messages)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core import services
from core.api.idempotency import idempotent
from core.api.serializers import StrictCharField, StrictSerializer
from core.api.views import ManagementApiView, get_in_mode_or_404
from core.models import MessageVariant

TAGS = ["management: message variants"]

TEMPLATE_HELP = (
    'A JSON object. A string that is exactly one placeholder ("{{ contact.member_number }}") becomes that '
    "fact with its own type (null when missing); placeholders inside longer strings are replaced by their "
    "text. Facts: contact (id, member_number, email, mobile_phone, first_name, last_name), offer, "
    "issued_offer, campaign, … At most 200 values."
)

EXAMPLE = OpenApiExample(
    "SMS for an external offer",
    value={
        "name": "sms-offer",
        "description": "Text message sent by the SMS gateway",
        "template": {
            "to": "{{ contact.mobile_phone }}",
            "text": "Hi {{ contact.first_name }}, {{ offer.name }} is yours until {{ issued_offer.expires_at }}.",
        },
    },
    request_only=True,
)


class MessageVariantInputSerializer(StrictSerializer):
    name = StrictCharField(max_length=100)
    description = StrictCharField(required=False, allow_blank=True, max_length=200)
    template = serializers.JSONField(help_text=TEMPLATE_HELP)


_datetime = serializers.DateTimeField().to_representation


def variant_data(variant: MessageVariant) -> dict:
    # Times as strings: the stored Idempotency-Key replay must equal the first answer.
    return {
        "id": str(variant.pk),
        "livemode": variant.livemode,
        "name": variant.name,
        "description": variant.description,
        "template": variant.template,
        "created_at": _datetime(variant.created_at),
        "updated_at": _datetime(variant.updated_at),
    }


class MessageVariantCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = MessageVariant.objects.none()  # for the schema only

    @extend_schema(summary="List message variants", responses={200: OpenApiTypes.OBJECT}, tags=TAGS)
    def get(self, request):
        page = self.paginate_queryset(MessageVariant.objects.filter(livemode=self.livemode))
        return self.get_paginated_response([variant_data(variant) for variant in page])

    @extend_schema(
        summary="Create a message variant",
        description="400 VALIDATION_ERROR for a malformed template (the parameter names the value's path, "
        "e.g. `template.text`); 409 CONFLICT when the name is taken in this mode.",
        request=MessageVariantInputSerializer,
        responses={201: OpenApiTypes.OBJECT},
        examples=[EXAMPLE],
        tags=TAGS,
    )
    @idempotent
    def post(self, request):
        data = MessageVariantInputSerializer.validated(request.data)
        variant = services.message_variant_create(livemode=self.livemode, **data)
        return Response(variant_data(variant), status=status.HTTP_201_CREATED)


class MessageVariantDetailView(ManagementApiView):
    def get_object(self):
        return get_in_mode_or_404(MessageVariant.objects.filter(livemode=self.livemode), pk=self.kwargs["pk"])

    @extend_schema(summary="Get a message variant", responses={200: OpenApiTypes.OBJECT}, tags=TAGS)
    def get(self, request, pk):
        return Response(variant_data(self.get_object()))

    @extend_schema(
        summary="Change a message variant",
        description="Offers and campaigns naming the variant send the new shape from now on.",
        request=MessageVariantInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def patch(self, request, pk):
        data = MessageVariantInputSerializer.validated(request.data, partial=True)
        variant = services.message_variant_update(variant=self.get_object(), **data)
        return Response(variant_data(variant))

    @extend_schema(
        summary="Delete a message variant",
        description="409 CONFLICT while an offer or a campaign names it.",
        responses={204: None},
        tags=TAGS,
    )
    def delete(self, request, pk):
        services.message_variant_delete(variant=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
