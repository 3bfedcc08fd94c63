from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from core.api.idempotency import idempotent
from core.api.views import ApiView, get_in_mode_or_404
from core.baskets import parse_basket_lines
from core.money import check_currency
from loyalty.selectors import contact_get, contact_resolve
from offers.selectors import venue_resolve
from orders import selectors, services
from orders.api.serializers import OrderActionSerializer, OrderInputSerializer, order_data
from orders.models import Order

TAGS = ["orders"]


class OrderFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Order.Status.values, required=False)
    venue = serializers.UUIDField(required=False)
    since = serializers.DateTimeField(required=False)
    cursor = serializers.CharField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500)


class OrderPagination(CursorPagination):
    ordering = ("-placed_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class OrderCollectionView(ApiView):
    lists_on_get = True
    pagination_class = OrderPagination
    queryset = Order.objects.none()  # for the schema only

    @extend_schema(
        summary="Orders, newest first (GET ?status=new is the pull path for fulfilment)",
        parameters=[
            OpenApiParameter("status", str, enum=list(Order.Status.values)),
            OpenApiParameter("venue", str, description="A venue id."),
            OpenApiParameter("since", str, description="Placed at or after (ISO 8601)."),
        ],
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def get(self, request):
        query = OrderFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        orders = selectors.order_list(
            livemode=self.livemode,
            status=query.validated_data.get("status"),
            venue_id=query.validated_data.get("venue"),
            since=query.validated_data.get("since"),
        )
        page = self.paginate_queryset(orders)
        return self.get_paginated_response([order_data(order) for order in page])

    @extend_schema(
        summary="A contact places an order",
        request=OrderInputSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    @idempotent
    def post(self, request):
        data = OrderInputSerializer.validated(request.data)
        currency = check_currency(data["currency"])
        lines = parse_basket_lines(data["lines"], currency=currency, field="lines")
        contact = contact_resolve(livemode=self.livemode, reference=data["contact"])
        venue = venue_resolve(livemode=self.livemode, reference=data["venue"], field="venue")
        order = services.order_place(
            contact=contact,
            venue=venue,
            lines=lines,
            currency=currency,
            fulfilment=data["fulfilment"],
            notes=data.get("notes", ""),
            actor=f"api-key:{request.auth.prefix}",
        )
        order = selectors.order_list(livemode=self.livemode).get(pk=order.pk)
        return Response(order_data(order), status=status.HTTP_201_CREATED)


class OrderDetailView(ApiView):
    def get_object(self):
        return get_in_mode_or_404(selectors.order_list(livemode=self.livemode), pk=self.kwargs["pk"])

    @extend_schema(summary="One order", responses={200: OpenApiTypes.OBJECT}, tags=TAGS)
    def get(self, request, pk):
        return Response(order_data(self.get_object()))


class OrderActionsView(ApiView):
    @extend_schema(
        summary="Complete or cancel an order",
        description='`{"action": "complete"}` creates the order\'s purchase (processed like any other); '
        '`{"action": "cancel", "cancellation_reason": "<id or code>"}`. An order that has moved on (e.g. '
        "completed and cancelled at once by two agents: exactly one wins) answers 409 ORDER_STATE_CONFLICT.",
        request=OrderActionSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def put(self, request, pk):
        data = OrderActionSerializer.validated(request.data)
        order = get_in_mode_or_404(Order.objects.filter(livemode=self.livemode), pk=pk)
        reason = None
        if data["action"] == "cancel":
            reason = services.cancellation_reason_get(livemode=self.livemode, reason_id=data["cancellation_reason"])
        services.order_transition(
            order=order, action=data["action"], cancellation_reason=reason, actor=f"api-key:{request.auth.prefix}"
        )
        return Response(order_data(selectors.order_list(livemode=self.livemode).get(pk=order.pk)))


class CancellationReasonsView(ApiView):
    @extend_schema(
        summary="The reasons an agent may give to cancel an order", responses={200: OpenApiTypes.OBJECT}, tags=TAGS
    )
    def get(self, request):
        return Response(
            {
                "results": [
                    {"id": reason.pk, "code": reason.code, "name": reason.name}
                    for reason in selectors.cancellation_reasons(livemode=self.livemode)
                ]
            }
        )


class ContactExportView(ApiView):
    @extend_schema(
        summary="Everything held about a contact (GDPR right of access)",
        description="One JSON document: profile, identifiers, consents, wallet, ledger, pay-outs, tiers, "
        "issued offers with their history, purchases with their lines, returns, receipt claims and orders. "
        "A contact of the other mode is 404.",
        responses={200: OpenApiTypes.OBJECT},
        tags=["contacts"],
    )
    def get(self, request, pk):
        contact = contact_get(livemode=self.livemode, contact_id=pk, with_identifiers=False)
        return Response(selectors.contact_export(contact=contact))
