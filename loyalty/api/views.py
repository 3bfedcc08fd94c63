from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api.idempotency import idempotent
from core.api.serializers import MATCH_KEY_TYPES
from core.api.views import ApiView
from core.exceptions import ValidationError
from loyalty import selectors, services
from loyalty.api.serializers import ContactInputSerializer, ContactSerializer, ContactUpdateSerializer

MATCH_KEY_PARAMETERS = [
    OpenApiParameter("match_key", str, description="The identifier's value, e.g. +46707234567."),
    OpenApiParameter("match_key_type", str, enum=list(MATCH_KEY_TYPES), description="Required with match_key."),
    OpenApiParameter("source", str, description="Namespace of an external_id; omitted = any source."),
]


class ContactCollectionView(ApiView):
    serializer_class = ContactSerializer

    @extend_schema(
        summary="Identify a contact by any identifier, or list contacts",
        description="With `match_key` and `match_key_type`: the one matching contact in `results`, or 404 "
        "NOT_FOUND; 409 AMBIGUOUS_MATCH_KEY when an external id without source matches several. Phones "
        "match in any usual format, emails in any case. Without them: all contacts, newest first, in "
        "cursor pages.",
        parameters=MATCH_KEY_PARAMETERS,
        tags=["contacts"],
    )
    def get(self, request):
        match_key = request.query_params.get("match_key")
        match_key_type = request.query_params.get("match_key_type")
        if match_key is None and match_key_type is None:
            return self.paginated(selectors.contact_list(livemode=self.livemode), ContactSerializer)
        if not match_key or not match_key_type:
            missing = "match_key" if not match_key else "match_key_type"
            raise ValidationError.for_field(missing, "match_key and match_key_type go together.")
        contact = selectors.contact_find(
            livemode=self.livemode,
            match_key=match_key,
            match_key_type=match_key_type,
            source=request.query_params.get("source"),
        )
        return Response({"next": None, "previous": None, "results": [ContactSerializer(contact).data]})

    @extend_schema(
        summary="Register a contact",
        request=ContactInputSerializer,
        responses={201: ContactSerializer},
        tags=["contacts"],
    )
    @idempotent
    def post(self, request):
        data = ContactInputSerializer.validated(request.data)
        contact = services.contact_create(livemode=self.livemode, **data)
        return Response(ContactSerializer(contact).data, status=status.HTTP_201_CREATED)


class ContactDetailView(ApiView):
    serializer_class = ContactSerializer

    def get_object(self):
        return selectors.contact_get(livemode=self.livemode, contact_id=self.kwargs["pk"])

    @extend_schema(summary="Get a contact", tags=["contacts"])
    def get(self, request, pk):
        return Response(ContactSerializer(self.get_object()).data)

    @extend_schema(
        summary="Update a contact",
        description="Only the fields sent change. `attributes` are merged (null deletes one); `external_ids` "
        "are added (identifiers are permanent); `email`/`mobile_phone` null removes them.",
        request=ContactUpdateSerializer,
        tags=["contacts"],
    )
    def patch(self, request, pk):
        data = ContactUpdateSerializer.validated(request.data, partial=True)
        contact = services.contact_update(contact=self.get_object(), **data)
        contact = selectors.contact_get(livemode=self.livemode, contact_id=contact.pk)
        return Response(ContactSerializer(contact).data)
