from rest_framework import serializers

from core.api.serializers import ContactReferenceSerializer, StrictCharField, StrictSerializer
from core.money import format_minor
from orders.models import Order

ORDER_ACTIONS = ("complete", "cancel")


class OrderInputSerializer(StrictSerializer):
    contact = ContactReferenceSerializer()
    venue = serializers.JSONField(help_text='A venue id, or {"merchant_number": "...", "number": "..."}.')
    currency = StrictCharField(max_length=3)
    fulfilment = serializers.ChoiceField(choices=Order.Fulfilment.values, required=False, default="pick_up")
    notes = StrictCharField(required=False, allow_blank=True, max_length=2000)
    lines = serializers.JSONField(help_text="Up to 1,000: sku, quantity, unit_price (amount is computed).")


class OrderActionSerializer(StrictSerializer):
    action = serializers.ChoiceField(choices=ORDER_ACTIONS)
    cancellation_reason = serializers.CharField(required=False, help_text="Id or code of a cancellation reason.")

    def validate(self, attrs):
        if attrs["action"] == "cancel" and not attrs.get("cancellation_reason"):
            raise serializers.ValidationError({"cancellation_reason": ["Cancelling an order needs a reason."]})
        return attrs


def order_data(order: Order) -> dict:
    return {
        "id": str(order.pk),
        "livemode": order.livemode,
        "contact_id": str(order.contact_id),
        "venue": {"id": str(order.venue_id), "number": order.venue.number, "name": order.venue.name},
        "status": order.status,
        "fulfilment": order.fulfilment,
        "notes": order.notes,
        "currency": order.currency,
        "amount": format_minor(order.amount, order.currency),
        "lines": [
            {
                "sku": line.sku,
                "quantity": str(line.quantity.normalize()),
                "unit_price": format_minor(line.unit_price, order.currency),
                "amount": format_minor(line.amount, order.currency),
            }
            for line in order.lines.all()
        ],
        "cancellation_reason": (
            {
                "id": order.cancellation_reason_id,
                "code": order.cancellation_reason.code,
                "name": order.cancellation_reason.name,
            }
            if order.cancellation_reason_id
            else None
        ),
        "transaction_id": order.transaction.external_id if order.transaction_id else None,
        "placed_at": order.placed_at,
        "started_at": order.started_at,
        "completed_at": order.completed_at,
        "cancelled_at": order.cancelled_at,
    }
